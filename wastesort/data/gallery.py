"""Thumbnail sheets of photos from the data folder, for a person to look at.

A sheet is composed with Pillow, one thumbnail at a time: its memory is the sheet itself
(about 6 MB for 60 photos), whatever the size of the data set."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from wastesort import images

THUMB_SIDE = 160
CELL_WIDTH = 200
CAPTION_LINES = 2
FONT_SIZE = 11
PAD = 6


def thumbnail(path: Path, max_pixels: int) -> Image.Image:
    """The photo (EXIF orientation applied) shrunk to fit THUMB_SIDE; grey when unreadable."""
    try:
        image = images.decode(path.read_bytes(), max_pixels, draft_to=THUMB_SIDE).image
    except (OSError, images.ImageRejected):
        return Image.new("RGB", (THUMB_SIDE, THUMB_SIDE), (128, 128, 128))
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return image


def caption_lines(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """``text`` in at most CAPTION_LINES lines of at most ``width`` pixels, broken after
    spaces and slashes; what still does not fit ends in an ellipsis."""
    lines, current = [], ""
    for piece in re.split(r"(?<=[ /])", text):
        last_line = len(lines) == CAPTION_LINES - 1  # takes the rest of the text
        if current and not last_line and font.getlength(current + piece) > width:
            lines.append(current.rstrip())
            current = piece
        else:
            current += piece
    lines.append(current.rstrip())
    for n, line in enumerate(lines):
        while font.getlength(line) > width and len(line) > 1:
            line = line[:-2] + "\u2026"
        lines[n] = line
    return lines


def plot_grid(
    root: Path, cells: list[tuple[str, str]], path: Path, max_pixels: int, columns: int = 6
) -> None:
    """Thumbnails of (path under ``root``, caption), ``columns`` to a row, as a PNG sheet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    font = ImageFont.load_default(size=FONT_SIZE)
    line_height = FONT_SIZE + 3
    cell_height = PAD + CAPTION_LINES * line_height + THUMB_SIDE + PAD
    n_cols = max(1, min(columns, len(cells)))
    n_rows = max(1, -(-len(cells) // n_cols))
    sheet = Image.new("RGB", (n_cols * CELL_WIDTH, n_rows * cell_height), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (rel, caption) in enumerate(cells):
        left, top = (n % n_cols) * CELL_WIDTH, (n // n_cols) * cell_height
        for k, line in enumerate(caption_lines(caption, font, CELL_WIDTH - 2 * PAD)):
            draw.text((left + PAD, top + PAD + k * line_height), line, fill="black", font=font)
        thumb = thumbnail(root / rel, max_pixels)
        x = left + (CELL_WIDTH - thumb.width) // 2
        y = top + PAD + CAPTION_LINES * line_height + (THUMB_SIDE - thumb.height) // 2
        sheet.paste(thumb, (x, y))
    sheet.save(path, optimize=True)

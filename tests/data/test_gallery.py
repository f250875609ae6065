"""Thumbnail sheets: every photo placed in its cell, captions inside their cell."""

import numpy as np
from PIL import Image, ImageFont

from wastesort.data import gallery


def photo(path, size, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


def test_caption_lines_fit_their_cell_in_two_lines():
    font = ImageFont.load_default(size=gallery.FONT_SIZE)
    width = gallery.CELL_WIDTH - 2 * gallery.PAD
    short = gallery.caption_lines("#1 glass/a.jpg", font, width)
    assert short == ["#1 glass/a.jpg"]
    long = gallery.caption_lines(
        "#12 cardboard/cardboard_00272_a_very_long_name.jpg (distance 4) and more words " * 3,
        font,
        width,
    )
    assert len(long) == gallery.CAPTION_LINES
    assert all(font.getlength(line) <= width for line in long)
    assert long[0].startswith("#12 cardboard/") and long[-1].endswith("\u2026")
    text = "#4 ../field/glass/ab12cd34.jpg (distance 3)"
    broken = gallery.caption_lines(text, font, 60)  # breaks after slashes: no space put in
    assert len(broken) == gallery.CAPTION_LINES
    assert text.startswith("".join(broken).rstrip("\u2026"))


def test_sheet_places_every_photo_in_order(tmp_path):
    colours = [(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0)]
    cells = []
    for n, colour in enumerate(colours):
        size = (384, 512) if n % 2 else (512, 384)  # portrait and landscape keep their shape
        photo(tmp_path / "data" / f"c/{n}.jpg", size, colour)
        cells.append((f"c/{n}.jpg", f"#{n} c/{n}.jpg"))
    cells.append(("c/missing.jpg", "#9 unreadable"))  # grey, not an error
    out = tmp_path / "sheet.png"
    gallery.plot_grid(tmp_path / "data", cells, out, 10**8, columns=2)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    cell_h = sheet.shape[0] // 3
    assert sheet.shape[1] == 2 * gallery.CELL_WIDTH and sheet.shape[0] == 3 * cell_h
    for n, colour in enumerate([*colours, (128, 128, 128)]):
        top, left = (n // 2) * cell_h, (n % 2) * gallery.CELL_WIDTH
        centre = sheet[top + cell_h - gallery.PAD - gallery.THUMB_SIDE // 2, left + 100]
        assert np.abs(centre.astype(int) - colour).max() <= 8, (n, centre)

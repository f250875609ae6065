"""Small real image files for tests: every case is encoded by Pillow, decoded for real."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def pattern(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(3,), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.stack(
        [(xx * 4 + base[0]) % 256, (yy * 4 + base[1]) % 256, ((xx + yy) * 2 + base[2]) % 256],
        axis=-1,
    ).astype(np.uint8)
    return img


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def jpeg(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    return encode(Image.fromarray(pattern(width, height, seed)), "JPEG", quality=90)


def png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    return encode(Image.fromarray(pattern(width, height, seed)), "PNG")


def truncated_jpeg() -> bytes:
    data = jpeg(128, 96, seed=7)
    return data[: len(data) // 2]


def grayscale_jpeg() -> bytes:
    return encode(Image.fromarray(pattern(seed=3)).convert("L"), "JPEG")


def rgba_png() -> bytes:
    arr = np.dstack([pattern(seed=4), np.full((48, 64), 128, np.uint8)])
    return encode(Image.fromarray(arr), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.fromarray(pattern(seed=5)).convert("CMYK"), "JPEG")


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    img = Image.fromarray(pattern(80, 40, seed=6))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", exif=exif.tobytes())


def png16() -> bytes:
    arr = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    return encode(Image.fromarray(arr), "PNG")


def animated_gif() -> bytes:
    frames = [Image.fromarray(pattern(seed=s)).convert("P") for s in (8, 9)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def bomb_png(side: int = 4000) -> bytes:
    """A tiny file that decodes to side*side pixels (a 'decompression bomb' for a low limit)."""
    return encode(Image.new("L", (side, side)), "PNG", optimize=True)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (nothing to decode behind it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def make_class_folders(
    root: Path, classes: dict[str, int], size: tuple[int, int] = (64, 48), seed: int = 0
) -> Path:
    """Folder-per-class data set of distinct JPEGs, each class a different colour pattern."""
    for ci, (label, count) in enumerate(classes.items()):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write(root / label / f"{label}_{i:03d}.jpg", jpeg(*size, seed=seed + ci * 1000 + i))
    return root

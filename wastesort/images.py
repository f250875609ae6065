"""Decoding untrusted image bytes into RGB, shared by validation, features, service and CLI.

One place decides what counts as a usable image, so the pipeline, the service and the CLI
accept and reject the same files for the same reasons.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Formats a camera, phone or web upload realistically produces.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "TIFF", "WEBP"})
EXIF_ORIENTATION_TAG = 0x0112


class ImageRejected(ValueError):
    """The bytes cannot become a classifiable RGB image; ``reason`` says why, for a person."""

    def __init__(self, reason: str, code: str):
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    format: str
    original_mode: str
    width: int  # as stored, before EXIF rotation
    height: int
    exif_orientation: int
    frames: int
    notes: list[str] = field(default_factory=list)

    def array(self) -> np.ndarray:
        return np.asarray(self.image, dtype=np.uint8)


def open_image(data: bytes, max_pixels: int, min_side: int = 1) -> Image.Image:
    """Open (header only) and check format, pixel count and the shorter side before any
    decoding work."""
    if not data:
        raise ImageRejected("empty file (0 bytes)", "empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:  # past Pillow's own limit: name ours
            found = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow opens"
            raise ImageRejected(
                f"decompression bomb: {size}, over the limit of {max_pixels:,}", "bomb"
            ) from None
        except UnidentifiedImageError:
            raise ImageRejected(
                "not an image: Pillow cannot identify the bytes as any image format", "not_image"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
            raise ImageRejected(f"corrupt image header: {exc}", "corrupt") from None
    if img.format not in SUPPORTED_FORMATS:
        raise ImageRejected(
            f"unsupported image format {img.format}; use one of "
            f"{', '.join(sorted(SUPPORTED_FORMATS))}",
            "unsupported",
        )
    pixels = img.width * img.height
    if pixels > max_pixels:
        raise ImageRejected(
            f"decompression bomb: {img.width}x{img.height} = {pixels:,} pixels, "
            f"over the limit of {max_pixels:,}",
            "bomb",
        )
    if min(img.width, img.height) < min_side:
        raise ImageRejected(
            f"image of {img.width}x{img.height} pixels is under the minimum side of {min_side} px",
            "too_small",
        )
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is flattened onto white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr / 257.0  # 16-bit range onto 8-bit
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode(
    data: bytes, max_pixels: int, draft_to: int | None = None, min_side: int = 1
) -> DecodedImage:
    """Fully decode bytes to RGB (first frame of animations), honouring EXIF orientation.

    ``draft_to``: a JPEG at least twice that size on both sides is decoded at a reduced DCT
    scale (1/2, 1/4 or 1/8) that keeps both sides at or above it (Pillow's ``draft``), which
    makes decoding a phone photo for a 224 px model several times faster.
    """
    img = open_image(data, max_pixels, min_side)
    fmt, mode, width, height = img.format, img.mode, img.width, img.height
    frames = int(getattr(img, "n_frames", 1) or 1)
    if draft_to and fmt in ("JPEG", "MPO") and min(width, height) >= 2 * draft_to:
        try:
            img.draft(mode, (draft_to, draft_to))
        except Exception as exc:  # noqa: BLE001
            raise ImageRejected(f"corrupt image header: {exc}", "corrupt") from None
    try:
        img.load()
        orientation = int(img.getexif().get(EXIF_ORIENTATION_TAG, 1) or 1)
        upright = ImageOps.exif_transpose(img) if orientation != 1 else img
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt data
        raise ImageRejected(f"corrupt or truncated image data: {exc}", "corrupt") from None
    try:
        rgb = to_rgb(upright)
    except Exception as exc:  # noqa: BLE001
        raise ImageRejected(f"cannot convert mode {mode} to RGB: {exc}", "mode") from None
    notes = []
    if mode != "RGB":
        notes.append(f"converted from mode {mode} to RGB")
    if orientation != 1:
        notes.append(f"EXIF orientation {orientation} applied")
    if frames > 1:
        notes.append(f"animated ({frames} frames): first frame used")
    return DecodedImage(rgb, fmt, mode, width, height, orientation, frames, notes)

"""The one preprocessing path from image bytes to the model's input, without TensorFlow.

``evaluate``, the ``wastesort`` CLI, the service and the exported TFLite parity check all call
``load_for_model``: decode (``images.decode``: the guards, EXIF orientation, mode conversion),
then ``resize``, a NumPy port of the model's own ``keras.layers.Resizing`` (bilinear, half-pixel
centres, no antialiasing, whole image squashed to a square), so the served model sees what the
trained one saw. Large JPEGs are decoded at a reduced DCT scale (Pillow's ``draft``) when they
are at least twice the model's input on both sides; TrashNet's 512x384 photos are not, so the
pipeline's own images are decoded in full.
"""

from __future__ import annotations

import numpy as np

from wastesort import images
from wastesort.config import ConfigError, image_size  # noqa: F401 (image_size: callers use it here)


def _axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TensorFlow's ``ResizeBilinear(half_pixel_centers=True)`` sampling, in float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    x = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(x)
    lower = np.maximum(floor, 0).astype(np.intp)
    upper = np.minimum(np.ceil(x), in_size - 1).astype(np.intp)
    return lower, upper, (x - floor).astype(np.float32)


Size = int | tuple[int, int]


def hw(size: Size) -> tuple[int, int]:
    """An input size as (height, width): a whole number is a square."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_orientation(size: tuple[int, int], widths, heights) -> None:
    """A non-square input must keep the photos' orientation: a portrait input for landscape
    photos (or the reverse) stretches every one of them, so it is refused, naming the photos'
    typical size. A square input squashes both alike and is always accepted."""
    widths, heights = np.asarray(widths, float), np.asarray(heights, float)
    known = (widths > 0) & (heights > 0) if widths.shape == heights.shape else np.zeros(0, bool)
    if not known.any():
        return
    photo = float(np.median(widths[known] / heights[known]))
    height, width = size
    if (photo - 1) * (width / height - 1) < 0 and abs(np.log(photo)) > np.log(1.1):
        w, h = int(np.median(widths[known])), int(np.median(heights[known]))
        raise ConfigError(
            f"params.yaml: backbone.image_size is {height} high x {width} wide, but the photos "
            f"are typically {h} high x {w} wide; swap them to [{width}, {height}] (or use one "
            "number for a square)"
        )


def resize(image: np.ndarray, size: Size) -> np.ndarray:
    """An HxWx3 image (any dtype) as a height x width x 3 float32 array in [0, 255] (``size``:
    a side, or (height, width)), computed as the model's ``Resizing`` layer computes it."""
    h, w = image.shape[:2]
    out_h, out_w = hw(size)
    if (h, w) == (out_h, out_w):
        return image.astype(np.float32, copy=True)
    top_i, bottom_i, y_lerp = _axis(h, out_h)
    left_i, right_i, x_lerp = _axis(w, out_w)
    channels = image.shape[2]
    # gather whole rows, then (row, x*channel) columns, in the source dtype; then the same
    # float32 lerps as TensorFlow, in place
    cols = np.arange(channels)
    left = (left_i[:, None] * channels + cols).ravel()
    right = (right_i[:, None] * channels + cols).ravel()
    x_lerp = np.repeat(x_lerp, channels)
    rows_top = image[top_i].reshape(out_h, w * channels)
    rows_bottom = image[bottom_i].reshape(out_h, w * channels)
    top = np.take(rows_top, left, axis=1).astype(np.float32)
    bottom = np.take(rows_bottom, left, axis=1).astype(np.float32)
    top += (np.take(rows_top, right, axis=1) - top) * x_lerp
    bottom += (np.take(rows_bottom, right, axis=1) - bottom) * x_lerp
    bottom -= top
    bottom *= y_lerp[:, None]
    top += bottom
    return top.reshape(out_h, out_w, channels)


def load_for_model(data: bytes, max_pixels: int, size: Size, min_side: int = 1) -> np.ndarray:
    """Image bytes -> the model's float32 input (height x width x 3, [0, 255]); raises
    ``images.ImageRejected`` with the reason, as ``images.decode`` does."""
    decoded = images.decode(data, max_pixels, draft_to=min(hw(size)), min_side=min_side)
    return resize(decoded.array(), size)


def resize_batch(arrays: list[np.ndarray], size: Size) -> np.ndarray:
    """Several decoded images (sizes may differ) as one float32 batch."""
    if not arrays:
        return np.zeros((0, *hw(size), 3), np.float32)
    return np.stack([resize(a, size) for a in arrays])

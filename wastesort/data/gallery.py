"""Thumbnail sheets of photos from the data folder, for a person to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wastesort import images

THUMB_SIDE = 160


def thumbnail(path: Path, max_pixels: int) -> np.ndarray:
    """The photo (EXIF orientation applied) shrunk to fit THUMB_SIDE; grey when unreadable."""
    try:
        image = images.decode(path.read_bytes(), max_pixels, draft_to=THUMB_SIDE).image
    except (OSError, images.ImageRejected):
        return np.full((THUMB_SIDE, THUMB_SIDE, 3), 128, np.uint8)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return np.asarray(image)


def plot_grid(
    root: Path, cells: list[tuple[str, str]], path: Path, max_pixels: int, columns: int = 6
) -> None:
    """Thumbnails of (path under ``root``, caption), ``columns`` to a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    n_cols = max(1, min(columns, len(cells)))
    n_rows = max(1, -(-len(cells) // n_cols))
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.4 * n_cols, 2.2 * n_rows + 0.4), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, (rel, caption) in zip(axes.flat, cells):
        ax.imshow(thumbnail(root / rel, max_pixels))
        ax.set_title(caption, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)

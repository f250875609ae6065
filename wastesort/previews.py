"""Pictures of what augmentation does, so a person can judge the ranges in params.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wastesort.augmentation import apply_plan
from wastesort.config import Augment, typed
from wastesort.features import load_resized


def plot_augment_preview(
    root: Path,
    plan: pd.DataFrame,
    cfg: Augment | dict[str, Any],
    path: Path,
    size: tuple[int, int],
    max_pixels: int = 10**9,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = typed("augment", cfg)
    originals = list(dict.fromkeys(plan["path"]))[: cfg.preview_images]
    per_row = min(cfg.variants_per_image, 5)
    fig, axes = plt.subplots(
        max(1, len(originals)),
        per_row + 1,
        figsize=(2 * (per_row + 1), 2 * max(1, len(originals))),
        squeeze=False,
    )
    for ax in axes.flat:
        ax.axis("off")
    if originals:
        batch = load_resized(root, originals, size, max_pixels)
        for r, (rel, image) in enumerate(zip(originals, batch)):
            rows = plan[plan["path"] == rel].head(per_row).to_dict("records")
            axes[r, 0].imshow(image.astype(np.uint8))
            axes[r, 0].set_title(Path(rel).name, fontsize=7)
            if rows:
                variants = apply_plan(np.repeat(image[None], len(rows), 0), rows, cfg.fill_mode)
                for c, variant in enumerate(variants, start=1):
                    axes[r, c].imshow(variant.astype(np.uint8))
                    axes[r, c].set_title(f"variant {c}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)

"""DVC stage `features`: run the frozen trunk once over every split and planned variant.

The trunk is the backbone below the fine-tuned layers (the whole backbone and pooling when
finetune.layers is 0), so its outputs depend only on the backbone, the cut and the images.
"""

import numpy as np

from wastesort import config, paths, stage
from wastesort.augmentation import read_plan
from wastesort.preprocess import check_orientation

OUT_DIR = paths.FEATURES
METRICS = paths.metrics("features.json")


def main() -> None:
    stage.load_tensorflow()
    params = config.load_params()
    from wastesort import artifacts, features, pooling
    from wastesort.model import BackboneSpec, build_classifier, cache_dtype, cache_model

    spec = BackboneSpec.from_params(params["backbone"], params["finetune"])
    splits = {
        name: artifacts.read_manifest(paths.split_manifest(name))
        for name in ("train", "val", "test")
    }
    check_orientation(
        spec.image_size, splits["train"].get("width", []), splits["train"].get("height", [])
    )
    classifier = build_classifier(2, spec)
    extractor, dtype = cache_model(classifier), cache_dtype(classifier)
    options = {
        "size": spec.image_size,
        "batch_size": config.typed("backbone", params["backbone"]).batch_size,
        "max_pixels": config.typed("validate", params["validate"]).max_pixels,
        "fill_mode": config.typed("augment", params["augment"]).fill_mode,
    }
    root = config.data_root(params)
    plan = read_plan(paths.PLAN)
    plans = {name: plan if name == "train" else None for name in splits}
    rows = {name: features.planned_rows(split, plans[name]) for name, split in splits.items()}
    row_bytes = int(np.prod(extractor.output.shape[1:])) * np.dtype(dtype).itemsize
    features.check_disk(OUT_DIR, sum(rows.values()) * row_bytes)
    written = {}
    for name, split in splits.items():
        written[name] = features.extract_split(
            extractor, root, split, plans[name], OUT_DIR, name, dtype=dtype, **options
        )
        print(
            f"features: {name}: {written[name]['rows']} rows of "
            f"{tuple(extractor.output.shape[1:])} {dtype} cached"
        )
    if pooling.write_frozen(classifier, OUT_DIR) is not None:
        print(f"features: the frozen pooler as LiteRT, for review and the warm-up: {OUT_DIR}")
    photos = sum(len(split) for split in splits.values())
    total = sum(w["bytes"] for w in written.values())
    summary = {
        "photos": photos,
        "rows": sum(w["rows"] for w in written.values()),
        "bytes": total,
        "bytes_per_photo": round(total / max(photos, 1)),
        "splits": written,
    }
    artifacts.write_json(METRICS, summary)
    print(
        f"features: {total / 1e6:.1f} MB for {photos} photos "
        f"({summary['bytes_per_photo'] / 1e3:.1f} kB per photo, variants included)"
    )


if __name__ == "__main__":
    stage.run("features", main)

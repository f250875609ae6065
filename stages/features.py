"""DVC stage `features`: run the frozen trunk once over every split and planned variant.

The trunk is the backbone below the fine-tuned layers (the whole backbone and pooling when
finetune.layers is 0), so its outputs depend only on the backbone, the cut and the images.
"""

from wastesort import config, paths, stage
from wastesort.augmentation import read_plan
from wastesort.preprocess import check_orientation

OUT_DIR = paths.FEATURES


def main() -> None:
    stage.load_tensorflow()
    params = config.load_params()
    from wastesort import artifacts, features
    from wastesort.model import BackboneSpec, build_classifier, cache_dtype, cache_model

    backbone_cfg = config.section(params, "backbone")
    spec = BackboneSpec.from_params(backbone_cfg, config.section(params, "finetune"))
    splits = {
        name: artifacts.read_manifest(paths.split_manifest(name))
        for name in ("train", "val", "test")
    }
    check_orientation(
        spec.image_size, splits["train"].get("width", []), splits["train"].get("height", [])
    )
    classifier = build_classifier(2, spec)
    extractor, dtype = cache_model(classifier), cache_dtype(classifier)
    cfg = {
        **backbone_cfg,
        "max_pixels": config.section(params, "validate")["max_pixels"],
        "fill_mode": config.section(params, "augment")["fill_mode"],
    }
    root = config.data_root(params)
    plan = read_plan(paths.PLAN)
    for name, split in splits.items():
        data = features.extract_split(
            extractor, root, split, plan if name == "train" else None, cfg, name, dtype
        )
        features.save(OUT_DIR / f"{name}.npz", data)
        print(f"features: {name}: {data['features'].shape} cached")


if __name__ == "__main__":
    stage.run("features", main)

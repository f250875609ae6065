"""DVC stage `features`: run the frozen trunk once over every split and planned variant.

Its outputs only depend on the backbone and the fine-tuning cut, so changing a head parameter
(lr, dense units, dropout, epochs) re-runs `train` but never this stage.
"""
from pathlib import Path

from wastesort import artifacts, config, stage
from wastesort.augmentation import read_plan

OUT_DIR = Path("data/features")


def main() -> None:
    stage.quiet_tensorflow()
    params = config.load_params()
    from wastesort import features
    from wastesort.model import BackboneSpec, build_classifier

    backbone_cfg = config.section(params, "backbone")
    spec = BackboneSpec.from_params({**backbone_cfg, "fine_tune_layers":
                                     config.section(params, "train").get("fine_tune_layers", 0)})
    trunk = build_classifier(2, spec).trunk
    cfg = {**backbone_cfg, "max_pixels": config.section(params, "validate")["max_pixels"],
           "fill_mode": config.section(params, "augment")["fill_mode"]}
    root = config.data_root(params)
    plan = read_plan("data/augment/plan.csv")
    for name in ("train", "val", "test"):
        split = artifacts.read_manifest(f"data/split/{name}.csv")
        data = features.extract_split(trunk, root, split, plan if name == "train" else None,
                                      cfg, name)
        features.save(OUT_DIR / f"{name}.npz", data)
        print(f"features: {name}: {data['features'].shape} cached")


if __name__ == "__main__":
    stage.run("features", main)

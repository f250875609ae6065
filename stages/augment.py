"""DVC stage `augment`: the seeded plan of train-split variants, and a preview to look at."""

from wastesort import artifacts, config, paths, stage
from wastesort.augmentation import make_plan
from wastesort.preprocess import image_size
from wastesort.previews import plot_augment_preview

OUT = paths.PLAN
PREVIEW = paths.report("augment") / "preview.png"


def main() -> None:
    stage.load_tensorflow()
    params = config.load_params()
    cfg = config.section(params, "augment")
    train = artifacts.read_manifest(paths.split_manifest("train"))
    plan = make_plan(train, cfg)
    artifacts.write_csv(OUT, plan)
    plot_augment_preview(
        config.data_root(params),
        plan,
        cfg,
        PREVIEW,
        image_size(config.section(params, "backbone")["image_size"]),
    )
    print(f"augment: {len(plan)} variants of {len(train)} train images planned; preview: {PREVIEW}")


if __name__ == "__main__":
    stage.run("augment", main)

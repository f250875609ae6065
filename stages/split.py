"""DVC stage `split`: seeded stratified train/val/test manifests (no image copies)."""

from wastesort import artifacts, config, paths, stage
from wastesort.data.splitting import extra_counts, grouped_images, split_counts, split_manifest

OUT_DIR = paths.SPLIT


def main() -> None:
    cfg = config.typed("split", config.load_params()["split"])
    manifest = artifacts.read_manifest(paths.MANIFEST, ("path", "label", "sha256", "group"))
    splits = split_manifest(manifest, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    for name, frame in splits.items():
        artifacts.write_csv(OUT_DIR / f"{name}.csv", frame)
    counts = split_counts(splits)
    artifacts.write_json(paths.metrics("split.json"), counts)
    groups, files = grouped_images(splits)
    extras = extra_counts(splits)
    print(
        "split: "
        + ", ".join(f"{k} {v['total']}" for k, v in counts.items())
        + f"; {groups} near-duplicate groups ({files} images) each kept in one split"
        + (
            "; from data.extra_paths: " + ", ".join(f"{k} {v}" for k, v in extras.items())
            if any(extras.values())
            else ""
        )
    )


if __name__ == "__main__":
    stage.run("split", main)

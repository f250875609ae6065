"""DVC stage `split`: seeded stratified train/val/test manifests (no image copies)."""
from pathlib import Path

from wastesort import artifacts, config, stage
from wastesort.splitting import split_counts, split_manifest

OUT_DIR = Path("data/split")


def main() -> None:
    cfg = config.section(config.load_params(), "split")
    manifest = artifacts.read_manifest("data/validated/manifest.csv", ("path", "label", "sha256"))
    splits = split_manifest(manifest, float(cfg["val_fraction"]), float(cfg["test_fraction"]),
                            int(cfg["seed"]))
    for name, frame in splits.items():
        artifacts.write_csv(OUT_DIR / f"{name}.csv", frame)
    counts = split_counts(splits)
    artifacts.write_json("metrics/split.json", counts)
    print("split: " + ", ".join(f"{k} {v['total']}" for k, v in counts.items()))


if __name__ == "__main__":
    stage.run("split", main)

"""DVC stage `validate`: judge every file under data.path and data.extra_paths with a Great
Expectations suite."""

from pathlib import Path

from wastesort import artifacts, config, paths, stage
from wastesort.data.report import plot_near_duplicates
from wastesort.data.validation import validate

OUT_DIR = paths.VALIDATED
REPORT_DIR = paths.report("validation")
METRICS = paths.metrics("validation.json")


def main() -> None:
    params = config.load_params()
    cfg = config.section(params, "validate")
    root = config.data_root(params)
    extras = [Path(str(p)).expanduser() for p in config.section(params, "data")["extra_paths"]]
    outcome = validate(root, config.configured_classes(params), cfg, REPORT_DIR, extras)
    artifacts.write_csv(OUT_DIR / "manifest.csv", outcome.manifest)
    artifacts.write_csv(OUT_DIR / "rejected.csv", outcome.rejected)
    artifacts.write_csv(OUT_DIR / "near_duplicates.csv", outcome.pairs)
    artifacts.write_json(METRICS, outcome.summary)
    (REPORT_DIR / "report.md").write_text(outcome.report)
    plot_near_duplicates(root, outcome, REPORT_DIR, config.typed("validate", cfg).max_pixels)
    s = outcome.summary
    print(
        f"validate: {s['accepted']} accepted, {s['rejected']} rejected, "
        f"{s['cross_class_duplicate_groups']} cross-class duplicate groups, "
        f"{s['near_duplicate_groups']} near-duplicate groups "
        f"({s['images_in_near_duplicate_groups']} images), "
        f"{s['near_duplicate_label_conflicts']} cross-class near-duplicate pairs, "
        f"{s['ignored']} ignored; report: {REPORT_DIR / 'report.md'}"
    )
    for source, n in s.get("sources", {}).items():
        print(f"validate: {source}: {n['accepted']} accepted, {n['rejected']} rejected")
    if not outcome.can_train:
        raise stage.StageFailed("data cannot train: " + "; ".join(outcome.problems))


if __name__ == "__main__":
    stage.run("validate", main)

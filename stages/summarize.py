"""DVC stage `summarize`: the headline metrics of the run, in one small file."""

from wastesort import artifacts, paths, stage
from wastesort.headline import headline

STAGES = (
    "validate",
    "split",
    "augment",
    "features",
    "review",
    "finetune",
    "train",
    "evaluate",
    "export",
    "register",
)


def main() -> None:
    seconds = {name: artifacts.read_json(paths.TIME / f"{name}.json")["seconds"] for name in STAGES}
    numbers = headline(
        artifacts.read_json(paths.metrics("evaluate.json")),
        artifacts.read_json(paths.metrics("export.json")),
        seconds,
    )
    artifacts.write_json(paths.metrics("headline.json"), numbers)
    print("summarize: " + ", ".join(f"{k} {v}" for k, v in numbers.items()))


if __name__ == "__main__":
    stage.run("summarize", main)

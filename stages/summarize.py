"""DVC stage `summarize`: the headline metrics of the run, in one small file and in the run's
``Headline/*`` metrics and description."""

from wastesort import artifacts, config, paths, stage
from wastesort.headline import headline

STAGES = (
    "validate",
    "split",
    "augment",
    "features",
    "review",
    "train",
    "evaluate",
    "export",
    "register",
)


def main() -> None:
    seconds = {name: artifacts.read_json(paths.TIME / f"{name}.json")["seconds"] for name in STAGES}
    evaluation = artifacts.read_json(paths.metrics("evaluate.json"))
    numbers = headline(evaluation, artifacts.read_json(paths.metrics("export.json")), seconds)
    artifacts.write_json(paths.metrics("headline.json"), numbers)
    from wastesort import tracking

    tracking.configure(config.section(config.load_params(), "mlflow")["experiment"])
    with tracking.reopen_run():
        tracking.log_headline(numbers, evaluation)
    print("summarize: " + ", ".join(f"{k} {v}" for k, v in numbers.items()))


if __name__ == "__main__":
    stage.run("summarize", main)

"""Where the stages read and write, relative to the repo root: defined once for the code.

``dvc.yaml`` names the same folders once, in its ``vars: paths`` (``${paths.split}`` and so on);
``tests/code/test_paths.py`` keeps the two equal.
"""

from pathlib import Path

VALIDATED = Path("data/validated")  # validate: the accepted images' manifest
SPLIT = Path("data/split")  # split: train.csv, val.csv, test.csv
AUGMENT = Path("data/augment")  # augment: the plan of variants
FEATURES = Path("data/features")  # features: the frozen trunk's cached outputs
FINETUNED = Path("data/finetuned")  # train: the fine-tuned backbone's pooled rows and weights
MODELS = Path("models")  # train: the saved Keras model
EXPORT = Path("export")  # export: the TFLite files
REGISTRY = Path("registry")  # register: the receipt of the registered version
METRICS = Path("metrics")  # every stage's numbers; metrics/headline.json is the DVC metric
REPORTS = Path("reports")  # pictures and reports to read

MANIFEST = VALIDATED / "manifest.csv"
PLAN = AUGMENT / "plan.csv"
MODEL = MODELS / "model.keras"
LABELS = MODELS / "labels.json"
CALIBRATION = MODELS / "calibration.json"
RECEIPT = REGISTRY / "receipt.json"
CHAMPION_INDEX = REGISTRY / "champion.json"  # the champion last found, for a fast start; not DVC's
TIME = METRICS / "time"  # each stage's wall seconds


def split_manifest(name: str) -> Path:
    """``data/split/<train|val|test>.csv``."""
    return SPLIT / f"{name}.csv"


def metrics(name: str) -> Path:
    """``metrics/<name>`` (name with its suffix: ``evaluate.json``, ``train_history.csv``)."""
    return METRICS / name


def report(stage: str) -> Path:
    """``reports/<stage>/``."""
    return REPORTS / stage

"""Champion against challenger: a new model takes the alias only if it is not worse than the
current champion on the same images (as TFX's Evaluator blesses a model against a baseline).

Both are scored by their exported TFLite files of the kind that is served (``serve.model``,
float32 or int8) on the new test split, less the images the champion trained on: its train
split is logged with its run (``data/train_manifest.csv``) and matched by content hash (a
renamed photo still counts) and by near-duplicate group.

Accuracy decides first. A challenger within ``max_regression`` of the champion's accuracy
(a tie included) must also be no worse, by more than ``max_regression``, on macro F1, the
weakest class's F1, the share it answers at ``serve.min_confidence`` and the calibration
error; the first figure it is worse on holds it back and is named in the verdict.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

TRAIN_MANIFEST_ARTIFACT = "data/train_manifest.csv"
# the figures compared, in the order they decide; True where higher is better
FIGURES = {
    "accuracy": True,
    "macro_f1": True,
    "weakest_f1": True,
    "answered": True,
    "ece": False,
}
NAMES = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "weakest_f1": "the weakest class's F1",
    "answered": "the share answered",
    "ece": "calibration error (ECE)",
}


@dataclass
class Verdict:
    promote: bool
    reason: str
    champion_version: str | None = None
    n_images: int = 0
    champion_accuracy: float | None = None
    challenger_accuracy: float | None = None
    deciding: str | None = None  # the figure that decided (a key of FIGURES)
    champion: dict[str, float] = field(default_factory=dict)  # FIGURES on the same images
    challenger: dict[str, float] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """What the new version records about the comparison (MLflow version tags)."""
        out = {"challenge": "promoted" if self.promote else "held", "challenge_reason": self.reason}
        for key in (
            "champion_version",
            "n_images",
            "champion_accuracy",
            "challenger_accuracy",
            "deciding",
        ):
            if (value := asdict(self)[key]) is not None:
                out[f"challenge_{key}"] = str(value)
        for side in ("champion", "challenger"):
            for figure, value in getattr(self, side).items():
                out[f"challenge_{side}_{figure}"] = str(value)
        return out


def predict(
    model_file: Path | bytes, root: Path, test: pd.DataFrame, max_pixels: int
) -> np.ndarray:
    """The probabilities a TFLite file gives the rows of ``test`` (path), decoded and resized
    by ``preprocess.load_for_model``, as the service does."""
    from wastesort.litert import LiteModel
    from wastesort.preprocess import load_for_model

    content = model_file if isinstance(model_file, bytes) else Path(model_file).read_bytes()
    model = LiteModel(content)
    x = np.stack(
        [
            load_for_model((root / p).read_bytes(), max_pixels, model.input_size)
            for p in test["path"]
        ]
    )
    return model.predict_in_chunks(x)


def figures(
    probabilities: np.ndarray, truth: np.ndarray, min_confidence: float
) -> dict[str, float]:
    """FIGURES of one model on labelled images: accuracy, macro and weakest-class F1 (over
    the classes among them), the share answered at ``min_confidence`` and the ECE."""
    from sklearn.metrics import f1_score

    from wastesort.calibration import abstention, expected_calibration_error

    predicted = probabilities.argmax(axis=1)
    present = sorted(set(truth.tolist()))
    f1 = f1_score(truth, predicted, labels=present, average=None, zero_division=0)
    out = {
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(np.mean(f1)),
        "weakest_f1": float(np.min(f1)),
        "answered": abstention(probabilities, truth, min_confidence)["coverage"],
        "ece": expected_calibration_error(probabilities, truth),
    }
    return {k: round(v, 6) for k, v in out.items()}


def decide(
    champion: dict[str, float], challenger: dict[str, float], max_regression: float
) -> tuple[bool, str]:
    """Whether the challenger takes the alias, and the figure that decided. Accuracy more than
    ``max_regression`` below the champion's holds it; more than that above promotes it; in
    between (a tie), the first other figure worse by more than ``max_regression`` holds it."""
    eps = 1e-9

    def worse(figure: str) -> bool:
        gap = challenger[figure] - champion[figure]
        return (-gap if FIGURES[figure] else gap) > max_regression + eps

    if worse("accuracy"):
        return False, "accuracy"
    if challenger["accuracy"] > champion["accuracy"] + max_regression + eps:
        return True, "accuracy"
    for figure in list(FIGURES)[1:]:
        if worse(figure):
            return False, figure
    return True, "accuracy"


def explain(
    promote: bool,
    deciding: str,
    champion: dict[str, float],
    challenger: dict[str, float],
    where: str,
    max_regression: float,
) -> str:
    """The verdict in one line, naming the deciding figure."""
    new, old = challenger["accuracy"], champion["accuracy"]
    if deciding != "accuracy":
        a, b = challenger[deciding], champion[deciding]
        what = f"is worse on {NAMES[deciding]}: {a:.4f} against {b:.4f}"
    elif promote and new <= old + max_regression + 1e-9:
        *others, last = (NAMES[f] for f in list(FIGURES)[1:])
        what = f"is no worse on {', '.join(others)} or {last}"
    else:
        what = ""
    head = (
        f"the new model scores {new:.4f} against {old:.4f} for {where}"
        if not what
        else f"the new model ties on accuracy ({new:.4f} against {old:.4f}) and {what} for {where}"
        if promote
        else f"the new model ties on accuracy ({new:.4f} against {old:.4f}) but {what} for {where}"
    )
    return f"{head}, with register.max_regression = {max_regression}: " + (
        "it takes the alias" if promote else "the alias stays"
    )


def challenge(
    name: str,
    alias: str,
    challenger_sha256: str,
    challenger_file: Path,
    labels: list[str],
    root: Path,
    test: pd.DataFrame,
    max_pixels: int,
    max_regression: float,
    min_confidence: float = 0.0,
    kind: str = "float32",
) -> Verdict:
    """Compare the new model with ``models:/NAME@ALIAS`` (MLflow registry) on ``test``:
    ``challenger_file`` against the champion's exported file of the same ``kind``."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from wastesort.export import FILES

    client = MlflowClient()
    try:
        champion = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return Verdict(True, f"no @{alias} yet: the first model has no champion to beat")
    version = str(champion.version)
    if champion.tags.get("model_sha256") == challenger_sha256:
        return Verdict(True, f"this model is already version {version} (@{alias})", version)
    if json.loads(champion.tags.get("labels", "null") or "null") != labels:
        return Verdict(
            True,
            f"version {version} (@{alias}) has other classes "
            f"({champion.tags.get('labels')}): no comparison",
            version,
        )
    with tempfile.TemporaryDirectory() as tmp:
        try:
            manifest = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=champion.run_id, artifact_path=TRAIN_MANIFEST_ARTIFACT, dst_path=tmp
                )
            )
            champion_file = Path(
                mlflow.artifacts.download_artifacts(
                    run_id=champion.run_id, artifact_path=f"export/{FILES[kind]}", dst_path=tmp
                )
            )
        except (MlflowException, OSError) as exc:
            return Verdict(
                True,
                f"version {version} (@{alias}) lacks its train manifest or "
                f"{kind} file in run {champion.run_id} ({exc.__class__.__name__}"
                "): no comparison",
                version,
            )
        trained = pd.read_csv(manifest)
        fresh = test[~test["sha256"].isin(set(trained["sha256"]))]
        if "group" in trained and "group" in fresh:  # near-duplicates of what it trained on
            fresh = fresh[~fresh["group"].isin(set(trained["group"]))]
        if fresh.empty:
            return Verdict(
                True,
                f"every test image was in version {version}'s train split: no comparison",
                version,
            )
        truth = np.array([labels.index(label) for label in fresh["label"]])
        old = figures(predict(champion_file, root, fresh, max_pixels), truth, min_confidence)
    new = figures(predict(challenger_file, root, fresh, max_pixels), truth, min_confidence)
    promote, deciding = decide(old, new, max_regression)
    where = (
        f"version {version} (@{alias}) on {len(fresh)} test images that version never trained on"
    )
    reason = explain(promote, deciding, old, new, where, max_regression)
    return Verdict(
        promote,
        reason,
        version,
        len(fresh),
        old["accuracy"],
        new["accuracy"],
        deciding,
        old,
        new,
    )

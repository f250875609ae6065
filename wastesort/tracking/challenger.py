"""Champion against challenger: a new model takes the alias only if it is not worse than the
current champion on the same images (as TFX's Evaluator blesses a model against a baseline).

Both are scored by their exported float32 TFLite files (what is served) on the new test
split, less the images the champion trained on: its train split is logged with its run
(``data/train_manifest.csv``) and matched by content hash (a renamed photo still counts) and
by near-duplicate group.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TRAIN_MANIFEST_ARTIFACT = "data/train_manifest.csv"
FLOAT32_ARTIFACT = "export/model_float32.tflite"


@dataclass
class Verdict:
    promote: bool
    reason: str
    champion_version: str | None = None
    n_images: int = 0
    champion_accuracy: float | None = None
    challenger_accuracy: float | None = None

    def tags(self) -> dict[str, str]:
        """What the new version records about the comparison (MLflow version tags)."""
        out = {"challenge": "promoted" if self.promote else "held", "challenge_reason": self.reason}
        for key in ("champion_version", "n_images", "champion_accuracy", "challenger_accuracy"):
            if (value := asdict(self)[key]) is not None:
                out[f"challenge_{key}"] = str(value)
        return out


def score(
    model_file: Path | bytes, labels: list[str], root: Path, test: pd.DataFrame, max_pixels: int
) -> float:
    """Accuracy of a TFLite file on the rows of ``test`` (path, label), decoded and resized
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
    predicted = model.predict_in_chunks(x).argmax(axis=1)
    truth = np.array([labels.index(label) for label in test["label"]])
    return float(np.mean(predicted == truth))


def decide(champion_accuracy: float, challenger_accuracy: float, max_regression: float) -> bool:
    """Promote unless the challenger is worse by more than ``max_regression``."""
    return challenger_accuracy >= champion_accuracy - max_regression - 1e-9


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
) -> Verdict:
    """Compare the new model with ``models:/NAME@ALIAS`` (MLflow registry) on ``test``."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

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
                    run_id=champion.run_id, artifact_path=FLOAT32_ARTIFACT, dst_path=tmp
                )
            )
        except (MlflowException, OSError) as exc:
            return Verdict(
                True,
                f"version {version} (@{alias}) lacks its train manifest or "
                f"float32 file in run {champion.run_id} ({exc.__class__.__name__}"
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
        old = score(champion_file, labels, root, fresh, max_pixels)
    new = score(challenger_file, labels, root, fresh, max_pixels)
    promote = decide(old, new, max_regression)
    reason = (
        f"the new model scores {new:.4f} against {old:.4f} for version {version} "
        f"(@{alias}) on {len(fresh)} test images that version never trained on, with "
        f"register.max_regression = {max_regression}: "
        + ("it takes the alias" if promote else "the alias stays")
    )
    return Verdict(promote, reason, version, len(fresh), round(old, 6), round(new, 6))

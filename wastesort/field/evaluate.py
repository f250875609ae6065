"""`wastesort evaluate FOLDER`: the champion scored on a labelled folder-per-class set.

Every photo goes through the path the service and ``wastesort predict`` take
(``serving.load_champion``: the registered TFLite file under LiteRT; ``serving.load_upload``:
the upload checks and ``preprocess.load_for_model``), one photo at a time, so each answer is
the one the service would give. The numbers are ``evaluation.evaluate_predictions`` and
``calibration.abstention``, as ``evaluate`` computes them on the test split.

Sub-folders named after a class the model does not know are scored and reported (photos, and
what the model called them) but left out of the accuracy; unreadable files are listed with the
reason. The report goes to ``reports/field_eval/<folder>/`` and, unless ``--no-mlflow``, to a
new MLflow run linked to the champion's model (see ``log_to_mlflow``).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from wastesort.config import ConfigError, is_hidden, load_params, typed

REPORT_ROOT = Path("reports/field_eval")
EXIT_OK, EXIT_NOTHING_SCORED = 0, 1  # 2: a ConfigError (the CLI's code)


@dataclass
class FieldSet:
    root: Path
    classes: dict[str, list[Path]]  # sub-folder name -> its files (recursive, hidden skipped)
    loose: list[Path] = field(default_factory=list)  # files beside the class folders


def find_photos(root: Path) -> FieldSet:
    if not root.exists():
        raise ConfigError(f"{root}: no such folder")
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder (expected one sub-folder per class)")
    classes: dict[str, list[Path]] = {}
    loose = []
    for entry in sorted(root.iterdir()):
        if is_hidden(entry.name):
            continue
        if entry.is_dir():
            classes[entry.name] = [
                p
                for p in sorted(entry.rglob("*"))
                if p.is_file() and not any(is_hidden(x) for x in p.relative_to(entry).parts)
            ]
        elif entry.is_file():
            loose.append(entry)
    if not any(classes.values()):
        raise ConfigError(
            f"{root}: no photos in class sub-folders (expected {root}/<class>/<photo>, "
            "one sub-folder per class)"
        )
    return FieldSet(root, classes, loose)


@dataclass
class FieldResult:
    labels: list[str]  # the model's, in softmax order
    rows: list[dict[str, Any]]  # one per file: path, actual, known, answer or error
    probabilities: np.ndarray  # of the known-class rows, in their order
    metrics: dict[str, Any]


def score(photos: FieldSet, cfg, champion, progress: bool = True) -> list[dict[str, Any]]:
    """Each photo's answer, exactly as ``wastesort predict`` (and the service) gives it."""
    from tqdm import tqdm

    from wastesort.images import ImageRejected
    from wastesort.serving import describe, load_upload

    info = champion.info()
    files = [(cls, p) for cls, paths in photos.classes.items() for p in paths]
    rows = []
    for cls, path in tqdm(files, desc="scoring", unit="img", disable=not progress, file=sys.stderr):
        row: dict[str, Any] = {
            "path": path.relative_to(photos.root).as_posix(),
            "actual": cls,
            "known": cls in champion.labels,
        }
        try:
            data = path.read_bytes()
            row["sha256"] = hashlib.sha256(data).hexdigest()
            batch = load_upload(data, cfg, champion.input_size)[None]
        except ImageRejected as exc:
            rows.append({**row, "error": exc.reason})
            continue
        except OSError as exc:
            rows.append({**row, "error": f"cannot read: {exc.strerror or exc}"})
            continue
        answer = describe(champion.labels, champion.predict(batch)[0], cfg, info)
        rows.append({**row, **answer})
    return rows


def summarise(
    photos: FieldSet, rows: list[dict[str, Any]], labels: list[str], params: dict[str, Any]
) -> FieldResult:
    from wastesort.calibration import abstention
    from wastesort.evaluation import evaluate_predictions

    serve, gate = typed("serve", params["serve"]), typed("evaluate", params["evaluate"])
    scored = [r for r in rows if "error" not in r]
    known = [r for r in scored if r["known"]]
    probabilities = np.array(
        [[r["probabilities"][c] for c in labels] for r in known], dtype=np.float64
    ).reshape(len(known), len(labels))
    unknown: dict[str, dict[str, Any]] = {}
    for r in scored:
        if not r["known"]:
            u = unknown.setdefault(r["actual"], {"photos": 0, "predicted": Counter()})
            u["photos"] += 1
            u["predicted"][r["label"]] += 1
    metrics: dict[str, Any] = {
        "folder": str(photos.root.resolve()),
        "files": len(rows),
        "scored": len(scored),
        "known_class_photos": len(known),
        "classes_in_folder": sorted(photos.classes),
        "unknown_classes": {
            c: {"photos": u["photos"], "predicted": dict(u["predicted"].most_common())}
            for c, u in sorted(unknown.items())
        },
        "unreadable": [{"path": r["path"], "reason": r["error"]} for r in rows if "error" in r],
        "loose_files": [p.relative_to(photos.root).as_posix() for p in photos.loose],
    }
    if known:
        ev = evaluate_predictions(
            [r["path"] for r in known],
            [r["actual"] for r in known],
            probabilities,
            labels,
            gate.min_accuracy,
            gate.gate_on,
        )
        truth = np.array([labels.index(r["actual"]) for r in known])
        m = ev.metrics
        metrics.update(
            accuracy=m["accuracy"],
            accuracy_ci95=m["accuracy_ci95"],
            correct=int(sum(r["label"] == r["actual"] for r in known)),
            macro_f1_present=round(
                float(np.mean([m["per_class"][c]["f1-score"] for c in present(m)])), 6
            ),
            per_class=m["per_class"],
            abstention=abstention(probabilities, truth, serve.min_confidence),
            min_accuracy=m["min_accuracy"],
            gate_on=m["gate_on"],
            gate_value=m["gate_value"],
            meets_min_accuracy=m["gate_passed"],
        )
    return FieldResult(labels, rows, probabilities, metrics)


def present(m: dict[str, Any]) -> list[str]:
    """The model's classes the folder has photos of."""
    return [c for c, v in m["per_class"].items() if v["support"] > 0]


# ---- what is written -------------------------------------------------------------------------


def predictions_frame(result: FieldResult):
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                "path": r["path"],
                "actual": r["actual"],
                "known_class": r["known"],
                "predicted": r.get("label", ""),
                "confidence": round(r["confidence"], 6) if "confidence" in r else None,
                "uncertain": r.get("uncertain"),
                "correct": (r["label"] == r["actual"]) if "label" in r and r["known"] else None,
                "stream": r.get("stream", ""),
                "sha256": r.get("sha256", ""),
                "error": r.get("error", ""),
                **{
                    f"p_{c}": round(r["probabilities"][c], 6) if "probabilities" in r else None
                    for c in result.labels
                },
            }
            for r in result.rows
        ]
    )
    return frame


def model_line(info: dict[str, str]) -> str:
    return (
        f"{info['name']} version {info['version']} (@{info['alias']}, {info['format']}; "
        f"BentoML model {info['bento_model']})"
    )


def report_markdown(result: FieldResult, info: dict[str, str], when: str) -> str:
    m = result.metrics
    lines = [
        f"# Field evaluation: {Path(m['folder']).name}",
        "",
        f"- Folder: `{m['folder']}`",
        f"- Model: {model_line(info)}",
        f"- Date: {when}",
        f"- Files: {m['files']}; scored {m['scored']}, of which {m['known_class_photos']} of "
        "classes the model knows",
        "",
    ]
    if "accuracy" in m:
        low, high = m["accuracy_ci95"]
        at = m["abstention"]
        lines += [
            "## Accuracy",
            "",
            f"**{m['accuracy']:.4f}** ({m['correct']} of {m['known_class_photos']}; 95 % Wilson "
            f"interval {low:.4f}-{high:.4f}). evaluate.min_accuracy {m['min_accuracy']:.2f} "
            f"({m['gate_on']}): {'met' if m['meets_min_accuracy'] else 'not met'}.",
            "",
            f"At serve.min_confidence {at['min_confidence']:.2f} the champion answers "
            f"{at['coverage']:.1%} ({at['answered']} photos), "
            f"{fmt_share(at['accuracy_answered'])} of them rightly; {at['uncertain']} go to a "
            f"manual check{uncertain_right(at, 'would have been right')}.",
            "",
            "| class | photos | recall | precision |",
            "|---|---:|---:|---:|",
        ]
        for c, v in m["per_class"].items():
            if v["support"] > 0:
                lines.append(
                    f"| {c} | {int(v['support'])} | {v['recall']:.4f} | {v['precision']:.4f} |"
                )
            else:
                lines.append(f"| {c} | 0 | - | - |")
        lines.append("")
    else:
        lines += ["No photo of a class the model knows was scored: no accuracy.", ""]
    if m["unknown_classes"]:
        lines += [
            "## Classes the model does not know",
            "",
            "Scored but left out of the accuracy (the model's labels: "
            f"{', '.join(result.labels)}).",
            "",
            "| folder | photos | answered as |",
            "|---|---:|---|",
        ]
        for c, u in m["unknown_classes"].items():
            called = ", ".join(f"{k} {n}" for k, n in u["predicted"].items())
            lines.append(f"| {c} | {u['photos']} | {called} |")
        lines.append("")
    if m["unreadable"]:
        lines += ["## Unreadable files (left out)", ""]
        lines += [f"- `{u['path']}`: {u['reason']}" for u in m["unreadable"]]
        lines.append("")
    if m["loose_files"]:
        lines += ["## Files outside the class folders (ignored)", ""]
        lines += [f"- `{p}`" for p in m["loose_files"]]
        lines.append("")
    lines += [
        "![confusion matrix](confusion_matrix.png)",
        "",
        "Every answer: [predictions.csv](predictions.csv); the numbers: "
        "[metrics.json](metrics.json).",
        "",
    ]
    return "\n".join(lines)


def fmt_share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def uncertain_right(at: dict[str, Any], words: str) -> str:
    """ " (N % of those right)" after the uncertain count, when there are any."""
    if at["accuracy_uncertain"] is None:
        return ""
    return f" ({at['accuracy_uncertain']:.1%} of those {words})"


def write_report(result: FieldResult, info: dict[str, str], out: Path) -> None:
    from wastesort import artifacts

    out.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    artifacts.write_json(out / "metrics.json", {**result.metrics, "model": info})
    artifacts.write_csv(out / "predictions.csv", predictions_frame(result))
    m = result.metrics
    accuracy = f"accuracy {m['accuracy']:.3f}" if "accuracy" in m else "no known classes"
    from wastesort.evaluation import plot_confusion

    scored = [r for r in result.rows if "error" not in r]
    plot_confusion(
        [r["actual"] for r in scored],
        [r["label"] for r in scored],
        result.labels,
        f"{Path(m['folder']).name}: {info['name']} v{info['version']} ({accuracy})",
        out / "confusion_matrix.png",
        xlabel="answered (the champion)",
        ylabel="folder",
    )
    (out / "report.md").write_text(report_markdown(result, info, when))


# ---- MLflow --------------------------------------------------------------------------------

MODEL_ID = re.compile(r"^models:/(m-[0-9a-f]+)$")


def log_to_mlflow(
    result: FieldResult, champion, params: dict[str, Any], out: Path
) -> tuple[str, str, str | None]:
    """A new run in ``<mlflow.experiment>-field`` (so the pipeline's experiment lists only
    pipeline runs): the evaluation of the champion's version. It is
    tagged with the registered model, version, alias and the version's (training) run id; the
    version's logged model (MLflow 3, ``models:/m-...``) is its input, so the ``field_*``
    metrics also show on that model's page with this run and the folder as dataset, the way
    ``mlflow.models.evaluate`` links its runs. The report is its artifacts (``field_eval/``).
    Returns (experiment, run id, logged model id or None)."""
    import warnings

    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from wastesort import tracking

    experiment = field_experiment(typed("mlflow", params["mlflow"]).experiment)
    ref = champion.ref
    try:
        tracking.configure(experiment)
        try:
            version = MlflowClient().get_model_version(ref.name, ref.version)
            version_run, source = version.run_id or "", version.source or ""
        except MlflowException:  # a packed bento's receipt names a version this store lacks
            version_run, source = "", ""
        model_id = logged_model_id(source)
        m = result.metrics
        folder = Path(m["folder"])
        tags = {
            "wastesort.evaluation": "field",
            "model_name": ref.name,
            "model_version": ref.version,
            "model_alias": ref.alias,
            "model_format": champion.kind,
            "bento_model": ref.bento_tag,
            "model_run_id": version_run or "unknown",
            "field_folder": str(folder),
            "mlflow.runName": f"field-eval {folder.name} ({ref.name} v{ref.version})",
        }
        frame = predictions_frame(result)
        with warnings.catch_warnings():  # a local path is a source in two ways; either will do
            warnings.simplefilter("ignore")
            dataset = mlflow.data.from_pandas(
                frame[["path", "actual", "sha256"]],
                source=folder.as_uri(),
                name=folder.name,
                targets="actual",
            )
        with mlflow.start_run(tags=tags) as run:
            mlflow.log_params(
                {
                    "serve.min_confidence": m.get("abstention", {}).get("min_confidence", ""),
                    "files": m["files"],
                    "known_class_photos": m["known_class_photos"],
                }
            )
            mlflow.log_input(dataset, context="field_evaluation")
            mlflow.log_metrics(field_metrics(m), model_id=model_id, dataset=dataset)
            mlflow.log_artifacts(str(out), "field_eval")
    except (MlflowException, OSError) as exc:
        reason = (getattr(exc, "message", None) or str(exc)).splitlines()[0]
        raise ConfigError(
            f"the report is in {out}, but logging to MLflow at {tracking.tracking_uri()} "
            f"failed: {reason} (--no-mlflow skips it)"
        ) from None
    return experiment, run.info.run_id, model_id


def field_experiment(pipeline_experiment: str) -> str:
    """Where field evaluations go: beside the pipeline's experiment, not in it."""
    return f"{pipeline_experiment}-field"


def logged_model_id(source: str) -> str | None:
    """The logged model a registered version was made from (``models:/m-<id>``), if any."""
    match = MODEL_ID.match(source)
    return match.group(1) if match else None


def field_metrics(m: dict[str, Any]) -> dict[str, float]:
    out = {
        "field_files": m["files"],
        "field_scored": m["scored"],
        "field_known_class_photos": m["known_class_photos"],
        "field_unknown_class_photos": sum(u["photos"] for u in m["unknown_classes"].values()),
        "field_unreadable": len(m["unreadable"]),
    }
    if "accuracy" in m:
        at = m["abstention"]
        out |= {
            "field_accuracy": m["accuracy"],
            "field_accuracy_ci95_low": m["accuracy_ci95"][0],
            "field_accuracy_ci95_high": m["accuracy_ci95"][1],
            "field_macro_f1_present": m["macro_f1_present"],
            "field_coverage": at["coverage"],
            "field_uncertain": at["uncertain"],
        }
        for key in ("accuracy_answered", "accuracy_uncertain"):
            if at[key] is not None:
                out[f"field_{key}"] = at[key]
        for c in present(m):
            out[f"field_recall.{c}"] = m["per_class"][c]["recall"]
    return {k: float(v) for k, v in out.items()}


# ---- the command ---------------------------------------------------------------------------


def print_summary(result: FieldResult, info: dict[str, str]) -> None:
    m = result.metrics
    print(f"model:    {model_line(info)}")
    print(
        f"folder:   {m['folder']}: {m['files']} files, {m['scored']} scored, "
        f"{m['known_class_photos']} of classes the model knows"
    )
    if "accuracy" in m:
        low, high = m["accuracy_ci95"]
        at = m["abstention"]
        print(
            f"accuracy: {m['accuracy']:.4f} ({m['correct']}/{m['known_class_photos']}; 95% CI "
            f"{low:.4f}-{high:.4f})"
        )
        print(
            f"abstain:  at serve.min_confidence {at['min_confidence']:.2f} it answers "
            f"{at['coverage']:.1%} ({at['answered']}), {fmt_share(at['accuracy_answered'])} "
            f"rightly; {at['uncertain']} to a manual check{uncertain_right(at, 'right')}"
        )
        width = max(len("class"), *(len(c) for c in m["per_class"]))
        print(f"\n{'class':<{width}}  {'photos':>6}  {'recall':>7}")
        for c, v in m["per_class"].items():
            recall = f"{v['recall']:.4f}" if v["support"] > 0 else "-"
            print(f"{c:<{width}}  {int(v['support']):>6}  {recall:>7}")
    if m["unknown_classes"]:
        print("\nnot in the model's labels (scored, left out of the accuracy):")
        for c, u in m["unknown_classes"].items():
            called = ", ".join(f"{k} {n}" for k, n in u["predicted"].items())
            print(f"  {c}: {u['photos']} photos, answered as {called}")
    if m["unreadable"]:
        print(f"\nunreadable (left out): {len(m['unreadable'])}")
        for u in m["unreadable"]:
            print(f"  {u['path']}: {u['reason']}")
    if m["loose_files"]:
        n = len(m["loose_files"])
        print(f"\nignored: {n} file{'s' if n > 1 else ''} outside the class folders")


def run(args: argparse.Namespace) -> int:
    from wastesort.serving import ServeConfig, load_champion

    params = load_params(args.params)
    photos = find_photos(Path(args.folder))
    cfg = ServeConfig.load(args.params)
    champion = load_champion(cfg)
    info = champion.info()
    rows = score(photos, cfg, champion, progress=not args.quiet)
    result = summarise(photos, rows, champion.labels, params)
    out = Path(args.out) if args.out else REPORT_ROOT / photos.root.resolve().name
    write_report(result, info, out)
    print_summary(result, info)
    print(f"\nreport:   {out}/report.md")
    if result.metrics["scored"] == 0:
        print("wastesort: error: no photo could be scored", file=sys.stderr)
        return EXIT_NOTHING_SCORED
    if "accuracy" not in result.metrics:
        print(
            "wastesort: error: no photo of a class the model knows "
            f"({', '.join(champion.labels)}): no accuracy",
            file=sys.stderr,
        )
        return EXIT_NOTHING_SCORED
    if not args.no_mlflow:
        experiment, run_id, model_id = log_to_mlflow(result, champion, params, out)
        linked = f", linked to logged model {model_id}" if model_id else ""
        print(f"mlflow:   run {run_id} in experiment '{experiment}'{linked}")
    return EXIT_OK


def add_parser(sub) -> None:
    e = sub.add_parser(
        "evaluate",
        help="score the champion on a labelled folder-per-class set (a field report)",
        description=(
            "Scores the champion, as the service answers, on FOLDER/<class>/<photo>. Exit "
            "status: 0 done, 1 no photo could be scored (or none of a known class), 2 unusable "
            "input or params."
        ),
    )
    e.add_argument("folder", metavar="FOLDER", help="one sub-folder per class")
    e.add_argument(
        "--out", metavar="DIR", help=f"report folder (default: {REPORT_ROOT}/<folder name>)"
    )
    e.add_argument("--no-mlflow", action="store_true", help="do not log the evaluation to MLflow")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=run)

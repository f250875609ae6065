"""`wastesort drift`: are the served answers still like the test split the champion was judged on?

The answers come from the service's capture log (``<serve.capture_dir>/capture.jsonl``, one
JSON object per answer) or its Prometheus counters (``--metrics URL``:
``wastesort_answers_total{label,stream,model_version}`` and
``wastesort_uncertain_total{model_version}``). The reference is the ``metrics/evaluate.json``
that ``evaluate`` recorded for the champion: the test split's class mix
(``per_class.<class>.support``) and its uncertain share (``1 - abstention.coverage``).

Two checks, thresholds in ``monitor.*``: a chi-square test of the answers' class mix against
the test mix (drift when its p-value is under ``max_class_mix_p``) and the share of answers under
the confidence threshold (drift when it is above the reference's by more than
``max_uncertain_rise``). Exit codes are ``EXIT_*`` below.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wastesort.config import ConfigError, Monitor, load_params, typed
from wastesort.field import LOG as CAPTURE_LOG

EXIT_OK = 0  # no drift
EXIT_DRIFT = 1  # a monitor.* threshold was passed
EXIT_CONFIG = 2  # unusable input or params (the CLI's ConfigError code)
EXIT_TOO_FEW = 3  # fewer answers than monitor.min_answers: too few to judge

ANSWERS = "wastesort_answers_total"
UNCERTAIN = "wastesort_uncertain_total"
DEFAULT_REFERENCE = Path("metrics/evaluate.json")


@dataclass
class Tally:
    """Answers of one model version: per predicted label, and how many were uncertain."""

    labels: Counter = field(default_factory=Counter)
    uncertain: int = 0

    @property
    def total(self) -> int:
        return int(sum(self.labels.values()))

    def add(self, other: Tally) -> None:
        self.labels.update(other.labels)
        self.uncertain += other.uncertain


@dataclass
class Observed:
    """What the service answered, by model version."""

    source: str
    by_version: dict[str, Tally]
    threshold: float | None  # the confidence under which `uncertain` was counted, when known
    notes: list[str] = field(default_factory=list)


@dataclass
class Reference:
    source: str
    support: dict[str, int]  # the test split's photos per class
    uncertain_share: float | None  # 1 - abstention.coverage
    min_confidence: float | None  # abstention.min_confidence
    model_version: str | None = None  # the registered version it belongs to, when known


# ---- the answers ---------------------------------------------------------------------------


def read_capture_log(
    path: Path, threshold: float | None = None, last: int | None = None
) -> Observed:
    """The ``capture: all`` lines of a capture log. ``uncertain`` is counted from each line's
    confidence under ``threshold`` (the reference's, so both sides use one threshold) or, with
    none, from the line's own flag. With ``last``, only the last N ``all`` lines of each
    version count. A log of ``uncertain`` captures alone is refused: its mix is biased."""
    if not path.is_file():
        raise ConfigError(
            f"{path}: no capture log (the service writes it with serve.capture: all; "
            "or read its counters with --metrics URL)"
        )
    data = path.read_bytes()  # once: the service may be appending
    complete = not data or data.endswith(b"\n")
    lines = data.decode("utf-8", errors="replace").split("\n")
    kept: dict[str, list[tuple[str, bool]]] = {}
    skipped: Counter = Counter()
    notes: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if number == len(lines) and not complete:  # the service is still writing it
                notes.append(f"the unfinished last line ({number}) was left out")
                continue
            reason = getattr(exc, "msg", None) or str(exc)
            raise ConfigError(
                f"{path}:{number}: not a JSON object of an answer ({reason})"
            ) from None
        capture = entry.get("capture")
        if capture != "all":
            skipped[str(capture)] += 1
            continue
        label = entry.get("label")
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{path}:{number}: the answer has no 'label'")
        confidence = entry.get("confidence")
        if threshold is not None and isinstance(confidence, (int, float)):
            uncertain = float(confidence) < threshold
        else:
            uncertain = bool(entry.get("uncertain"))
        version = str((entry.get("model") or {}).get("version", "unknown"))
        kept.setdefault(version, []).append((label, uncertain))
    if skipped and not kept:
        kinds = ", ".join(f"{n} '{k}'" for k, n in sorted(skipped.items()))
        raise ConfigError(
            f"{path}: holds no `capture: all` answers ({kinds} captures only): a log of "
            "uncertain answers alone has a biased class mix and uncertain share, so drift is "
            "not judged from it; set serve.capture: all, or read the service's counters with "
            "--metrics URL"
        )
    if skipped:
        notes.append(
            f"{sum(skipped.values())} captures other than `all` left out (only `all` "
            "captures are an unbiased sample of the answers)"
        )
    by_version = {}
    for version, answers in kept.items():
        if last is not None:
            answers = answers[-last:]
        tally = Tally(Counter(label for label, _ in answers), sum(u for _, u in answers))
        by_version[version] = tally
    return Observed(str(path), by_version, threshold, notes)


def fetch_metrics(where: str, timeout: float = 10.0) -> str:
    """The text of a Prometheus endpoint (http(s) URL) or of a saved scrape (a file)."""
    if where.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(where, timeout=timeout) as resp:
                return resp.read().decode("utf-8")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConfigError(f"{where}: cannot read the metrics ({reason})") from None
    path = Path(where)
    if not path.is_file():
        raise ConfigError(f"{where}: neither an http(s) URL nor a file of metrics")
    return path.read_text()


def read_metrics_text(text: str, source: str, threshold: float | None = None) -> Observed:
    """Answer and uncertain counters from Prometheus text, by ``model_version``."""
    from prometheus_client.parser import text_string_to_metric_families

    by_version: dict[str, Tally] = {}
    seen = False
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name not in (ANSWERS, UNCERTAIN):
                    continue
                version = sample.labels.get("model_version", "unknown")
                tally = by_version.setdefault(version, Tally())
                if sample.name == ANSWERS:
                    seen = True
                    tally.labels[sample.labels.get("label", "")] += int(round(sample.value))
                else:
                    tally.uncertain += int(round(sample.value))
    except ValueError as exc:
        raise ConfigError(f"{source}: not Prometheus metrics text ({exc})") from None
    if not seen:
        raise ConfigError(
            f"{source}: no {ANSWERS} counter (is it the wastesort service's /metrics?)"
        )
    for tally in by_version.values():
        tally.labels = Counter({k: v for k, v in tally.labels.items() if v > 0})
    notes = ["the service's counters: every answer since each worker started"]
    return Observed(source, by_version, threshold, notes)


def select_version(observed: Observed, wanted: str | None) -> tuple[str | None, Tally, list[str]]:
    """The answers to judge: of version ``wanted`` when given (or the only one seen), else of
    every version together (with a note naming them)."""
    versions = sorted(observed.by_version, key=lambda v: (not v.isdigit(), v.zfill(12)))
    notes = []
    if wanted is not None:
        chosen = observed.by_version.get(wanted, Tally())
        others = {v: t.total for v, t in observed.by_version.items() if v != wanted and t.total}
        if others:
            notes.append(
                "answers of other model versions left out: "
                + ", ".join(f"version {v}: {n}" for v, n in others.items())
            )
        return wanted, chosen, notes
    merged = Tally()
    for tally in observed.by_version.values():
        merged.add(tally)
    if len([v for v in versions if observed.by_version[v].total]) > 1:
        notes.append(
            "answers of model versions "
            + ", ".join(versions)
            + " judged together (choose one with --model-version)"
        )
        return None, merged, notes
    return (versions[0] if versions else None), merged, notes


# ---- the reference -------------------------------------------------------------------------


def reference_from_metrics(metrics: dict[str, Any], source: str, version: str | None = None):
    per_class = metrics.get("per_class")
    if not isinstance(per_class, dict) or not per_class:
        raise ConfigError(f"{source}: no per_class supports (is it evaluate's evaluate.json?)")
    try:
        support = {str(c): int(round(float(v["support"]))) for c, v in per_class.items()}
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{source}: per_class.<class>.support missing or not a number") from None
    at = metrics.get("abstention") or {}
    coverage = at.get("coverage")
    return Reference(
        source,
        support,
        None if coverage is None else round(1.0 - float(coverage), 6),
        None if at.get("min_confidence") is None else float(at["min_confidence"]),
        version,
    )


def reference_from_file(path: Path) -> Reference:
    if not path.is_file():
        raise ConfigError(
            f"{path}: reference not found (evaluate writes metrics/evaluate.json; run "
            "`dvc repro evaluate`, or name one with --reference)"
        )
    try:
        metrics = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    return reference_from_metrics(metrics, str(path))


def reference_from_champion(params: dict[str, Any]) -> tuple[Reference | None, str]:
    """The evaluate.json that ``evaluate`` logged into the run of the version the alias points
    at, or (None, why not)."""
    from wastesort import tracking

    register = typed("register", params["register"])
    name, alias = register.model_name, register.alias
    uri = tracking.tracking_uri()
    if uri == tracking.DEFAULT_TRACKING_URI and not Path("mlflow.db").is_file():
        return None, "no MLflow registry here (mlflow.db)"
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(uri)
    try:
        version = MlflowClient().get_model_version_by_alias(name, alias)
        metrics = mlflow.artifacts.load_dict(f"runs:/{version.run_id}/metrics/evaluate.json")
    except (MlflowException, OSError, ValueError) as exc:
        message = getattr(exc, "message", str(exc)).splitlines()[0][:160]
        return None, f"no evaluate.json of {name}@{alias} in the registry at {uri} ({message})"
    source = f"{name}@{alias} (version {version.version}, run {version.run_id}): evaluate.json"
    return reference_from_metrics(metrics, source, str(version.version)), ""


def load_reference(params: dict[str, Any], path: str | None) -> tuple[Reference, list[str]]:
    """``--reference PATH`` when given; else the champion's own evaluate.json, falling back to
    the workspace's metrics/evaluate.json (with a note saying so)."""
    if path is not None:
        return reference_from_file(Path(path)), []
    reference, why = reference_from_champion(params)
    if reference is not None:
        return reference, []
    return reference_from_file(DEFAULT_REFERENCE), [
        f"not the champion's own evaluate.json: {why}; this workspace's {DEFAULT_REFERENCE} instead"
    ]


# ---- the judgement -------------------------------------------------------------------------


def judge(
    tally: Tally, reference: Reference, monitor: Monitor | dict[str, Any], threshold: float | None
) -> dict[str, Any]:
    """Both checks, as the report printed and given by ``--json``; ``monitor``: the
    ``monitor`` section (a mapping is validated first)."""
    from scipy.stats import chisquare

    monitor = typed("monitor", monitor)
    total = tally.total
    report: dict[str, Any] = {
        "answers": total,
        "thresholds": {
            k: getattr(monitor, k) for k in ("min_answers", "max_class_mix_p", "max_uncertain_rise")
        },
        "reasons": [],
    }
    if total < monitor.min_answers:
        report["verdict"] = "too_few"
        report["exit_code"] = EXIT_TOO_FEW
        return report
    known = [c for c, n in reference.support.items() if n > 0]
    unknown = {c: n for c, n in tally.labels.items() if c not in known}
    observed = [int(tally.labels.get(c, 0)) for c in known]
    n_known = sum(observed)
    ref_total = sum(reference.support[c] for c in known)
    rows = [
        {
            "class": c,
            "expected_share": round(reference.support[c] / ref_total, 6),
            "observed_share": round(o / total, 6),
            "expected": round(reference.support[c] / ref_total * n_known, 3),
            "observed": o,
        }
        for c, o in zip(known, observed)
    ]
    report["classes"] = rows
    report["unknown_classes"] = unknown
    report["chi2"] = report["p_value"] = None
    if len(known) >= 2 and n_known > 0:
        test = chisquare(observed, [r["expected"] for r in rows])
        report["chi2"] = round(float(test.statistic), 6)
        report["p_value"] = float(test.pvalue)
        report["small_expected"] = any(r["expected"] < 5 for r in rows)
        if test.pvalue < monitor.max_class_mix_p:
            report["reasons"].append(
                f"class mix differs from the test split's (chi-square p = {test.pvalue:.3g} "
                f"< monitor.max_class_mix_p {monitor.max_class_mix_p})"
            )
    if unknown:
        report["reasons"].append(
            "answers name classes the reference does not have: "
            + ", ".join(f"{c} ({n})" for c, n in sorted(unknown.items()))
            + " (is the reference of another model?)"
        )
    share = tally.uncertain / total
    report["uncertain_share"] = round(share, 6)
    report["reference_uncertain_share"] = reference.uncertain_share
    report["uncertain_threshold"] = threshold
    report["uncertain_rise"] = None
    if reference.uncertain_share is not None:
        rise = share - reference.uncertain_share
        report["uncertain_rise"] = round(rise, 6)
        if rise > monitor.max_uncertain_rise + 1e-12:
            report["reasons"].append(
                f"uncertain share {share:.1%} is {rise:+.1%} over the test split's "
                f"{reference.uncertain_share:.1%} (monitor.max_uncertain_rise "
                f"{monitor.max_uncertain_rise:.0%})"
            )
    report["verdict"] = "drift" if report["reasons"] else "ok"
    report["exit_code"] = EXIT_DRIFT if report["reasons"] else EXIT_OK
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"answers:   {report['answers']} from {report['source']}")
    if report["model_version"]:
        print(f"model:     version {report['model_version']}")
    print(f"reference: {report['reference']}")
    for note in report["notes"]:
        print(f"note: {note}")
    if report["verdict"] == "too_few":
        print(
            f"drift: too few answers to judge ({report['answers']} < monitor.min_answers "
            f"{report['thresholds']['min_answers']})"
        )
        return
    width = max(len("class"), *(len(r["class"]) for r in report["classes"]))
    print(f"\n{'class':<{width}}  {'expected':>8}  {'observed':>8}  answers")
    for r in report["classes"]:
        print(
            f"{r['class']:<{width}}  {r['expected_share']:>8.1%}  {r['observed_share']:>8.1%}  "
            f"{r['observed']}"
        )
    for c, n in sorted(report["unknown_classes"].items()):
        print(f"{c:<{width}}  {'-':>8}  {n / report['answers']:>8.1%}  {n}  (not in the reference)")
    print()
    if report["p_value"] is None:
        print("class mix: not tested (fewer than two classes in the reference)")
    else:
        small = " (some expected counts under 5: approximate)" if report["small_expected"] else ""
        print(f"class mix: chi-square {report['chi2']:.2f}, p = {report['p_value']:.3g}{small}")
    ref = report["reference_uncertain_share"]
    at = report["uncertain_threshold"]
    under = f" (confidence under {at:.2f})" if at is not None else ""
    if ref is None:
        print(f"uncertain: {report['uncertain_share']:.1%}{under}; the reference records none")
    else:
        print(
            f"uncertain: {report['uncertain_share']:.1%}{under} against {ref:.1%} on the test "
            f"split ({report['uncertain_rise']:+.1%})"
        )
    if report["verdict"] == "drift":
        for reason in report["reasons"]:
            print(f"drift: {reason}")
    else:
        print("no drift: the answers look like the test split")


def run(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    monitor, serve = typed("monitor", params["monitor"]), typed("serve", params["serve"])
    reference, notes = load_reference(params, args.reference)
    threshold = reference.min_confidence
    if threshold is None:
        threshold = serve.min_confidence
    if args.metrics:
        observed = read_metrics_text(fetch_metrics(args.metrics), args.metrics)
        served_at = serve.min_confidence
        observed.threshold = served_at
        if (
            reference.min_confidence is not None
            and abs(served_at - reference.min_confidence) > 1e-9
        ):
            notes.append(
                f"the service counts uncertain answers under serve.min_confidence {served_at:.2f}, "
                f"the reference under {reference.min_confidence:.2f}"
            )
    else:
        if args.last is not None and args.last < 1:
            raise ConfigError(f"--last must be at least 1, got {args.last}")
        served_at = serve.min_confidence
        if abs(served_at - threshold) > 1e-9:
            notes.append(
                f"uncertain counted under the reference's threshold {threshold:.2f} "
                f"(serve.min_confidence is {served_at:.2f})"
            )
        log = Path(args.log) if args.log else Path(serve.capture_dir) / CAPTURE_LOG
        observed = read_capture_log(log, threshold, args.last)
    wanted = args.model_version or reference.model_version
    version, tally, picked = select_version(observed, wanted)
    report = judge(tally, reference, monitor, observed.threshold)
    report.update(
        source=observed.source,
        reference=reference.source,
        model_version=version,
        notes=[*observed.notes, *notes, *picked],
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return int(report["exit_code"])


def add_parser(sub) -> None:
    d = sub.add_parser(
        "drift",
        help="compare the served answers' class mix and uncertain share with the test split's",
        description=(
            "Exit status: 0 no drift, 1 drift (past a monitor.* threshold), 2 unusable input, "
            "3 too few answers to judge (under monitor.min_answers)."
        ),
    )
    source = d.add_mutually_exclusive_group()
    source.add_argument(
        "--log",
        metavar="PATH",
        help="capture log (default: <serve.capture_dir>/capture.jsonl); only `all` captures count",
    )
    source.add_argument(
        "--metrics",
        metavar="URL",
        help="the service's Prometheus /metrics (or a saved scrape) instead of the log",
    )
    d.add_argument(
        "--reference",
        metavar="PATH",
        help="evaluate.json to compare with (default: the champion's, logged to its MLflow run; "
        "else metrics/evaluate.json)",
    )
    d.add_argument(
        "--model-version",
        metavar="N",
        help="judge the answers of this registered version (default: the reference's)",
    )
    d.add_argument("--last", type=int, metavar="N", help="judge only the last N logged answers")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.set_defaults(func=run)

"""`wastesort drift` on generated capture logs and Prometheus text: a skewed class mix and a
risen uncertain share are drift (exit 1), a matching one is not (0), too few answers are their
own code (3), and a log of uncertain captures alone is refused (2)."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest
import yaml

from wastesort.cli import main
from wastesort.field import drift as drift_check

SUPPORT = {"cardboard": 40, "glass": 30, "metal": 30}  # the test split: 40 %, 30 %, 30 %


def write_reference(path: Path, support=SUPPORT, coverage=0.9, min_confidence=0.7) -> Path:
    """evaluate.json as `evaluate` writes it (the parts drift reads)."""
    per_class = {
        c: {"precision": 0.9, "recall": 0.9, "f1-score": 0.9, "support": float(n)}
        for c, n in support.items()
    }
    n = sum(support.values())
    metrics = {
        "accuracy": 0.9,
        "n_test": n,
        "per_class": per_class,
        "abstention": {
            "min_confidence": min_confidence,
            "n": n,
            "answered": round(n * coverage),
            "uncertain": n - round(n * coverage),
            "coverage": coverage,
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return path


def answer(label: str, confidence: float, capture: str = "all", version: str = "3") -> dict:
    return {
        "time": "2026-12-02T23:59:01Z",
        "sha256": "0" * 64,
        "file": "confident/" + "0" * 64 + ".jpg",
        "capture": capture,
        "label": label,
        "confidence": confidence,
        "uncertain": confidence < 0.7,
        "stream": label,
        "probabilities": {label: confidence},
        "model": {"name": "wastesort", "version": version, "alias": "champion"},
    }


def answers(counts: dict[str, int], uncertain_share: float = 0.1, **kw) -> list[dict]:
    """Answers with these label counts; every 1/uncertain_share-th one under 0.7."""
    out = []
    for label, n in counts.items():
        out += [answer(label, 0.95, **kw) for _ in range(n)]
    k = round(len(out) * uncertain_share)
    for i in range(k):
        out[i * len(out) // max(k, 1)]["confidence"] = 0.5
        out[i * len(out) // max(k, 1)]["uncertain"] = True
    return out


def write_log(path: Path, lines: list[dict], tail: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + tail)
    return path


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    """A folder with a params file (its capture_dir `inbox/`) and metrics/evaluate.json, and no
    MLflow registry: the reference is the workspace's file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = {
        "serve": {"min_confidence": 0.7, "capture": "all", "capture_dir": "inbox"},
        "monitor": {"min_answers": 30, "max_class_mix_p": 0.01, "max_uncertain_rise": 0.10},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_reference(tmp_path / "metrics" / "evaluate.json")
    return tmp_path


def drift(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--params", "params.yaml", "drift", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_matching_mix_is_no_drift(repo, capsys):
    write_log(
        repo / "inbox" / "capture.jsonl", answers({"cardboard": 41, "glass": 29, "metal": 30})
    )
    code, out, _ = drift(capsys)
    assert code == drift_check.EXIT_OK == 0
    assert "no drift" in out
    assert "note: not the champion's own evaluate.json: no MLflow registry here" in out
    assert "uncertain: 10.0% (confidence under 0.70) against 10.0% on the test split" in out
    table = {line.split()[0]: line.split()[1:3] for line in out.splitlines()[4:8] if line}
    assert table["cardboard"] == ["40.0%", "41.0%"] and table["glass"] == ["30.0%", "29.0%"]


def test_skewed_mix_is_drift(repo, capsys):
    write_log(
        repo / "inbox" / "capture.jsonl", answers({"cardboard": 80, "glass": 10, "metal": 10})
    )
    code, out, _ = drift(capsys)
    assert code == drift_check.EXIT_DRIFT == 1
    assert "drift: class mix differs from the test split's (chi-square p = " in out
    assert "< monitor.max_class_mix_p 0.01" in out


def test_json_report(repo, capsys):
    write_log(
        repo / "inbox" / "capture.jsonl", answers({"cardboard": 80, "glass": 10, "metal": 10})
    )
    code, out, _ = drift(capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "drift" and report["exit_code"] == 1
    assert report["answers"] == 100 and report["model_version"] == "3"
    assert report["p_value"] < 1e-6
    rows = {r["class"]: r for r in report["classes"]}
    assert rows["cardboard"]["expected"] == 40 and rows["cardboard"]["observed"] == 80
    assert rows["glass"]["expected_share"] == 0.3 and rows["glass"]["observed_share"] == 0.1
    assert report["uncertain_share"] == 0.1 and report["reference_uncertain_share"] == 0.1


def test_too_few_answers_have_their_own_code(repo, capsys):
    write_log(repo / "inbox" / "capture.jsonl", answers({"cardboard": 20, "glass": 1, "metal": 1}))
    code, out, _ = drift(capsys)
    assert code == drift_check.EXIT_TOO_FEW == 3
    assert "drift: too few answers to judge (22 < monitor.min_answers 30)" in out


def test_a_log_of_uncertain_captures_is_refused(repo, capsys):
    lines = answers({"cardboard": 50, "glass": 50}, uncertain_share=1.0, capture="uncertain")
    write_log(repo / "inbox" / "capture.jsonl", lines)
    code, _, err = drift(capsys)
    assert code == 2
    assert err.startswith("wastesort: error: inbox/capture.jsonl: holds no `capture: all` answers")
    assert "100 'uncertain' captures only" in err and "--metrics URL" in err
    assert len(err.strip().splitlines()) == 1


def test_only_all_captures_count_in_a_mixed_log(repo, capsys):
    biased = answers({"glass": 200}, uncertain_share=1.0, capture="uncertain")
    fair = answers({"cardboard": 40, "glass": 30, "metal": 30})
    write_log(repo / "inbox" / "capture.jsonl", biased + fair)
    code, out, _ = drift(capsys)
    assert code == 0, out
    assert "note: 200 captures other than `all` left out" in out
    assert "answers:   100 from inbox/capture.jsonl" in out


def test_a_risen_uncertain_share_is_drift(repo, capsys):
    lines = answers({"cardboard": 40, "glass": 30, "metal": 30}, uncertain_share=0.25)
    write_log(repo / "inbox" / "capture.jsonl", lines)
    code, out, _ = drift(capsys)
    assert code == 1
    assert (
        "uncertain: 25.0% (confidence under 0.70) against 10.0% on the test split (+15.0%)" in out
    )
    assert "uncertain share 25.0% is +15.0% over the test split's 10.0%" in out
    assert "class mix differs" not in out
    # within monitor.max_uncertain_rise: no drift
    lines = answers({"cardboard": 40, "glass": 30, "metal": 30}, uncertain_share=0.19)
    write_log(repo / "inbox" / "capture.jsonl", lines)
    assert drift(capsys)[0] == 0


def test_uncertain_is_counted_at_the_references_threshold(repo, capsys):
    """The reference was recorded at 0.7; the service now answers at 0.5: the confidences in
    the log are compared at 0.7, so both sides use one threshold."""
    lines = answers({"cardboard": 40, "glass": 30, "metal": 30}, uncertain_share=0.0)
    for line in lines[:30]:
        line.update(confidence=0.6, uncertain=False)  # under 0.7, over the served 0.5
    write_log(repo / "inbox" / "capture.jsonl", lines)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["serve"]["min_confidence"] = 0.5
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    code, out, _ = drift(capsys)
    assert code == 1 and "uncertain: 30.0% (confidence under 0.70)" in out
    assert "note: uncertain counted under the reference's threshold 0.70" in out


def test_classes_the_reference_lacks_are_reported(repo, capsys):
    lines = answers({"cardboard": 40, "glass": 30, "metal": 30, "plastic": 3})
    write_log(repo / "inbox" / "capture.jsonl", lines)
    code, out, _ = drift(capsys, "--json")
    report = json.loads(out)
    assert code == 1 and report["unknown_classes"] == {"plastic": 3}
    assert "answers name classes the reference does not have: plastic (3)" in report["reasons"][0]
    assert report["p_value"] > 0.5  # the known classes' mix itself matches


def test_bad_log_lines_name_their_number(repo, capsys):
    lines = [json.dumps(x) for x in answers({"cardboard": 40, "glass": 30, "metal": 30})]
    lines.insert(6, "{not json")
    (repo / "inbox").mkdir()
    (repo / "inbox" / "capture.jsonl").write_text("\n".join(lines) + "\n")
    code, _, err = drift(capsys)
    assert code == 2
    assert err.startswith("wastesort: error: inbox/capture.jsonl:7: not a JSON object of an answer")
    assert len(err.strip().splitlines()) == 1


def test_a_torn_last_line_is_left_out(repo, capsys):
    lines = answers({"cardboard": 40, "glass": 30, "metal": 30})
    write_log(repo / "inbox" / "capture.jsonl", lines, tail='{"time": "2026-12-0')
    code, out, _ = drift(capsys)
    assert code == 0 and "note: the unfinished last line (101) was left out" in out


def test_last_n_answers(repo, capsys):
    old = answers({"cardboard": 100})
    recent = answers({"cardboard": 40, "glass": 30, "metal": 30})
    write_log(repo / "inbox" / "capture.jsonl", old + recent)
    assert drift(capsys)[0] == 1
    assert drift(capsys, "--last", "100")[0] == 0
    code, _, err = drift(capsys, "--last", "0")
    assert code == 2 and "--last must be at least 1" in err


def test_missing_inputs_are_one_line_errors(repo, capsys):
    code, _, err = drift(capsys)
    assert code == 2 and err.startswith("wastesort: error: inbox/capture.jsonl: no capture log")
    write_log(repo / "inbox" / "capture.jsonl", answers({"cardboard": 40}))
    code, _, err = drift(capsys, "--reference", "elsewhere/evaluate.json")
    assert code == 2
    assert err.startswith("wastesort: error: elsewhere/evaluate.json: reference not found")
    (repo / "metrics" / "evaluate.json").unlink()
    code, _, err = drift(capsys)
    assert code == 2 and "metrics/evaluate.json: reference not found" in err


def test_versions_in_the_log(repo, capsys):
    """Answers of several versions are judged together unless one is named."""
    v2 = answers({"cardboard": 100}, version="2")
    v3 = answers({"cardboard": 40, "glass": 30, "metal": 30}, version="3")
    write_log(repo / "inbox" / "capture.jsonl", v2 + v3)
    code, out, _ = drift(capsys)
    assert code == 1 and "note: answers of model versions 2, 3 judged together" in out
    code, out, _ = drift(capsys, "--model-version", "3")
    assert code == 0 and "answers of other model versions left out: version 2: 100" in out


# ---- the service's Prometheus counters -------------------------------------------------------


def metrics_text(by_version: dict[str, tuple[dict[str, int], int]]) -> str:
    """/metrics text as the service's counters give it, made by prometheus_client itself."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    registry = CollectorRegistry()
    answered = Counter(
        "wastesort_answers",
        "Answers given, by label and recycling stream",
        ["label", "stream", "model_version"],
        registry=registry,
    )
    uncertain = Counter(
        "wastesort_uncertain", "Answers under min_confidence", ["model_version"], registry=registry
    )
    Gauge("wastesort_model_info", "served", ["version"], registry=registry).labels("3").set(1)
    for version, (counts, n_uncertain) in by_version.items():
        for label, n in counts.items():
            answered.labels(label, f"{label}_stream", version).inc(n)
        uncertain.labels(version).inc(n_uncertain)
    return generate_latest(registry).decode()


def test_metrics_text_is_parsed_by_version():
    text = metrics_text({"3": ({"glass": 7, "metal": 5}, 2), "2": ({"glass": 1}, 0)})
    observed = drift_check.read_metrics_text(text, "scrape")
    assert observed.by_version["3"].labels == {"glass": 7, "metal": 5}
    assert observed.by_version["3"].uncertain == 2 and observed.by_version["3"].total == 12
    assert observed.by_version["2"].total == 1


def test_drift_from_metrics_file_and_url(repo, capsys):
    matching = metrics_text({"3": ({"cardboard": 400, "glass": 300, "metal": 300}, 100)})
    (repo / "scrape.txt").write_text(matching)
    code, out, _ = drift(capsys, "--metrics", "scrape.txt")
    assert code == 0, out
    assert "answers:   1000 from scrape.txt" in out

    skewed = metrics_text(
        {
            "3": ({"cardboard": 400, "glass": 300, "metal": 30}, 50),
            "2": ({"cardboard": 999}, 0),
        }
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            body = skewed.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        code, out, _ = drift(capsys, "--metrics", url, "--model-version", "3", "--json")
    finally:
        server.shutdown()
    report = json.loads(out)
    assert code == 1 and report["answers"] == 730 and report["model_version"] == "3"
    assert "version 2: 999" in " ".join(report["notes"])
    assert report["uncertain_share"] == round(50 / 730, 6)


def test_metrics_without_the_counters_are_refused(repo, capsys):
    (repo / "scrape.txt").write_text("# HELP up ok\n# TYPE up gauge\nup 1\n")
    code, _, err = drift(capsys, "--metrics", "scrape.txt")
    assert code == 2 and "no wastesort_answers_total counter" in err
    code, _, err = drift(capsys, "--metrics", "http://127.0.0.1:9/metrics")
    assert code == 2 and "cannot read the metrics" in err


# ---- the champion's own reference ------------------------------------------------------------


def test_the_champions_evaluate_json_is_the_default_reference(repo, capsys, monkeypatch):
    """With a registry, the reference is the evaluate.json logged into the run of the version
    @champion points at, not the workspace's file (which may be of an unpromoted experiment),
    and the answers judged are that version's."""
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{repo / 'registry.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{repo / 'registry.db'}")
    mlflow.set_experiment("wastesort")
    with mlflow.start_run() as run:
        model = mlflow.initialize_logged_model(name="model")
        mlflow.finalize_logged_model(model.model_id, "READY")
        reference = json.loads(write_reference(repo / "champion.json").read_text())
        mlflow.log_dict(reference, "metrics/evaluate.json")
    version = mlflow.register_model(model.model_uri, "wastesort").version
    MlflowClient().set_registered_model_alias("wastesort", "champion", version)
    # the workspace's evaluate.json is of another model, with another class mix
    write_reference(repo / "metrics" / "evaluate.json", {"cardboard": 10, "glass": 80, "metal": 10})
    v1 = answers({"cardboard": 40, "glass": 30, "metal": 30}, version=str(version))
    write_log(repo / "inbox" / "capture.jsonl", v1 + answers({"glass": 50}, version="0"))
    code, out, _ = drift(capsys)
    assert code == 0, out
    assert f"reference: wastesort@champion (version {version}, run {run.info.run_id})" in out
    assert "answers of other model versions left out: version 0: 50" in out

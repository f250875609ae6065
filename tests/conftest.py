"""Shared fixtures: a real temporary pipeline repo, and real MLflow/BentoML processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests import imagegen as g

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PIPELINE_FILES = [
    "dvc.yaml",
    "extras",
    "params.yaml",
    "stages",
    "wastesort",
    "service.py",
    "bentofile.yaml",
    "requirements-serve.txt",
]
TINY_CLASSES = {"cardboard": 12, "glass": 12, "metal": 12}


# the modules that need the shared pipeline repo, heaviest first (minutes of `dvc` runs and
# servers, from `--durations`); one not listed runs after them
HEAVY_FIRST = [
    "tests/integration/test_service.py",  # starts the build
    "tests/integration/test_pipeline_variants.py",
    "tests/integration/test_tracking_server.py",
    "tests/integration/test_pipeline.py",
    "tests/code/test_distribute.py",
    "tests/integration/test_field_loop.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Module order for two workers (`--dist loadscope --no-loadscope-reorder` hands modules
    out in this order): first a module that needs the shared ``pipeline_repo``, so its build
    starts at once; then the modules that need none, larger first, which keep the other worker
    busy while it builds (it used to wait on the build's lock); then the rest of the modules
    that need it, heaviest first, so the two workers end close together."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    needs = {m: any("pipeline_repo" in i.fixturenames for i in its) for m, its in modules.items()}
    heavy = {m: i for i, m in enumerate(HEAVY_FIRST)}
    by_size = sorted(modules, key=lambda m: -len(modules[m]))  # stable: ties keep their order
    dependent = sorted((m for m in by_size if needs[m]), key=lambda m: heavy.get(m, len(heavy)))
    order = dependent[:1] + [m for m in by_size if not needs[m]] + dependent[1:]
    items[:] = [i for m in order for i in modules[m]]


@pytest.fixture(autouse=True)
def mlflow_state_per_test():
    """Each test starts with MLflow's process-wide state as the worker started: set_experiment()
    and set_tracking_uri() write module globals and MLFLOW_EXPERIMENT_ID/MLFLOW_TRACKING_URI into
    os.environ, which would otherwise carry into whichever test the worker runs next."""
    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    if "mlflow" in sys.modules:
        import mlflow

        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(None)
        mlflow.tracking.fluent._active_experiment_id = None  # no public unset exists
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    os.environ.update(before)


def tool_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BENTOML_"))}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="-1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    env.update(extra)
    return env


def run(
    cmd: list[str],
    cwd: Path,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: int = 900,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def overlaps(a: dict, b: dict) -> bool:
    """Whether two boxes of a page (x, y, width, height, as a browser measures them) overlap."""
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def served_answer(
    label: str = "glass",
    confidence: float = 0.9,
    uncertain: bool = False,
    classes: tuple[str, ...] = tuple(TINY_CLASSES),
) -> dict:
    """What the service answers for one photo (``wastesort.serving.answers.describe``'s
    shape), for tests of what is done with answers."""
    rest = (1 - confidence) / (len(classes) - 1)
    return {
        "label": label,
        "confidence": confidence,
        "uncertain": uncertain,
        "stream": "manual_check" if uncertain else label,
        "probabilities": {c: confidence if c == label else rest for c in classes},
        "model": {"name": "wastesort", "version": "3", "alias": "champion", "format": "float32"},
    }


def tiny_params(data_path: str) -> dict:
    """Repo params shrunk for a quick run: small images, few epochs. The ImageNet weights come
    from the Keras cache that `make setup` seeds, so the model's outputs are not degenerate."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(path=data_path, classes=[])
    params["validate"]["min_images_per_class"] = 5
    params["split"].update(val_fraction=0.25, test_fraction=0.25)
    params["augment"].update(variants_per_image=2, preview_images=2)
    # the cheapest Lite at 224; the default, Lite1 at 240, shares its code
    # (tests/model/test_backbones.py runs each backbone)
    params["backbone"].update(name="efficientnet_lite0", image_size=224)
    params["finetune"].update(layers=11, epochs=2, warmup_epochs=2)
    params["train"].update(epochs=3, patience=3)
    params["evaluate"]["min_accuracy"] = 0.0
    params["export"]["max_int8_drop"] = 1.0  # a 2-epoch model on 9 test images: no int8 gate
    params["serve"]["min_confidence"] = 0.0  # answer everything (one test raises it)
    return params


def make_pipeline_repo(root: Path) -> Path:
    """A git repo holding the pipeline's files and a tiny generated data set (gitignored)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, root / name)
    g.make_class_folders(root / "rawdata", TINY_CLASSES, size=(64, 48))
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params("rawdata"), sort_keys=False))
    (root / ".gitignore").write_text(
        "/rawdata\n/mlflow.db\n/mlruns/\n/mlartifacts/\n/registry/champion.json\n"
    )
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "pipeline"], root)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120, log=None) -> None:
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            if log is not None:
                log.seek(0)
            output = log.read() if log is not None else proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process exited early with {proc.returncode}: {output}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def team_server(tmp_path_factory):
    """A team's tracking server, as `make tracking-server` starts it: a throwaway PostgreSQL
    cluster (Debian's `postgresql`) holding runs and the registry, and `mlflow server` on it
    proxying artifacts into a folder (``--artifacts-destination``). Yields (URL, that folder)."""
    import tempfile

    from wastesort.tracking import server as ts

    try:
        ts.postgres_tool("initdb")
    except ts.ServerError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{exc} (CI installs it)")
    # PostgreSQL runs as `postgres` under root: its folder must not sit inside pytest's
    # root-only temporary tree
    data = Path(tempfile.mkdtemp(prefix="wastesort-pg-")) / "cluster"
    data.parent.chmod(0o755)
    ts.init_cluster(data)
    db = ts.start_postgres(data, free_port())
    root = tmp_path_factory.mktemp("team_server")
    port = free_port()
    # its access log goes to a file: a pipe nobody reads fills after some hundred requests
    # (a whole training's live epochs and system metrics) and then blocks the server
    log = (root / "mlflow-server.log").open("w+")
    server = subprocess.Popen(
        ts.mlflow_server_command(
            ts.database_uri(int(db.args[db.args.index("-p") + 1])),
            root / "artifacts",
            "127.0.0.1",
            port,
        ),
        cwd=root,
        env=tool_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", server, log=log)
        yield url, root / "artifacts"
    finally:
        stop(server)
        log.close()
        ts.stop_postgres(db, data)
        shutil.rmtree(data.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def pipeline_repo(tmp_path_factory) -> Path:
    """A tiny pipeline run once with `dvc repro` (its BentoML store is beside the repo), once
    per test run: under pytest-xdist the first worker that needs it builds it and the others
    wait for it. Read-only for tests: `copy_repo` gives a copy to change."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # one process (`-n 0`, `-p no:xdist`)
        return build_pipeline_repo(tmp_path_factory.mktemp("pipeline") / "repo")
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "pipeline"
    shared.mkdir(exist_ok=True)
    with FileLock(str(shared / "lock")):
        if not (shared / "built").is_file():
            for stale in (shared / "repo", shared / "repo.bentoml"):  # a failed build's leftovers
                shutil.rmtree(stale, ignore_errors=True)
            build_pipeline_repo(shared / "repo")
            (shared / "built").touch()
    return shared / "repo"


def build_pipeline_repo(root: Path) -> Path:
    make_pipeline_repo(root)
    first = run(["dvc", "repro"], root, env=repo_env(root))
    assert "Running stage 'register'" in first.stdout
    return root


def copy_repo(src: Path, dst: Path, store: bool = True, ignore=None) -> Path:
    """A full copy of a pipeline repo (git, DVC cache, MLflow db) for a test that changes it,
    and with ``store`` its BentoML store, beside the copy as `repo_env` expects it."""
    shutil.copytree(src, dst, symlinks=True, ignore=ignore)
    if store:
        shutil.copytree(repo_env(src)["BENTOML_HOME"], repo_env(dst)["BENTOML_HOME"], symlinks=True)
    return dst


def repo_env(repo: Path, **extra: str) -> dict[str, str]:
    """Tools' environment for a test repo: its own BentoML store, outside the build context."""
    return tool_env(**{"BENTOML_HOME": str(repo.parent / f"{repo.name}.bentoml"), **extra})


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def registered_versions(repo: Path) -> tuple[list[str], str]:
    """A pipeline repo's registered versions of `wastesort` (sqlite MLflow) and the champion's."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    versions = sorted(str(v.version) for v in client.search_model_versions("name = 'wastesort'"))
    return versions, str(client.get_model_version_by_alias("wastesort", "champion").version)


def samples(text: str) -> dict[str, list]:
    """Prometheus exposition text: metric sample name -> [(labels, value)]."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(found: dict[str, list], name: str, **labels: str) -> float:
    return sum(
        v for lab, v in found.get(name, []) if all(lab.get(k) == w for k, w in labels.items())
    )


def server_processes(url: str) -> dict:
    """pid -> process of the `bentoml serve` at ``url`` and every process under it."""
    import psutil

    port = url.rsplit(":", 1)[1]
    family = {}
    for p in psutil.process_iter(["cmdline"]):
        if "serve" in (cmd := p.info["cmdline"] or []) and port in cmd:
            family.update({q.pid: q for q in [p, *p.children(recursive=True)]})
    return family


class Served(str):
    """A served service's URL, with what the server has logged so far (``log()``)."""

    def log(self) -> str:
        self.log_file.flush()
        self.log_file.seek(0)
        return self.log_file.read()


@contextlib.contextmanager
def serving(repo: Path, env: dict[str, str] | None = None):
    """A real `bentoml serve` in ``repo`` on a free port: its URL once ready (a `Served`);
    stopped after."""
    port = free_port()
    # its log goes to a file: a pipe nobody reads fills after some hundred requests and then
    # blocks the server
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            ["bentoml", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=repo,
            env=env or repo_env(repo),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = Served(f"http://127.0.0.1:{port}")
        url.log_file = log
        try:
            wait_http(f"{url}/readyz", proc, timeout=240, log=log)
            yield url
        finally:
            stop(proc)


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made unwritable for this process, root included (``chattr +i`` where plain
    permissions do not stop root). Yields False when the file system allows neither."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o500)
    immutable = False
    if os.geteuid() == 0 and shutil.which("chattr"):
        immutable = (
            subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        )
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"")
        probe.unlink()
        works = False
    except OSError:
        works = True
    try:
        yield works
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o700)


def captured(folder: Path, lines: int, timeout: float = 20) -> list[Path]:
    """The photos in a capture folder once its log has ``lines`` lines: the service writes
    them on a thread after answering."""
    log = folder / "capture.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= lines:
            break
        time.sleep(0.1)
    return sorted(p for p in folder.glob("*/*") if not p.name.startswith("."))

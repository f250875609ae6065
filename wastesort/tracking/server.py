"""A team's MLflow tracking server on this machine: runs and the model registry in PostgreSQL,
artifacts proxied by the server (``--artifacts-destination``), so clients need only
``MLFLOW_TRACKING_URI=http://HOST:PORT`` and no access to the server's disk.

``make tracking-server`` runs ``python -m wastesort.tracking.server``: it creates a PostgreSQL
cluster under ``--root`` (default ``.tracking/``) on first use (Debian's ``postgresql`` package;
as root, the cluster runs as the ``postgres`` user), starts it on 127.0.0.1, creates the
database, and serves MLflow until Ctrl-C stops both. The tests start the same set-up in a
temporary folder. Teams with Docker can use ``docker-compose.tracking.yml`` instead.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

DB_USER = "mlflow"
DB_NAME = "mlflow"


class ServerError(RuntimeError):
    """Something the user can fix (a missing package, a port in use); said in one line."""


def postgres_tool(name: str) -> str:
    """A PostgreSQL program: from Debian's /usr/lib/postgresql/<newest>/bin (its /usr/bin
    wrappers want a configured cluster), else on PATH (Homebrew, other systems)."""
    debian = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda path: int(Path(path).parts[4]) if Path(path).parts[4].isdigit() else 0,
    )
    found = debian[-1] if debian else shutil.which(name)
    if not found:
        raise ServerError(
            f"PostgreSQL's `{name}` was not found: install it with "
            f"`sudo apt-get install postgresql` (Debian/Ubuntu)"
        )
    return found


def as_cluster_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: there, run it as the `postgres` system user."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


def init_cluster(data_dir: Path) -> None:
    """A new cluster in ``data_dir`` (kept when it exists), trusting local connections of the
    ``mlflow`` role only from 127.0.0.1."""
    if (data_dir / "PG_VERSION").is_file():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
        data_dir.chmod(0o700)
    proc = subprocess.run(
        as_cluster_owner(
            [
                postgres_tool("initdb"),
                "-D",
                str(data_dir),
                "-U",
                DB_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        ),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise ServerError(f"initdb failed for {data_dir}: {proc.stderr.strip()[-500:]}")


def start_postgres(data_dir: Path, port: int, timeout: float = 60) -> subprocess.Popen:
    """PostgreSQL on 127.0.0.1:``port`` (its socket in ``data_dir``), once it accepts
    connections, with the ``mlflow`` database created."""
    log = open(data_dir / "server.log", "a")  # noqa: SIM115 (the process keeps it open)
    proc = subprocess.Popen(
        as_cluster_owner(
            [
                postgres_tool("postgres"),
                "-D",
                str(data_dir),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(data_dir),
            ]
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + timeout
    while True:
        ready = subprocess.run(
            [postgres_tool("pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        )
        if ready.returncode == 0:
            break
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise ServerError(
                f"PostgreSQL did not start on port {port}; see {data_dir / 'server.log'}"
            )
        time.sleep(0.3)
    exists = subprocess.run(
        [
            postgres_tool("psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            DB_USER,
            "-d",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'",
        ],
        capture_output=True,
        text=True,
    )
    if exists.stdout.strip() != "1":
        subprocess.run(
            [postgres_tool("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER, DB_NAME],
            check=True,
            capture_output=True,
        )
    return proc


def database_uri(port: int) -> str:
    return f"postgresql://{DB_USER}@127.0.0.1:{port}/{DB_NAME}"


def mlflow_server_command(backend_uri: str, artifacts: Path, host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def stop_postgres(proc: subprocess.Popen, data_dir: Path) -> None:
    """PostgreSQL's fast shutdown (`pg_ctl stop -m fast`, as the cluster's owner: `runuser`
    does not pass signals on), then the process it ran under."""
    subprocess.run(
        as_cluster_owner(
            [postgres_tool("pg_ctl"), "stop", "-D", str(data_dir), "-m", "fast", "-w"]
        ),
        capture_output=True,
        timeout=60,
    )
    stop(proc)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wastesort.tracking.server", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(".tracking"),
        help="folder for the PostgreSQL cluster and the artifacts",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address MLflow listens on (0.0.0.0 for the team's network)",
    )
    parser.add_argument("--port", type=int, default=5000, help="MLflow's port")
    parser.add_argument("--db-port", type=int, default=5433, help="PostgreSQL's port")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop both on SIGTERM too
    try:
        init_cluster(root / "postgres")
        db = start_postgres(root / "postgres", args.db_port)
    except ServerError as exc:
        print(f"tracking-server: error: {exc}", file=sys.stderr)
        return 1
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        mlflow_server_command(database_uri(args.db_port), root / "artifacts", args.host, args.port)
    )
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    print(
        f"tracking-server: runs and registry in {database_uri(args.db_port)}, artifacts in "
        f"{root / 'artifacts'}\ntracking-server: export MLFLOW_TRACKING_URI="
        f"http://{shown}:{args.port}   (Ctrl-C stops both)",
        flush=True,
    )
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(server)
        stop_postgres(db, root / "postgres")


if __name__ == "__main__":
    sys.exit(main())

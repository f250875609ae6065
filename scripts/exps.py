"""`make exps`: DVC experiments side by side, the params that differ first, then the headline
metrics that differ, within the terminal's width (160 columns when it is not one).

    uv run python scripts/exps.py [--width 160] [--drop REGEX]

It reads `dvc exp show --csv --only-changed` and prints the same rows with the columns in that
order. Where the table is still too wide, metrics are left out from the right, never params,
and the last line names what was left out."""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

DROP = r"Created|ci95_high|.*/|export$|models$"  # deps' and outs' hash columns, the CI's top
SKIP = ("rev", "typ", "State", "Executor", "parent")


def param_names(params_file: Path = Path("params.yaml")) -> set[str]:
    from wastesort.tracking import leaves

    return (
        set(leaves(yaml.safe_load(params_file.read_text()) or {}))
        if params_file.is_file()
        else set()
    )


def table(rows: list[dict[str, str]], params: set[str], width: int) -> list[str]:
    """The rows as aligned text: experiment, changed params, changed metrics, within ``width``
    (metrics left out from the right where needed)."""
    columns = [c for c in rows[0] if c and c != "Experiment" and c not in SKIP]
    changed_params = [c for c in columns if c in params]
    metrics = [c for c in columns if c not in params]

    def name(row: dict[str, str]) -> str:
        exp, rev = row.get("Experiment", ""), row.get("rev", "")
        running = " (running)" if row.get("State") == "Running" else ""
        return (
            f"{exp} ({rev[:7]})" if exp and rev and rev != "workspace" else exp or rev
        ) + running

    def render(cols: list[str]) -> list[str]:
        cells = [["Experiment", *cols]] + [[name(r), *(r[c] for c in cols)] for r in rows]
        widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
        return ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells]

    shown = [*changed_params, *metrics]
    lines = render(shown)
    left_out: list[str] = []
    while max(map(len, lines)) > width and len(shown) > len(changed_params):
        left_out.insert(0, shown.pop())
        lines = render(shown)
    if left_out:
        lines.append(f"(left out for width: {', '.join(left_out)})")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--drop", default=DROP, help="columns to leave out (a regex, as DVC's)")
    args = ap.parse_args()
    width = args.width or int(os.environ.get("COLUMNS") or shutil.get_terminal_size((160, 24))[0])
    proc = subprocess.run(
        ["dvc", "exp", "show", "--csv", "--only-changed", "--drop", args.drop],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"exps: dvc exp show failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    if not rows:
        sys.exit("exps: no experiments yet (run `uv run dvc exp run -S train.lr=0.0005`)")
    print("\n".join(table(rows, param_names(), width)))


if __name__ == "__main__":
    main()

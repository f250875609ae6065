"""The field loop: photos the service answered (capture), the person who labels them (inbox),
and the folder they join (``data/field``), which ``data.extra_paths`` adds to the pipeline."""

from __future__ import annotations

from pathlib import Path

FIELD = Path("data/field")  # data/field/<class>/<sha256>.<ext>, tracked with `dvc add`
LABELS_CSV = "labels.csv"  # data/field/labels.csv: every inbox decision
LOG = "capture.jsonl"  # <serve.capture_dir>/capture.jsonl: one line per captured answer
#: Sub-folders of the capture folder: uncertain answers' photos are kept the longest.
KINDS = ("uncertain", "confident")

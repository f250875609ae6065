"""The champion index: the champion last found, for a service that starts in milliseconds.

``register``, ``wastesort import-champion`` and the service (after asking MLflow's client)
write what ``models:/NAME@ALIAS`` was, with the size and modification time of the local
registry's file then (``registry/champion.json``: not a DVC output, not in git). While that
file is unchanged the alias cannot have moved, so the service reads the index instead of
importing MLflow (seconds); after any write to the registry, or for a tracking server, it asks
MLflow's client. Only public behaviour is relied on: a write changes a file's stat.
Imports nothing heavy: the service imports it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from wastesort import paths

INDEX = paths.CHAMPION_INDEX
FIELDS = ("name", "alias", "version", "bento_model", "tflite_sha256")


def registry_stamp(uri: str) -> dict[str, Any] | None:
    """Size and modification time of a local ``sqlite:///`` registry's file (and its
    write-ahead log): any write to the registry changes them. None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    files = {}
    for f in (db, db.with_name(db.name + "-wal")):
        try:
            st = f.stat()
        except OSError:
            continue
        files[str(f)] = [st.st_size, st.st_mtime_ns]
    return {"uri": uri, "files": files} if str(db) in files else None


def write(champion: dict[str, Any], stamp: dict[str, Any] | None, index: Path = INDEX) -> bool:
    """Record ``champion`` (a receipt's fields) while the registry is as ``stamp``, taken after
    the alias was last written and before it was read. False (nothing written) without a
    stamp or a BentoML model."""
    if stamp is None or not champion.get("bento_model"):
        return False
    entry = {k: champion[k] for k in FIELDS} | {"registry": stamp}
    entry["version"] = str(entry["version"])
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.{os.getpid()}")
    tmp.write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n")
    tmp.replace(index)
    return True


def read(name: str, alias: str, uri: str, index: Path = INDEX) -> dict[str, Any] | None:
    """The indexed champion's fields, if it is ``name@alias`` in the registry at ``uri`` and
    that registry has not been written since; otherwise None (ask MLflow's client)."""
    try:
        entry = json.loads(index.read_text())
        fields = {k: entry[k] for k in FIELDS}
        stamp = entry["registry"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if (fields["name"], fields["alias"]) != (name, alias) or not fields["bento_model"]:
        return None
    return fields if stamp == registry_stamp(uri) else None

"""The champion index: read back only while the registry's file is as it was when written."""

from __future__ import annotations

import json
import os
import sqlite3

from wastesort.tracking import index

CHAMPION = {
    "name": "wastesort",
    "alias": "champion",
    "version": 3,
    "bento_model": "wastesort:abc",
    "tflite_sha256": {"float32": "ab" * 32, "int8": "cd" * 32},
    "run_id": "r1",  # other receipt fields are not indexed
}


def registry(tmp_path):
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (x)")
    return f"sqlite:///{db}", db


def test_an_index_reads_back_while_the_registry_file_is_unchanged(tmp_path):
    uri, db = registry(tmp_path)
    path = tmp_path / "registry/champion.json"
    assert index.write(CHAMPION, index.registry_stamp(uri), path)
    found = index.read("wastesort", "champion", uri, path)
    assert found == {k: CHAMPION[k] for k in index.FIELDS} | {"version": "3"}
    assert "run_id" not in json.loads(path.read_text())
    assert index.read("wastesort", "other", uri, path) is None
    assert index.read("other", "champion", uri, path) is None
    assert index.read("wastesort", "champion", f"sqlite:///{tmp_path}/x.db", path) is None


def test_any_write_to_the_registry_voids_the_index(tmp_path):
    uri, db = registry(tmp_path)
    path = tmp_path / "champion.json"
    index.write(CHAMPION, index.registry_stamp(uri), path)
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO t VALUES (1)")
    assert index.read("wastesort", "champion", uri, path) is None

    index.write(CHAMPION, index.registry_stamp(uri), path)
    st = db.stat()
    os.utime(db, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # same size, later write
    assert index.read("wastesort", "champion", uri, path) is None

    index.write(CHAMPION, index.registry_stamp(uri), path)
    (tmp_path / "mlflow.db-wal").write_bytes(b"x")  # a write-ahead log appeared
    assert index.read("wastesort", "champion", uri, path) is None


def test_no_index_without_a_local_registry_file_or_a_bentoml_model(tmp_path):
    path = tmp_path / "champion.json"
    assert index.registry_stamp("postgresql://127.0.0.1/mlflow") is None
    assert index.registry_stamp(f"sqlite:///{tmp_path}/absent.db") is None
    assert not index.write(CHAMPION, None, path) and not path.exists()
    uri, _ = registry(tmp_path)
    assert not index.write(CHAMPION | {"bento_model": ""}, index.registry_stamp(uri), path)
    assert index.read("wastesort", "champion", uri, path) is None  # no file
    path.write_text(json.dumps({"name": "wastesort"}))  # a broken one
    assert index.read("wastesort", "champion", uri, path) is None

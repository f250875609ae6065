"""Decode, resize and push images through the frozen trunk once; cache what it computes.

Originals of every split and the planned variants of the train split go through the same
preprocessing as evaluation and serving (``preprocess``: decode, then the NumPy port of the
model's resize) and the same trunk, so cached features are exactly what the deployed model
computes below its trainable top.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from wastesort import images, preprocess
from wastesort.augmentation import apply_plan
from wastesort.config import ConfigError


def load_resized(
    root: Path, paths: list[str], size: preprocess.Size, max_pixels: int, desc: str | None = None
) -> np.ndarray:
    """Files as the model's input batch, through the one preprocessing path (``preprocess``);
    ``desc``: a progress bar of that name."""
    batch = np.empty((len(paths), *preprocess.hw(size), 3), np.float32)
    for i, rel in enumerate(tqdm(paths, desc=desc, unit="img", disable=desc is None)):
        try:
            batch[i] = preprocess.load_for_model((root / rel).read_bytes(), max_pixels, size)
        except images.ImageRejected as exc:  # validated earlier; the folder changed since
            raise images.ImageRejected(f"{root / rel}: {exc.reason}", exc.code) from None
    return batch


def run_trunk(trunk, batch: np.ndarray, dtype: str = "float16") -> np.ndarray:
    out = np.asarray(trunk(batch, training=False))
    if dtype == "uint8":
        out = np.clip(np.round(out), 0, 255)
    return out.astype(dtype)


def extract_split(
    trunk,
    root: Path,
    split: pd.DataFrame,
    plan: pd.DataFrame | None,
    out_dir: Path,
    name: str,
    *,
    size: tuple[int, int],
    batch_size: int,
    max_pixels: int,
    fill_mode: str,
    dtype: str = "float16",
) -> dict[str, Any]:
    """Every image of a split (variant 0) and, for train, each planned variant through
    ``trunk``, written to ``out_dir/<name>`` one batch at a time; returns rows and bytes.
    ``size`` (height, width), ``batch_size`` (``backbone.*``), ``max_pixels``
    (``validate.max_pixels``) and ``fill_mode`` (``augment.fill_mode``)."""
    chunk = batch_size
    plan_by_path = (
        {p: g.to_dict("records") for p, g in plan.groupby("path")} if plan is not None else {}
    )
    ordered = split.sort_values("path").reset_index(drop=True)
    n_rows = planned_rows(ordered, plan)
    writer = Writer(out_dir, name, n_rows)
    with tqdm(total=n_rows, desc=f"features: {name}", unit="img") as bar:
        for start in range(0, len(ordered), chunk):
            part = ordered.iloc[start : start + chunk]
            batch = load_resized(root, part["path"].tolist(), size, max_pixels)
            writer.append(
                run_trunk(trunk, batch, dtype), part["label"], part["path"], [0] * len(part)
            )
            bar.update(len(part))
            rows = [(i, r) for i, p in enumerate(part["path"]) for r in plan_by_path.get(p, [])]
            for v_start in range(0, len(rows), chunk):
                group = rows[v_start : v_start + chunk]
                augmented = apply_plan(
                    batch[[i for i, _ in group]], [r for _, r in group], fill_mode
                )
                writer.append(
                    run_trunk(trunk, augmented, dtype),
                    [r["label"] for _, r in group],
                    [r["path"] for _, r in group],
                    [r["variant"] for _, r in group],
                )
                bar.update(len(group))
    return writer.close()


def planned_rows(split: pd.DataFrame, plan: pd.DataFrame | None) -> int:
    """How many rows ``extract_split`` writes for ``split``: its images and their variants."""
    if plan is None:
        return len(split)
    return len(split) + int(plan["path"].isin(set(split["path"])).sum())


def check_disk(folder: Path, needed: int, copies: int = 2) -> None:
    """A one-line error, before any work, when ``copies`` times ``needed`` bytes (the cache in
    the workspace and again in the DVC cache) would not fit the free space under ``folder``."""
    probe = Path(folder)
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed * copies > free:
        raise ConfigError(
            f"{folder}: the feature cache needs {needed / 1e9:.2f} GB ({copies} copies: the "
            f"workspace and DVC's cache, {needed * copies / 1e9:.2f} GB) but {free / 1e9:.2f} GB "
            "is free there; free some space, or lower augment.variants_per_image"
        )


class Rows:
    """Rows of a cached ``.npy`` array, read from disk when asked for (``os.pread``; never
    mapped, so a process holds only the rows it is using). Indexing with a slice, an integer
    array or a boolean mask returns a NumPy array; ``subset`` returns another lazy view;
    ``np.asarray(rows)`` reads them all."""

    def __init__(self, path: Path, index: np.ndarray | None = None):
        self.path = Path(path)
        with self.path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran:
            raise ValueError(f"{self.path}: a Fortran-ordered array is not a feature cache")
        self.dtype, self.row_shape, self.n_stored = np.dtype(dtype), tuple(shape[1:]), shape[0]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.index = np.arange(self.n_stored) if index is None else np.asarray(index, np.int64)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def nbytes(self) -> int:
        return len(self) * self.row_bytes

    def subset(self, key) -> Rows:
        return Rows(self.path, self.index[key])

    def __getitem__(self, key) -> np.ndarray:
        wanted = self.index[key]
        if np.ndim(wanted) == 0:
            return self._read(np.array([wanted]))[0]
        return self._read(wanted)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self._read(self.index)
        return out if dtype is None else out.astype(dtype)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        """The stored rows ``rows`` (in that order): one read per run of consecutive rows."""
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        flat = out.reshape(len(rows), -1).view(np.uint8)
        with self.path.open("rb") as fh:
            for run in np.split(np.arange(len(rows)), breaks):
                first, count = int(ordered[run[0]]), len(run)
                data = read_exactly(
                    fh, count * self.row_bytes, first * self.row_bytes + self.offset
                )
                if data is None:
                    raise ConfigError(f"{self.path}: truncated (re-run the features stage)")
                flat[order[run]] = np.frombuffer(data, np.uint8).reshape(count, self.row_bytes)
        return out


def read_exactly(fh, size: int, offset: int, piece: int = 1 << 28) -> bytes | None:
    """``size`` bytes at ``offset`` (at most ``piece`` a read: one read may return less);
    None when the file ends first."""
    parts, done = [], 0
    while done < size:
        data = os.pread(fh.fileno(), min(piece, size - done), offset + done)
        if not data:
            return None
        parts.append(data)
        done += len(data)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def predicted(model, rows, batch_size: int = 64, chunk_batches: int = 8, desc: str | None = None):
    """``model.predict`` over ``rows`` in bounded memory, yielding (start, outputs) a chunk of
    ``chunk_batches`` batches at a time: the same batches of ``batch_size`` as one call over an
    in-memory array gives (``desc``: a progress bar with images/s and the time left)."""
    step = batch_size * chunk_batches
    with tqdm(total=len(rows), desc=desc, unit="img", disable=desc is None) as bar:
        for start in range(0, len(rows), step):
            part = rows[start : start + step]
            yield start, model.predict(part, batch_size=batch_size, verbose=0)
            bar.update(len(part))


def predict(model, rows, batch_size: int = 64, desc: str | None = None) -> np.ndarray:
    """``model``'s outputs for every row, in memory (``predicted``'s chunks joined)."""
    out = [outputs for _, outputs in predicted(model, rows, batch_size, desc=desc)]
    if out:
        return np.concatenate(out)
    return np.zeros((0, *model.output.shape[1:]), np.float32)


def predict_to(
    model, data: dict[str, Any], directory: Path, name: str, dtype: str, desc: str | None = None
) -> dict[str, Any]:
    """``model``'s outputs for a split's rows, as ``dtype``, written to ``directory/<name>``
    chunk by chunk with the split's labels, paths and variants."""
    writer = Writer(directory, name, len(data["labels"]))
    for start, outputs in predicted(model, data["features"], desc=desc):
        writer.append_part(outputs.astype(dtype), data, start)
    return writer.close()


class Writer:
    """Writes a split's cache row block by row block: ``<name>.npy`` (the rows) and
    ``<name>.index.npz`` (labels, paths, variants), so no step holds the whole split."""

    def __init__(self, directory: Path, name: str, n_rows: int):
        self.directory, self.name, self.n_rows = Path(directory), name, n_rows
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fh = None
        self.written, self.labels, self.paths, self.variants = 0, [], [], []

    def append(self, rows: np.ndarray, labels, paths, variants) -> None:
        rows = np.ascontiguousarray(rows)
        if self.fh is None:
            self.fh = (self.directory / f"{self.name}.npy").open("wb")
            header = {
                "descr": np.lib.format.dtype_to_descr(rows.dtype),
                "fortran_order": False,
                "shape": (self.n_rows, *rows.shape[1:]),
            }
            np.lib.format.write_array_header_2_0(self.fh, header)
            self.row_shape, self.dtype = rows.shape[1:], rows.dtype
        if rows.shape[1:] != self.row_shape or rows.dtype != self.dtype:
            raise ValueError(
                f"{self.name}: rows of {rows.shape[1:]} {rows.dtype}, expected "
                f"{self.row_shape} {self.dtype}"
            )
        if self.written + len(rows) > self.n_rows:
            raise ValueError(f"{self.name}: more than the {self.n_rows} rows announced")
        self.fh.write(rows.tobytes())
        self.written += len(rows)
        self.labels += list(labels)
        self.paths += list(paths)
        self.variants += [int(v) for v in variants]

    def append_part(self, rows: np.ndarray, data: dict[str, Any], start: int) -> None:
        """``rows`` for the split ``data``'s rows from ``start`` on, with their labels, paths
        and variants."""
        stop = start + len(rows)
        part = slice(start, stop)
        self.append(rows, data["labels"][part], data["paths"][part], data["variants"][part])

    def close(self) -> dict[str, Any]:
        if self.fh is None:  # an empty split
            self.append(np.zeros((0,), np.float16), [], [], [])
        self.fh.close()
        if self.written != self.n_rows:
            raise ValueError(f"{self.name}: {self.written} rows written, {self.n_rows} announced")
        np.savez(
            self.directory / f"{self.name}.index.npz",
            labels=np.array(self.labels, dtype=str),
            paths=np.array(self.paths, dtype=str),
            variants=np.array(self.variants, dtype=np.int32),
        )
        return {"rows": self.written, "bytes": self.bytes()}

    def bytes(self) -> int:
        return sum((self.directory / f"{self.name}{s}").stat().st_size for s in SUFFIXES)


SUFFIXES = (".npy", ".index.npz")


def save(directory: Path, name: str, data: dict[str, Any]) -> dict[str, Any]:
    """A whole split at once (``features`` as an array, or ``Rows`` streamed block by block)."""
    writer = Writer(directory, name, len(data["features"]))
    step = 1024
    for start in range(0, len(data["features"]), step):
        writer.append_part(np.asarray(data["features"][start : start + step]), data, start)
    return writer.close()


def load(directory: Path, name: str) -> dict[str, Any]:
    """A split's cache: ``features`` as lazy ``Rows``; labels, paths and variants in memory."""
    directory = Path(directory)
    rows, index = directory / f"{name}.npy", directory / f"{name}.index.npz"
    for path in (rows, index):
        if not path.is_file():
            raise ConfigError(f"{path}: not found (run the features stage first)")
    with np.load(index, allow_pickle=False) as data:
        out: dict[str, Any] = {k: data[k] for k in data.files}
    missing = {"labels", "paths", "variants"} - set(out)
    if missing:
        raise ConfigError(
            f"{index}: lacks {', '.join(sorted(missing))} (re-run the features stage)"
        )
    out["features"] = Rows(rows)
    if len(out["features"]) != len(out["labels"]):
        raise ConfigError(
            f"{rows}: {len(out['features'])} rows for {len(out['labels'])} labels "
            "(re-run the features stage)"
        )
    return out


def copy(source: Path, target: Path, name: str) -> None:
    """A split's cache files as they are (``finetune.layers: 0`` passes them through)."""
    Path(target).mkdir(parents=True, exist_ok=True)
    for suffix in SUFFIXES:
        shutil.copyfile(Path(source) / f"{name}{suffix}", Path(target) / f"{name}{suffix}")

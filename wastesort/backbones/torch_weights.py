"""Read a PyTorch state dict into NumPy arrays, without PyTorch.

Both of PyTorch's file layouts are read: the legacy stream (``torch.save`` before 1.6: pickles
in a row, then each storage as a little-endian int64 element count and its raw bytes) and the
zip archive (``data.pkl`` plus one ``data/<key>`` entry per storage). The unpickler is
restricted: it builds only ``OrderedDict``, tensors (``_rebuild_tensor_v2``) and storages, and
refuses every other class, so a weights file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """The file is not a PyTorch state dict this reader can take; the message names it."""


class _Storage:
    def __init__(self, dtype: np.dtype, numel: int):
        self.dtype, self.numel, self.array = np.dtype(dtype), numel, None


class _StorageType:
    def __init__(self, name: str):
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor_v2(
    storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None
):
    return ("tensor", storage, int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream, storages: dict):
        super().__init__(stream)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind = pid[0].decode() if isinstance(pid[0], bytes) else pid[0]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if key not in self.storages:
            dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else np.float32
            self.storages[key] = _Storage(dtype, int(numel))
        return self.storages[key]


def _tensor(value) -> np.ndarray:
    _, storage, offset, size, stride = value
    flat = storage.array
    item = flat.itemsize
    return np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=[s * item for s in stride]
    ).copy()


def _arrays(state, source: Path) -> dict[str, np.ndarray]:
    if not isinstance(state, dict):
        raise TorchFileError(f"{source}: not a state dict (a {type(state).__name__})")
    out = {}
    for key, value in state.items():
        if isinstance(value, tuple) and value and value[0] == "tensor":
            out[str(key)] = _tensor(value)
    return out


def _legacy(stream, source: Path) -> dict[str, np.ndarray]:
    storages: dict = {}
    for _ in range(3):  # magic number, protocol version, system info
        header = pickle.load(stream)
        if _ == 0 and header != LEGACY_MAGIC:
            raise TorchFileError(f"{source}: not a PyTorch file (no magic number)")
    state = _Unpickler(stream, storages).load()
    for key in pickle.load(stream):
        storage = storages[key]
        count = int.from_bytes(stream.read(8), "little")
        data = stream.read(count * storage.dtype.itemsize)
        if count != storage.numel or len(data) != count * storage.dtype.itemsize:
            raise TorchFileError(f"{source}: storage {key} is truncated")
        storage.array = np.frombuffer(data, storage.dtype.newbyteorder("<"))
    return _arrays(state, source)


def _zipped(archive: zipfile.ZipFile, source: Path) -> dict[str, np.ndarray]:
    names = archive.namelist()
    pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
    if pkl is None:
        raise TorchFileError(f"{source}: zip archive without data.pkl")
    prefix = pkl[: -len("data.pkl")]
    storages: dict = {}
    state = _Unpickler(io.BytesIO(archive.read(pkl)), storages).load()
    for key, storage in storages.items():
        data = archive.read(f"{prefix}data/{key}")
        storage.array = np.frombuffer(data, storage.dtype.newbyteorder("<"))
    return _arrays(state, source)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a PyTorch state dict file, by key, as NumPy arrays."""
    path = Path(path)
    if not path.is_file():
        raise TorchFileError(f"{path}: file not found")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return _zipped(archive, path)
        with path.open("rb") as stream:
            return _legacy(stream, path)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
        if isinstance(exc, TorchFileError):
            raise
        raise TorchFileError(f"{path}: cannot read as a PyTorch state dict: {exc}") from None

"""A restricted reader for PyTorch's legacy (non-zip) serialization of a state dict, without torch.

The legacy format is a sequence of pickles followed by raw bytes: a magic number, the protocol version,
a system-info dict, the object itself (a state dict whose tensors name their storages by persistent id),
the list of storage keys in the order their bytes follow, and then for each storage an int64 element count
followed by the elements, little-endian.

Only what rebuilds tensors is accepted: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``
and the ``torch.*Storage`` type names, each mapped to a numpy stand-in. Any other global in the pickle
(a function, a class, ``os.system``) is refused with `WeightsError`: the file is data, never code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The magic number torch.save writes first in the legacy format.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

#: Storage type names -> element dtype (little-endian).
STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}

#: Largest storage accepted (elements); a bigger count is a corrupt or forged file.
MAX_STORAGE_ELEMENTS = 1 << 31


class WeightsError(ValueError):
    """A weights file that is not a plain legacy state dict of tensors."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype[Any]:
        return STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype[Any]
    size: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_rest: Any
) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise WeightsError("weights: a tensor does not point at a storage")
    return _TensorRef(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a tensor state dict needs; storages arrive as persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(f"weights: refused the global {module}.{name} (only tensors and ordered dicts are read)")

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ('storage', storage_type, key, location, size[, view_metadata])
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType):
            raise WeightsError(f"weights: unexpected persistent id {str(pid)[:80]}")
        if len(pid) > 5 and pid[5] is not None:
            raise WeightsError("weights: storage views are not supported")
        return _StorageRef(str(pid[2]), pid[1].dtype, int(pid[4]))


def _load_plain(f: io.BufferedIOBase) -> Any:
    """One pickle that must not reference any global at all (header records)."""

    class _NoGlobals(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise WeightsError(f"weights: refused the global {module}.{name} in a header record")

    return _NoGlobals(f).load()


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Read a legacy-format PyTorch state dict as numpy arrays, never running code from the file.

    Args:
        path: The ``.pth`` file (torch.save with ``_use_new_zipfile_serialization=False``).

    Returns:
        Parameter name -> array (a copy, C-contiguous, with the tensor's shape and dtype).

    Raises:
        WeightsError: Not the legacy format, a refused global, or truncated / inconsistent data.
    """
    try:
        with open(path, "rb") as f:
            return _read(f, path)
    except OSError as exc:
        raise WeightsError(f"weights: cannot read {path}: {exc.strerror or exc}") from None
    except (pickle.UnpicklingError, EOFError, struct.error, ValueError, TypeError, KeyError, IndexError) as exc:
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"weights: {path} is not a readable legacy state dict ({type(exc).__name__}: {exc})") from None


def _read(f: Any, path: Path) -> dict[str, np.ndarray]:
    if _load_plain(f) != LEGACY_MAGIC:
        raise WeightsError(f"weights: {path} is not a legacy PyTorch file (wrong magic number)")
    protocol = _load_plain(f)
    if protocol != 1001:
        raise WeightsError(f"weights: {path} has protocol version {protocol!r}, expected 1001")
    info = _load_plain(f)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise WeightsError(f"weights: {path} was not written little-endian")
    state = _RestrictedUnpickler(f).load()
    keys = _load_plain(f)
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise WeightsError(f"weights: {path} does not hold a state dict")
    refs = {name: t for name, t in state.items() if isinstance(t, _TensorRef)}
    by_key: dict[str, _StorageRef] = {t.storage.key: t.storage for t in refs.values()}
    blobs: dict[str, np.ndarray] = {}
    for key in keys:
        (count,) = struct.unpack("<q", f.read(8))
        ref = by_key.get(str(key))
        if ref is None or not 0 <= count <= MAX_STORAGE_ELEMENTS or count != ref.size:
            raise WeightsError(f"weights: {path}: storage {key!r} has an unexpected size {count}")
        nbytes = count * ref.dtype.itemsize
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise WeightsError(f"weights: {path} is truncated (storage {key!r})")
        blobs[str(key)] = np.frombuffer(data, ref.dtype)
    out: dict[str, np.ndarray] = {}
    for name, t in refs.items():
        blob = blobs.get(t.storage.key)
        if blob is None:
            raise WeightsError(f"weights: {path}: tensor {name} names a storage that is not in the file")
        out[str(name)] = _view(blob, t, name, path)
    return out


def _view(blob: np.ndarray, t: _TensorRef, name: str, path: Path) -> np.ndarray:
    if len(t.shape) != len(t.stride) or any(s < 0 for s in (*t.shape, *t.stride)) or t.offset < 0:
        raise WeightsError(f"weights: {path}: tensor {name} has an invalid shape or stride")
    last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.stride) if n > 0)
    if all(n > 0 for n in t.shape) and last >= blob.size:
        raise WeightsError(f"weights: {path}: tensor {name} reaches past its storage")
    item = blob.dtype.itemsize
    arr = np.lib.stride_tricks.as_strided(
        blob[t.offset :], shape=t.shape, strides=tuple(s * item for s in t.stride), writeable=False
    )
    return np.ascontiguousarray(arr)

"""The restricted reader of legacy PyTorch files: tensors, storages and ordered dicts only, never code."""

from __future__ import annotations

import collections
import os
import pickle
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from inspector.anomaly.backbone import WEIGHTS_SHA256, load_weights, sha256_of, weights_path
from inspector.anomaly.torch_legacy import LEGACY_MAGIC, WeightsError, read_state_dict


def _header() -> bytes:
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return pickle.dumps(LEGACY_MAGIC, 2) + pickle.dumps(1001, 2) + pickle.dumps(info, 2)


def _legacy_file(path: Path, tensors: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    """Write ``tensors`` as torch.save(..., _use_new_zipfile_serialization=False) would, without torch:
    stand-in ``torch`` modules exist only while pickling, so the globals carry torch's names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"

    def _rebuild_tensor_v2(*args: object) -> None:
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class _Storage:
        def __init__(self, key: str, n: int) -> None:
            self.key, self.n = key, n

    class _Tensor:
        def __init__(self, key: str, arr: np.ndarray) -> None:
            self.storage = _Storage(key, arr.size)
            self.shape = arr.shape
            self.stride = tuple(s // 4 for s in arr.strides)

        def __reduce__(self) -> tuple[object, ...]:
            return (_rebuild_tensor_v2, (self.storage, 0, self.shape, self.stride, False, collections.OrderedDict()))

    class _Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, _Storage):
                return ("storage", FloatStorage, obj.key, "cpu", obj.n)
            return None

    import io

    buf = io.BytesIO()
    state = collections.OrderedDict((name, _Tensor(str(i), arr)) for i, (name, arr) in enumerate(tensors.items()))
    _Pickler(buf, protocol=2).dump(state)
    keys = [str(i) for i in range(len(tensors))]
    body = b"".join(struct.pack("<q", a.size) + np.ascontiguousarray(a, "<f4").tobytes() for a in tensors.values())
    path.write_bytes(_header() + buf.getvalue() + pickle.dumps(keys, 2) + body)


def test_a_hand_written_legacy_file_reads_back_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tensors = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2), "bn.bias": np.float32([1.5, -2])}
    _legacy_file(tmp_path / "w.pth", tensors, monkeypatch)
    monkeypatch.delitem(sys.modules, "torch")
    got = read_state_dict(tmp_path / "w.pth")
    assert list(got) == list(tensors)
    for name, arr in tensors.items():
        np.testing.assert_array_equal(got[name], arr)
        assert got[name].dtype == np.float32


def test_a_global_outside_the_tensor_set_is_refused_and_never_called(tmp_path: Path) -> None:
    calls: list[str] = []
    marker = tmp_path / "ran"

    class _Evil:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    path.write_bytes(_header() + pickle.dumps({"x": _Evil()}, 2) + pickle.dumps([], 2))
    with pytest.raises(WeightsError, match="refused the global posix.system"):
        read_state_dict(path)
    assert not marker.exists() and not calls


def test_a_truncated_weights_file_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _legacy_file(tmp_path / "w.pth", {"w": np.ones((64,), np.float32)}, monkeypatch)
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[:-10])
    with pytest.raises(WeightsError, match="truncated"):
        read_state_dict(tmp_path / "cut.pth")
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04" + data[4:])
    with pytest.raises(WeightsError):
        read_state_dict(tmp_path / "zip.pth")


def test_the_shipped_efficientnet_lite0_weights_read_without_torch() -> None:
    assert sha256_of(weights_path()) == WEIGHTS_SHA256
    sd = load_weights()
    assert len(sd) == 296
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280)
    assert not any(k.endswith("_se_reduce.weight") for k in sd)  # Lite: no squeeze-excitation
    assert "torch" not in sys.modules


def test_weights_whose_sha256_differs_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "w.pth"
    data = bytearray(weights_path().read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_weights(copy)

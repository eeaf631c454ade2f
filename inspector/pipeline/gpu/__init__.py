"""NVIDIA GPU support for the TensorRT path: probing, device names, the CUDA context.

Nothing here imports pycuda or TensorRT at import time: the GPU extra is optional
and the CPU stations, the tests and CI import this package without it.

* `missing_requirements` says what a GPU feature lacks here, in words a user can act
  on ("pycuda (not installed)", "a CUDA device (none found)"); the device probe goes
  straight to the driver library with ctypes, so it works without pycuda.
* `parse_cuda_device` reads ``model.devices`` entries (``cuda:0``, ``0``, ``gpu:1``).
* `DeviceContext` holds a device's primary context (shared with TensorRT and CuPy)
  and makes it current on the calling thread for a ``with`` block: the scheduler's
  worker thread is not the thread that built the backend.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

_DEVICE = re.compile(r"^(?:(?:cuda|gpu)(?::(\d+))?|(\d+))$", re.IGNORECASE)


def parse_cuda_device(device: str | int) -> int:
    """The CUDA device index named by ``device``.

    Accepts ``"cuda:N"``, ``"gpu:N"``, ``"N"``, ``N`` and ``"cuda"``/``"gpu"`` (device 0).

    Raises:
        ValueError: Not a CUDA device name (e.g. ``"CPU"``).
    """
    if isinstance(device, int):
        if device < 0:
            raise ValueError(f"device {device}: a CUDA device index is 0 or more")
        return device
    m = _DEVICE.match(device.strip())
    if m is None:
        raise ValueError(f"device {device!r} is not a CUDA device (use cuda:0, cuda:1, ...)")
    return int(m[1] or m[2] or 0)


def module_installed(name: str) -> bool:
    """True when the top-level module ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _driver_library() -> Any:
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_device_count() -> tuple[int, str]:
    """Number of CUDA devices the driver reports, and why it is zero (empty when not).

    Uses the driver library directly (``cuInit`` + ``cuDeviceGetCount``), so it
    answers on machines without pycuda.
    """
    lib = _driver_library()
    if lib is None:
        return 0, "no NVIDIA driver (libcuda not found)"
    rc = lib.cuInit(0)
    if rc != 0:
        return 0, f"cuInit failed with CUDA error {rc}"
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0:
        return 0, f"cuDeviceGetCount failed with CUDA error {rc}"
    return count.value, "" if count.value else "the driver reports none"


def missing_requirements(modules: Sequence[str] = ("tensorrt", "pycuda")) -> list[str]:
    """What is missing for a GPU feature, one phrase per thing, in a fixed order.

    Example: ``["tensorrt (not installed)", "a CUDA device (none found)"]``.
    """
    missing = [f"{m} (not installed)" for m in modules if not module_installed(m)]
    count, _why = cuda_device_count()
    if count == 0:
        missing.append("a CUDA device (none found)")
    return missing


class DeviceContext:
    """The primary CUDA context of one device, retained while this object lives.

    Use `active` around every CUDA call (it pushes the context on the calling thread
    and pops it afterwards); `close` (or leaving ``with``) releases it.

    Args:
        index: CUDA device index.

    Raises:
        ImportError: pycuda is not installed.
    """

    def __init__(self, index: int) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.index = index
        self.device = cuda.Device(index)
        self.name: str = self.device.name()
        self.compute_capability: tuple[int, int] = tuple(self.device.compute_capability())  # type: ignore[assignment]
        self._cuda = cuda
        self._ctx: Any = self.device.retain_primary_context()

    @contextmanager
    def active(self) -> Iterator[DeviceContext]:
        """Make this context current on the calling thread for the block."""
        if self._ctx is None:
            raise RuntimeError(f"cuda:{self.index}: context already closed")
        self._ctx.push()
        try:
            yield self
        finally:
            self._cuda.Context.pop()

    def close(self) -> None:
        """Release the primary context (idempotent)."""
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.detach()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DeviceContext(cuda:{self.index}, {self.name}, sm_{self.compute_capability[0]}{self.compute_capability[1]})"


__all__ = ["DeviceContext", "cuda_device_count", "missing_requirements", "module_installed", "parse_cuda_device"]

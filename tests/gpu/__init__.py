"""Tests of the NVIDIA path: CPU-side (always run) and on-device (marked ``gpu``).

This package's fakes stand in for pycuda and TensorRT over a simulated device memory
(`FakeHeap`), so the backend's and the builder's own logic runs on the CPU. They
encode our reading of the real APIs: they check data flow, not the APIs themselves.
"""

from __future__ import annotations

import types

import numpy as np

from inspector.pipeline.gpu import kernel as K


class FakeHeap:
    BASE = 0x10000

    def __init__(self, size: int = 48 << 20) -> None:
        self.mem = np.zeros(size, np.uint8)
        self.top = self.BASE

    def alloc(self, n: int) -> int:
        addr, self.top = self.top, self.top + (n + 255) // 256 * 256
        assert self.top - self.BASE <= self.mem.size
        return addr

    def view(self, addr: int, n: int) -> np.ndarray:
        return self.mem[addr - self.BASE : addr - self.BASE + n]


class FakeAlloc(int):
    def free(self) -> None:
        pass


def fake_cuda_and_trt(heap: FakeHeap, in_dtype: type, session: object) -> tuple[types.ModuleType, types.ModuleType]:
    cuda = types.ModuleType("pycuda.driver")
    ctx = types.SimpleNamespace(push=lambda: None, detach=lambda: None)
    cuda.init = lambda: None  # type: ignore[attr-defined]
    cuda.Device = lambda i: types.SimpleNamespace(  # type: ignore[attr-defined]
        name=lambda: "Fake GPU", compute_capability=lambda: (9, 0), retain_primary_context=lambda: ctx
    )
    cuda.Context = types.SimpleNamespace(pop=lambda: None)  # type: ignore[attr-defined]
    cuda.mem_alloc = lambda n: FakeAlloc(heap.alloc(n))  # type: ignore[attr-defined]
    cuda.pagelocked_empty = lambda shape, dtype, **kw: np.zeros(shape, dtype)  # type: ignore[attr-defined]

    def htod(dst: int, src: np.ndarray, stream: object = None) -> None:
        b = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        heap.view(int(dst), b.size)[:] = b

    def dtoh(dst: np.ndarray, src: int, stream: object = None) -> None:
        b = dst.view(np.uint8).reshape(-1)
        b[:] = heap.view(int(src), b.size)

    cuda.memcpy_htod_async, cuda.memcpy_dtoh_async = htod, dtoh  # type: ignore[attr-defined]
    cuda.Stream = lambda: types.SimpleNamespace(handle=1)  # type: ignore[attr-defined]
    cuda.Event = lambda: types.SimpleNamespace(  # type: ignore[attr-defined]
        record=lambda s=None: None, synchronize=lambda: None, time_till=lambda other: 0.25
    )

    class Exec:
        def __init__(self) -> None:
            self.shape: tuple[int, ...] = ()
            self.addr: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            self.shape = tuple(shape)
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            h, w = self.shape[2:]
            return (self.shape[0], 8, sum((h // s) * (w // s) for s in (8, 16, 32)))  # YOLO anchors

        def set_tensor_address(self, name: str, addr: int) -> bool:
            self.addr[name] = addr
            return True

        def execute_async_v3(self, handle: int) -> bool:
            n = int(np.prod(self.shape)) * np.dtype(in_dtype).itemsize
            x = heap.view(self.addr["images"], n).view(in_dtype).reshape(self.shape).astype(np.float32)
            y = session.run_tensor(x)  # type: ignore[attr-defined]
            heap.view(self.addr["output0"], y.nbytes)[:] = y.view(np.uint8).reshape(-1)
            return True

    engine = types.SimpleNamespace(
        num_io_tensors=2,
        get_tensor_name=lambda i: ("images", "output0")[i],
        get_tensor_mode=lambda n: "in" if n == "images" else "out",
        get_tensor_dtype=lambda n: in_dtype if n == "images" else np.float32,
        get_tensor_profile_shape=lambda n, p: ((1, 3, 384, 640), (4, 3, 384, 640), (4, 3, 384, 640)),
        create_execution_context=Exec,
    )
    trt = types.ModuleType("tensorrt")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")  # type: ignore[attr-defined]
    trt.nptype = lambda dt: dt  # type: ignore[attr-defined]
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: engine)  # type: ignore[attr-defined]
    return cuda, trt


class FakeKernel:
    origin = "emulation"

    def __init__(self, heap: FakeHeap) -> None:
        self.heap = heap

    def launch(
        self, staging: int, items: int, out: int, b: int, w: int, h: int, pad: int, fp16: bool, s: object
    ) -> None:
        from inspector.pipeline.gpu.emulate import emulate_item

        recs = self.heap.view(items, b * K.ITEM_DTYPE.itemsize).view(K.ITEM_DTYPE)
        src = self.heap.mem[staging - FakeHeap.BASE :]
        res = np.stack([emulate_item(src, r, w, h, pad) for r in recs]).astype(np.float16 if fp16 else np.float32)
        self.heap.view(out, res.nbytes)[:] = res.view(np.uint8).reshape(-1)


def fake_builder_trt(calls: list[tuple]) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.9.0.34"  # type: ignore[attr-defined]
    trt.DataType = types.SimpleNamespace(HALF="half", FLOAT="float")  # type: ignore[attr-defined]
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="ws")  # type: ignore[attr-defined]
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")  # type: ignore[attr-defined]
    inp = types.SimpleNamespace(name="images", shape=(-1, 3, -1, -1), dtype="float")

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            calls.append(("profile", name, lo, opt, hi))

    class Config:
        int8_calibrator = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls.append(("workspace", size))

        def add_optimization_profile(self, p: Profile) -> None:
            pass

        def set_flag(self, flag: str) -> None:
            calls.append(("flag", flag))

        def set_calibration_profile(self, p: Profile) -> None:
            calls.append(("calibration profile",))

    class Builder:
        def __init__(self, logger: object) -> None:
            pass

        def create_network(self, flags: int) -> object:
            return types.SimpleNamespace(get_input=lambda i: inp)

        create_optimization_profile = Profile
        create_builder_config = Config

        def build_serialized_network(self, network: object, config: Config) -> bytes:
            cal = config.int8_calibrator
            while cal is not None and cal.get_batch(["images"]) is not None:
                pass
            calls.append(("build", inp.dtype, cal.batches_fed if cal else None))
            return b"serialized engine"

    trt.Builder = Builder  # type: ignore[attr-defined]
    trt.OnnxParser = lambda network, logger: types.SimpleNamespace(parse_from_file=lambda p: True)  # type: ignore[attr-defined]
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})  # type: ignore[attr-defined]
    return trt

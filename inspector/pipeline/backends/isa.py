"""Running on a lesser instruction set than the CPU has: oneDNN's ``ONEDNN_MAX_CPU_ISA``.

OpenVINO's CPU plugin picks its kernels through oneDNN, which honours ``ONEDNN_MAX_CPU_ISA``
(read once, when the library loads): with ``AVX2`` an AMX Xeon runs the kernels an AVX2-only
CPU (an AMD EPYC of the factory PCs) would run. What it does not change is the plugin's
default precision, which it takes from the CPU itself: bf16 where the CPU has AVX512-BF16,
and then the graph does not compile ("Supported primitive descriptors list is empty") under
the limit. `default_is_f32` says when the backend must ask for f32, as the lesser CPU would
by default.

This is an emulation of the instruction set, not of the machine: clock, caches and memory
stay the Xeon's, so its figures are labelled as such (`inspector.bench.cpu_description`:
``kind`` ``avx2-emulated``, ``max_isa``, ``cpu_isa``) and kept in a table of their own.
"""

from __future__ import annotations

import os

ENV = "ONEDNN_MAX_CPU_ISA"

#: ``--max-isa`` choices: our name -> oneDNN's, and the `inspector.bench.ISA_FLAGS` kept under it.
LIMITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "avx2": ("AVX2", ("avx2",)),
    "avx2-vnni": ("AVX2_VNNI", ("avx2", "avx_vnni")),
    "avx512": ("AVX512_CORE", ("avx2", "avx512f")),
    "avx512-vnni": ("AVX512_CORE_VNNI", ("avx2", "avx512f", "avx512_vnni")),
}

#: oneDNN's names of the limits that keep bf16 (then the CPU's own default precision stands).
_WITH_BF16 = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512",
              "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "ALL", "DEFAULT")


def active_limit() -> str | None:
    """oneDNN's name of the limit in force (``AVX2``), or None."""
    value = os.environ.get(ENV, "").strip().upper()
    return value or None


def default_is_f32() -> bool:
    """Whether the limit leaves no bf16, so that f32 is the default precision (as on such a CPU)."""
    limit = active_limit()
    return limit is not None and limit not in _WITH_BF16


def read_cpuinfo(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """The first processor's model name and flags in ``/proc/cpuinfo`` (or in ``cpuinfo``, its text);
    ``("", set())`` where it cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    model, flags = "", set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def kept_flags(flags: list[str]) -> list[str]:
    """Of a CPU's `ISA_FLAGS`, those its kernels may use under the limit."""
    limit = active_limit()
    for onednn, kept in LIMITS.values():
        if onednn == limit:
            return [f for f in flags if f in kept]
    return flags


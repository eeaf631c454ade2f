"""Shared pieces of the reliability tests: stations with fake backends, waits, DB reads."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.config import StationConfig, parse_config
from inspector.pipeline.backends.base import BatchItem, BatchOutput, SynchronousBackend
from inspector.pipeline.model_repo import ModelCard


class PacedBackend(SynchronousBackend):
    """A backend that takes ``delay_s`` per batch and reports a defect on every item when ``ng``.

    It stands in for a slow device (overload tests) or for a fast, predictable model (fault
    tests), without the cost of real inference on a shared 2-core machine.
    """

    name = "paced"

    def __init__(self, card: ModelCard, *, max_batch: int = 8, device: str = "CPU", delay_s: float = 0.0,
                 ng: bool = False) -> None:
        self.card = card
        self.max_batch = max_batch
        self.device = device
        self.delay_s = delay_s
        self.ng = ng
        self.items = 0

    def infer(self, items: Sequence[BatchItem]) -> BatchOutput:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.items += len(items)
        raw = np.zeros((len(items), 4 + len(self.card.classes), 8), np.float32)
        if self.ng:
            raw[:, :4, 0] = [160, 160, 20, 20]
            raw[:, 4, 0] = 0.95
        return BatchOutput(raw, 0.0, self.delay_s * 1000.0)

    def infer_preprocessed(self, batch_u8: np.ndarray) -> np.ndarray:  # pragma: no cover - unused
        return np.zeros((len(batch_u8), 4 + len(self.card.classes), 8), np.float32)

    def close(self) -> None:
        pass


def use_paced_backend(monkeypatch: pytest.MonkeyPatch, *, delay_s: float = 0.0, ng: bool = False) -> list[PacedBackend]:
    """Make every Station built afterwards in this test use `PacedBackend`s; returns them."""
    made: list[PacedBackend] = []

    def create(name: str, card: ModelCard, *, max_batch: int, device: str = "CPU", **_: Any) -> PacedBackend:
        be = PacedBackend(card, max_batch=max_batch, device=device, delay_s=delay_s, ng=ng)
        made.append(be)
        return be

    monkeypatch.setattr("inspector.station.create_backend", create)
    return made


def station_config(
    n_cameras: int,
    *,
    fps: float = 10.0,
    archive_dir: Path | str = "",
    size: int = 320,
    extra: str = "",
    camera_extra: str = "",
) -> StationConfig:
    """A station of ``n_cameras`` simulated cameras ``c0``, ``c1``, ..."""
    lines = ['name = "reliability"', extra, "[storage]", f'archive_dir = "{archive_dir}"', "archive_min_free_mb = 0"]
    for i in range(n_cameras):
        lines += [
            "[[cameras]]",
            f'id = "c{i}"',
            'kind = "simulated"',
            f"fps = {fps}",
            f"width = {size}",
            f"height = {size}",
            f"seed = {2_000_000 + 1000 * i}",
            "bank_size = 4",
            camera_extra,
        ]
    return parse_config("\n".join(lines) + "\n")


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> float:
    """Poll ``condition`` every 10 ms; return the seconds it took, fail after ``timeout``."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - t0


def camera_events(db: Path, camera_id: str | None = None) -> list[tuple[str, str, str, str]]:
    """``(camera_id, old_state, new_state, reason)`` rows in time order."""
    con = sqlite3.connect(db)
    try:
        sql = "SELECT camera_id, old_state, new_state, reason FROM camera_events"
        args: tuple[str, ...] = ()
        if camera_id is not None:
            sql += " WHERE camera_id = ?"
            args = (camera_id,)
        return list(con.execute(sql + " ORDER BY at, id", args))
    finally:
        con.close()


def rss_bytes() -> int:
    """This process's resident set size (``VmRSS`` of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")

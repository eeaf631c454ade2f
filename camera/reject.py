"""`RejectOutput`: a camera's digital output (SFNC DigitalIOControl) pulsed to fire the reject gate.

The output is set up once (``LineSelector=Line1``, ``LineMode=Output``,
``LineSource=UserOutput1``) and pulsed through ``UserOutputValue`` at the moment a part
reaches the gate (its trigger time plus the belt's travel to the gate), for ``pulse_ms``.
A device without those features is refused in one line.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time

from camera.features import FeatureError, FeatureTree
from camera.realtime import raise_thread_priority

log = logging.getLogger(__name__)

REQUIRED_OUTPUT_FEATURES = ("LineSelector", "LineMode", "LineSource", "UserOutputSelector", "UserOutputValue")


class RejectUnsupported(RuntimeError):
    """The camera has no usable digital output (one line, names the camera)."""


class RejectOutput:
    """Pulses one camera's user output at given times (its own thread).

    Args:
        camera_id: For messages.
        tree: The camera's feature tree.
        line: The physical line wired to the gate.
        user_output: The user output driving it.
        pulse_ms: How long the gate is driven.
    """

    def __init__(self, camera_id: str, tree: FeatureTree, *, line: str = "Line1",
                 user_output: str = "UserOutput1", pulse_ms: float = 20.0) -> None:
        present = {f.name for f in tree.features()}
        missing = [n for n in REQUIRED_OUTPUT_FEATURES if n not in present]
        if missing:
            raise RejectUnsupported(f"camera {camera_id}: no digital output for the reject gate "
                                    f"({', '.join(missing)} missing)")
        try:
            tree.set("LineSelector", line)
            tree.set("LineMode", "Output")
            tree.set("LineSource", user_output)
            tree.set("UserOutputSelector", user_output)
            tree.set("UserOutputValue", False)
        except FeatureError as exc:
            raise RejectUnsupported(f"camera {camera_id}: reject output refused: {exc}") from None
        self.camera_id = camera_id
        self.tree = tree
        self.pulse_ns = int(pulse_ms * 1e6)
        self.pulses = 0
        self._due: list[int] = []
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pulse_at(self, due_ns: int) -> None:
        """Drive the output from ``due_ns`` (perf_counter ns) for the pulse length."""
        with self._cv:
            heapq.heappush(self._due, due_ns)
            self._cv.notify()

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"reject-{self.camera_id}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify()
        t, self._thread = self._thread, None
        if t is not None:
            t.join(2.0)

    def _run(self) -> None:
        raise_thread_priority()  # a pulse is timed to the gate: ahead of busy threads (it only waits)
        while not self._stop.is_set():
            with self._cv:
                if not self._due:
                    self._cv.wait(0.1)
                    continue
                wait = (self._due[0] - time.perf_counter_ns()) / 1e9
                if wait > 0:
                    self._cv.wait(min(wait, 0.1))
                    continue
                heapq.heappop(self._due)
            self._set(True)
            self._stop.wait(self.pulse_ns / 1e9)
            self._set(False)
            self.pulses += 1

    def _set(self, value: bool) -> None:
        try:
            self.tree.set("UserOutputValue", value)
        except FeatureError as exc:  # a lost camera: the part's reject is missed, the gate report says so
            log.error("camera %s: reject output failed: %s", self.camera_id, exc)

"""The station's hand-on of a worker's results: a result event nobody listens to costs nothing per frame."""

from __future__ import annotations

from types import SimpleNamespace

from inspector.station import Station
from inspector.station_events import StationEvents
from tests.inspector.factories import make_result


class _Counting:
    """Stands in for the parts of a station that `_hand_on_frames` uses."""

    def __init__(self) -> None:
        self.added: list[object] = []
        self.handed: list[object] = []
        self.stats = SimpleNamespace(add=self.added.extend)
        self.metrics = None
        self.fan_out = SimpleNamespace(frames=self.handed.extend)
        self.events = StationEvents()


class _Signal:
    """A result event with ``listeners`` connections that records what it was asked to emit."""

    def __init__(self, listeners: int) -> None:
        self.listeners = listeners
        self.emitted: list[object] = []

    def __len__(self) -> int:
        return self.listeners

    def emit(self, value: object) -> None:
        self.emitted.append(value)


def test_results_reach_the_sinks_and_every_listener_of_the_result_event() -> None:
    st = _Counting()
    got: list[object] = []
    st.events.result_ready.connect(got.append)
    results = [make_result("cam1", 1), make_result("cam2", 2)]
    Station._hand_on_frames(st, results)  # type: ignore[arg-type]
    assert st.added == results and st.handed == results and got == results


def test_a_result_event_nobody_listens_to_is_not_emitted() -> None:
    """A headless station (no GUI, no service link) has no listener: psygnal's emit still cost ~3 us a result
    warm, several times that beside the runtime, on the completion thread."""
    st = _Counting()
    quiet, heard = _Signal(0), _Signal(1)
    results = [make_result("cam1", 1)]
    st.events = SimpleNamespace(result_ready=quiet)  # type: ignore[assignment]
    Station._hand_on_frames(st, results)  # type: ignore[arg-type]
    assert quiet.emitted == [] and st.handed == results
    st.events = SimpleNamespace(result_ready=heard)  # type: ignore[assignment]
    Station._hand_on_frames(st, results)  # type: ignore[arg-type]
    assert heard.emitted == results

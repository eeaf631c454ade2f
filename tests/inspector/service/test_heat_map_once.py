"""An NG result's anomaly heat map is computed once, though the archive, the control link and the embedded wall each
ask for it (`StationAnomaly.heat_map`)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from inspector.anomaly.station import StationAnomaly
from inspector.archive import NgArchive, heat_map_path
from inspector.pipeline.results import InspectionResult, Provenance, StageTimes, Verdict
from inspector.service.server import ControlServer


class CountingCheck:
    """Stands for a camera's `CameraAnomaly`: counts the heat maps it computes."""

    def __init__(self) -> None:
        self.computed = 0

    def heat_map(self, patch_map: np.ndarray, frame_w: int, frame_h: int, max_side: int = 160) -> np.ndarray:
        self.computed += 1
        return np.full((max_side, max_side), int(patch_map.max() * 100), np.uint8)


def _result(seq: int, level: float = 1.0, camera_id: str = "cam-a") -> InspectionResult:
    return InspectionResult(
        camera_id=camera_id, sequence=seq, acquired_at=0.0, verdict=Verdict.NG, rule="anomaly", detections=(),
        times=StageTimes(total_ms=1.0), provenance=Provenance("m", "0" * 64, "cpu", anomaly_sha256="bank"),
        frame_width=320, frame_height=320, anomaly_score=level,
        anomaly_map=np.full((10, 10), level, np.float32))


@pytest.fixture
def models() -> tuple[StationAnomaly, CountingCheck]:
    sa = StationAnomaly()
    check = CountingCheck()
    sa._by_result[("cam-a", "bank")] = check  # type: ignore[assignment]  # the one lookup heat_map makes
    return sa, check


def test_the_archive_and_the_link_share_one_heat_map_computation(models: Any, tmp_path: Path) -> None:
    sa, check = models
    r = _result(7, 1.2)
    archive = NgArchive(tmp_path / "ng")
    archive.heat_map_for = sa.heat_map
    (tmp_path / "ng").mkdir(exist_ok=True)
    assert archive._archive_heat_map(r, tmp_path / "ng" / "cam-a_7.jpg") > 0  # the archive thread, for an NG image
    server = ControlServer.__new__(ControlServer)  # only its heat map encoder is used here
    server._heat_map = sa.heat_map
    sent = server._encoded_heat_map(r)  # what the publisher thread sends with the display image
    assert check.computed == 1
    on_disk = cv2.imread(str(heat_map_path(tmp_path / "ng" / "cam-a_7.jpg")), cv2.IMREAD_GRAYSCALE)
    on_link = cv2.imdecode(np.frombuffer(base64.b64decode(sent), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(on_disk, on_link) and int(on_link[0, 0]) == 120


def test_another_result_gets_its_own_heat_map_and_a_shared_one_is_read_only(models: Any) -> None:
    sa, check = models
    a, b = _result(1, 0.5), _result(2, 0.9)
    first = sa.heat_map(a)
    assert first is not None and not first.flags.writeable  # one consumer cannot draw into another's
    assert sa.heat_map(a) is first and check.computed == 1
    assert int(sa.heat_map(b)[0, 0]) == 90 and check.computed == 2  # type: ignore[index]
    # the same camera and sequence with other scores (a camera restarted its numbering): computed anew
    again = _result(1, 0.7)
    assert int(sa.heat_map(again)[0, 0]) == 70 and check.computed == 3  # type: ignore[index]
    # another size is another map
    assert sa.heat_map(b, max_side=80).shape == (80, 80) and check.computed == 4  # type: ignore[union-attr]

"""Bad input: fuzzed config files, a corrupt or pickled model, malformed frames from a producer."""

from __future__ import annotations

import json
import math
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from camera.frame_pool import FramePool
from inspector.cli import app
from inspector.config import ConfigError, StationConfig, load_config, parse_config
from inspector.pipeline.model_repo import DEFAULT_MODEL, ModelError, load_card
from inspector.pipeline.results import Provenance
from inspector.pipeline.scheduler import CameraLane, InferenceWorker
from inspector.pipeline.verdict import VerdictRules
from inspector.station import Station
from tests.inspector.fakes import ScriptedBackend

# ---------------------------------------------------------------------------- config files
_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4), max_leaves=6)
_SECTION_KEYS = {
    "model": ["name", "backend", "devices", "threads", "iou_threshold", "precision"],
    "scheduler": ["max_batch", "max_wait_ms", "linger"],
    "storage": ["db_url", "archive_dir", "archive_format", "archive_max_age_days", "archive_max_gb",
                "archive_min_free_mb"],
    "metrics": ["port", "bind", "path"],
}
_CAMERA_KEYS = ["id", "kind", "fps", "width", "height", "mono", "seed", "bank_size", "ok_share", "pool_slots",
                "device", "serial", "device_id", "source", "loop", "settings", "colour"]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string literal is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)


@st.composite
def station_files(draw: st.DrawFn) -> str:
    """A whole station file: random sections, known and unknown keys, values of any type."""
    lines = []
    if draw(st.booleans()):
        lines.append(f"name = {_toml_value(draw(st.one_of(st.just('fuzz'), _SCALARS)))}")
    for section, keys in _SECTION_KEYS.items():
        if draw(st.booleans()):
            lines.append(f"[{section}]")
            for k in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
                lines.append(f"{k} = {_toml_value(draw(_VALUES))}")
    for _ in range(draw(st.integers(0, 3))):
        lines.append("[[cameras]]")
        fields = draw(st.dictionaries(st.sampled_from(_CAMERA_KEYS), _VALUES, max_size=6))
        if draw(st.booleans()):
            fields.setdefault("kind", draw(st.sampled_from(["simulated", "gentl", "replay", "webcam"])))
            fields.setdefault("id", draw(st.sampled_from(["a", "b", "a b", ""])))
        lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(station_files())
def test_fuzzed_station_files_parse_or_fail_with_one_line(text: str) -> None:
    try:
        cfg = parse_config(text, "fuzz.toml")
    except ConfigError as exc:
        lines = str(exc).splitlines()  # one line per problem, each naming the file
        assert lines and all(line.startswith("fuzz.toml: ") for line in lines), str(exc)
    else:
        assert isinstance(cfg, StationConfig) and cfg.cameras


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_config_file_are_a_config_error(data: bytes) -> None:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".toml") as fh:
        fh.write(data)
        fh.flush()
        try:
            load_config(Path(fh.name))
        except ConfigError as exc:
            assert all(line.startswith(fh.name) for line in str(exc).splitlines()), str(exc)


# ---------------------------------------------------------------------------- models
def _model_copy(tmp_path: Path) -> Path:
    card = load_card(DEFAULT_MODEL, verify=False)
    dst = tmp_path / "model"
    shutil.copytree(card.folder, dst)
    return dst


def _camera_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("camera-")]


def _config(model: Path | str) -> StationConfig:
    return parse_config(f'name = "m"\n[model]\nname = "{model}"\n[[cameras]]\nid = "cam"\nkind = "simulated"\n')


def test_corrupt_model_is_refused_before_anything_starts(tmp_path: Path) -> None:
    folder = _model_copy(tmp_path)
    with open(folder / "model.onnx", "r+b") as f:
        f.seek(2000)
        f.write(b"\xffbitrot\xff")
    before = _camera_threads()
    db = tmp_path / "never.db"
    with pytest.raises(ModelError, match="does not match its card"):
        Station(_config(folder), db_url=f"sqlite:///{db}")
    assert _camera_threads() == before and not db.exists()  # no camera, no database touched


def test_mismatched_model_card_is_refused(tmp_path: Path) -> None:
    folder = _model_copy(tmp_path)
    card = folder / "card.toml"
    card.write_text(card.read_text().replace("input_width = 320", 'input_width = "wide"'))
    with pytest.raises(ModelError, match="wrong type"):
        Station(_config(folder), db_url="none")


def test_pickled_model_is_never_loaded(tmp_path: Path) -> None:
    folder = _model_copy(tmp_path)
    (folder / "model.pt").write_bytes(b"\x80\x04 not unpickled")
    card = folder / "card.toml"
    card.write_text(card.read_text().replace('file = "model.onnx"', 'file = "model.pt"'))
    with pytest.raises(ModelError, match="pickled"):
        Station(_config(folder), db_url="none")


def test_cli_refuses_a_corrupt_model_with_one_line(tmp_path: Path) -> None:
    folder = _model_copy(tmp_path)
    (folder / "model.onnx").write_bytes(b"not an onnx file")
    cfg = tmp_path / "s.toml"
    cfg.write_text(f'name = "m"\n[model]\nname = "{folder}"\n[[cameras]]\nid = "cam"\nkind = "simulated"\n')
    res = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--duration", "1", "--db", "none"])
    assert res.exit_code == 2
    line = res.output.strip()
    assert "\n" not in line and "does not match its card" in line and "Traceback" not in line


# ---------------------------------------------------------------------------- frames
def _u8(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.uint8)


@pytest.mark.parametrize(
    ("case", "image", "fmt"),
    [
        ("zero size", _u8(0, 0), "Mono8"),
        ("zero rows", _u8(0, 64, 3), "BGR8"),
        ("one pixel", _u8(1, 1), "Mono8"),
        ("flat buffer, no rows", _u8(64 * 48), "Mono8"),
        ("rows lost their channel axis (wrong stride)", _u8(48, 64 * 3 - 1), "BGR8"),
        ("channels do not match the format", _u8(48, 64, 2), "Mono8"),
        ("16-bit pixels", np.zeros((48, 64), np.uint16), "Mono8"),
        ("4-D", _u8(2, 48, 64, 3), "BGR8"),
        ("unknown pixel format", _u8(48, 64), "YUV422_8"),
    ],
)
def test_malformed_frames_are_counted_skipped_and_accounted(case: str, image: np.ndarray, fmt: str) -> None:
    pool = FramePool("cam", 4)
    freed: list[int] = []
    pool.publish_external(image, 1, on_free=lambda: freed.append(1), pixel_format=fmt)
    lane = CameraLane("cam", pool, VerdictRules(), Provenance("fake", "0" * 64, "fake"), tiling=False)
    backend = ScriptedBackend()
    results: list[object] = []
    InferenceWorker(0, backend, [lane], results.extend).process([(lane, pool.claim())])  # type: ignore[list-item]
    c = pool.snapshot()
    assert backend.batches == [] and results == [], case
    assert (c.received, c.invalid, c.dropped, c.inspected, c.in_flight) == (1, 1, 1, 0, 0), case
    pool.flush()
    assert freed == [1]  # the producer's buffer went back


def test_gentl_buffer_with_a_wrong_line_stride_is_counted_and_requeued() -> None:
    pytest.importorskip("harvesters")
    from camera.gentl import GenTLCamera
    from camera.gentl_system import GenTLSystem

    cam = GenTLCamera("cam", GenTLSystem([]), serial="0")
    data = np.zeros(3 * 15, np.uint8)  # 3 lines of 4 RGB8 pixels + 3 padding bytes, announced as 2
    component = SimpleNamespace(data=data, width=4, height=3, data_format="RGB8", x_padding=2)
    queued: list[int] = []
    buffer = SimpleNamespace(
        payload=SimpleNamespace(components=[component]),
        module=SimpleNamespace(is_complete=lambda: True),
        queue=lambda: queued.append(1),
    )
    cam._acquirer = SimpleNamespace(try_fetch=lambda timeout: buffer)
    cam._armed = True
    assert cam._acquire_once() is False
    c = cam.pool.snapshot()
    assert (c.invalid, c.received) == (1, 0) and queued == [1]

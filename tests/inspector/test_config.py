from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.config import ConfigError, builtin_stations, load_config, load_station, parse_config

MINIMAL = """
name = "t"
[[cameras]]
id = "a"
kind = "simulated"
"""


def test_builtin_stations_load() -> None:
    assert {"demo", "viky-demo"} <= set(builtin_stations())
    demo = load_station("demo")
    assert len(demo.cameras) == 8 and all(c.kind == "simulated" for c in demo.cameras)
    viky = load_station("viky-demo")
    assert sum(c.kind == "gentl" for c in viky.cameras) == 3 and len(viky.cameras) == 8


def test_minimal_config_gets_defaults() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.model.backend == "openvino" and cfg.cameras[0].fps == 5.0


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (MINIMAL + "colour = 'red'\n", "cameras.0.colour", "unknown key"),
        (MINIMAL.replace('name = "t"', 'name = "t"\nbogus = 1'), "bogus", "unknown key"),
        (MINIMAL + "fps = 'fast'\n", "cameras.0.fps", "valid number"),
        (MINIMAL + "fps = -1\n", "cameras.0.fps", "greater than or equal"),
        (MINIMAL + "width = 10\n", "cameras.0.width", "greater than or equal"),
        (MINIMAL + "[cameras.verdict]\ndefault_threshold = 1.5\n", "cameras.0.verdict.default_threshold", "less than"),
        (MINIMAL + "[cameras.verdict]\nroi = [10, 10, 5, 5]\n", "cameras.0.verdict.roi", "x2 > x1"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "webcam"'), "cameras.0", "kind"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "gentl"'), "cameras.0", "serial or device_id"),
        (MINIMAL.replace('id = "a"', 'id = "a b"'), "cameras.0.id", "pattern"),
        (MINIMAL + '[[cameras]]\nid = "a"\nkind = "simulated"\n', "(top level)", "used twice"),
        (MINIMAL + '[[cameras]]\nid = "b"\n', "cameras.1", "kind is missing"),
        ('name = "t"\ncameras = []\n', "cameras", "at least 1"),
        (MINIMAL + "[model]\nbackend = 'tflite'\n", "model.backend", "openvino"),
    ],
)
def test_bad_configs_name_the_field(text: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "station.toml")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"station.toml: {field}:"), msg
    assert message in msg


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("name = ", "x.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown 'nope'"):
        load_station("nope")


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["id", "kind", "fps", "width", "height", "mono", "seed", "pool_slots", "device", "colour"]),
        st.one_of(st.none(), st.integers(-10, 10_000), st.floats(allow_nan=True), st.text(max_size=8), st.booleans()),
        max_size=6,
    )
)
def test_fuzzed_camera_tables_either_parse_or_raise_config_error(table: dict) -> None:
    import tomllib

    lines = ['name = "fuzz"', "[[cameras]]"]
    for k, v in table.items():
        if v is None:
            continue
        if isinstance(v, bool):
            lit = "true" if v else "false"
        elif isinstance(v, str):
            lit = '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        elif isinstance(v, float) and v != v:
            lit = "nan"
        elif isinstance(v, float) and v in (float("inf"), float("-inf")):
            lit = "inf" if v > 0 else "-inf"
        else:
            lit = repr(v)
        lines.append(f"{k} = {lit}")
    text = "\n".join(lines) + "\n"
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # control characters etc.: not a TOML document
    try:
        cfg = parse_config(text, "fuzz.toml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml: ") and "\n" not in str(exc)
    else:
        assert cfg.cameras[0].id


@pytest.mark.parametrize(
    ("verdict_toml", "card_threshold", "expected"),
    [
        ("", 0.15, 0.15),  # no camera default: the model's calibrated threshold
        ("", None, 0.35),  # neither: the house default
        ("[cameras.verdict]\ndefault_threshold = 0.5\n", 0.15, 0.5),  # the camera's own wins
    ],
)
def test_default_threshold_falls_back_to_the_model_card(verdict_toml: str, card_threshold, expected: float) -> None:
    cfg = parse_config(MINIMAL + verdict_toml)
    assert cfg.cameras[0].verdict.rules(card_threshold).default_threshold == expected

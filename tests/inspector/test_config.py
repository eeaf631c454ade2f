from __future__ import annotations

import math
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
    line = load_station("line-demo")
    assert line.line.mode == "triggered" and line.line.parts_per_min == 300
    assert len(line.cameras) == 8 and sum(c.mono for c in line.cameras) == 2  # type: ignore[union-attr]
    assert len({c.position_mm for c in line.cameras}) == 4  # pairs along the belt


def test_streams_from_a_command_line_follow_the_config_rule() -> None:
    from inspector.config import parse_streams

    assert parse_streams("auto") == "auto" and parse_streams("0") == 0 and parse_streams("2") == 2
    for bad in ("fast", "65", "-1", "2.5", ""):
        with pytest.raises(ValueError, match='"auto" or a whole number from 0 to 64'):
            parse_streams(bad)


def test_minimal_config_gets_defaults() -> None:
    cfg = parse_config(MINIMAL)
    assert cfg.model.backend == "openvino" and cfg.cameras[0].fps == 5.0
    # one stream while the runtime is idle, two under load: four batches keep one queued behind the two
    # streams while the oldest is decided
    assert cfg.model.streams == "auto" and cfg.scheduler.in_flight == 4
    assert parse_config(MINIMAL + "[model]\nstreams = 2\n").model.streams == 2


def test_a_frame_pool_holds_the_batches_in_flight_the_pending_frame_and_the_next() -> None:
    assert parse_config(MINIMAL + "pool_slots = 6\n").cameras[0].pool_slots == 6
    assert parse_config(MINIMAL + "pool_slots = 5\n[scheduler]\nin_flight = 3\n").cameras[0].pool_slots == 5
    assert parse_config(MINIMAL + "pool_slots = 3\n[scheduler]\nin_flight = 1\n").scheduler.in_flight == 1


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (MINIMAL + "colour = 'red'\n", "cameras[0].colour", "unknown key"),
        (MINIMAL.replace('name = "t"', 'name = "t"\nbogus = 1'), "bogus", "unknown key"),
        (MINIMAL + "fps = 'fast'\n", "cameras[0].fps", "valid number"),
        (MINIMAL + "fps = -1\n", "cameras[0].fps", "greater than or equal"),
        (MINIMAL + "width = 10\n", "cameras[0].width", "greater than or equal"),
        (MINIMAL + "[cameras.verdict]\ndefault_threshold = 1.5\n", "cameras[0].verdict.default_threshold", "less than"),
        (MINIMAL + "[cameras.verdict]\nroi = [10, 10, 5, 5]\n", "cameras[0].verdict.roi", "x2 > x1"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "webcam"'), "cameras[0]", "kind"),
        (MINIMAL.replace('kind = "simulated"', 'kind = "gentl"'), "cameras[0]", "serial or device_id"),
        (MINIMAL.replace('id = "a"', 'id = "a b"'), "cameras[0].id", "letters, digits"),
        (MINIMAL + '[[cameras]]\nid = "a"\nkind = "simulated"\n', "(top level)", "used twice"),
        (MINIMAL + '[[cameras]]\nid = "b"\n', "cameras[1]", "kind is missing"),
        ('name = "t"\ncameras = []\n', "cameras", "at least 1"),
        (MINIMAL + "[model]\nbackend = 'tflite'\n", "model.backend", "openvino"),
        (MINIMAL + "[model]\nstreams = 'fast'\n", "model.streams", '"auto" or a whole number from 0 to 64'),
        (MINIMAL + "[model]\nstreams = -1\n", "model.streams", '"auto" or a whole number'),
        (MINIMAL + "[model]\nstreams = true\n", "model.streams", '"auto" or a whole number'),
        (MINIMAL + "pool_slots = 5\n", "(top level)", "cameras[0].pool_slots = 5 cannot hold 6 frames"),
        (MINIMAL + "pool_slots = 5\n[scheduler]\nin_flight = 4\n", "(top level)", "scheduler.in_flight = 4"),
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
        elif isinstance(v, float) and math.isnan(v):
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
        lines = str(exc).splitlines()
        assert lines and all(line.startswith("fuzz.toml: ") for line in lines), str(exc)
        assert len(lines) == len(set(lines))  # one line per problem, none twice
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


# ---------------------------------------------------------------- issue 12, items 9-11
@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ("[cameras.verdict]\nmin_area_px = inf\n", "cameras[0].verdict.min_area_px", "finite"),
        ("[cameras.verdict]\nmin_area_px = nan\n", "cameras[0].verdict.min_area_px", "finite"),
        ("[cameras.verdict]\nmin_area_px = 1e12\n", "cameras[0].verdict.min_area_px", "less than"),
        ("[cameras.verdict]\ndefault_threshold = nan\n", "cameras[0].verdict.default_threshold", "finite"),
        ("[cameras.verdict]\nclass_thresholds = { scratch = nan }\n",
         "cameras[0].verdict.class_thresholds.scratch", "finite"),
        ("[cameras.verdict]\nroi = [0, 0, inf, 10]\n", "cameras[0].verdict.roi[2]", "finite"),
        ("[cameras.tiling]\nmin_defect_px = 1e-300\n", "cameras[0].tiling.min_defect_px", "greater than or equal to 1"),
        ("[cameras.tiling]\nmin_resolvable_px = 0.001\n", "cameras[0].tiling.min_resolvable_px", "greater than or equal to 1"),
        ("fps = true\n", "cameras[0].fps", "must be a number, not a boolean"),
        ("fps = inf\n", "cameras[0].fps", "finite"),
        ("pool_slots = true\n", "cameras[0].pool_slots", "must be a number, not a boolean"),
        ("width = false\n", "cameras[0].width", "must be a number, not a boolean"),
        ("ok_share = true\n", "cameras[0].ok_share", "must be a number, not a boolean"),
    ],
)
def test_values_that_switch_inspection_off_are_refused(extra: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL + extra, "demo.toml")
    msg = str(info.value)
    assert msg.startswith(f"demo.toml: {field}: "), msg
    assert message in msg and "\n" not in msg


@pytest.mark.parametrize("section", ["[scheduler]\nmax_wait_ms = nan\n", "[storage]\narchive_max_gb = inf\n",
                                     "[model]\nthreads = true\n", "[metrics]\nport = true\n"])
def test_non_finite_and_boolean_numbers_are_refused_in_every_section(section: str) -> None:
    with pytest.raises(ConfigError):
        parse_config(MINIMAL.replace('name = "t"\n', 'name = "t"\n' + section), "demo.toml")


def test_archive_dir_naming_a_file_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "ng.jpg"
    a_file.write_bytes(b"x")
    for target in (a_file, a_file / "sub"):
        text = f'name = "t"\n[storage]\narchive_dir = "{target}"\n' + MINIMAL.replace('name = "t"\n', "")
        with pytest.raises(ConfigError) as info:
            parse_config(text, "demo.toml")
        msg = str(info.value)
        assert msg.startswith("demo.toml: storage.archive_dir: ") and str(a_file) in msg and "not a folder" in msg, msg
    ok_dir = tmp_path / "ng"  # missing folders are fine: the archive creates them
    text = f'name = "t"\n[storage]\narchive_dir = "{ok_dir}"\n' + MINIMAL.replace('name = "t"\n', "")
    assert parse_config(text).storage.archive_dir == str(ok_dir)


def test_every_problem_is_listed_one_per_line() -> None:
    text = """
name = "t"
[[cameras]]
id = "a"
kind = "simulated"
fps = true
[[cameras]]
id = "b"
kind = "simulated"
width = 10
colour = "red"
[[cameras]]
id = "c"
kind = "simulated"
[cameras.verdict]
min_area_px = inf
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "demo.toml")
    lines = str(info.value).splitlines()
    assert "more)" not in str(info.value)
    assert lines == [
        "demo.toml: cameras[0].fps: must be a number, not a boolean",
        "demo.toml: cameras[1].width: Input should be greater than or equal to 64",
        "demo.toml: cameras[1].colour: unknown key",
        "demo.toml: cameras[2].verdict.min_area_px: Input should be a finite number",
    ]


def test_cli_prints_every_config_problem_without_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inspector.cli import app

    cfg = tmp_path / "demo.toml"
    cfg.write_text('name = "t"\n[[cameras]]\nid = ".."\nkind = "simulated"\nfps = true\n')
    res = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--duration", "1", "--db", "none"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in res.output
    assert lines[0].startswith(f"inspector: {cfg}: cameras[0].id: ")
    assert lines[1] == f"{cfg}: cameras[0].fps: must be a number, not a boolean"


@pytest.mark.parametrize("bad_id", ["..", ".", ".hidden", "-x", "_", "a/b", "a\\b", "x" * 65, "a\u00e9"])
def test_camera_ids_that_could_leave_a_folder_are_refused(bad_id: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL.replace('id = "a"', f'id = "{bad_id}"'), "demo.toml")
    assert str(info.value).startswith("demo.toml: cameras[0].id: "), str(info.value)


@pytest.mark.parametrize("good_id", ["a", "line-cam1", "Cam_2.left", "0", "x" * 64])
def test_safe_camera_ids_are_accepted(good_id: str) -> None:
    assert parse_config(MINIMAL.replace('id = "a"', f'id = "{good_id}"')).cameras[0].id == good_id


@pytest.mark.parametrize("bad_name", ["..", "../x", "a/b", ""])
def test_station_names_that_could_leave_a_folder_are_refused(bad_name: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL.replace('name = "t"', f'name = "{bad_name}"'), "demo.toml")
    assert str(info.value).startswith("demo.toml: name: "), str(info.value)

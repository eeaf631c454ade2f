"""A triggered station publishing its parts to a real mosquitto: every part, once, in trigger order."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from inspector.config import ConfigError, parse_config
from inspector.ops.metrics import StationMetrics
from inspector.pipeline.results import PartResult
from inspector.plant.messages import part_schema
from inspector.station import Station
from tests.inspector.line.test_line_station import line_config
from tests.inspector.plant.conftest import Broker, Subscriber

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the dev extra) validates the messages")


def mqtt_station(broker: Broker, tmp_path: Path, **keys: str) -> Station:
    extra = "".join(f"{k} = {v}\n" for k, v in keys.items())
    text = line_config() + f'\n[mqtt]\nbroker = "127.0.0.1:{broker.port}"\nprefix = "plant"\n{extra}'
    return Station(parse_config(text), db_url=f"sqlite:///{tmp_path / 'results.db'}", archive=False)


def _run(st: Station, seconds: float, during: object = None) -> list[PartResult]:
    parts: list[PartResult] = []
    st.events.part_ready.connect(parts.append)  # the ordered part stream, as every part sink gets it
    with st:
        if callable(during):
            during()
        time.sleep(seconds)
    return parts


def test_every_part_once_in_trigger_order_with_schema_valid_messages(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port, "plant/line-test/#")
    st = mqtt_station(broker, tmp_path)
    parts = _run(st, 3.0)
    sub.wait(lambda: len(sub.on("/part")) >= len(parts), 10, "every part")
    msgs = [json.loads(m.payload) for m in sub.on("/part")]
    assert len(parts) >= 15
    assert [m["part_id"] for m in msgs] == [p.part_id for p in parts], "exactly once each, in the stream's order"
    assert [m["trigger_id"] for m in msgs] == sorted(m["trigger_id"] for m in msgs)
    validator = jsonschema.Draft202012Validator(part_schema(), format_checker=jsonschema.FormatChecker())
    for m, p in zip(msgs, parts):
        validator.validate(m)
        assert (m["verdict"], m["reason"]) == (p.verdict.value, p.reason)
        assert [c["id"] for c in m["cameras"]] == ["cam1", "cam2", "cam3"]
        assert m["models"][0]["sha256"] == st.card.sha256 and m["station"] == "line-test"
    rep = st.report()["mqtt"]
    assert (rep["published"], rep["dropped"], rep["outbox_depth"]) == (len(parts), 0, 0)
    assert sub.on("/availability")[-1].payload == b"offline"
    states = [json.loads(m.payload)["state"] for m in sub.on("/state")]
    assert "running" in states and states[-1] == "stopped"
    sub.close()


def test_broker_stopped_mid_run_every_part_arrives_in_order(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port, "plant/line-test/part")
    st = mqtt_station(broker, tmp_path)

    def outage() -> None:
        time.sleep(1.5)
        broker.stop()
        time.sleep(4.0)  # ~40 parts at 600 parts/min wait in the outbox
        broker.start()

    parts = _run(st, 2.0, during=outage)
    ids = [p.part_id for p in parts]
    sub.wait(lambda: set(ids) <= {json.loads(m.payload)["part_id"] for m in sub.on("/part")}, 20, "every part")
    got = [json.loads(m.payload)["part_id"] for m in sub.on("/part")]
    # QoS 1: a message in flight as the broker stopped may come twice (a redelivery); none lost, none out of order
    assert list(dict.fromkeys(got)) == ids
    rep = st.report()["mqtt"]
    assert rep["outbox_peak"] >= 20, rep
    assert rep["dropped"] == 0 and rep["undelivered_at_stop"] == 0 and rep["disconnects"] >= 1
    assert rep["published"] == len(parts)
    scraped = {line.split(" ")[0]: float(line.split(" ")[1]) for line in
               StationMetrics(st).render().decode().splitlines() if line.startswith("inspector_mqtt_")}
    assert scraped["inspector_mqtt_outbox_peak"] == rep["outbox_peak"]
    assert scraped["inspector_mqtt_published_total"] == len(parts) and scraped["inspector_mqtt_dropped_total"] == 0
    sub.close()


def test_mqtt_config_keys_and_refusals(tmp_path: Path) -> None:
    base = line_config()
    cfg = parse_config(base + '\n[mqtt]\nbroker = "broker.plant:8883"\ntls = true\nqos = 2\nusername = "st"\n'
                              'password_env = "X"\n')
    assert cfg.mqtt.broker == "broker.plant:8883" and cfg.mqtt.qos == 2
    assert parse_config(base).mqtt.broker is None  # off unless configured
    for text, msg in (
        ('qos = 0', "mqtt.qos"),
        ('broker = "h:99999"', "mqtt: 'h:99999': expected"),
        ('broker = "h"\nusername = "u"\npassword = "p"\npassword_env = "P"', "set one of them"),
        ('broker = "h"\npassword = "p"', "a password needs a username"),
        (f'broker = "h"\nca_file = "{tmp_path}"', "is not a file"),
        (f'broker = "h"\nca_file = "{__file__}"', "set mqtt.tls = true"),
        ('brokr = "h"', "mqtt.brokr: unknown key"),
    ):
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
            parse_config(base + "\n[mqtt]\n" + text + "\n", "line.toml")


def test_run_with_mqtt_option_publishes_and_reports(broker: Broker, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from inspector.cli import app

    cfg = tmp_path / "line.toml"
    cfg.write_text(line_config())
    report = tmp_path / "report.json"
    sub = Subscriber(broker.port, "inspector/line-test/part")
    res = CliRunner().invoke(app, ["run", "--headless", "--config", str(cfg), "--db", f"sqlite:///{tmp_path / 'r.db'}",
                                   "--mqtt", f"127.0.0.1:{broker.port}", "--duration", "2", "--quiet",
                                   "--report", str(report)])
    assert res.exit_code == 0, res.output
    rep = json.loads(report.read_text())
    sub.wait(lambda: len(sub.on("/part")) >= rep["mqtt"]["published"], 10, "the published parts")
    assert rep["mqtt"]["published"] == rep["parts"]["verdicts"] > 0
    assert [json.loads(m.payload)["trigger_id"] for m in sub.on("/part")] == sorted(
        json.loads(m.payload)["trigger_id"] for m in sub.on("/part"))
    sub.close()

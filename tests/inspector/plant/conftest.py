"""A real MQTT broker for the plant tests: Debian's mosquitto on a free 127.0.0.1 port.

Each test gets its own broker process with a generated config file (persistence in the test's
folder, so a subscriber's session and its queued messages survive a broker restart), never the
system service. Without mosquitto (``apt-get install mosquitto``) the tests skip and say so.
"""

from __future__ import annotations

import collections
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process; `stop` and `start` again keep its port and its persistence file."""

    def __init__(self, folder: Path, extra_conf: str = "", listener_conf: str = "") -> None:
        self.folder = folder
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{listener_conf or 'allow_anonymous true'}\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "max_queued_messages 100000\n"
            "user root\n"
            f"log_dest file {self.log}\n"
            "log_type all\n"
            f"{extra_conf}"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err} {self.log.read_text() if self.log.exists() else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        """A clean stop (SIGTERM): mosquitto saves its sessions and queued messages."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    folder = tmp_path / "broker"
    folder.mkdir()
    b = Broker(folder)
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A plain paho client (a plant's consumer) that records what it receives, QoS 1.

    ``persistent`` keeps its session on the broker (clean_session false), so messages published
    while it is away, or while the broker restarts, are queued for it.
    """

    def __init__(self, port: int, topic: str, client_id: str = "test-subscriber", persistent: bool = True,
                 tls: dict[str, str] | None = None, auth: tuple[str, str] | None = None, qos: int = 1) -> None:
        self.topic = topic
        self.qos = qos
        self.messages: list[paho.MQTTMessage] = []
        self.cond = threading.Condition()
        self.connects = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        self.client.reconnect_delay_set(0.1, 0.5)
        if tls:
            self.client.tls_set(**tls)
        if auth:
            self.client.username_pw_set(*auth)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self.wait(lambda: self.connects > 0, 5, "the subscriber's connection")

    def _on_connect(self, client: paho.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        client.subscribe(self.topic, qos=self.qos)
        with self.cond:
            self.connects += 1
            self.cond.notify_all()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def on(self, topic_suffix: str) -> list[paho.MQTTMessage]:
        with self.cond:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def wait(self, condition: collections.abc.Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self.cond.wait(min(left, 0.1))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

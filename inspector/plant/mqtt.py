"""`MqttPublisher`: part results, the station's state and its availability to an MQTT broker.

Topics (``<prefix>/<station>/...``):

- ``part``: one JSON message per decided part (`inspector.plant.messages.part_message`), in
  trigger order, QoS 1 (or 2), not retained;
- ``state``: the station's state and health, retained, on every change;
- ``availability``: ``online`` once connected, ``offline`` at a clean stop and as the last will
  (the broker publishes it when the connection drops), retained.

Nothing is lost through a broker outage, by design: every message waits in a bounded outbox
until the broker acknowledged it (PUBACK), and one thread does everything with the client
(connect, publish, read acknowledgements), so a resend after a reconnect always comes before
anything newer. At most ``inflight`` messages are unacknowledged at once and paho-mqtt's
own queue is never used: paho 2.x sends a new publish at once while older ones still wait in
its queue for an inflight slot (its order holds only inside that queue), and resends its
unacknowledged messages from the CONNACK handler after ``on_connect`` has run, so a publish
from another thread could overtake them. A part that finds the outbox full is dropped and
counted (its message number is then missing from the sequence).

QoS 1 is at least once: a message whose acknowledgement was lost in an outage comes again
(same ``part_id`` and ``sequence``; a consumer keeps the first). QoS 2 is exactly once, also
across a broker restart with persistence: the client then keeps its session on the broker
(clean session off), so an interrupted handshake is finished, not repeated.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol, Self

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from inspector.pipeline.results import PartResult
from inspector.plant.messages import encode, part_message, state_message

if TYPE_CHECKING:  # pragma: no cover
    from inspector.config import StationConfig
    from inspector.ops.health import Health

log = logging.getLogger(__name__)

#: How long one network wait lasts while connected: a new part waits at most this long.
POLL_S = 0.05
#: Reconnect back-off: first wait, and the longest.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 2.0
#: At a stop with the broker away, how long the outbox waits for it to come back.
STOP_RECONNECT_S = 5.0
#: How often the state (running, paused) is looked at; the health only every ``state_interval_s``.
STATE_POLL_S = 0.5


class MqttError(ValueError):
    """Settings a publisher cannot use (one line naming the key)."""


@dataclasses.dataclass(frozen=True)
class MqttSettings:
    """Where and how to publish (``[mqtt]`` in the station config)."""

    host: str
    port: int = 1883
    prefix: str = "inspector"
    client_id: str = ""  # empty: "inspector-<station>"
    qos: int = 1
    outbox_size: int = 10_000
    inflight: int = 20
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    state_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if self.qos not in (1, 2):
            raise MqttError(f"mqtt.qos: {self.qos} (1 or 2: a message is kept until the broker acknowledged it)")
        if any(c in self.prefix for c in "+#\0") or self.prefix.startswith("/") or self.prefix.endswith("/"):
            raise MqttError(f"mqtt.prefix: {self.prefix!r} is not a topic prefix (no '+', '#', leading or trailing '/')")


class StationStatus(Protocol):
    """What the state message reads of the station."""

    @property
    def running(self) -> bool: ...

    @property
    def paused(self) -> bool: ...

    def health(self) -> Health: ...


@dataclasses.dataclass
class _Sent:
    """A message handed to the client and not yet acknowledged."""

    topic: str
    payload: bytes
    part: bool


class MqttPublisher:
    """A part sink that publishes to an MQTT broker (see the module's docstring).

    Args:
        settings: Broker, topics, credentials and limits.
        station: The station's name (the topic's second level; no '/', '+' or '#').
        status: The station, for the retained state message (None: parts and availability only).
    """

    name = "mqtt"

    def __init__(self, settings: MqttSettings, station: str, status: StationStatus | None = None) -> None:
        if any(c in station for c in "/+#\0"):
            raise MqttError(f"mqtt: the station name {station!r} cannot be a topic level (no '/', '+' or '#')")
        self.settings = settings
        self.station = station
        self._status = status
        base = f"{settings.prefix}/{station}" if settings.prefix else station
        self.topic_part, self.topic_state, self.topic_availability = f"{base}/part", f"{base}/state", f"{base}/availability"
        self._lock = threading.Lock()
        self._outbox: collections.deque[tuple[int, PartResult]] = collections.deque()  # (sequence, part)
        self._sent: collections.OrderedDict[int, _Sent] = collections.OrderedDict()  # mid -> message, oldest first
        self._parts_sent = 0  # parts among _sent: with the outbox, the depth
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = False
        self._backoff = RETRY_FIRST_S
        self._stop_deadline = 0.0
        self._pending_state: bytes | None = None
        self._online_due = False
        self._state_due = True
        self._last_state: tuple[str, ...] | None = None
        self._health: tuple[str, str] | None = None
        self._was_running = False
        self._closing = False
        self._recipe = ""
        self._submitted = 0  # every part offered, dropped ones too: their numbers are the gaps
        self._refused_reason = ""
        self.accepted = 0
        self.published = 0  # parts acknowledged by the broker
        self.dropped = 0  # parts refused: outbox full
        self.undelivered_at_stop = 0
        self.outbox_peak = 0
        self.connects = 0
        self.disconnects = 0
        self.state_messages = 0
        self._client = self._make_client()

    # ------------------------------------------------------------------ the sink
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sink-mqtt", daemon=True)
            self._thread.start()

    def submit_part(self, part: PartResult) -> bool:
        """Queue a decided part (never blocks); False, and counted, when the outbox is full."""
        with self._lock:
            self._submitted += 1
            depth = len(self._outbox) + self._parts_sent
            if depth >= self.settings.outbox_size:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("mqtt: outbox full (%d messages): part %s dropped (%d so far)",
                                self.settings.outbox_size, part.part_id, self.dropped)
                return False
            self._outbox.append((self._submitted, part))
            self.accepted += 1
            self.outbox_peak = max(self.outbox_peak, depth + 1)
        return True

    def state_changed(self) -> None:
        """The station's state may have changed (paused, resumed): publish it soon."""
        self._state_due = True
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Send what the outbox holds (within ``timeout``), then ``offline``, and disconnect."""
        t = self._thread
        if t is None:
            return
        self._stop_deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake.set()
        t.join(timeout + 5.0)
        if t.is_alive():
            log.warning("mqtt: publisher did not stop within %.0f s", timeout)
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def outbox_depth(self) -> int:
        """Parts not yet acknowledged by the broker (waiting, or sent and unacknowledged)."""
        with self._lock:
            return len(self._outbox) + self._parts_sent

    @property
    def connected(self) -> bool:
        return self._connected

    def stats(self) -> dict[str, float]:
        return {
            "connected": int(self._connected),
            "accepted": self.accepted,
            "published": self.published,
            "dropped": self.dropped,
            "outbox_depth": self.outbox_depth,
            "outbox_peak": self.outbox_peak,
            "outbox_size": self.settings.outbox_size,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "state_messages": self.state_messages,
            "undelivered_at_stop": self.undelivered_at_stop,
        }

    # ------------------------------------------------------------------ the client
    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id or f"inspector-{self.station}",
                             protocol=paho.MQTTv311, clean_session=s.qos == 1)
        # our own window: paho's queue is never used (see the module's docstring)
        client.max_inflight_messages_set(s.inflight + 2)
        client.max_queued_messages_set(0)
        client.will_set(self.topic_availability, "offline", qos=s.qos, retain=True)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            try:
                client.tls_set(ca_certs=s.ca_file or None, certfile=s.cert_file or None, keyfile=s.key_file or None,
                               cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError) as exc:
                raise MqttError(f"mqtt: TLS files cannot be used: {exc}") from None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
        return client

    # paho calls these from `loop()`, on the publisher's own thread
    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            if str(reason) != self._refused_reason:
                log.error("mqtt: %s:%d refused the connection: %s", self.settings.host, self.settings.port, reason)
            self._refused_reason = str(reason)
            return
        self._refused_reason = ""
        self._backoff = RETRY_FIRST_S
        self._connected = True
        self.connects += 1
        self._online_due = self._state_due = True
        self._last_state = None  # a broker that lost its retained messages gets the state again
        log.info("mqtt: connected to %s:%d (%d parts waiting)", self.settings.host, self.settings.port,
                 self.outbox_depth)

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self._connected and not self._closing:  # our own DISCONNECT at the stop is no loss
            self.disconnects += 1
            if not self._stop.is_set():
                log.warning("mqtt: connection to %s:%d lost (%s); parts wait in the outbox",
                            self.settings.host, self.settings.port, reason)
        self._connected = False

    def _on_publish(self, _c: Any, _u: Any, mid: int, _reason: Any, _props: Any) -> None:
        sent = self._sent.pop(mid, None)
        if sent is not None and sent.part:
            with self._lock:
                self._parts_sent -= 1
            self.published += 1

    # ------------------------------------------------------------------ the publisher's thread
    def _run(self) -> None:
        retry_at = 0.0
        gave_up_at: float | None = None
        state_at = health_at = 0.0
        while True:
            now = time.monotonic()
            if self._stop.is_set():
                if self._connected and not self._sent and not self._outbox:
                    break
                deadline = self._stop_deadline
                if not self._connected:
                    gave_up_at = gave_up_at or now + min(STOP_RECONNECT_S, max(0.0, deadline - now))
                if now >= deadline or (gave_up_at is not None and now >= gave_up_at):
                    break
            if not self._connected:
                if now >= retry_at:  # every attempt waits its back-off: a refusing broker is not hammered
                    retry_at, self._backoff = now + self._backoff, min(RETRY_MAX_S, self._backoff * 2)
                    self._connect()
                if self._client.socket() is None:  # nothing to read: wait for the next try
                    self._wake.wait(max(0.0, min(retry_at - time.monotonic(), 0.5)))
                    self._wake.clear()
                    continue
            rc = self._client.loop(timeout=POLL_S)  # acknowledgements, CONNACK (and resends), keepalive
            if rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._connected = False
            if self._connected:
                if self._state_due or now - state_at >= STATE_POLL_S:
                    read_health = self._state_due or now - health_at >= self.settings.state_interval_s
                    self._refresh_state(health=read_health)
                    state_at, health_at = now, (now if read_health else health_at)
                self._send()
        self._finish()

    def _connect(self) -> None:
        try:
            self._client.reconnect()  # TCP (and TLS) now; the CONNACK is read by loop()
        except (OSError, ValueError) as exc:  # refused, unreachable, TLS handshake, name not found
            if not self._refused_reason.startswith("connect:"):
                log.warning("mqtt: cannot connect to %s:%d (%s); parts wait in the outbox (%d)",
                            self.settings.host, self.settings.port, exc, self.outbox_depth)
            self._refused_reason = f"connect: {exc}"

    def _publish(self, topic: str, payload: bytes, retain: bool, part: bool) -> None:
        info = self._client.publish(topic, payload, qos=self.settings.qos, retain=retain)
        # NO_CONN: paho keeps it and sends it after the next CONNACK, before anything newer
        self._sent[info.mid] = _Sent(topic, payload, part)

    def _send(self) -> None:
        """Fill the window: availability, then the state, then parts in order."""
        window = self.settings.inflight
        if self._online_due and len(self._sent) < window + 2:
            self._publish(self.topic_availability, b"online", retain=True, part=False)
            self._online_due = False
        if self._pending_state is not None and len(self._sent) < window + 2:
            self._publish(self.topic_state, self._pending_state, retain=True, part=False)
            self._pending_state = None
            self.state_messages += 1
        while self._parts_sent < window and len(self._sent) < window + 2:
            with self._lock:
                if not self._outbox:
                    return
                sequence, part = self._outbox.popleft()
                self._parts_sent += 1
            self._recipe = part.recipe or self._recipe
            self._publish(self.topic_part, encode(part_message(part, self.station, sequence)), retain=False, part=True)

    def _station_state(self, stopped: bool) -> str:
        if stopped:
            return "stopped"
        if self._status is None:
            return "running"
        if self._status.running:
            self._was_running = True
            return "paused" if self._status.paused else "running"
        return "stopping" if self._was_running else "starting"

    def _read_health(self) -> tuple[str, str]:
        if self._status is None:
            return "", ""
        try:
            h = self._status.health()
            return str(h.get("level", "")), str(h.get("summary", ""))
        except Exception as exc:  # noqa: BLE001 - a station half stopped: the state still goes out
            log.debug("mqtt: health not readable: %s", exc)
            return "", ""

    def _refresh_state(self, stopped: bool = False, health: bool = False) -> None:
        """Queue the state message when the state, health or recipe changed (health read when asked)."""
        self._state_due = False
        if health or self._health is None:
            self._health = self._read_health()
        key = (self._station_state(stopped), *self._health, self._recipe)
        if key != self._last_state:
            self._last_state = key
            self._pending_state = encode(state_message(self.station, key[0], key[1], key[2], self._recipe, time.time()))

    def _finish(self) -> None:
        """Stopped: ``stopped`` and ``offline`` (retained) when connected, then a clean disconnect."""
        with self._lock:
            left = len(self._outbox) + self._parts_sent
        if left:
            self.undelivered_at_stop = left
            log.warning("mqtt: %d parts not delivered at stop (broker %s:%d away)", left,
                        self.settings.host, self.settings.port)
        if self._connected:
            self._refresh_state(stopped=True, health=True)
            if self._pending_state is not None:
                self._publish(self.topic_state, self._pending_state, retain=True, part=False)
                self._pending_state = None
                self.state_messages += 1
            self._publish(self.topic_availability, b"offline", retain=True, part=False)
            end = time.monotonic() + 2.0
            while self._sent and self._connected and time.monotonic() < end:
                self._client.loop(timeout=POLL_S)
            self._closing = True
            self._client.disconnect()  # a clean DISCONNECT: the broker drops the will
            self._client.loop(timeout=POLL_S)
        self._connected = False


def make_mqtt(config: StationConfig, status: StationStatus) -> MqttPublisher | None:
    """The station's MQTT publisher when ``[mqtt] broker`` is set; else None.

    Raises:
        ValueError: Settings that cannot be used (one line naming the key).
    """
    if config.mqtt.broker is None:
        return None
    return MqttPublisher(config.mqtt.settings(config.name), config.name, status=status)

"""Station configuration: pydantic models read from TOML (unknown keys are errors).

Built-in stations live in ``inspector/stations/<name>.toml``; ``--config PATH`` reads
any other file. Errors come back as `ConfigError`: one line per problem, each naming the
file and the field (``demo.toml: cameras[2].fps: must be a number, not a boolean``).

Values that would quietly switch inspection off are refused, not accepted: non-finite
floats anywhere (``min_area_px = inf`` would never call a part NG), booleans where a
number belongs (TOML ``fps = true`` would run at 1 fps), sizes below one pixel, camera
ids that are not plain file names (``..`` would put NG images outside the archive), and an
``archive_dir`` that names a file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from inspector.pipeline.verdict import VerdictRules

if TYPE_CHECKING:  # pragma: no cover
    from inspector.plant.mqtt import MqttSettings

#: Verdict threshold when neither the camera nor the model card names one.
DEFAULT_THRESHOLD = 0.35


#: A camera id: a plain file name (it names archive folders and files), 1-64 characters,
#: starting with a letter or digit, so never ``.``, ``..`` or a hidden name.
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ConfigError(ValueError):
    """A configuration that cannot be used; one line per problem, each naming the file and field."""


def _not_bool(v: Any) -> Any:
    # TOML true/false would otherwise pass as 1/0 (``fps = true`` runs at 1 fps)
    if isinstance(v, bool):
        raise ValueError("must be a number, not a boolean")  # noqa: TRY004 - pydantic reports only ValueError
    return v


#: A float that is neither a boolean nor (with the models' allow_inf_nan=False) inf or nan.
Number = Annotated[float, BeforeValidator(_not_bool)]
#: An int that is not a boolean.
Integer = Annotated[int, BeforeValidator(_not_bool)]


def _streams(v: Any) -> int | str:
    if v == "auto":
        return "auto"
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 64:
        raise ValueError('must be "auto" or a whole number from 0 to 64')
    return v


def parse_streams(text: str) -> int | str:
    """``[model] streams`` from a command line's text: "auto" or 0..64 (ValueError says which are allowed)."""
    return _streams(int(text) if text.isdigit() else text)


#: OpenVINO streams: "auto" or 0..64 (one message for both, not one per member of a union).
Streams = Annotated[int | Literal["auto"], PlainValidator(_streams)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class VerdictConfig(_Strict):
    """Per-camera OK/NG rules."""

    #: None: the thresholds the model was calibrated for (its card's metrics.threshold, else 0.35, and
    #: metrics.class_thresholds); set: only this table's thresholds apply
    default_threshold: Number | None = Field(None, ge=0.0, le=1.0)
    class_thresholds: dict[str, Annotated[Number, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)
    #: boxes smaller than this are not counted; at most the largest frame (8192 x 8192)
    min_area_px: Number = Field(0.0, ge=0.0, le=8192.0 * 8192.0)
    roi: tuple[Number, Number, Number, Number] | None = None
    ignore_classes: list[str] = Field(default_factory=list)

    @field_validator("roi")
    @classmethod
    def _roi_ordered(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is not None and not (v[2] > v[0] and v[3] > v[1]):
            raise ValueError("roi must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
        return v

    def rules(self, model_threshold: float | None = None,
              model_class_thresholds: Mapping[str, float] | None = None) -> VerdictRules:
        """The rules, with the model card's calibration where this camera sets no ``default_threshold``.

        Without ``default_threshold`` the thresholds travel with the model: ``model_threshold`` (the card's
        metrics.threshold, else `DEFAULT_THRESHOLD`) and ``model_class_thresholds`` (its
        metrics.class_thresholds), this camera's ``class_thresholds`` replacing the card's per class. With
        ``default_threshold`` set the integrator has taken over: only this config's thresholds apply, the
        card's class thresholds are ignored.
        """
        default = self.default_threshold
        per_class = dict(self.class_thresholds)
        if default is None:
            default = model_threshold if model_threshold is not None else DEFAULT_THRESHOLD
            per_class = {**(model_class_thresholds or {}), **per_class}
        return VerdictRules(
            default,
            per_class,
            self.min_area_px,
            self.roi,
            frozenset(self.ignore_classes),
        )


class TilingConfig(_Strict):
    """Whether to tile frames whose smallest defect would shrink below what the model resolves."""

    mode: Literal["off", "auto"] = "auto"
    # below one pixel, every frame would be cut into a vast number of tiles (or none at all)
    min_defect_px: Number = Field(8.0, ge=1.0, le=8192.0)
    min_resolvable_px: Number = Field(6.0, ge=1.0, le=8192.0)
    overlap: Number = Field(0.2, ge=0.0, lt=0.9)


class AnomalyConfig(_Strict):
    """``[cameras.anomaly]``: an anomaly model taught from good parts (`inspector.anomaly`), an extra verdict rule."""

    #: a model name in ``models/`` or a model folder (its sha256s are checked before the station starts)
    model: str = Field(min_length=1)
    #: NG at a score at or above this; None: the model's own (scores are normalised: its threshold is 1.0)
    threshold: Number | None = Field(None, gt=0.0, le=1000.0)
    #: the inspected rectangle [x0, y0, x1, y1] in frame pixels; None: the model card's ROI (or the whole frame)
    roi: tuple[Integer, Integer, Integer, Integer] | None = None
    #: an image of the frame's size: patches where it is black are left out of the score (screws, labels ...)
    mask: str | None = Field(None, min_length=1)

    @field_validator("roi")
    @classmethod
    def _roi_box(cls, v: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if v is not None and (min(v) < 0 or v[2] - v[0] < 8 or v[3] - v[1] < 8):
            raise ValueError("roi must be [x0, y0, x1, y1] with x0, y0 >= 0, at least 8 px wide and high")
        return v


class _CameraBase(_Strict):
    id: str
    fps: Number = Field(5.0, ge=0.0, le=1000.0)
    pool_slots: Integer = Field(6, ge=3, le=64)
    device: Integer | None = Field(None, ge=0, description="inference worker index (static sharding)")
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    tiling: TilingConfig = Field(default_factory=TilingConfig)
    #: None: the camera runs the detector only
    anomaly: AnomalyConfig | None = None
    #: False: the detector's boxes never decide this camera's verdict (a product taught from good parts only)
    detector: bool = True
    #: on a triggered line: ``Software`` (the conveyor's encoder or the PLC fires it) or ``Line0``..
    trigger_source: Literal["Software", "Line0", "Line1", "Line2", "Line3"] = "Software"
    #: on a triggered line: distance from the photo-eye along the belt (the encoder's trigger point)
    position_mm: Number = Field(0.0, ge=0.0, le=100_000.0)

    @field_validator("id", mode="before")
    @classmethod
    def _safe_id(cls, v: Any) -> Any:
        if isinstance(v, str) and not re.fullmatch(SAFE_ID_PATTERN, v):
            raise ValueError(
                f"{v!r} is not a safe camera id: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return v

    @model_validator(mode="after")
    def _decided_by_something(self) -> _CameraBase:
        if not self.detector and self.anomaly is None:  # nothing could ever make its parts NG
            raise ValueError("detector = false needs [cameras.anomaly] (a model taught from good parts)")
        return self


class SimulatedCameraConfig(_CameraBase):
    """A `SimulatedLineCamera`."""

    kind: Literal["simulated"] = "simulated"
    width: Integer = Field(320, ge=64, le=8192)
    height: Integer = Field(320, ge=64, le=8192)
    mono: bool = False
    seed: Integer = Field(2_000_000, ge=0)
    bank_size: Integer = Field(64, ge=1, le=10_000)
    ok_share: Number = Field(0.6, ge=0.0, le=1.0)
    #: feature values applied (in order) when the camera opens, as a GenTL camera's (the settings dialog saves here)
    settings: dict[str, int | float | str | bool] = Field(default_factory=dict)


class GenTLCameraConfig(_CameraBase):
    """A GenICam camera through a GenTL producer (harvesters)."""

    kind: Literal["gentl"] = "gentl"
    serial: str | None = None
    device_id: str | None = None
    settings: dict[str, int | float | str | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _selects_device(self) -> GenTLCameraConfig:
        if not (self.serial or self.device_id):
            raise ValueError("a gentl camera needs serial or device_id")
        return self


class AravisCameraConfig(_CameraBase):
    """A GigE Vision camera through Aravis (PyGObject + gir1.2-aravis-0.8)."""

    kind: Literal["aravis"] = "aravis"
    device_id: str | None = None  # None: the first camera found
    settings: dict[str, int | float | str | bool] = Field(default_factory=dict)


class ReplayCameraConfig(_CameraBase):
    """Frames from a video file or an image folder."""

    kind: Literal["replay"] = "replay"
    source: Path
    loop: bool = True


CameraConfig = Annotated[
    SimulatedCameraConfig | GenTLCameraConfig | AravisCameraConfig | ReplayCameraConfig, Field(discriminator="kind")
]


class ModelConfig(_Strict):
    """Which model, which runtime, which devices."""

    name: str = "defect-yolo11p-320"
    backend: Literal["openvino", "onnxruntime", "tensorrt"] = "openvino"
    devices: list[str] = Field(default_factory=lambda: ["CPU"], min_length=1)
    threads: Integer = Field(0, ge=0, le=256)
    precision: Literal["auto", "f32", "bf16", "f16", "int8"] = "auto"
    # OpenVINO streams: "auto" = one stream with every core on a batch that finds the runtime idle
    # (lowest latency), two streams for batches that come while another runs (most throughput);
    # 0 = always one stream; n = always n batches at once, each on its share of the cores
    streams: Streams = "auto"
    iou_threshold: Number = Field(0.5, gt=0.0, le=1.0)


class SchedulerConfig(_Strict):
    """Dynamic batching across cameras."""

    max_batch: Integer = Field(8, ge=1, le=256)
    max_wait_ms: Number = Field(4.0, ge=0.0, le=1000.0)
    # batches submitted and not yet decided, per device: 2 overlaps one batch's host work
    # (letterbox, decode, NMS, verdicts) with the next one's inference; 4 keeps a batch queued behind
    # two busy streams while the oldest is decided (with 3, two streams finishing out of order left one
    # without work until the host caught up); 1 runs them in turn
    in_flight: Integer = Field(4, ge=1, le=8)


class StorageConfig(_Strict):
    """Database and NG archive."""

    db_url: str = ""  # empty: SQLite in the user data dir
    archive_dir: str = ""  # empty: next to the database
    archive_format: Literal["jpg", "png"] = "jpg"
    archive_max_age_days: Number = Field(30.0, gt=0)
    archive_max_gb: Number = Field(5.0, gt=0)
    # free-space floor: this, or 5% of the archive's filesystem if less (a small disk keeps its images)
    archive_min_free_mb: Number = Field(500.0, ge=0)
    spool_reserve_mb: Number = Field(64.0, gt=0)  # reserved for results while the DB is away: ~90,000
    # the writer commits what arrived within this long in one transaction (one fsync): at 290
    # results/s, 50 ms cost 0.16 core-ms per result and 200 ms 0.09; what is not committed yet is
    # in memory, as when the database is slow
    commit_interval_ms: Number = Field(200.0, ge=0, le=5000)
    # database retention (inspector.storage.retention), with the NG images of purged rows; 0: no limit.
    # NG and reviewed results, and every result of an NG part, are kept longer than OK ones.
    ok_max_age_days: Number = Field(30.0, ge=0)
    ng_max_age_days: Number = Field(365.0, ge=0)
    db_max_gb: Number = Field(20.0, ge=0)
    # the database and the NG archive together (one disk); 0: db_max_gb + archive_max_gb. Over it:
    # the oldest OK results go first, then the oldest NG results with their images
    disk_budget_gb: Number = Field(0.0, ge=0)
    disk_budget_warn: Number = Field(0.9, gt=0, le=1)  # health DEGRADED from this share of a size limit
    retention_batch_rows: Integer = Field(500, ge=1, le=100_000)  # frames deleted per transaction
    retention_interval_s: Number = Field(60.0, gt=0, le=86_400)
    # OK images kept for learning (a part that escaped can be labelled): each camera's frames whose
    # sequence is a multiple of this (0: none), in the archive's @ok folder, with their own limits
    ok_sample_every: Integer = Field(0, ge=0, le=1_000_000)
    ok_sample_max_age_days: Number = Field(7.0, gt=0)
    ok_sample_max_gb: Number = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _ng_kept_longer(self) -> StorageConfig:
        ok, ng = self.ok_max_age_days or float("inf"), self.ng_max_age_days or float("inf")
        if ng < ok:
            raise ValueError(f"ng_max_age_days ({self.ng_max_age_days:g}) must be at least ok_max_age_days "
                             f"({self.ok_max_age_days:g}): NG and reviewed results are kept longer (0: forever)")
        return self

    @field_validator("archive_dir")
    @classmethod
    def _archive_dir_is_a_folder(cls, v: str) -> str:
        # a folder that does not exist yet is created by the archive; a file in the way
        # would make every NG image fail to save, silently, for the whole run
        if v:
            p = Path(v).expanduser()
            for q in (p, *p.parents):
                if q.exists():
                    if not q.is_dir():
                        raise ValueError(f"{q} is a file, not a folder; name a folder for the NG images")
                    break
        return v


class MetricsConfig(_Strict):
    """Prometheus endpoint (opt-in): ``/metrics`` on ``bind:port``."""

    port: Integer | None = Field(None, ge=1, le=65535)
    bind: str = Field("127.0.0.1", min_length=1, description="address to listen on (0.0.0.0: every interface)")


class HealthConfig(_Strict):
    """When the station's health turns DEGRADED or ALARM, judged over a sliding window.

    Each threshold is checked on the last ``window_s`` seconds, not the whole run, so the
    health recovers once the cause is gone (see `inspector.ops.health.assess`).
    """

    window_s: Number = Field(10.0, ge=1.0, le=600.0, description="span of the windowed drop rate and latency")
    drop_rate_degraded: Number = Field(0.05, ge=0.0, le=1.0, description="share of received frames dropped")
    drop_rate_alarm: Number = Field(0.5, ge=0.0, le=1.0)
    latency_budget_ms: Number = Field(
        250.0, gt=0.0, le=600_000.0, description="p99 above: DEGRADED; p50 above (most frames late): ALARM"
    )
    db_backlog_degraded: Integer = Field(2_000, ge=1, description="results queued for the database")
    db_backlog_alarm: Integer = Field(8_000, ge=1)
    spool_alarm_mb: Number = Field(256.0, gt=0.0, description="spool size (any spooling is DEGRADED)")
    #: triggered lines: share of the window's parts failed safe as incomplete that is an ALARM (any: DEGRADED)
    part_incomplete_alarm: Number = Field(0.1, ge=0.0, le=1.0)
    #: triggered lines: p99 trigger->verdict above this share of the budget is DEGRADED
    part_budget_degraded: Number = Field(0.9, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> HealthConfig:
        if self.drop_rate_alarm < self.drop_rate_degraded:
            raise ValueError("drop_rate_alarm must be at least drop_rate_degraded")
        if self.db_backlog_alarm < self.db_backlog_degraded:
            raise ValueError("db_backlog_alarm must be at least db_backlog_degraded")
        return self


class LineGroupConfig(_Strict):
    """Redundant views: the part is NG when at least ``k`` of these cameras say NG."""

    cameras: list[str] = Field(min_length=1)
    k: Integer = Field(1, ge=1)


class LineConfig(_Strict):
    """The line: free-running cameras (a part is a frame) or parts triggered past every camera."""

    mode: Literal["free_run", "triggered"] = "free_run"
    #: trigger -> part verdict; a part not fully inspected by then is NG "incomplete"
    budget_ms: Number = Field(1000.0, ge=1.0, le=600_000.0)
    #: what triggers parts: the simulated conveyor, or only commands (PLC, `StationControl.trigger_part`)
    trigger: Literal["conveyor", "external"] = "conveyor"
    parts_per_min: Number = Field(300.0, gt=0.0, le=60_000.0)
    jitter: Number = Field(0.1, ge=0.0, le=0.9, description="relative spread of the spacing between parts")
    belt_mm_s: Number = Field(500.0, gt=0.0, le=100_000.0)
    groups: list[LineGroupConfig] = Field(default_factory=list)
    #: the reject gate: distance from the photo-eye (None: no gate), the camera whose digital
    #: output drives it (default: the last camera), its line and pulse length
    reject_mm: Number | None = Field(None, gt=0.0, le=1_000_000.0)
    reject_camera: str | None = None
    reject_line: str = Field("Line1", pattern=r"^Line\d{1,2}$")
    reject_pulse_ms: Number = Field(20.0, gt=0.0, le=10_000.0)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _host_port(v: str, scheme: str, default_port: int) -> tuple[str, int]:
    """``modbus://127.0.0.1:5020`` or ``127.0.0.1:5020`` -> ``("127.0.0.1", 5020)``."""
    rest = v.split("://", 1)[1] if "://" in v else v
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host:
        host, port = rest.rstrip("/"), str(default_port)
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{v!r}: expected [{scheme}://]HOST:PORT")
    return host, int(port)


class PlcConfig(_Strict):
    """The PLC links: a Modbus TCP server and/or an OPC UA server (off unless set)."""

    modbus: str | None = Field(None, description="HOST:PORT of the Modbus TCP server, e.g. 127.0.0.1:5020")
    opcua: str | None = Field(None, description="opc.tcp://HOST:PORT of the OPC UA server")
    #: Modbus has no authentication: listening on anything but loopback must be asked for
    expose: bool = False
    #: also offer OPC UA's None-security endpoint (passwords in clear text); off: Sign&Encrypt only
    opcua_insecure: bool = False
    fifo_depth: Integer = Field(64, ge=64, le=100_000)
    #: OPC UA: jobs that may wait for their results at once; one more is refused with BadTooManyOperations
    opcua_max_jobs: Integer = Field(64, ge=1, le=100_000)
    #: Modbus: the commands a client may issue (names of `inspector plc modbus-map`; None: all)
    modbus_commands: list[str] | None = None
    #: Modbus: clients may only read (every write is refused)
    modbus_read_only: StrictBool = False
    #: Modbus: client IP addresses or networks that may connect (empty: any)
    modbus_clients: list[str] = Field(default_factory=list)
    #: Modbus: the unit id answered (None: every unit id)
    modbus_unit_id: Integer | None = Field(None, ge=1, le=255)

    @field_validator("modbus_commands")
    @classmethod
    def _known_commands(cls, v: list[str] | None) -> list[str] | None:
        from inspector.plc.modbus_map import Command

        known = [c.name.lower() for c in Command if c is not Command.NONE]
        for name in v or []:
            if name not in known:
                raise ValueError(f"{name!r} is not a Modbus command (commands: {', '.join(known)})")
        return v

    @field_validator("modbus_clients")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        import ipaddress

        for a in v:
            try:
                ipaddress.ip_network(a, strict=False)
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address or network (e.g. 192.168.10.5, 10.0.0.0/8)") from None
        return v

    def modbus_options(self) -> dict[str, Any]:
        """Keyword arguments of `inspector.plc.modbus_server.ModbusPlc` from the ``modbus_*`` keys."""
        from inspector.plc.modbus_map import Command

        allowed = None if self.modbus_commands is None else [Command[n.upper()] for n in self.modbus_commands]
        return {"allowed_commands": allowed, "read_only": self.modbus_read_only, "clients": list(self.modbus_clients),
                "unit_id": self.modbus_unit_id}

    @model_validator(mode="after")
    def _loopback_unless_exposed(self) -> PlcConfig:
        for name, scheme, port in (("modbus", "modbus", 5020), ("opcua", "opc.tcp", 4840)):
            value = getattr(self, name)
            if value is None:
                continue
            host, _ = _host_port(value, scheme, port)
            if host not in _LOOPBACK and not self.expose:
                raise ValueError(f"{name}: {host} is not loopback; set plc.expose = true to listen there on purpose")
        return self

    def modbus_address(self) -> tuple[str, int] | None:
        return _host_port(self.modbus, "modbus", 5020) if self.modbus else None

    def opcua_address(self) -> tuple[str, int] | None:
        return _host_port(self.opcua, "opc.tcp", 4840) if self.opcua else None


class MqttConfig(_Strict):
    """Part results, the station's state and availability to an MQTT broker (off unless ``broker`` is set)."""

    broker: str | None = Field(None, description="HOST:PORT of the broker (port 1883, 8883 with TLS, if left out)")
    prefix: str = "inspector"  # topics: <prefix>/<station>/part, /state, /availability
    client_id: str = ""  # empty: inspector-<station>
    qos: Literal[1, 2] = 1
    #: parts kept while the broker is away (oldest first); beyond it new parts are dropped, counted
    outbox_size: Integer = Field(10_000, ge=1, le=10_000_000)
    inflight: Integer = Field(20, ge=1, le=1000)  # messages sent and not yet acknowledged
    keepalive_s: Integer = Field(30, ge=5, le=3600)
    state_interval_s: Number = Field(5.0, ge=0.5, le=3600.0)  # how often the state is looked at
    username: str | None = None
    password: str | None = None
    password_env: str | None = None  # the name of an environment variable that holds the password
    tls: StrictBool = False
    ca_file: str | None = None  # None: the system's CAs
    cert_file: str | None = None  # client certificate (and key, unless key_file)
    key_file: str | None = None

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _a_file(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"{v} is not a file")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> MqttConfig:
        if self.broker is not None:
            _host_port(self.broker, "mqtt", 1883)
        if self.password is not None and self.password_env is not None:
            raise ValueError("password and password_env: set one of them")
        if (self.password is not None or self.password_env is not None) and self.username is None:
            raise ValueError("a password needs a username")
        files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if files and not self.tls:
            raise ValueError(f"{files[0]} is set but tls is false; set mqtt.tls = true")
        return self

    def settings(self, station: str) -> MqttSettings:
        """The publisher's settings for ``station``; ValueError (one line) when no broker is set or
        the environment variable that ``password_env`` names is not."""
        import os

        from inspector.plant.mqtt import MqttSettings

        if self.broker is None:
            raise ValueError("mqtt.broker: not set")
        host, port = _host_port(self.broker, "mqtt", 8883 if self.tls else 1883)
        password = self.password
        if self.password_env is not None:
            password = os.environ.get(self.password_env)
            if password is None:
                raise ValueError(f"mqtt.password_env: the environment variable {self.password_env} is not set")
        return MqttSettings(
            host=host, port=port, prefix=self.prefix, client_id=self.client_id or f"inspector-{station}",
            qos=self.qos, outbox_size=self.outbox_size, inflight=self.inflight, keepalive_s=self.keepalive_s,
            username=self.username, password=password, tls=self.tls, ca_file=self.ca_file,
            cert_file=self.cert_file, key_file=self.key_file, state_interval_s=self.state_interval_s,
        )


class RecipesConfig(_Strict):
    """Product recipes (`inspector.recipes`): a folder of recipe files, and the one to start with."""

    dir: str = ""  # empty: no recipes, the station's own settings
    select: int | str | None = None  # number or name selected at start

    @field_validator("dir")
    @classmethod
    def _a_folder(cls, v: str) -> str:
        if v and not Path(v).expanduser().is_dir():
            raise ValueError(f"{v} is not a folder of recipe files")
        return v


class StationConfig(_Strict):
    """A whole station."""

    name: str = Field(min_length=1, max_length=200)
    model: ModelConfig = Field(default_factory=ModelConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    line: LineConfig = Field(default_factory=LineConfig)
    plc: PlcConfig = Field(default_factory=PlcConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    recipes: RecipesConfig = Field(default_factory=RecipesConfig)
    cameras: list[CameraConfig] = Field(min_length=1, max_length=64)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # shown everywhere and may name files (reports, exports): no folders, no control characters
        if v in (".", "..") or any(c in v for c in "/\\") or any(ord(c) < 32 for c in v):
            raise ValueError(f"{v!r} is not a plain name (no '/', '\\', control characters, '.' or '..')")
        return v

    @model_validator(mode="after")
    def _unique_ids(self) -> StationConfig:
        seen: set[str] = set()
        # a camera's frames at once: one in each batch in flight, the pending one and the one being read out;
        # a smaller pool drops frames whenever the station is busy, by construction
        held = self.scheduler.in_flight + 2
        for i, c in enumerate(self.cameras):
            if c.id in seen:
                raise ValueError(f"camera id {c.id!r} is used twice")
            seen.add(c.id)
            if c.pool_slots < held:
                raise ValueError(
                    f"cameras[{i}].pool_slots = {c.pool_slots} cannot hold {held} frames (one in each of "
                    f"scheduler.in_flight = {self.scheduler.in_flight} batches, the pending one and the next): "
                    f"give it at least {held}")
            if c.device is not None and c.device >= len(self.model.devices):
                raise ValueError(f"camera {c.id!r}: device {c.device} but model.devices has {len(self.model.devices)}")
        for i, g in enumerate(self.line.groups):
            unknown = [c for c in g.cameras if c not in seen]
            if unknown:
                raise ValueError(f"line.groups[{i}]: unknown camera {', '.join(unknown)}")
            if g.k > len(g.cameras):
                raise ValueError(f"line.groups[{i}]: k = {g.k} but the group has {len(g.cameras)} cameras")
        if self.line.mode == "triggered":
            replay = [c.id for c in self.cameras if c.kind == "replay"]
            if replay:
                raise ValueError(f"line.mode triggered: replay cameras cannot be triggered ({', '.join(replay)})")
            sims = {(c.seed, c.bank_size, c.ok_share) for c in self.cameras if isinstance(c, SimulatedCameraConfig)}
            if len(sims) > 1:
                raise ValueError("line.mode triggered: simulated cameras see faces of the same parts; "
                                 "give them the same seed, bank_size and ok_share")
            if self.line.reject_camera is not None and self.line.reject_camera not in seen:
                raise ValueError(f"line.reject_camera: unknown camera {self.line.reject_camera}")
            problem = self.budget_problem(self.line.budget_ms)
            if problem:
                raise ValueError(f"line.budget_ms: {problem}")
        return self

    def budget_problem(self, budget_ms: float) -> str:
        """Why a triggered line cannot decide its parts within ``budget_ms`` (the station's or a recipe's):
        it ends before the part reaches a camera (every such part NG "incomplete"), or after the part
        passed the reject gate. Empty when it can."""
        belt = self.line.belt_mm_s
        if self.line.reject_mm is not None and self.line.reject_mm / belt < budget_ms / 1000:
            return (f"{budget_ms:g} ms is over after the part passes the reject gate ({self.line.reject_mm:g} mm: "
                    f"{self.line.reject_mm / belt * 1000:.0f} ms)")
        late = [c for c in self.cameras if c.position_mm / belt >= budget_ms / 1000]
        if late:
            last = max(late, key=lambda c: c.position_mm)
            return (f"{budget_ms:g} ms is over before the part reaches {', '.join(c.id for c in late)} "
                    f"({last.id} at {last.position_mm:g} mm fires {last.position_mm / belt * 1000:.0f} ms after "
                    f"the photo-eye at line.belt_mm_s = {belt:g})")
        return ""


def builtin_stations() -> list[str]:
    """Names of the stations shipped with the package."""
    folder = resources.files("inspector") / "stations"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


_KINDS = ("simulated", "gentl", "aravis", "replay")


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``("cameras", 2, "simulated", "fps")`` -> ``cameras[2].fps`` (the union tag left out)."""
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p not in _KINDS:
            out += f".{p}" if out else p
    return out or "(top level)"


def _problem(err: Any) -> str:
    msg = str(err["msg"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "union_tag_not_found":
        return "kind is missing (simulated, gentl, aravis or replay)"
    if kind == "union_tag_invalid":
        got = err.get("input", {}).get("kind") if isinstance(err.get("input"), dict) else None
        return f"kind must be simulated, gentl, aravis or replay, not {got!r}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return msg


def format_errors(source: str, exc: ValidationError) -> str:
    """Every problem of ``exc``, one line each: ``<source>: <field path>: <what is wrong>``."""
    lines: list[str] = []
    for err in exc.errors():
        line = f"{source}: {_field_path(tuple(err['loc']))}: {_problem(err)}"
        if line not in lines:  # a union reports one problem once per member
            lines.append(line)
    return "\n".join(lines)


def parse_config(text: str, source: str = "<config>") -> StationConfig:
    """Parse TOML text into a `StationConfig`, raising `ConfigError` (one line per problem)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses per nesting level
        raise ConfigError(f"{source}: not valid TOML: nested too deeply") from None
    try:
        return StationConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(source, exc)) from None
    except RecursionError:
        raise ConfigError(f"{source}: values nested too deeply") from None


def load_config(path: Path) -> StationConfig:
    """Read a station config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_config(text, str(path))


def load_station(name: str) -> StationConfig:
    """A built-in station by name (``demo``, ``viky-demo``)."""
    if name not in builtin_stations():
        raise ConfigError(f"station: unknown {name!r} (built-in: {', '.join(builtin_stations())})")
    text = (resources.files("inspector") / "stations" / f"{name}.toml").read_text()
    return parse_config(text, f"station {name}")

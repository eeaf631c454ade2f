"""Station configuration: pydantic models read from TOML (unknown keys are errors).

Built-in stations live in ``inspector/stations/<name>.toml``; ``--config PATH`` reads
any other file. Errors come back as `ConfigError` with one line naming the field.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspector.verdict import VerdictRules


#: Verdict threshold when neither the camera nor the model card names one.
DEFAULT_THRESHOLD = 0.35


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerdictConfig(_Strict):
    """Per-camera OK/NG rules."""

    #: None: the threshold the model was calibrated for (its card's metrics.threshold), else 0.35
    default_threshold: float | None = Field(None, ge=0.0, le=1.0)
    class_thresholds: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict)
    min_area_px: float = Field(0.0, ge=0.0)
    roi: tuple[float, float, float, float] | None = None
    ignore_classes: list[str] = Field(default_factory=list)

    @field_validator("roi")
    @classmethod
    def _roi_ordered(cls, v: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if v is not None and not (v[2] > v[0] and v[3] > v[1]):
            raise ValueError("roi must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1")
        return v

    def rules(self, model_threshold: float | None = None) -> VerdictRules:
        """The rules, with ``model_threshold`` (the model card's) where no default is set."""
        default = self.default_threshold
        if default is None:
            default = model_threshold if model_threshold is not None else DEFAULT_THRESHOLD
        return VerdictRules(
            default,
            dict(self.class_thresholds),
            self.min_area_px,
            self.roi,
            frozenset(self.ignore_classes),
        )


class TilingConfig(_Strict):
    """Whether to tile frames whose smallest defect would shrink below what the model resolves."""

    mode: Literal["off", "auto"] = "auto"
    min_defect_px: float = Field(8.0, gt=0)
    min_resolvable_px: float = Field(6.0, gt=0)
    overlap: float = Field(0.2, ge=0.0, lt=0.9)


class _CameraBase(_Strict):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    fps: float = Field(5.0, ge=0.0, le=1000.0)
    pool_slots: int = Field(6, ge=3, le=64)
    device: int | None = Field(None, ge=0, description="inference worker index (static sharding)")
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    tiling: TilingConfig = Field(default_factory=TilingConfig)


class SimulatedCameraConfig(_CameraBase):
    """A `SimulatedLineCamera`."""

    kind: Literal["simulated"] = "simulated"
    width: int = Field(320, ge=64, le=8192)
    height: int = Field(320, ge=64, le=8192)
    mono: bool = False
    seed: int = Field(2_000_000, ge=0)
    bank_size: int = Field(64, ge=1, le=10_000)
    ok_share: float = Field(0.6, ge=0.0, le=1.0)


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


class ReplayCameraConfig(_CameraBase):
    """Frames from a video file or an image folder."""

    kind: Literal["replay"] = "replay"
    source: Path
    loop: bool = True


CameraConfig = Annotated[
    SimulatedCameraConfig | GenTLCameraConfig | ReplayCameraConfig, Field(discriminator="kind")
]


class ModelConfig(_Strict):
    """Which model, which runtime, which devices."""

    name: str = "defect-yolo11p-320"
    backend: Literal["openvino", "onnxruntime", "tensorrt"] = "openvino"
    devices: list[str] = Field(default_factory=lambda: ["CPU"], min_length=1)
    threads: int = Field(0, ge=0, le=256)
    precision: Literal["auto", "f32", "bf16", "f16"] = "auto"
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0)


class SchedulerConfig(_Strict):
    """Dynamic batching across cameras."""

    max_batch: int = Field(8, ge=1, le=256)
    max_wait_ms: float = Field(4.0, ge=0.0, le=1000.0)


class StorageConfig(_Strict):
    """Database and NG archive."""

    db_url: str = ""  # empty: SQLite in the user data dir
    archive_dir: str = ""  # empty: next to the database
    archive_format: Literal["jpg", "png"] = "jpg"
    archive_max_age_days: float = Field(30.0, gt=0)
    archive_max_gb: float = Field(5.0, gt=0)
    archive_min_free_mb: float = Field(500.0, ge=0)


class MetricsConfig(_Strict):
    """Prometheus endpoint (opt-in): ``/metrics`` on ``bind:port``."""

    port: int | None = Field(None, ge=1, le=65535)
    bind: str = Field("127.0.0.1", min_length=1, description="address to listen on (0.0.0.0: every interface)")


class StationConfig(_Strict):
    """A whole station."""

    name: str = Field(min_length=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    cameras: list[CameraConfig] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _unique_ids(self) -> StationConfig:
        seen: set[str] = set()
        for c in self.cameras:
            if c.id in seen:
                raise ValueError(f"camera id {c.id!r} is used twice")
            seen.add(c.id)
            if c.device is not None and c.device >= len(self.model.devices):
                raise ValueError(f"camera {c.id!r}: device {c.device} but model.devices has {len(self.model.devices)}")
        return self


def builtin_stations() -> list[str]:
    """Names of the stations shipped with the package."""
    folder = resources.files("inspector") / "stations"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _format_error(source: str, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p in ("simulated", "gentl", "replay")))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "union_tag_not_found":
        msg = "kind is missing (simulated, gentl or replay)"
    elif err["type"] == "union_tag_invalid":
        msg = f"kind must be simulated, gentl or replay, not {err.get('input', {}).get('kind')!r}"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{source}: {loc or '(top level)'}: {msg}{more}"


def parse_config(text: str, source: str = "<config>") -> StationConfig:
    """Parse TOML text into a `StationConfig`, raising `ConfigError` with one line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        return StationConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(source, exc)) from None


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

"""What the PLC view shows of the station's PLC links: typed snapshots, read-only, also on the wire.

`ModbusPlc.link_status` and `OpcUaPlc.link_status` fill these from their own state; the
embedded GUI calls `plc_status` on the station, the station service puts `PlcStatus.to_wire`
into its status event and an attached GUI reads it back with `PlcStatus.from_wire`. This
module imports neither the servers nor their libraries, so both sides may use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class LastCommand:
    """The last command a PLC sent and how it ended.

    Attributes:
        name: ``select_recipe``, ``StartSingleJob``...
        arg: Its argument as text (a part id, a recipe number; empty when none).
        status: ``working``, ``done`` or ``refused``.
        error: Why it was refused (``busy``, ``BadInvalidState: ...``); empty when done.
        error_code: The Modbus error code that refused it (0: done, or not Modbus).
        age_s: Seconds since it was answered (or accepted, while working).
    """

    name: str
    arg: str
    status: str
    error: str = ""
    error_code: int = 0
    age_s: float = 0.0


@dataclass(frozen=True)
class ModbusLinkStatus:
    """The Modbus TCP server now.

    Attributes:
        listening: ``host:port`` it listens on.
        serving: Whether it is listening now.
        clients: Connected clients, ``address:port`` each.
        last_command: The last command and its answer (None: none yet).
        state: The ``state`` register's code and name (``running``).
        recipe: The ``recipe`` register.
        error_code: The ``error_code`` register and its name (``none``, ``fifo_full``...).
        fifo_count: Results waiting for the PLC, the head included.
        fifo_depth: How many may wait.
        fifo_overflows: Results not queued for the PLC because the FIFO was full (since start).
        last_overflow_age_s: Seconds since the last overflow (None: none).
        head_wait_s: How long the head result has waited for the PLC (None: FIFO empty).
        cycle_s: The line's part cycle as the FIFO sees it (median interval between results; None: unknown).
        parts_ok, parts_ng, parts_incomplete: The counter registers.
        commands: Commands carried out since start.
        refused_connections: Connections closed at accept (not in ``[plc] modbus_clients``).
        errors: How often each error code was raised, by name.
    """

    listening: str
    serving: bool
    clients: tuple[str, ...] = ()
    last_command: LastCommand | None = None
    state: str = ""
    recipe: int = 0
    error_code: int = 0
    error_name: str = "none"
    fifo_count: int = 0
    fifo_depth: int = 0
    fifo_overflows: int = 0
    last_overflow_age_s: float | None = None
    head_wait_s: float | None = None
    cycle_s: float | None = None
    parts_ok: int = 0
    parts_ng: int = 0
    parts_incomplete: int = 0
    commands: int = 0
    refused_connections: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OpcUaClient:
    """One activated OPC UA session: where from and who (empty: anonymous)."""

    address: str
    user: str = ""


@dataclass(frozen=True)
class OpcUaLinkStatus:
    """The OPC UA server now.

    Attributes:
        listening: Its endpoint URL.
        serving: Whether it is listening now.
        clients: Activated sessions.
        last_command: The last method call and its answer (None: none yet).
        vision_state: The VisionStateMachine's state (``Operational``...).
        automatic_state: The AutomaticModeStateMachine's state (``Ready``...).
        jobs: StartSingleJob calls carried out.
        results: ResultReady events sent.
        results_not_published: Parts whose ResultReady could not be sent.
        counts: Every other counter (logins, refusals...), by name.
    """

    listening: str
    serving: bool
    clients: tuple[OpcUaClient, ...] = ()
    last_command: LastCommand | None = None
    vision_state: str = ""
    automatic_state: str = ""
    jobs: int = 0
    results: int = 0
    results_not_published: int = 0
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PlcStatus:
    """Both links (None: not configured on this station)."""

    modbus: ModbusLinkStatus | None = None
    opcua: OpcUaLinkStatus | None = None

    @property
    def configured(self) -> bool:
        return self.modbus is not None or self.opcua is not None

    def to_wire(self) -> dict[str, Any]:
        """A JSON-able dict (the service's status event)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_wire(cls, d: dict[str, Any] | None) -> PlcStatus:
        """Back from `to_wire`; unknown keys are ignored (a newer service), missing ones default.

        Raises:
            ValueError: A field of the wrong shape.
        """
        if not d:
            return cls()
        try:
            modbus = _modbus(d["modbus"]) if d.get("modbus") else None
            opcua = _opcua(d["opcua"]) if d.get("opcua") else None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"plc status: {exc}") from None
        return cls(modbus=modbus, opcua=opcua)


class PlcLinks(Protocol):
    """The station's PLC links as `plc_status` reads them (`inspector.station.Station`)."""

    @property
    def plc_modbus(self) -> Any: ...  # ModbusPlc or None

    @property
    def plc_opcua(self) -> Any: ...  # OpcUaPlc or None


def plc_status(station: PlcLinks) -> PlcStatus:
    """Both links of a station now (a station built without a PLC link has neither)."""
    modbus = getattr(station, "plc_modbus", None)  # a station that failed to build has no such attribute
    opcua = getattr(station, "plc_opcua", None)
    return PlcStatus(modbus=modbus.link_status() if modbus is not None else None,
                     opcua=opcua.link_status() if opcua is not None else None)


def _fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _last(d: dict[str, Any] | None) -> LastCommand | None:
    return LastCommand(**_fields(LastCommand, d)) if d else None


def _modbus(d: dict[str, Any]) -> ModbusLinkStatus:
    f = _fields(ModbusLinkStatus, d)
    f["clients"] = tuple(str(c) for c in f.get("clients", ()))
    f["last_command"] = _last(f.get("last_command"))
    f["errors"] = {str(k): int(v) for k, v in dict(f.get("errors", {})).items()}
    return ModbusLinkStatus(**f)


def _opcua(d: dict[str, Any]) -> OpcUaLinkStatus:
    f = _fields(OpcUaLinkStatus, d)
    f["clients"] = tuple(OpcUaClient(**_fields(OpcUaClient, c)) for c in f.get("clients", ()))
    f["last_command"] = _last(f.get("last_command"))
    f["counts"] = {str(k): int(v) for k, v in dict(f.get("counts", {})).items()}
    return OpcUaLinkStatus(**f)

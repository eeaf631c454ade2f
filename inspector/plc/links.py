"""The station's PLC links, built from ``[plc]``: Modbus TCP and OPC UA, each a part sink.

Part of building a station (`inspector.station`). Each link carries out the PLC's commands
through `StationCommands`, in an audited service session of its own when there is a database.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine


def plc_commands(station: Any, engine: Engine | None, name: str, detail: str) -> Any:
    """What a PLC link may do, through an audited service session when there is a database."""
    from inspector.plc.commands import StationCommands

    control = None
    if engine is not None:
        from inspector.access.control import StationControl

        control = StationControl.service(station, engine, name, detail=detail)
    return StationCommands(station, control)


def make_modbus(station: Any, engine: Engine | None) -> Any:
    """The Modbus TCP server, when ``[plc] modbus`` is set; else None."""
    plc = station.config.plc
    address = plc.modbus_address()
    if address is None:
        return None
    from inspector.plc.modbus_server import ModbusPlc

    return ModbusPlc(plc_commands(station, engine, "plc-modbus", f"modbus {address[0]}:{address[1]}"),
                     host=address[0], port=address[1], fifo_depth=plc.fifo_depth,
                     cameras=list(station.cameras), **plc.modbus_options())


def make_opcua(station: Any, engine: Engine | None) -> Any:
    """The OPC UA server (OPC 40100-1), when ``[plc] opcua`` is set; else None."""
    plc = station.config.plc
    address = plc.opcua_address()
    if address is None:
        return None
    from inspector.plc.opcua_server import OpcUaPlc

    users = audit = None
    if engine is not None:
        from inspector.access.audit import AuditLog
        from inspector.access.users import UserStore

        users, audit = UserStore(engine), AuditLog(engine)
    return OpcUaPlc(plc_commands(station, engine, "plc-opcua", f"opcua {address[0]}:{address[1]}"),
                    host=address[0], port=address[1], users=users, audit=audit, name=station.config.name,
                    insecure=plc.opcua_insecure)

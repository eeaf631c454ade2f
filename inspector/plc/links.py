"""The station's PLC links, built from ``[plc]``: Modbus TCP and OPC UA, each a part sink.

Part of building a station (`inspector.station`). Each link carries out the PLC's commands
through `StationCommands`, in an audited service session of its own: a link needs the
station's database (its role is checked and every change audited there), and a station with
``db_url = "none"`` and a PLC link is refused at start.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine


def plc_commands(station: Any, engine: Engine | None, name: str, detail: str, key: str) -> Any:
    """What a PLC link may do, through an audited service session.

    Raises:
        PlcError: No database (one line naming ``[plc] key``).
    """
    from inspector.access.control import StationControl
    from inspector.plc.commands import StationCommands
    from inspector.plc.modbus_server import PlcError

    if engine is None:
        raise PlcError(f"[plc] {key}: a PLC's commands are checked and audited in the station's database; "
                       "run with a database (db_url is 'none')")
    return StationCommands(station, StationControl.service(station, engine, name, detail=detail))


def make_modbus(station: Any, engine: Engine | None) -> Any:
    """The Modbus TCP server, when ``[plc] modbus`` is set; else None."""
    plc = station.config.plc
    address = plc.modbus_address()
    if address is None:
        return None
    from inspector.plc.modbus_server import ModbusPlc

    return ModbusPlc(plc_commands(station, engine, "plc-modbus", f"modbus {address[0]}:{address[1]}", "modbus"),
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
    return OpcUaPlc(plc_commands(station, engine, "plc-opcua", f"opcua {address[0]}:{address[1]}", "opcua"),
                    host=address[0], port=address[1], users=users, audit=audit, name=station.config.name,
                    insecure=plc.opcua_insecure, max_jobs_in_flight=plc.opcua_max_jobs)

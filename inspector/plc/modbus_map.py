"""The Modbus TCP register map: one place that the server, `inspector plc modbus-map` and the README read.

Holding registers, 0-based addresses, 32-bit values as two registers, high word first.
Handshake: the PLC writes ``command_arg`` (if the command takes one), then ``command``; the
station carries it out and echoes the code in ``command_ack`` and the argument in ``ack_arg``
(``command_status`` 2 done), or refuses it (``command_status`` 3, ``error_code`` says why); the
PLC writes 0 to ``command``; the station clears ``command_ack`` and ``command_status``. An
acknowledgement answers a command only when both the code and the argument match: a
command written while the last one is not cleared (another code or argument) is ``busy`` and
clears the old ``command_ack``, so a stale acknowledgement (a PLC that vanished mid-handshake)
never answers the next command. Results wait in a FIFO; the oldest is in the ``result_*``
registers until the PLC sends ``dequeue_result``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


class Command(enum.IntEnum):
    """Codes the PLC writes to ``command``."""

    NONE = 0
    TRIGGER_PART = 1  # arg: the PLC's part id (32 bit)
    START = 2  # inspect (resume)
    STOP = 3  # hold inspection (pause): the belt stops, nothing is triggered
    SELECT_RECIPE = 4  # arg: recipe number
    DEQUEUE_RESULT = 5  # drop the head result; the next one moves into result_*
    RESET_COUNTERS = 6  # parts_ok / parts_ng / parts_incomplete back to 0
    ACK_ERROR = 7  # clear error_code


class ErrorCode(enum.IntEnum):
    """Values of ``error_code`` (0: none)."""

    NONE = 0
    UNKNOWN_COMMAND = 1
    BAD_ARGUMENT = 2
    FIFO_FULL = 3  # a result found the FIFO full and was not queued for the PLC (it is stored)
    COMMAND_FAILED = 4  # the station could not carry it out (e.g. no recipes, free-running station)
    READ_ONLY = 5  # a write to a register the PLC may not write
    BUSY = 6  # a new command before the last one was cleared (command back to 0)
    FIFO_EMPTY = 7  # dequeue_result with no result waiting
    STOPPED = 8  # trigger_part while the station is stopped: no part is opened
    NOT_PERMITTED = 9  # a command outside [plc] modbus_commands, or any command in modbus_read_only
    NOT_AUDITED = 10  # its audit entry could not be written in time (database locked or away): nothing changed


class CommandStatus(enum.IntEnum):
    """Values of ``command_status``: where the command in ``command`` stands."""

    IDLE = 0  # command is 0
    WORKING = 1  # accepted, being carried out (start/stop/select_recipe write the audit trail first)
    DONE = 2  # carried out: command_ack and ack_arg echo it
    REFUSED = 3  # not carried out: error_code says why; ack_arg echoes its argument


class ResultState(enum.IntEnum):
    """Values of ``result_state``."""

    NONE = 0  # no result waiting
    OK = 1
    NG = 2
    INCOMPLETE = 3  # NG: an image was missing at the deadline (fail safe)


class StationState(enum.IntEnum):
    """Values of ``state``."""

    STARTING = 0
    RUNNING = 1
    STOPPED = 2  # paused by a stop command or the GUI
    ERROR = 3  # health ALARM


@dataclass(frozen=True)
class Register:
    name: str
    address: int
    words: int
    type: Literal["u16", "u32"]
    access: Literal["R", "RW"]
    meaning: str


REGISTERS: tuple[Register, ...] = (
    Register("heartbeat", 0, 1, "u16", "R", "counts up once a second while the station runs (wraps)"),
    Register("state", 1, 1, "u16", "R", "0 starting, 1 running, 2 stopped, 3 error (health ALARM)"),
    Register("command", 2, 1, "u16", "RW", "command code (see commands); write 0 after command_ack echoes it"),
    Register("command_arg", 3, 2, "u32", "RW", "argument of the command (part id, recipe number)"),
    Register("command_ack", 5, 1, "u16", "R",
             "echoes the command code once carried out (with ack_arg); 0 after command is 0 or when busy"),
    Register("error_code", 6, 1, "u16", "R",
             "0 none, else the last error (see error codes); ack_error clears it; fifo_full never replaces another"),
    Register("result_seq", 7, 1, "u16", "R", "sequence number of the result in result_* (wraps); 0: none yet"),
    Register("result_part_id", 8, 2, "u32", "R", "part id of the head result (the PLC's, or the trigger number)"),
    Register("result_state", 10, 1, "u16", "R", "0 none waiting, 1 OK, 2 NG, 3 incomplete (NG, image missing)"),
    Register("result_defects", 11, 1, "u16", "R", "bit i set: defect class i found (model card class order)"),
    Register("result_cameras_ng", 12, 1, "u16", "R", "bit i set: the part's camera i (line order) said NG or had no image"),
    Register("result_time_ms", 13, 1, "u16", "R", "trigger to verdict of the head result, ms"),
    Register("fifo_count", 14, 1, "u16", "R", "results waiting, the head included"),
    Register("parts_ok", 15, 2, "u32", "R", "OK parts since start or reset_counters"),
    Register("parts_ng", 17, 2, "u32", "R", "NG parts (incomplete included)"),
    Register("parts_incomplete", 19, 2, "u32", "R", "parts failed safe for a missing image"),
    Register("recipe", 21, 1, "u16", "R", "number of the selected recipe (0: the station's own settings)"),
    Register("ack_arg", 22, 2, "u32", "R", "command_arg of the command that command_status answers (done or refused)"),
    Register("command_status", 24, 1, "u16", "R", "0 idle, 1 working, 2 done (command_ack echoes it), 3 refused"),
    Register("command_error", 25, 1, "u16", "R",
             "why the command in command_status was refused (error code; 0 done, working or idle); never FIFO full"),
    Register("fifo_overflows", 26, 2, "u32", "R", "results not queued for the PLC because the FIFO was full, since start"),
)

BY_NAME: dict[str, Register] = {r.name: r for r in REGISTERS}
SIZE = max(r.address + r.words for r in REGISTERS)
WRITABLE: frozenset[int] = frozenset(
    a for r in REGISTERS if r.access == "RW" for a in range(r.address, r.address + r.words)
)


def map_rows() -> list[dict[str, object]]:
    """Every register and code, for ``inspector plc modbus-map`` (table or ``--json``)."""
    return [
        {"name": r.name, "address": r.address, "words": r.words, "type": r.type, "access": r.access,
         "meaning": r.meaning}
        for r in REGISTERS
    ]


def codes() -> dict[str, dict[str, int]]:
    """Command, error and state codes by name."""
    return {
        "commands": {c.name.lower(): int(c) for c in Command if c is not Command.NONE},
        "error_codes": {e.name.lower(): int(e) for e in ErrorCode},
        "command_status": {s.name.lower(): int(s) for s in CommandStatus},
        "result_state": {s.name.lower(): int(s) for s in ResultState},
        "state": {s.name.lower(): int(s) for s in StationState},
    }


def json_map(unit_id: int | None = None) -> dict[str, object]:
    """The whole map for ``inspector plc modbus-map --json``: layout facts, registers and codes.

    Args:
        unit_id: ``[plc] modbus_unit_id`` (None: the server answers every unit id).
    """
    return {
        "addressing": "0-based holding registers",
        "word_order": "high word first",  # a u32 at address a: a holds bits 31..16, a + 1 bits 15..0
        "byte_order": "big-endian",  # within each register, as Modbus defines
        "size": SIZE,
        "unit_id": unit_id,
        "unit_id_meaning": ("every unit id is answered" if unit_id is None else
                            f"only unit id {unit_id} is answered; others get exception 0x0B"),
        "registers": map_rows(),
        **codes(),
    }

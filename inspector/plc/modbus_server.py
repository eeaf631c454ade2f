"""`ModbusPlc`: the station's Modbus TCP server (pymodbus 3.x) — register image, handshake, result FIFO.

The register map is `inspector.plc.modbus_map`. The server runs its own asyncio loop on a
thread; every request passes through `ModbusPlc._access`, which serves reads from the
station's register image and carries out writes to ``command`` (the handshake). Part results
come in as a sink (`submit_part`) and wait in a `ResultFifo`; a full FIFO is an error code
and a counted overflow, never an overwrite. Modbus has no authentication: the server binds
127.0.0.1 unless the station config exposes it, and says so in the log when it does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from inspector.pipeline.results import PartResult
from inspector.plc.commands import CommandNotAudited
from inspector.plc.link_status import LastCommand, ModbusLinkStatus
from inspector.plc.modbus_map import (
    BY_NAME,
    SIZE,
    WRITABLE,
    Command,
    CommandStatus,
    ErrorCode,
    ResultState,
    StationState,
)
from inspector.plc.modbus_transport import ClientGuard, server_class
from inspector.plc.result_fifo import OverflowLog, ResultFifo

log = logging.getLogger(__name__)


class PlcError(RuntimeError):
    """The PLC link cannot start (one line: port taken, library missing)."""


class _Refused(Exception):
    """A command the station turns down with a specific error code."""

    def __init__(self, code: ErrorCode, why: str) -> None:
        super().__init__(why)
        self.code = code


class _Workers:
    """The link's worker threads: one for audited commands, one for recipe changes, one for state reads."""

    def __init__(self) -> None:
        pool = concurrent.futures.ThreadPoolExecutor
        self.commands = pool(1, thread_name_prefix="plc-command")
        self.recipes = pool(1, thread_name_prefix="plc-recipe")  # a model loads and warms for seconds
        self.state = pool(1, thread_name_prefix="plc-state")

    def shutdown(self) -> None:
        for pool in (self.commands, self.recipes, self.state):
            pool.shutdown(wait=False, cancel_futures=True)


def _error_for(exc: BaseException) -> ErrorCode:
    """The error code a command's failure gives the PLC."""
    if isinstance(exc, CommandNotAudited):
        return ErrorCode.NOT_AUDITED
    if isinstance(exc, PermissionError):  # the PLC's service session lacks the role
        return ErrorCode.NOT_PERMITTED
    # by name: the recipes area defines it, and the link needs no import of the recipe machinery
    if _caused_by(exc, "RecipeBusy"):  # another changeover (GUI, OPC UA) is being prepared
        return ErrorCode.BUSY
    return ErrorCode.COMMAND_FAILED


def _caused_by(exc: BaseException | None, name: str) -> bool:
    """Whether ``exc`` or an exception it was raised from (``from None`` keeps the context) is a ``name``."""
    seen = 0
    while exc is not None and seen < 8:
        if any(c.__name__ == name for c in type(exc).__mro__):
            return True
        exc, seen = exc.__context__, seen + 1
    return False


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PlcCommands(Protocol):
    """What a PLC may ask of the station (`inspector.plc.commands.StationCommands`)."""

    def trigger_part(self, part_id: str) -> str: ...

    def set_running(self, running: bool) -> None: ...

    def select_recipe(self, number: int) -> None: ...

    def state(self) -> StationState: ...

    def recipe_number(self) -> int: ...


#: How long a write of ``command`` waits for a command on a worker before it answers anyway.
COMMAND_WAIT_S = 0.1
#: Commands that write the audit trail (or load a model): carried out on a worker, never on the loop.
_AUDITED = frozenset({Command.START, Command.STOP, Command.SELECT_RECIPE})


def _addr(name: str) -> int:
    return BY_NAME[name].address


class ModbusPlc:
    """Modbus TCP server of one station (also a result sink).

    Args:
        commands: Carries out the PLC's commands.
        host: Address to bind (127.0.0.1 unless exposed on purpose).
        port: TCP port (502 is the standard one and needs privileges; 5020 by default).
        fifo_depth: Results that may wait for the PLC.
        cameras: The line's cameras in order (bit i of ``result_cameras_ng``).
        allowed_commands: The commands a client may issue (None: all); others are refused
            with ``not_permitted``.
        read_only: Clients may only read: every write is a Modbus exception (illegal function).
        clients: Client addresses or networks that may connect (empty: any); others are
            closed at accept, counted and logged once per address.
        unit_id: The unit id answered (None: every one); others get exception 0x0B.
    """

    name = "plc-modbus"

    def __init__(self, commands: PlcCommands, *, host: str = "127.0.0.1", port: int = 5020,
                 fifo_depth: int = 64, cameras: Sequence[str] = (), allowed_commands: Iterable[Command] | None = None,
                 read_only: bool = False, clients: Sequence[str] = (), unit_id: int | None = None) -> None:
        self.commands = commands
        self.host, self.port = host, port
        self.fifo = ResultFifo(max(64, fifo_depth))
        self.cameras = tuple(cameras)
        self._image = [0] * SIZE
        self._lock = threading.RLock()
        self._seq = 0
        self._counts = {"ok": 0, "ng": 0, "incomplete": 0}
        self.commands_done = 0
        self._handshake: tuple[int, int] | None = None  # (code, arg) in command until the PLC writes 0
        self.allowed_commands = frozenset(allowed_commands) if allowed_commands is not None else None
        self.read_only = read_only
        self.guard = ClientGuard(clients)
        self.unit_id = unit_id
        self._workers = _Workers()
        self._state_read: concurrent.futures.Future[StationState] | None = None
        self._recipe_job: concurrent.futures.Future[None] | None = None
        self.errors: dict[str, int] = {}
        self._last: tuple[str, int, str, ErrorCode | None, float] | None = None  # name, arg, status, error, when
        self._overflow_log = OverflowLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------ part sink
    def submit_part(self, part: PartResult) -> bool:
        """Queue the part's result for the PLC (parts come in trigger order, once durable: the
        station's ordered part stream); False (error FIFO_FULL) when it overflowed."""
        with self._lock:
            key = "incomplete" if part.incomplete else ("ng" if part.ng else "ok")
            self._counts[key] += 1
            if key == "incomplete":
                self._counts["ng"] += 1
            self._write_counters()
            was_empty = self.fifo.head() is None
            if not self.fifo.put(part):
                self._set("fifo_overflows", self.fifo.stats.overflows)
                self._error(ErrorCode.FIFO_FULL)
                self._overflow_log.note(part.part_id, self.fifo.depth)  # one line per 10 s, not one per part
                return False
            if was_empty:
                self._load_head()
            self._set("fifo_count", len(self.fifo))
            return True

    def stats(self) -> dict[str, float]:
        s = self.fifo.stats
        return {"fifo_count": len(self.fifo), "fifo_overflows": s.overflows, "queued": s.queued,
                "dequeued": s.dequeued, "commands": self.commands_done,
                "refused_connections": sum(self.guard.refused.values()), **{f"error_{k}": v for k, v in self.errors.items()}}

    def link_status(self) -> ModbusLinkStatus:
        """What the PLC view shows: listening, clients, last command, FIFO, errors, counters (read-only)."""
        now = time.monotonic()
        fifo = self.fifo
        with self._lock:
            last = None
            if self._last is not None:
                name, arg, status, error, at = self._last
                last = LastCommand(name, str(arg) if arg else "", status, error.name.lower() if error else "",
                                   int(error) if error else 0, now - at)
            code = self._get("error_code")
            try:
                error_name = ErrorCode(code).name.lower()
            except ValueError:
                error_name = str(code)
            state = self._get("state")
            try:
                state_name = StationState(state).name.lower()
            except ValueError:
                state_name = str(state)
            return ModbusLinkStatus(
                listening=f"{self.host}:{self.port}", serving=self._serving(),
                clients=tuple(sorted(self.guard.connected.values())), last_command=last, state=state_name,
                recipe=self._get("recipe"), error_code=code, error_name=error_name, fifo_count=len(fifo),
                fifo_depth=fifo.depth, fifo_overflows=fifo.stats.overflows,
                last_overflow_age_s=now - fifo.last_overflow if fifo.last_overflow is not None else None,
                head_wait_s=fifo.head_wait_s(now), cycle_s=fifo.cycle_s(),
                parts_ok=self._counts["ok"], parts_ng=self._counts["ng"], parts_incomplete=self._counts["incomplete"],
                commands=self.commands_done, refused_connections=sum(self.guard.refused.values()),
                errors=dict(self.errors))

    def _serving(self) -> bool:
        server = self._server
        return self._thread is not None and server is not None and not server.serving.done()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Listen on ``host:port`` (returns once listening).

        Raises:
            PlcError: The port cannot be bound.
        """
        if self._thread is not None:
            return
        if self.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("plc: Modbus TCP listens on %s:%d: Modbus has no authentication, anyone who reaches "
                        "this address can trigger parts and stop the line", self.host, self.port)
        self._thread = threading.Thread(target=self._run, name="plc-modbus", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        if self._start_error is not None:
            self._thread = None
            raise PlcError(f"plc: Modbus TCP cannot listen on {self.host}:{self.port}: {self._start_error}") from None

    def stop(self, timeout: float = 5.0) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(server.shutdown(), loop)
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()
            else:
                log.exception("plc: Modbus server stopped")

    async def _main(self) -> None:
        from pymodbus.simulator import DataType, SimData, SimDevice

        self._loop = asyncio.get_running_loop()
        self._workers = _Workers()
        device = SimDevice(0, simdata=SimData(0, count=SIZE, values=0, datatype=DataType.REGISTERS),
                           action=self._access)
        self._server = server_class()(device, address=(self.host, self.port), guard=self.guard, unit_id=self.unit_id)
        await self._server.serve_forever(background=True)
        with self._lock:
            self._set("state", int(self.commands.state()))
            self._set("recipe", self.commands.recipe_number())
        self._ready.set()
        try:
            while not self._server.serving.done():
                await asyncio.sleep(1.0)
                with self._lock:
                    self._set("heartbeat", (self._get("heartbeat") + 1) & 0xFFFF)
                    self._set("recipe", self.commands.recipe_number())
                    self._overflow_log.flush(self.fifo.depth)
                await self._refresh_state()
        finally:
            self._workers.shutdown()

    async def _refresh_state(self) -> None:
        """``state`` from the station, read off the loop: a slow health check never stops the heartbeat."""
        if self._state_read is not None and not self._state_read.done():
            return  # the last one still runs; the heartbeat goes on without it
        self._state_read = self._workers.state.submit(self.commands.state)
        done, _ = await asyncio.wait({asyncio.wrap_future(self._state_read)}, timeout=COMMAND_WAIT_S)
        for f in done:
            with self._lock:
                self._set("state", int(f.result()))

    # ------------------------------------------------------------------ requests
    async def _access(self, func_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> Any:
        """Every request: serve reads from the image; check writes and carry out commands.

        A command that writes the audit trail runs on a worker; the request waits for it at
        most `COMMAND_WAIT_S` and answers then either way (``command_status`` says working
        until it is done), so a locked database never holds up the link.
        """
        from pymodbus.constants import ExcCodes

        job: concurrent.futures.Future[None] | None = None
        with self._lock:
            if set_values is not None:
                if self.read_only:
                    self._error(ErrorCode.NOT_PERMITTED)
                    return ExcCodes.ILLEGAL_FUNCTION
                if func_code not in (6, 16):  # coils are not part of the map
                    self._error(ErrorCode.READ_ONLY)
                    return ExcCodes.ILLEGAL_FUNCTION
                addrs = range(address, address + count)
                if any(a not in WRITABLE for a in addrs):
                    self._error(ErrorCode.READ_ONLY)
                    registers[:SIZE] = self._image
                    return ExcCodes.ILLEGAL_ADDRESS
                for a, v in zip(addrs, set_values):
                    self._image[a] = int(v) & 0xFFFF
                if _addr("command") in addrs:
                    job = self._on_command()
        if job is not None:
            await asyncio.wait({asyncio.wrap_future(job)}, timeout=COMMAND_WAIT_S)
        with self._lock:
            # whoever switched (GUI, OPC UA, this PLC): the register says what the station runs
            self._set("recipe", self.commands.recipe_number())
            registers[:SIZE] = self._image
        return None

    def _on_command(self) -> concurrent.futures.Future[None] | None:
        """The PLC wrote ``command`` (lock held): the handshake; returns the job of a command on a worker.

        An acknowledgement is bound to its command by code and argument: the same command
        written again before it was cleared changes nothing (a retried write), anything else
        before clearing is ``busy`` and takes the old acknowledgement down with it, so a stale
        ``command_ack`` (a PLC that vanished mid-handshake) never answers the next command.
        """
        code = self._get("command")
        arg = (self._get("command_arg") << 16) | self._get("command_arg", 1)
        if code == 0:
            self._handshake = None
            self._set("command_ack", 0)
            self._set("ack_arg", 0)
            self._set("command_status", CommandStatus.IDLE)
            self._set("command_error", 0)
            return None
        if self._handshake is not None:
            if self._handshake == (code, arg):
                return None  # the same command written again before the PLC cleared it: already answered
            self._refuse(code, arg, ErrorCode.BUSY)
            return None
        self._handshake = (code, arg)
        try:
            cmd = Command(code)
        except ValueError:
            self._refuse(code, arg, ErrorCode.UNKNOWN_COMMAND)
            log.warning("plc: unknown Modbus command code %d", code)
            return None
        if self.allowed_commands is not None and cmd not in self.allowed_commands:
            self._refuse(code, arg, ErrorCode.NOT_PERMITTED)
            log.warning("plc: Modbus command %s refused: not in [plc] modbus_commands", cmd.name.lower())
            return None
        if cmd is Command.SELECT_RECIPE:
            if self._recipe_job is not None and not self._recipe_job.done():
                self._refuse(code, arg, ErrorCode.BUSY)  # one changeover at a time, never a thread per request
                return None
            self._set("command_status", CommandStatus.WORKING)
            self._note(code, arg, "working", None)
            self._recipe_job = self._workers.recipes.submit(self._carry_out, cmd, arg)
            return self._recipe_job
        if cmd in _AUDITED:
            self._set("command_status", CommandStatus.WORKING)
            self._note(code, arg, "working", None)
            return self._workers.commands.submit(self._carry_out, cmd, arg)
        self._carry_out(cmd, arg)
        return None

    def _carry_out(self, cmd: Command, arg: int) -> None:
        """Carry out one command and answer it (on the loop with the lock held, or on a worker)."""
        code = int(cmd)
        try:
            self._execute(cmd, arg)
        except _Refused as exc:
            self._answer(code, arg, exc.code)
            log.warning("plc: %s(%d) refused: %s", cmd.name.lower(), arg, exc)
            return
        except Exception as exc:  # noqa: BLE001 - sorted below: every failure is the PLC's error code
            self._answer(code, arg, _error_for(exc))
            log.warning("plc: %s(%d) refused: %s", cmd.name.lower(), arg, _one_line(exc))
            return
        self._answer(code, arg, None)

    def _answer(self, code: int, arg: int, error: ErrorCode | None) -> None:
        """Done (``error`` None) or refused; a PLC that cleared meanwhile sees only an error code."""
        with self._lock:
            if self._handshake != (code, arg) or self._get("command_status") == CommandStatus.REFUSED:
                self.commands_done += error is None
                self._note(code, arg, "done" if error is None else "refused", error)
                if error is not None:
                    self._error(error)
                return
            if error is None:
                self._done(code, arg)
            else:
                self._refuse(code, arg, error)

    def _done(self, code: int, arg: int) -> None:
        self.commands_done += 1
        self._note(code, arg, "done", None)
        self._set("command_ack", code)
        self._set("ack_arg", arg)
        self._set("command_status", CommandStatus.DONE)
        self._set("command_error", 0)

    def _refuse(self, code: int, arg: int, error: ErrorCode) -> None:
        self._handshake = (code, arg)
        self._note(code, arg, "refused", error)
        self._error(error)
        self._set("command_ack", 0)
        self._set("ack_arg", arg)
        self._set("command_status", CommandStatus.REFUSED)
        self._set("command_error", int(error))  # bound to this command: no FIFO overflow can replace it

    def _note(self, code: int, arg: int, status: str, error: ErrorCode | None) -> None:
        """Remember the last command for the PLC view (lock held)."""
        try:
            name = Command(code).name.lower()
        except ValueError:
            name = f"unknown ({code})"
        self._last = (name, arg, status, error, time.monotonic())

    def _execute(self, cmd: Command, arg: int) -> None:
        if cmd is Command.TRIGGER_PART:
            if self.commands.state() is StationState.STOPPED:  # a trigger now would open a part nobody inspects
                raise _Refused(ErrorCode.STOPPED, "the station is stopped")
            self.commands.trigger_part(str(arg))
        elif cmd in (Command.START, Command.STOP):
            self.commands.set_running(cmd is Command.START)
            state = self.commands.state()
            with self._lock:
                self._set("state", int(state))
        elif cmd is Command.SELECT_RECIPE:
            self.commands.select_recipe(arg)
            number = self.commands.recipe_number()
            with self._lock:
                self._set("recipe", number)
        elif cmd is Command.DEQUEUE_RESULT:
            if self.fifo.pop() is None:
                raise _Refused(ErrorCode.FIFO_EMPTY, "no result waiting")
            self._load_head()
            self._set("fifo_count", len(self.fifo))
        elif cmd is Command.RESET_COUNTERS:
            self._counts = dict.fromkeys(self._counts, 0)
            self._write_counters()
        elif cmd is Command.ACK_ERROR:
            self._set("error_code", 0)

    # ------------------------------------------------------------------ registers (lock held)
    def _load_head(self) -> None:
        part = self.fifo.head()
        if part is None:
            for name in ("result_part_id", "result_state", "result_defects", "result_cameras_ng", "result_time_ms"):
                self._set(name, 0)
            return
        self._seq = self._seq % 0xFFFF + 1
        self._set("result_seq", self._seq)
        pid = int(part.part_id) & 0xFFFFFFFF if part.part_id.isdigit() else part.trigger_id & 0xFFFFFFFF
        self._set("result_part_id", pid)
        state = ResultState.INCOMPLETE if part.incomplete else (ResultState.NG if part.ng else ResultState.OK)
        self._set("result_state", int(state))
        defects = 0
        for f in part.frames:
            for d in f.detections:
                if 0 <= d.class_id < 16:
                    defects |= 1 << d.class_id
        self._set("result_defects", defects)
        cams = self.cameras or part.expected
        ng_frames = {f.camera_id for f in part.frames if f.ng} | set(part.missing)
        self._set("result_cameras_ng", sum(1 << i for i, c in enumerate(cams[:16]) if c in ng_frames))
        self._set("result_time_ms", min(0xFFFF, round(part.times.verdict_ms)))

    def _write_counters(self) -> None:
        self._set("parts_ok", self._counts["ok"] & 0xFFFFFFFF)
        self._set("parts_ng", self._counts["ng"] & 0xFFFFFFFF)
        self._set("parts_incomplete", self._counts["incomplete"] & 0xFFFFFFFF)

    def _error(self, code: ErrorCode) -> None:
        self.errors[code.name.lower()] = self.errors.get(code.name.lower(), 0) + 1
        if code is ErrorCode.FIFO_FULL and self._get("error_code") not in (ErrorCode.NONE, ErrorCode.FIFO_FULL):
            return  # a command's error stays until ack_error: the overflows are in fifo_overflows
        self._set("error_code", int(code))

    def _set(self, name: str, value: int) -> None:
        r = BY_NAME[name]
        if r.words == 2:
            self._image[r.address] = (value >> 16) & 0xFFFF
            self._image[r.address + 1] = value & 0xFFFF
        else:
            self._image[r.address] = value & 0xFFFF

    def _get(self, name: str, word: int = 0) -> int:
        return self._image[BY_NAME[name].address + word]

    def read(self, name: str) -> int:
        """A register's value as the PLC reads it (tests, status)."""
        with self._lock:
            r = BY_NAME[name]
            if r.words == 2:
                return (self._image[r.address] << 16) | self._image[r.address + 1]
            return self._image[r.address]

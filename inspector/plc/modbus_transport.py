"""The Modbus TCP transport under `ModbusPlc`: framing, who may connect, which unit id is answered.

pymodbus 3.x's server answers only the first request of a TCP segment: the rest waits in its
buffer until more bytes come, and a segment over 516 bytes is dropped whole. A PLC that
pipelines requests (several transactions in flight, as the Modbus TCP specification allows)
loses commands that way. `RequestSplitter` replaces its request handler: it cuts every
complete MBAP frame out of the stream, answers them one after another in order, and turns
garbage into one rate-limited log line instead of pymodbus's error lines and hex dumps.
pymodbus still decodes the PDUs and runs them against the register image.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import struct
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

#: Requests one connection may have waiting; a client past it is flooding, not pipelining.
MAX_QUEUED = 512
#: MBAP length field: unit id + function code at least, and a PDU of at most 253 bytes.
_MIN_LEN, _MAX_LEN = 2, 254
#: Modbus exception codes (the specification's).
ILLEGAL_FUNCTION, ILLEGAL_VALUE, DEVICE_FAILURE, GATEWAY_NO_TARGET = 0x01, 0x03, 0x04, 0x0B


class LineLimiter:
    """At most ``per_window`` log lines per ``window_s``; the rest are counted and summed up once."""

    def __init__(self, per_window: int = 10, window_s: float = 10.0) -> None:
        self.per_window, self.window_s = per_window, window_s
        self.total = 0
        self._start = -window_s
        self._lines = 0
        self._quiet = 0

    def warn(self, fmt: str, *args: object) -> None:
        """Log one warning line unless the window's lines are spent."""
        self.total += 1
        now = time.monotonic()
        if now - self._start >= self.window_s:
            if self._quiet:
                log.warning("plc: %d more bad Modbus frames in the last %.0f s (not logged one by one)",
                            self._quiet, self.window_s)
            self._start, self._lines, self._quiet = now, 0, 0
        if self._lines < self.per_window:
            self._lines += 1
            log.warning(fmt, *args)
        else:
            self._quiet += 1


class ClientGuard:
    """Which client addresses may connect (empty: any); refused ones are counted and logged once each.

    Args:
        allowed: IP addresses or networks (``192.168.10.0/24``).
    """

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.allowed = tuple(ipaddress.ip_network(a, strict=False) for a in allowed)
        self.refused: dict[str, int] = {}
        self.connected: dict[int, str] = {}  # connection -> "address:port" (the PLC view)

    def admits(self, host: str) -> bool:
        if not self.allowed:
            return True
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            addr = None
        if addr is not None:
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            if any(addr.version == net.version and addr in net for net in self.allowed):
                return True
        first = host not in self.refused
        self.refused[host] = self.refused.get(host, 0) + 1
        if first:
            log.warning("plc: Modbus connection from %s refused: not in [plc] modbus_clients (further ones "
                        "from it are only counted)", host)
        return False


class RequestSplitter:
    """One client connection's requests: split, answered in order, guarded (a pymodbus request handler).

    Built by `server_class`; pymodbus calls ``callback_connected``, ``callback_data`` and
    ``callback_disconnected`` on it from the server's event loop.
    """

    # set by pymodbus' ServerRequestHandler.__init__ and its transport (this class borrows its methods)
    transport: Any
    loop: Any
    server: Any

    def __init__(self, owner: Any, guard: ClientGuard, garbage: LineLimiter, unit_id: int | None) -> None:
        from pymodbus.server.requesthandler import ServerRequestHandler

        ServerRequestHandler.__init__(self, owner, owner.trace_packet, owner.trace_pdu,  # type: ignore[arg-type]
                                      owner.trace_connect)
        self.guard, self.garbage, self.unit_id = guard, garbage, unit_id
        self.max_buffer_size = 1 << 20  # frames are cut out as they come; this only bounds a flood
        self.peer = "?"
        self._queue: collections.deque[tuple[int, int, bytes]] = collections.deque()
        self._draining = False

    def callback_connected(self) -> None:
        from pymodbus.server.requesthandler import ServerRequestHandler

        ServerRequestHandler.callback_connected(self)  # type: ignore[arg-type]
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        self.peer = str(peer[0]) if peer else "?"
        if not self.guard.admits(self.peer):
            self.transport.abort()
            return
        self.guard.connected[id(self)] = f"{self.peer}:{peer[1]}" if peer and len(peer) > 1 else self.peer

    def callback_disconnected(self, exc: Exception | None) -> None:
        from pymodbus.server.requesthandler import ServerRequestHandler

        self.guard.connected.pop(id(self), None)
        ServerRequestHandler.callback_disconnected(self, exc)  # type: ignore[arg-type]

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        """Cut every complete frame out of ``data``; returns how many bytes were used."""
        used = 0
        while len(data) - used >= 7:
            tid, pid, length, unit = struct.unpack_from(">HHHB", data, used)
            if pid != 0 or not _MIN_LEN <= length <= _MAX_LEN:
                self._hang_up(f"not Modbus TCP (protocol id {pid}, length {length})")
                return len(data)
            end = used + 6 + length
            if end > len(data):
                break  # the rest of this frame comes with the next segment
            self._queue.append((tid, unit, bytes(data[used + 7:end])))
            used = end
        if len(self._queue) > MAX_QUEUED:
            self._hang_up(f"more than {MAX_QUEUED} requests waiting")
            return len(data)
        if self._queue and not self._draining:
            self._draining = True
            self.loop.create_task(self._drain())
        return used

    def _hang_up(self, why: str) -> None:
        self.garbage.warn("plc: Modbus client %s: %s; connection closed", self.peer, why)
        self._queue.clear()
        if self.transport is not None:
            self.transport.abort()

    async def _drain(self) -> None:
        try:
            while self._queue:
                tid, unit, pdu = self._queue.popleft()
                response = await self._answer(unit, pdu)
                if self.transport is None or self.transport.is_closing():
                    self._queue.clear()
                    return
                response.transaction_id, response.dev_id = tid, unit
                self.server_send(response, None)  # type: ignore[attr-defined]
        finally:
            self._draining = False

    async def _answer(self, unit: int, raw: bytes) -> Any:
        from pymodbus.exceptions import ModbusException
        from pymodbus.pdu import ExceptionResponse

        fc = raw[0]
        if self.unit_id is not None and unit != self.unit_id:
            return ExceptionResponse(fc & 0x7F, GATEWAY_NO_TARGET)
        decoder = self.server.context_decoder
        cls = decoder.pdu_table.get(fc, (None, None))[0]
        if cls is None:
            self.garbage.warn("plc: Modbus client %s: function code %d not supported", self.peer, fc)
            return ExceptionResponse(fc & 0x7F, ILLEGAL_FUNCTION)
        try:
            request = cls()
            request.decode(raw[1:])
            if request.sub_function_code >= 0:
                sub = decoder.pdu_sub_table.get(fc, {}).get(request.sub_function_code, (None, None))[0]
                if sub is not None:
                    request = sub()
                    request.decode(raw[1:])
        except (ModbusException, ValueError, IndexError, struct.error) as exc:
            self.garbage.warn("plc: Modbus client %s: malformed function %d request: %s", self.peer, fc,
                              str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return ExceptionResponse(fc, ILLEGAL_VALUE)
        request.dev_id = unit
        try:
            return await request.datastore_update(self.server.context, unit)
        except Exception as exc:  # noqa: BLE001 - one line for the PLC's log, an exception for the PLC
            self.garbage.warn("plc: Modbus client %s: function %d failed: %s", self.peer, fc,
                              str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return ExceptionResponse(fc, DEVICE_FAILURE)


def server_class() -> type[Any]:
    """A pymodbus `ModbusTcpServer` whose connections are `RequestSplitter`s (pymodbus imported lazily)."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.server.requesthandler import ServerRequestHandler

    handler = type("PlcRequestHandler", (RequestSplitter, ServerRequestHandler), {})

    class PlcTcpServer(ModbusTcpServer):  # type: ignore[misc]
        """Connections split pipelined frames, admit only allowed clients, answer one unit id (or all)."""

        def __init__(self, *args: Any, guard: ClientGuard, unit_id: int | None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.guard, self.unit_id = guard, unit_id
            self.garbage = LineLimiter()
            self.context_decoder = self.decoder

        def callback_new_connection(self) -> Any:
            return handler(self, self.guard, self.garbage, self.unit_id)

    # pymodbus logs every received byte (debug) and bad frames as errors of its own: ours are one line
    logging.getLogger("pymodbus.logging").setLevel(logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    return PlcTcpServer

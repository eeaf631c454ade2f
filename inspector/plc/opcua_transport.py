"""asyncua's server with the station's transport: bounded chunks and logins checked off the event loop.

asyncua checks a login in `InternalSession.activate_session`, a plain function called on
the server's event loop: a password hash (scrypt) and a database read there stall every
client. `StationServer` reads the ActivateSession request first, hands the identity token
to a `SessionGate` (which checks it on a worker thread, awaited), and asyncua's own
activation then only picks up the answer (`login_answer`). The gate also hears when an
activated session's connection ends.

asyncua also buffers a whole chunk before it compares the chunk's size with its limits, so
an unauthenticated peer could make it hold 60 MB; here a chunk header announcing more
than the server's receive buffer closes the connection at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import struct
from typing import Any, Protocol

from asyncua import Server, ua
from asyncua.common.connection import TransportLimits
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import nodeid_from_binary, struct_from_binary

log = logging.getLogger(__name__)

#: the gate's answer for the ActivateSession request being processed (read by the user manager)
login_answer: contextvars.ContextVar[Any] = contextvars.ContextVar("opcua_login_answer", default=None)
#: the session whose request is being processed (read by method callbacks)
current_session: contextvars.ContextVar[Any] = contextvars.ContextVar("opcua_session", default=None)

_ACTIVATE = ua.NodeId(ua.Int32(ua.ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary))
_HEADER = 8  # message type (3), chunk type (1), message size (4, little-endian, header included)


class SessionGate(Protocol):
    """What the transport asks of the station's OPC UA server."""

    async def activate(self, address: str, username: str | None, password: str | None) -> Any:
        """The login answer for an identity token (checked off the loop), handed to the user manager."""
        ...

    def opened(self, session: Any, answer: Any, close: Any) -> None:
        """A session was activated with ``answer``; ``close()`` (a coroutine function) ends it."""
        ...

    def closed(self, session: Any) -> None:
        """A session's connection ended."""
        ...

    def oversized(self, address: str, size: int) -> None:
        """A peer announced a chunk larger than the receive buffer (its connection is closed)."""
        ...


def limits(max_message_size: int, chunk_size: int = 65535) -> TransportLimits:
    """Transport limits: chunks of ``chunk_size`` bytes, messages of at most ``max_message_size``."""
    return TransportLimits(max_recv_buffer=chunk_size, max_send_buffer=chunk_size,
                           max_chunk_count=-(-max_message_size // chunk_size), max_message_size=max_message_size)


class StationServer(Server):
    """An asyncua `Server` whose connections use `_StationProtocol` (see the module docstring)."""

    def __init__(self, gate: SessionGate, user_manager: Any) -> None:
        super().__init__(user_manager=user_manager)
        self.gate = gate

    async def start(self) -> None:
        """Start as `Server.start` does, with the station's binary server."""
        from asyncua.crypto import uacrypto

        if self.iserver.certificate is not None:
            uacrypto.check_certificate(self.iserver.certificate, self._application_uri, socket.gethostname())
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            host, port = self._get_bind_socket_info()
            self.bserver = _StationBinaryServer(self.iserver, host, port, self.limits, self.gate)  # type: ignore[arg-type]
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            await self.iserver.stop()
            raise


class _StationBinaryServer(BinaryServer):
    def __init__(self, iserver: Any, host: str, port: int, limits: TransportLimits, gate: SessionGate) -> None:
        super().__init__(iserver, host, port, limits)
        self.gate = gate

    def _make_protocol(self) -> OPCUAProtocol:
        return _StationProtocol(self.iserver, self._policies, self.clients, self.closing_tasks, self.limits, self.gate)


class _StationProtocol(OPCUAProtocol):
    def __init__(self, iserver: Any, policies: list[Any], clients: list[Any], closing_tasks: list[Any],
                 limits: TransportLimits, gate: SessionGate) -> None:
        super().__init__(iserver, policies, clients, closing_tasks, limits)
        self.gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # before any message: swap in the station's processor
            processor = _StationProcessor(self.iserver, self.transport, self.limits, self.gate)
            processor.set_policies(self.policies)
            self.processor = processor

    def data_received(self, data: bytes) -> None:
        buffered = self._buffer + data
        pos = 0
        while len(buffered) - pos >= _HEADER:
            size = struct.unpack_from("<I", buffered, pos + 4)[0]
            if size > self.limits.max_recv_buffer or size < _HEADER:
                address = str(self.peer_name[0]) if self.peer_name else "?"
                self.gate.oversized(address, size)
                self._buffer = b""
                if self.transport is not None:
                    self.transport.close()
                return
            pos += size
        super().data_received(data)


class _StationProcessor(UaProcessor):
    def __init__(self, iserver: Any, transport: Any, limits: TransportLimits, gate: SessionGate) -> None:
        super().__init__(iserver, transport, limits)
        self.gate = gate
        self._opened: Any = None

    async def process_message(self, seqhdr: Any, body: Any) -> Any:
        peek = body.copy()
        answer: Any = None
        try:
            activating = nodeid_from_binary(peek) == _ACTIVATE
            if activating:
                answer = await self._check_login(peek)
        except Exception:  # noqa: BLE001 - a malformed request: asyncua's own parsing answers it
            activating = False
        token = current_session.set(self.session)
        answer_token = login_answer.set(answer)
        try:
            result = await super().process_message(seqhdr, body)
        finally:
            login_answer.reset(answer_token)
            current_session.reset(token)
        session = self.session
        if activating and answer is not None and session is not None and session.is_activated() \
                and session is not self._opened:
            self._opened = session
            self.gate.opened(session, answer, self._close)
        return result

    async def _check_login(self, peek: Any) -> Any:
        header = struct_from_binary(ua.RequestHeader, peek)
        params = struct_from_binary(ua.ActivateSessionParameters, peek)
        session = self.session or self.iserver.lookup_external_session(header.AuthenticationToken)
        token = params.UserIdentityToken
        if isinstance(token, ua.ExtensionObject) and token.TypeId == ua.NodeId(ua.Int32(ua.ObjectIds.Null)):
            token = ua.AnonymousIdentityToken()  # as asyncua reads an empty token
        if not isinstance(token, self.iserver.supported_tokens) or session is None:
            return None  # a token kind not offered: asyncua refuses it, no login to count
        username = password = None
        if isinstance(token, ua.UserNameIdentityToken):
            username, password = self.iserver.decrypt_user_token(session, token)
        address = str(self.name[0]) if self.name else "?"
        return await self.gate.activate(address, username, password)

    async def _close(self) -> None:
        session = self.session
        if session is not None:
            await session.close_session(True)
        self._transport.close()

    async def close(self) -> None:
        if self._opened is not None:
            self.gate.closed(self._opened)
        await super().close()

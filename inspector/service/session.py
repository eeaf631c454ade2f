"""One attached client of the control link: its session, its bounded queue, its reader and writer.

Every client gets its own `StationControl` session: it starts anonymous (watch only) and
must log in over the link for anything else, with the same roles, login throttling and
audit as everywhere (`OPS`: each op is one call of the control API). Requests are
answered on the client's reader thread. Everything sent to it goes through its bounded
queue and one writer thread with a send timeout: the engine never waits for a client; a
full queue drops images first, and a client that cannot take even its answers and events
is disconnected. A GUI that hangs or dies therefore never holds the station.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

from inspector.access.control import ControlError, FeatureSetError, StationControl
from inspector.access.users import LoginRefused, PermissionDenied, User, UserError
from inspector.quality.gate import GateRefused
from inspector.service.protocol import MAX_REQUEST_BYTES, ProtocolError, decode, encode

log = logging.getLogger(__name__)

#: Messages waiting for one client; past this, images are dropped and then the client is cut off.
CLIENT_QUEUE = 256
#: Of those, at most this many may be images (answers and events keep room).
CLIENT_IMAGES_QUEUED = 16
#: A client that takes no bytes for this long is disconnected.
SEND_TIMEOUT_S = 5.0


class LinkHost(Protocol):
    """What a client link asks of the server that accepted it."""

    def hello(self) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...

    def forget(self, client: ClientLink) -> None: ...


# ---------------------------------------------------------------------------- requests
def _user(u: User | None) -> dict[str, str] | None:
    return None if u is None else {"name": u.name, "role": u.role.label}


def _audit(entries: list[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(e) for e in entries]


def _pause(c: StationControl, paused: bool) -> bool:
    c.pause(paused)
    return bool(c.station.paused)


Op = Callable[[StationControl, dict[str, Any]], Any]

#: The control API over the link: each op is one `StationControl` call (roles and audit there).
OPS: dict[str, Op] = {
    "login": lambda c, a: _user(c.login(str(a["name"]), str(a["password"]))),
    "logout": lambda c, a: c.logout(),
    "whoami": lambda c, a: _user(c.user),
    "first_start_needed": lambda c, a: c.first_start_needed(),
    "create_admin": lambda c, a: _user(c.create_admin(str(a["password"]), name=str(a.get("name", "admin")))),
    "pause": lambda c, a: _pause(c, bool(a["paused"])),
    "select_recipe": lambda c, a: c.select_recipe(a["key"], override_gate=bool(a.get("override_gate", False)),
                                                  reason=str(a.get("reason", ""))),
    "rollback_recipe": lambda c, a: c.rollback_recipe(str(a["name"]), to=None if a.get("to") is None else int(a["to"]),
                                                      reason=str(a.get("reason", ""))),
    "recipe_in_force": lambda c, a: c.recipe_in_force(),
    "save_taught_recipe": lambda c, a: c.save_taught_recipe(dict(a["models"]), a.get("detector")),
    "trigger_part": lambda c, a: c.trigger_part(a.get("part_id")),
    "require": lambda c, a: c.require(str(a["action"])),
    "review": lambda c, a: c.review(int(a["inspection_id"]), a.get("mark")),
    "record_export": lambda c, a: c.record_export(str(a["kind"]), str(a["path"]), int(a["rows"])),
    "audit_entries": lambda c, a: _audit(c.audit_entries(int(a.get("limit", 500)), a.get("since"))),
    "list_users": lambda c, a: [_user(u) for u in c.list_users()],
    "add_user": lambda c, a: _user(c.add_user(str(a["name"]), str(a["password"]), str(a["role"]))),
    "set_role": lambda c, a: c.set_role(str(a["name"]), str(a["role"])).label,
    "set_password": lambda c, a: c.set_password(str(a["name"]), str(a["password"])),
    "unlock_user": lambda c, a: c.unlock_user(str(a["name"])),
    "remove_user": lambda c, a: c.remove_user(str(a["name"])).label,
    "change_own_password": lambda c, a: c.change_own_password(str(a["password"])),
}

#: Errors a request may end with, answered by name (the client raises the same class).
_ANSWERED = (PermissionDenied, UserError, ControlError, FeatureSetError, KeyError, ValueError, TypeError)


# ---------------------------------------------------------------------------- one client
class ClientLink:
    """One attached client: its socket, its session and its outgoing queue.

    Args:
        sock: The accepted connection.
        server: The server (hello, images).
        control: This client's session.
        name: For log lines ("client 3").
    """

    def __init__(self, sock: socket.socket, server: LinkHost, control: StationControl, name: str) -> None:
        self.sock = sock
        self.server = server
        self.control = control
        self.name = name
        self.wants_images = False
        #: display images as PNG instead of JPEG (the Teach dialog collecting good parts: lossless)
        self.wants_lossless = False
        self.dropped_images = 0
        self._out: queue.Queue[tuple[bytes, bool] | None] = queue.Queue(CLIENT_QUEUE)  # (line, is an image)
        self._images_queued = 0
        self._count_lock = threading.Lock()
        self._closed = threading.Event()
        sock.settimeout(SEND_TIMEOUT_S)
        self._reader = threading.Thread(target=self._read_loop, name=f"link-{name}-read", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"link-{name}-write", daemon=True)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def start(self) -> None:
        self._writer.start()
        self._reader.start()

    def send(self, message: bytes, *, image: bool = False) -> bool:
        """Queue one line without waiting; False when it was dropped (an image) or the client was cut off."""
        if self.closed:
            return False
        if image:
            with self._count_lock:
                if self._images_queued >= CLIENT_IMAGES_QUEUED:
                    self.dropped_images += 1
                    return False
                self._images_queued += 1
        try:
            self._out.put_nowait((message, image))
        except queue.Full:
            if image:
                with self._count_lock:
                    self._images_queued -= 1
                    self.dropped_images += 1
                return False
            log.warning("control link: %s takes nothing (%d messages waiting): disconnected", self.name, CLIENT_QUEUE)
            self.close()
            return False
        return True

    def close(self) -> None:
        """Cut the client off (idempotent); its session logs out."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self._out.put_nowait(None)
        except queue.Full:
            pass
        try:
            self.control.logout()
        except Exception as exc:  # noqa: BLE001 - an audit row that cannot be written must not stop the server
            log.warning("control link: %s: logout: %s", self.name, exc)
        self.server.forget(self)

    def join(self, timeout: float = 2.0) -> None:
        for t in (self._reader, self._writer):
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout)

    # -------------------------------------------------------------- threads
    def _write_loop(self) -> None:
        try:
            while True:
                item = self._out.get()
                if item is None or self.closed:
                    break
                msg, image = item
                if image:
                    with self._count_lock:
                        self._images_queued -= 1
                self.sock.sendall(msg)
        except (TimeoutError, OSError) as exc:
            if not self.closed:
                log.warning("control link: %s: cannot send (%s): disconnected", self.name, exc)
        finally:
            self.close()
            try:
                self.sock.close()
            except OSError:
                pass

    def _read_loop(self) -> None:
        buf = b""
        try:
            while not self.closed:
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        self._answer(line)
                if len(buf) > MAX_REQUEST_BYTES:
                    log.warning("control link: %s: a request over %d bytes: disconnected", self.name, MAX_REQUEST_BYTES)
                    break
        except OSError:
            pass
        finally:
            self.close()

    def _answer(self, line: bytes) -> None:
        rid: Any = None
        try:
            req = decode(line)
            rid = req.get("id")
            op = req.get("op")
            args = req.get("args") or {}
            if not isinstance(op, str) or not isinstance(args, dict):
                raise ProtocolError("a request has an op (text) and args (an object)")
            result = self._perform(op, args)
            self.send(encode({"id": rid, "ok": True, "result": result}))
        except ProtocolError as exc:
            self.send(encode({"id": rid, "ok": False, "kind": "ProtocolError", "error": str(exc)}))
        except LoginRefused as exc:
            self.send(encode({"id": rid, "ok": False, "kind": "LoginRefused", "error": str(exc),
                              "retry_after_s": exc.retry_after_s}))
        except GateRefused as exc:  # its fields too: the client raises the same type with them
            self.send(encode({"id": rid, "ok": False, "kind": "GateRefused", "error": str(exc), "gate": exc.fields()}))
        except _ANSWERED as exc:
            text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            self.send(encode({"id": rid, "ok": False, "kind": type(exc).__name__, "error": text}))
        except Exception as exc:  # noqa: BLE001 - one line for the client and the log, never a dead link
            log.warning("control link: %s: request failed: %s: %s", self.name, type(exc).__name__, exc)
            self.send(encode({"id": rid, "ok": False, "kind": "ControlError", "error": f"{type(exc).__name__}: {exc}"}))

    def _perform(self, op: str, args: dict[str, Any]) -> Any:
        if op == "hello":
            return self.server.hello()
        if op == "images":
            self.wants_images = bool(args.get("on", True))
            self.wants_lossless = bool(args.get("lossless", False))
            return self.wants_images
        if op == "status":
            return self.server.status()
        fn = OPS.get(op)
        if fn is None:
            raise ProtocolError(f"unknown op {op!r}")
        return fn(self.control, args)

"""The client end of the control link: requests answered in order, events handed on (the GUI and the CLI).

`attach` finds a running ``inspector service`` of a station (its socket, else the usual places,
`protocol.socket_candidates`) and says hello; `RemoteLink.request` performs one op of the
service's control API (`session.OPS`) in this client's session there, raising what the
service's `StationControl` raised (`PermissionDenied`, `ControlError`, ...). The attached GUI
(``gui/remote.py``) and ``inspector recipe select`` use it; it imports no Qt.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspector.access.control import ControlError, FeatureSetError
from inspector.access.users import LoginRefused, PermissionDenied, UserError
from inspector.quality.gate import GateRefused
from inspector.service.protocol import VERSION, ProtocolError, decode, encode, socket_candidates

log = logging.getLogger(__name__)

#: How long a request waits for its answer (a login may be throttled server-side for longer: it answers at once).
REQUEST_TIMEOUT_S = 10.0
#: A recipe switch (a selection, a taught recipe's save) loads and compiles its models before it answers.
SWITCH_TIMEOUT_S = 120.0


class LinkLost(ControlError):
    """The service stopped answering (it stopped, or the socket closed); one line."""


_ERRORS: dict[str, type[Exception]] = {
    "PermissionDenied": PermissionDenied, "UserError": UserError, "ControlError": ControlError,
    "FeatureSetError": FeatureSetError, "RecipeError": FeatureSetError, "KeyError": KeyError, "ValueError": ValueError, "TypeError": TypeError,
}


class RemoteLink:
    """A connection to the service: requests answered in order, events handed to `on_event`.

    Args:
        path: The service's socket.
        timeout: Seconds to connect.

    Raises:
        OSError: Nothing answers at ``path``.
    """

    def __init__(self, path: Path | str, *, timeout: float = 2.0) -> None:
        self.path = Path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except OSError:
            self._sock.close()
            raise
        self._sock.settimeout(None)
        self._ids = itertools.count(1)
        self._pending: dict[int, list[Any]] = {}  # id -> [event, answer]
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.lost: str | None = None
        #: Called on the reader thread with every event message.
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        #: Called once on the reader thread when the link is lost (not after `close`).
        self.on_lost: Callable[[str], None] | None = None
        self._closing = False
        self._reader = threading.Thread(target=self._read_loop, name="link-read", daemon=True)
        self._reader.start()

    def request(self, op: str, timeout: float = REQUEST_TIMEOUT_S, **args: Any) -> Any:
        """Perform ``op`` on the service and return its result.

        Raises:
            LinkLost: No answer (the service is gone).
            PermissionDenied, LoginRefused, UserError, ControlError, ...: What the service's control API raised.
        """
        if self.lost is not None:
            raise LinkLost(f"station service: {self.lost}")
        rid = next(self._ids)
        slot: list[Any] = [threading.Event(), None]
        with self._lock:
            self._pending[rid] = slot
        try:
            with self._send_lock:
                self._sock.sendall(encode({"id": rid, "op": op, "args": args}))
            if not slot[0].wait(timeout):
                raise LinkLost(f"station service: no answer to {op} in {timeout:g} s")
        except OSError as exc:
            raise LinkLost(f"station service: {exc.strerror or exc}") from None
        finally:
            with self._lock:
                self._pending.pop(rid, None)
        answer = slot[1]
        if answer is None:
            raise LinkLost(f"station service: {self.lost or 'link closed'}")
        if answer.get("ok"):
            return answer.get("result")
        kind, text = str(answer.get("kind", "")), str(answer.get("error", "refused"))
        if kind == "LoginRefused":
            raise LoginRefused(text, float(answer.get("retry_after_s", 0.0)))
        gate = answer.get("gate")
        if kind == "GateRefused" and isinstance(gate, dict):
            raise GateRefused(str(gate.get("model", "")), str(gate.get("reason", "")),
                              recipe=str(gate.get("recipe", "")),
                              in_force=None if gate.get("in_force") is None else str(gate["in_force"]),
                              overridable=bool(gate.get("overridable", False)))
        raise _ERRORS.get(kind, ControlError)(text)

    def close(self) -> None:
        """Close the link (the service's session of this window logs out; the station goes on)."""
        self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        if self._reader is not threading.current_thread():
            self._reader.join(2.0)

    def _read_loop(self) -> None:
        reason = "the service closed the link"
        try:
            with self._sock.makefile("rb") as f:
                for line in f:
                    try:
                        msg = decode(line)
                    except ProtocolError as exc:
                        log.warning("control link: %s", exc)
                        continue
                    if "event" in msg:
                        if self.on_event is not None:
                            try:
                                self.on_event(msg)
                            except Exception as exc:  # noqa: BLE001 - one bad event must not end the link
                                log.warning("control link: event %s: %s: %s", msg.get("event"), type(exc).__name__, exc)
                        continue
                    with self._lock:
                        slot = self._pending.get(msg.get("id"))  # type: ignore[arg-type]
                    if slot is not None:
                        slot[1] = msg
                        slot[0].set()
        except (OSError, ValueError) as exc:
            reason = str(exc)
        self.lost = reason
        with self._lock:
            for slot in self._pending.values():
                slot[0].set()
        if not self._closing and self.on_lost is not None:
            self.on_lost(reason)


def attach(station_name: str, path: Path | str | None = None) -> tuple[RemoteLink, dict[str, Any]] | None:
    """Connect to the service of ``station_name`` if one answers (``path``, else the usual places).

    Returns:
        The link and the service's hello, or None where no service answers.
    """
    for cand in [Path(path)] if path is not None else socket_candidates(station_name):
        if not cand.exists():
            continue
        try:
            link = RemoteLink(cand)
        except OSError as exc:
            log.debug("control link %s: %s", cand, exc)
            continue
        try:
            hello = link.request("hello", timeout=5.0)
        except ControlError as exc:
            log.warning("control link %s: %s", cand, exc)
            link.close()
            continue
        if int(hello.get("version", 0)) != VERSION:
            log.warning("control link %s: protocol %s, this client speaks %d", cand, hello.get("version"), VERSION)
            link.close()
            continue
        return link, hello
    return None

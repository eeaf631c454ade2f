"""`OpcUaPlc`: the station's OPC UA server (asyncua) after OPC 40100-1, Basic Vision System subset.

The address space is `inspector.plc.opcua_model`. The server runs its own asyncio loop on a
thread. A PLC (or MES) logs in with a station user name and password (`UserStore`: same
throttling and lockout as the GUI); anonymous sessions exist only when configured, and may
browse and subscribe but never call a method. Every method call is checked against the
caller's role (operator: jobs and modes; engineer: recipes) and audited under the caller's
name, refusals included; so are failed logins.

Mapping to the station:

- SelectModeAutomatic / Reset: Operational + Ready, inspection running;
- Halt: Halted, inspection paused (``set_running(False)``);
- StartSingleJob: triggers one part with the client's PartId (the JobId when empty); the
  part's ResultReady event carries the JobId and MeasId; Ready again at once (the line
  tracks many parts in flight);
- StartContinuous: ContinuousExecution; parts from the conveyor or other triggers carry its
  JobId; Stop / Abort: back to Ready;
- ResultReadyEvent per part, emitted by the VisionSystem: ResultState is the spec's
  processing state (1 Completed; 3 Aborted for a part incomplete at its deadline, with
  IsPartial true); the verdict is in ResultContent (``["OK" | "NG", reason]``).

Security: binds 127.0.0.1 unless the config exposes it; a Basic256Sha256 Sign&Encrypt
endpoint with a self-signed certificate made on first start (``cert_dir``); a None-security
endpoint only on loopback (``insecure``), where a password does not leave the machine.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import itertools
import logging
import re
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, Self

from inspector.access.users import LoginRefused, Role, UserStore
from inspector.line.tracker import PART_ID_PATTERN
from inspector.pipeline.results import InspectionResult, PartResult
from inspector.plc.modbus_map import StationState
from inspector.plc.modbus_server import PlcError

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: the station user behind the current method call (set per request, see `_track_callers`)
_caller: contextvars.ContextVar[Any] = contextvars.ContextVar("opcua_caller", default=None)
#: the lowest role each method needs
_NEEDS = {
    **dict.fromkeys(("Halt", "Reset", "SelectModeAutomatic", "StartSingleJob", "StartContinuous", "Stop", "Abort"),
                    Role.OPERATOR),
    **dict.fromkeys(("PrepareRecipe", "UnprepareRecipe", "PrepareProduct", "UnprepareProduct"), Role.ENGINEER),
}
_JOBS_REMEMBERED = 10_000  # parts whose job is still owed a result (a lost part must not grow this forever)
_ERROR_POLLS = 3  # consecutive ALARM health reads before the VisionStateMachine goes to Error


class OpcUaCommands(Protocol):
    """What the OPC UA server may ask of the station (`inspector.plc.commands.StationCommands`)."""

    def trigger_part(self, part_id: str) -> str: ...

    def set_running(self, running: bool) -> None: ...

    def select_recipe(self, number: int) -> None: ...

    def state(self) -> StationState: ...


class Auditor(Protocol):
    def record(self, user: str, action: str, target: str = "", old: object = None, new: object = None) -> Any: ...


@dataclass(frozen=True)
class _Job:
    job_id: str
    meas_id: str
    recipe_id: str = ""
    product_id: str = ""


class _Refusal(Exception):
    """A method call turned down with an OPC UA status code (and a one-line reason for log and audit)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


class OpcUaPlc:
    """OPC UA server of one station (also a sink of part results).

    Args:
        commands: Carries out the calls on the station.
        host: Address to bind (127.0.0.1 unless the config exposes it).
        port: TCP port (4840 is the standard one).
        users: The station's users (None: nobody can log in; only anonymous, if allowed).
        audit: Where logins and calls are recorded (`inspector.access.audit.AuditLog`), or None.
        anonymous: Allow anonymous sessions (browse, read, subscribe; never a method call).
        cert_dir: Where the server's key and self-signed certificate live (made on first start).
        insecure: Also offer a None-security endpoint (default: only when bound to loopback).
        name: The station's name (in the certificate and the application URI).
    """

    name = "plc-opcua"
    needs_pixels = False

    def __init__(self, commands: OpcUaCommands, *, host: str = "127.0.0.1", port: int = 4840,
                 users: UserStore | None = None, audit: Auditor | None = None, anonymous: bool = False,
                 cert_dir: Path | None = None, insecure: bool | None = None, name: str = "inspector") -> None:
        self.commands = commands
        self.host, self.port = host, port
        self.users, self.audit = users, audit
        self.anonymous = anonymous
        self.cert_dir = cert_dir if cert_dir is not None else _default_cert_dir()
        self.insecure = host in _LOOPBACK if insecure is None else insecure
        self.station_name = name
        self.url = f"opc.tcp://{host}:{port}"
        self.application_uri = f"urn:{socket.gethostname()}:inspector:{name}"
        self._run_tag = uuid.uuid4().hex[:8]
        self._seq = itertools.count(1)
        self._jobs: collections.OrderedDict[str, _Job] = collections.OrderedDict()
        self._continuous: _Job | None = None
        self._lock = threading.Lock()
        self._roles: dict[str, Role] = {}
        self.counts = collections.Counter[str]()
        self.vision_state, self.automatic_state = "Preoperational", "Initialized"
        self._prepared: tuple[str, str] | None = None  # (external recipe id, product id) selected by PrepareRecipe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[PartResult] | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="plc-opcua-call")  # station calls, audit
        self.model: Any = None

    # ------------------------------------------------------------------ sink protocol
    def wants(self, result: InspectionResult) -> bool:
        return False  # frames are not the PLC's business; parts are

    def submit(self, result: InspectionResult) -> bool:
        return True

    def submit_part(self, part: PartResult) -> bool:
        """Queue a ResultReady event for ``part`` (never blocks); False when the server is not running."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed():
            self.counts["results_not_published"] += 1
            return False
        try:
            loop.call_soon_threadsafe(self._enqueue, part)
        except RuntimeError:  # the loop closed between the check and the call
            self.counts["results_not_published"] += 1
            return False
        return True

    def _enqueue(self, part: PartResult) -> None:
        assert self._queue is not None
        try:
            self._queue.put_nowait(part)
        except asyncio.QueueFull:
            self.counts["results_not_published"] += 1
            log.error("plc: OPC UA result queue full: no ResultReady for part %s (it is stored)", part.part_id)

    def stats(self) -> dict[str, float]:
        return {"vision_state": VISION_CODES.get(self.vision_state, -1), "jobs": self.counts["jobs"],
                "results": self.counts["results"], **{k: v for k, v in self.counts.items() if k not in ("jobs", "results")}}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Listen on ``host:port`` (returns once listening).

        Raises:
            PlcError: The port cannot be bound or the certificate cannot be made.
        """
        if self._thread is not None:
            return
        if self.host not in _LOOPBACK:
            log.warning("plc: OPC UA listens on %s:%d (Sign&Encrypt%s; logins are station users)", self.host, self.port,
                        ", and None security" if self.insecure else "")
        self._ready.clear()
        self._start_error = None
        self._thread = threading.Thread(target=self._run, name="plc-opcua", daemon=True)
        self._thread.start()
        self._ready.wait(30.0)
        if self._start_error is not None or not self._ready.is_set():
            why = self._start_error or "timed out"
            self.stop()
            raise PlcError(f"plc: OPC UA cannot listen on {self.host}:{self.port}: {why}") from None

    def stop(self, timeout: float = 5.0) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:
                pass
        t, self._thread = self._thread, None
        if t is not None:
            t.join(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._start_error = exc
                self._ready.set()
            else:
                log.exception("plc: OPC UA server stopped")
        finally:
            self._loop = None

    async def _main(self) -> None:
        from asyncua import Server, ua

        from inspector.plc import opcua_model

        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._queue = asyncio.Queue(maxsize=10_000)
        server = Server(user_manager=_user_manager(self))
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"inspector {self.station_name}")
        await server.set_application_uri(self.application_uri)
        await self._load_certificate(server)
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        if self.insecure:
            policies.insert(0, ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        handlers = {name: self._method(name) for name in _NEEDS}
        self.model = await opcua_model.build(server, handlers)
        events = await server.get_event_generator(self.model.result_event_type, self.model.system)
        _track_callers(server)
        async with server:
            self._ready.set()
            log.info("plc: OPC UA server at %s (anonymous %s)", self.url, "allowed" if self.anonymous else "refused")
            publisher = asyncio.create_task(self._publish(events))
            watcher = asyncio.create_task(self._watch())
            await self._stopping.wait()
            publisher.cancel()
            watcher.cancel()
        self._worker.shutdown(wait=False)

    async def _load_certificate(self, server: Any) -> None:
        from asyncua.crypto.cert_gen import setup_self_signed_certificate
        from cryptography.x509.oid import ExtendedKeyUsageOID

        self.cert_dir.mkdir(parents=True, exist_ok=True)
        key, cert = self.cert_dir / "server_key.pem", self.cert_dir / "server_cert.der"
        made = not cert.exists()
        await setup_self_signed_certificate(key, cert, self.application_uri, socket.gethostname(),
                                            [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
                                            {"commonName": f"inspector {self.station_name}", "organizationName": "inspector"})
        key.chmod(0o600)
        if made:
            log.info("plc: made the OPC UA server certificate %s", cert)
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))

    # ------------------------------------------------------------------ users and audit
    def login(self, name: str | None, password: str | None) -> Any:
        """The asyncua user for a session's identity token, or None (refused, audited)."""
        from asyncua.crypto.permission_rules import User, UserRole

        if name is None:
            if not self.anonymous:
                self.counts["logins_refused"] += 1
                self._audit("(anonymous)", "opcua.login_refused", "anonymous", None, "anonymous sessions not allowed")
                return None
            # asyncua's rules let its Anonymous role read nothing; ours may watch: a nameless
            # User, whom every method call refuses (no station role)
            return User(role=UserRole.User, name=None)
        who = name.strip()[:64]
        try:
            user = self.users.verify(who, password or "") if self.users is not None else None
        except LoginRefused as exc:
            self.counts["logins_refused"] += 1
            self._audit("(anonymous)", "opcua.login_refused", who, None, str(exc))
            return None
        if user is None:
            self.counts["logins_failed"] += 1
            self._audit("(anonymous)", "opcua.login_failed", who)
            log.warning("plc: OPC UA login refused for %r (wrong name or password)", who)
            return None
        self._roles[user.name] = user.role
        self._audit(user.name, "opcua.login", user.name, None, user.role.label)
        return User(role=UserRole.User, name=user.name)

    def _audit(self, user: str, action: str, target: str = "", old: object = None, new: object = None) -> None:
        if self.audit is None:
            return
        try:
            self.audit.record(user, action, target, old, new)
        except Exception:
            log.exception("plc: audit of %s by %s failed", action, user)

    # ------------------------------------------------------------------ methods
    def _method(self, name: str) -> Callable[..., Any]:
        body = getattr(self, "_do_" + re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower())

        async def call(parent: Any, *args: Any) -> Any:
            from asyncua import ua

            user = _caller.get()
            who = getattr(user, "name", None)
            need = _NEEDS[name]
            role = self._roles.get(who) if who else None
            loop = asyncio.get_running_loop()
            if role is None or role < need:
                self.counts["calls_denied"] += 1
                why = f"{name}: needs the {need.label} role or higher ({f'{who}, {role.label}' if role else 'anonymous'})"
                log.warning("plc: OPC UA %s", why)
                await loop.run_in_executor(self._worker, partial(self._audit, who or "(anonymous)", f"opcua.{name}.denied",
                                                                 "", None, why))
                return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadUserAccessDenied))
            values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
            try:
                outputs, note = await loop.run_in_executor(self._worker, body, *values)
            except _Refusal as exc:
                self.counts["calls_refused"] += 1
                log.warning("plc: OPC UA %s by %s refused: %s", name, who, exc)
                await loop.run_in_executor(self._worker, partial(self._audit, str(who), f"opcua.{name}.refused", "", None,
                                                                 str(exc)))
                return ua.StatusCode(ua.UInt32(exc.status))
            self.counts["calls"] += 1
            await loop.run_in_executor(self._worker, partial(self._audit, str(who), f"opcua.{name}", note, None,
                                                             f"{self.vision_state}/{self.automatic_state}"))
            await self._show_states()
            return outputs

        return call

    def _do_halt(self) -> tuple[list[Any], str]:
        self._station(lambda: self.commands.set_running(False))
        self._set_states("Halted", "Initialized")
        return self._error_ok(), "station"

    def _do_reset(self) -> tuple[list[Any], str]:
        return self._do_select_mode_automatic()

    def _do_select_mode_automatic(self) -> tuple[list[Any], str]:
        self._station(lambda: self.commands.set_running(True))
        self._set_states("Operational", "Ready")
        return self._error_ok(), "station"

    def _do_start_single_job(self, meas: Any, part: Any, recipe: Any, product: Any, params: Any) -> tuple[list[Any], str]:
        from asyncua import ua

        self._require_ready()
        job = self._new_job(meas, recipe, product)
        part_id = _text(part) or job.job_id
        if not re.fullmatch(PART_ID_PATTERN, part_id):
            raise _Refusal(ua.StatusCodes.BadInvalidArgument,
                           f"PartId {part_id[:80]!r}: 1-64 letters, digits, '.', '_', ':' or '-'")
        self._set_states("Operational", "SingleExecution")
        try:
            with self._lock:  # remembered first: a fast part's result must find its job
                self._remember(part_id, job)
            got = self._station(lambda: self.commands.trigger_part(part_id))
            if got != part_id:
                with self._lock:
                    self._jobs.pop(part_id, None)
                    self._remember(got, job)
        except _Refusal:
            with self._lock:
                self._jobs.pop(part_id, None)
            raise
        finally:
            self._set_states("Operational", "Ready")  # ready for the next job at once: parts overlap on a line
        self.counts["jobs"] += 1
        return [self._variant("JobIdDataType", Id=job.job_id), ua.Variant(0, ua.VariantType.Int32)], \
            f"part {part_id} job {job.job_id}"

    def _do_start_continuous(self, meas: Any, part: Any, recipe: Any, product: Any, params: Any) -> tuple[list[Any], str]:
        from asyncua import ua

        self._require_ready()
        job = self._new_job(meas, recipe, product)
        self._station(lambda: self.commands.set_running(True))
        self._continuous = job
        self._set_states("Operational", "ContinuousExecution")
        return [self._variant("JobIdDataType", Id=job.job_id), ua.Variant(0, ua.VariantType.Int32)], f"job {job.job_id}"

    def _do_stop(self) -> tuple[list[Any], str]:
        self._require_operational()
        self._continuous = None
        self._set_states("Operational", "Ready")
        return self._error_ok(), "station"

    def _do_abort(self) -> tuple[list[Any], str]:
        return self._do_stop()

    def _do_prepare_recipe(self, external: Any, internal: Any) -> tuple[list[Any], str]:
        from asyncua import ua

        ident = _text(internal) or _text(external)
        self._select(ident)
        self._prepared = (_text(external) or ident, "")
        return [self._variant("RecipeIdInternalDataType", Id=ident), ua.Variant(True, ua.VariantType.Boolean),
                ua.Variant(0, ua.VariantType.Int32)], f"recipe {ident}"

    def _do_unprepare_recipe(self, external: Any, internal: Any) -> tuple[list[Any], str]:
        ident = _text(internal) or _text(external)
        self._unprepare(ident)
        return self._error_ok(), f"recipe {ident}"

    def _do_prepare_product(self, product: Any) -> tuple[list[Any], str]:
        from asyncua import ua

        ident = _text(product)
        self._select(ident)
        self._prepared = ("", ident)
        return [self._variant("RecipeIdInternalDataType", Id=ident), ua.Variant(0, ua.VariantType.Int32)], \
            f"product {ident}"

    def _do_unprepare_product(self, product: Any) -> tuple[list[Any], str]:
        ident = _text(product)
        self._unprepare(ident)
        return self._error_ok(), f"product {ident}"

    # ------------------------------------------------------------------ method helpers (worker thread)
    def _select(self, ident: str) -> None:
        """Select a product recipe by its number (the station's recipes are numbered, as for Modbus)."""
        from asyncua import ua

        if not ident:
            raise _Refusal(ua.StatusCodes.BadInvalidArgument, "no recipe id given")
        if not ident.isdigit():
            raise _Refusal(ua.StatusCodes.BadNotFound, f"recipe {ident[:80]!r}: recipes are selected by number")
        try:
            self.commands.select_recipe(int(ident))
        except RuntimeError as exc:  # no recipes on this station yet
            raise _Refusal(ua.StatusCodes.BadNotSupported, str(exc)) from None
        except (ValueError, LookupError) as exc:
            raise _Refusal(ua.StatusCodes.BadNotFound, str(exc)) from None

    def _unprepare(self, ident: str) -> None:
        from asyncua import ua

        if self._prepared is None or ident not in self._prepared:
            raise _Refusal(ua.StatusCodes.BadNotFound, f"recipe {ident[:80]!r} is not prepared")
        self._prepared = None

    def _new_job(self, meas: Any, recipe: Any, product: Any) -> _Job:
        from asyncua import ua

        rid, pid = _text(recipe), _text(product)
        for kind, ident, slot in (("RecipeId", rid, 0), ("ProductId", pid, 1)):
            if ident and (self._prepared is None or self._prepared[slot] != ident):
                raise _Refusal(ua.StatusCodes.BadInvalidArgument, f"{kind} {ident[:80]!r} is not a prepared recipe")
        return _Job(f"job-{self._run_tag}-{next(self._seq)}", _text(meas), rid, pid)

    def _remember(self, part_id: str, job: _Job) -> None:
        self._jobs[part_id] = job
        while len(self._jobs) > _JOBS_REMEMBERED:
            self._jobs.popitem(last=False)
            self.counts["jobs_forgotten"] += 1

    def _require_operational(self) -> None:
        from asyncua import ua

        if self.vision_state != "Operational":
            raise _Refusal(ua.StatusCodes.BadInvalidState, f"the VisionStateMachine is {self.vision_state}, not Operational")

    def _require_ready(self) -> None:
        from asyncua import ua

        self._require_operational()
        if self.automatic_state != "Ready":
            raise _Refusal(ua.StatusCodes.BadInvalidState, f"the AutomaticModeStateMachine is {self.automatic_state}, not Ready")

    def _station(self, action: Callable[[], Any]) -> Any:
        from asyncua import ua

        try:
            return action()
        except (ValueError, LookupError) as exc:
            raise _Refusal(ua.StatusCodes.BadInvalidArgument, str(exc)) from None
        except (RuntimeError, PermissionError) as exc:  # StationError, ControlError, PermissionDenied
            raise _Refusal(ua.StatusCodes.BadInvalidState, str(exc)) from None

    def _set_states(self, vision: str, automatic: str) -> None:
        self.vision_state, self.automatic_state = vision, automatic

    def _error_ok(self) -> list[Any]:
        from asyncua import ua

        return [ua.Variant(0, ua.VariantType.Int32)]

    def _variant(self, type_name: str, **values: Any) -> Any:
        from asyncua import ua

        return ua.Variant(self.model.make(type_name, **values), ua.VariantType.ExtensionObject)

    # ------------------------------------------------------------------ loop tasks
    async def _show_states(self) -> None:
        from asyncua import ua

        await self.model.vision_state.write_value(ua.LocalizedText(self.vision_state))
        await self.model.automatic_state.write_value(ua.LocalizedText(self.automatic_state))

    async def _watch(self) -> None:
        """Follow the station's health: Error after a persistent alarm while Operational."""
        alarms = 0
        while True:
            await asyncio.sleep(1.0)
            try:
                state = await asyncio.get_running_loop().run_in_executor(self._worker, self.commands.state)
            except Exception:
                log.exception("plc: station state read failed")
                continue
            alarms = alarms + 1 if state is StationState.ERROR else 0
            if alarms >= _ERROR_POLLS and self.vision_state == "Operational":
                log.error("plc: station health ALARM: VisionStateMachine -> Error (Reset to resume)")
                self._continuous = None
                self._set_states("Error", "Initialized")
                await self._show_states()

    async def _publish(self, events: Any) -> None:
        from inspector.plc.opcua_model import publish

        assert self._queue is not None
        while True:
            part = await self._queue.get()
            with self._lock:
                job = self._jobs.pop(part.part_id, None)
            if job is None:
                job = self._continuous or _Job(f"auto-{self._run_tag}-{next(self._seq)}", "")
            prepared = self._prepared or ("", "")
            try:
                await publish(self.model, events, part, job.job_id, f"result-{self._run_tag}-{next(self._seq)}",
                              meas_id=job.meas_id, recipe_id=job.recipe_id or prepared[0],
                              product_id=job.product_id or prepared[1])
                self.counts["results"] += 1
            except Exception:
                self.counts["results_not_published"] += 1
                log.exception("plc: ResultReady for part %s failed", part.part_id)


VISION_CODES = {"Preoperational": 0, "Halted": 1, "Operational": 2, "Error": 3}


def _user_manager(plc: OpcUaPlc) -> Any:
    """An asyncua `UserManager` that checks session identity tokens against the station's users."""
    from asyncua.server.user_managers import UserManager

    class StationUsers(UserManager):
        def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                     certificate: Any = None) -> Any:
            # ``certificate`` is the secure channel's client certificate, not a user token
            # (X509 user tokens are not offered): the user is the name and password, or anonymous
            return plc.login(username, password)

    return StationUsers()


def _track_callers(server: Any) -> None:
    """Make each session's user visible to the method callbacks (asyncua passes them no session).

    A method callback runs in the task that serves the session's Call request, so a context
    variable set around `InternalSession.call` reaches it.
    """
    iserver = server.iserver
    create = iserver.create_session

    def create_session(*args: Any, **kwargs: Any) -> Any:
        session = create(*args, **kwargs)
        call = session.call

        async def call_as_user(params: Any) -> Any:
            token = _caller.set(session.user)
            try:
                return await call(params)
            finally:
                _caller.reset(token)

        session.call = call_as_user
        return session

    iserver.create_session = create_session


def _text(value: Any) -> str:
    """The ``Id`` of one of the spec's id structures (empty when absent)."""
    ident = getattr(value, "Id", None)
    return str(ident).strip() if ident else ""


def _default_cert_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("inspector")) / "opcua"

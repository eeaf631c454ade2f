"""`OpcUaPlc`: the station's OPC UA server (asyncua) with the OPC 40100-1 (Machine Vision) model.

The types are at their official NodeIds (`inspector.plc.mv_ids`, `inspector.plc.mv_types`);
the instance is `inspector.plc.opcua_model`; RecipeManagement's and ResultManagement's
methods are `inspector.plc.opcua_management`. The server runs its own asyncio loop on a
thread. A PLC (or MES) logs in with a station user name and password, checked off the loop
and throttled per source address and per name (`inspector.plc.opcua_sessions`; no account
lockout, so nobody can keep the PLC out); anonymous sessions exist only when configured,
and may browse and subscribe but never call a method. Every method call is checked against
the caller's role as it is *now* (operator: jobs and modes; engineer: recipes). A change
writes its audit row under the caller's name first, with a bounded wait, or is refused
(BadResourceUnavailable); StartSingleJob is production and not audited; refusals and
logins are audited, failed logins in aggregate (one row per source address per minute).

Mapping to the station:

- SelectModeAutomatic: Operational + Ready, inspection running; Reset: through
  Preoperational on to Operational + Ready (the spec's automatic transition), running;
- Halt: Halted, inspection paused (``set_running(False)``); Halt, Reset, Stop and Abort take
  the spec's Cause and CauseDescription, written into their audit row;
- StartSingleJob: triggers one part with the client's PartId (the JobId when empty); the
  part's ResultReady event carries the JobId and MeasId; Ready again at once (the line
  tracks many parts in flight); refused with BadTooManyOperations while `MAX_JOBS_IN_FLIGHT`
  jobs wait for their results (an overload is answered job by job, never with Error);
- StartContinuous: ContinuousExecution; parts from the conveyor or other triggers carry its
  JobId; Stop / Abort: back to Ready;
- ResultReadyEvent per part, emitted by the VisionSystem: ResultState is the spec's
  processing state (1 Completed; 3 Aborted for a part incomplete at its deadline, with
  IsPartial true); the verdict is in ResultContent (``["OK" | "NG", reason]``);
- Error: after a station fault (`OpcUaCommands.fault`: a camera offline, results lost) seen in
  three health reads in a row while Operational; Reset leaves it.

Security: binds 127.0.0.1 unless the config exposes it; a Basic256Sha256 Sign&Encrypt
endpoint with a self-signed certificate made on first start (``cert_dir``); a None-security
endpoint only when configured (``insecure``, ``[plc] opcua_insecure``); requests of at most
`MAX_MESSAGE_BYTES` (a larger chunk closes the connection before it is buffered), ids of at
most `MAX_ID_CHARS` characters.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, Self

from inspector.access.users import Role, UserStore
from inspector.line.tracker import PART_ID_PATTERN
from inspector.pipeline.results import PartResult
from inspector.plc.link_status import LastCommand, OpcUaClient, OpcUaLinkStatus
from inspector.plc.modbus_map import StationState
from inspector.plc.modbus_server import PlcError
from inspector.plc.opcua_management import ManagementMethods
from inspector.plc.opcua_results import ResultStore
from inspector.plc.opcua_sessions import ANONYMOUS, DIGEST_S, Auditor, DeferredAudit, OpcUaSessions
from inspector.plc.opcua_sessions import Refusal as _Refusal
from inspector.plc.opcua_transport import current_session, login_answer

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: the lowest role each method needs
_NEEDS = {
    **dict.fromkeys(("Halt", "Reset", "SelectModeAutomatic", "StartSingleJob", "StartContinuous", "Stop", "Abort",
                     "GetRecipeListFiltered", "GetResultById", "GetResultComponentsById", "GetResultListFiltered"),
                    Role.OPERATOR),
    **dict.fromkeys(("PrepareRecipe", "UnprepareRecipe", "PrepareProduct", "UnprepareProduct"), Role.ENGINEER),
}
_READS = ("GetRecipeListFiltered", "GetResultById", "GetResultComponentsById", "GetResultListFiltered")
_JOBS_REMEMBERED = 10_000  # parts whose job is still owed a result (a lost part must not grow this forever)
_ERROR_POLLS = 3  # consecutive fault reads before the VisionStateMachine goes to Error
#: single jobs whose result is still owed before StartSingleJob is refused (BadTooManyOperations):
#: a burst faster than the line is answered job by job, the system staying Operational/Ready
MAX_JOBS_IN_FLIGHT = 64
_JOB_OWED_S = 60.0  # a job whose result has not come back after this long no longer counts as in flight
_SWEEP_S = 2.0  # how often the sessions' users are read again (removed or changed users' sessions close)
#: a request larger than this is refused by the transport (a PLC's calls are a few hundred bytes)
MAX_MESSAGE_BYTES = 256 * 1024
MAX_ID_CHARS = 256  # MeasId, PartId, RecipeId, ProductId: longer ones are refused (BadInvalidArgument)
MAX_PARAMETERS = 64  # elements of StartSingleJob's / StartContinuous's Parameters


class OpcUaCommands(Protocol):
    """What the OPC UA server may ask of the station (`inspector.plc.commands.StationCommands`)."""

    def trigger_part(self, part_id: str) -> str: ...

    def set_running(self, running: bool) -> None: ...

    def select_recipe(self, number: int) -> None: ...

    def state(self) -> StationState: ...

    def fault(self) -> str:
        """A fault of the station ("" when none): what sends the VisionStateMachine to Error."""
        ...

    def recipe_number(self) -> int: ...


@dataclass(frozen=True)
class _Job:
    job_id: str
    meas_id: str
    recipe_id: str = ""
    product_id: str = ""
    started: float = 0.0  # monotonic time of StartSingleJob


@dataclass(frozen=True)
class _Call:
    """One method call on the worker thread: who calls what, and how its change is committed to the trail."""

    plc: OpcUaPlc
    method: str
    user: str

    def commit(self, note: str) -> None:
        """Write the call's audit row before its change is made; refuse the call when it cannot be written.

        Raises:
            _Refusal: BadResourceUnavailable: the row was not written within the bounded wait.
        """
        from asyncua import ua

        audit = self.plc.audit
        if audit is None:
            return
        try:
            audit.record(self.user, f"opcua.{self.method}", note, f"{self.plc.vision_state}/{self.plc.automatic_state}",
                         None, wait_s=self.plc.audit_wait_s)
        except Exception as exc:  # noqa: BLE001 - AuditUnavailable, or any database error: not carried out
            self.plc.counts["calls_unaudited"] += 1
            raise _Refusal(ua.StatusCodes.BadResourceUnavailable,
                           f"not carried out: its audit row cannot be written ({str(exc)[:160]})") from None


class OpcUaPlc(ManagementMethods):
    """OPC UA server of one station (also a sink of part results).

    Args:
        commands: Carries out the calls on the station.
        host: Address to bind (127.0.0.1 unless the config exposes it).
        port: TCP port (4840 is the standard one).
        users: The station's users (None: nobody can log in; only anonymous, if allowed).
        audit: Where logins and calls are recorded (`inspector.access.audit.AuditLog`), or None.
        anonymous: Allow anonymous sessions (browse, read, subscribe; never a method call).
        cert_dir: Where the server's key and self-signed certificate live (made on first start).
        insecure: Also offer a None-security endpoint (passwords then travel in clear text).
        name: The station's name (in the certificate and the application URI).
        audit_wait_s: The longest wait for the database's lock when a call's audit row is
            written first; a call whose row cannot be written in time is refused.
        login_wait_s: The longest wait for a login's check (password hash, user read).
        call_wait_s: The longest wait for the station to carry out a call.
    """

    name = "plc-opcua"
    commands: OpcUaCommands

    def __init__(self, commands: OpcUaCommands, *, host: str = "127.0.0.1", port: int = 4840,
                 users: UserStore | None = None, audit: Auditor | None = None, anonymous: bool = False,
                 cert_dir: Path | None = None, insecure: bool = False, name: str = "inspector",
                 audit_wait_s: float = 1.0, login_wait_s: float = 3.0, call_wait_s: float = 10.0,
                 max_jobs_in_flight: int = MAX_JOBS_IN_FLIGHT) -> None:
        self.commands = commands
        self.host, self.port = host, port
        self.users, self.audit = users, audit
        self.anonymous = anonymous
        self.cert_dir = cert_dir if cert_dir is not None else _default_cert_dir()
        self.insecure = insecure
        self.station_name = name
        self.url = f"opc.tcp://{host}:{port}"
        self.application_uri = f"urn:{socket.gethostname()}:inspector:{name}"
        self._run_tag = uuid.uuid4().hex[:8]
        self._seq = itertools.count(1)
        self._jobs: collections.OrderedDict[str, _Job] = collections.OrderedDict()
        self._continuous: _Job | None = None
        self._lock = threading.Lock()
        self.counts = collections.Counter[str]()
        self.audit_wait_s, self.call_wait_s = audit_wait_s, call_wait_s
        self.vision_state, self.automatic_state = "Preoperational", "Initialized"
        self.max_jobs_in_flight = max_jobs_in_flight
        self._transitions = [("", 0), ("", 0)]  # the last (transition, sequence) of each state machine
        self._shown = [0, 0]  # the sequence of the transition each LastTransition shows
        self.results = ResultStore()
        self._prepared: tuple[str, str] | None = None  # (external recipe id, product id) selected by PrepareRecipe
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[PartResult] | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="plc-opcua-call")  # station calls, one at a time
        self._checks = ThreadPoolExecutor(1, thread_name_prefix="plc-opcua-login")  # password hashes (CPU)
        self._reads = ThreadPoolExecutor(2, thread_name_prefix="plc-opcua-db")  # audit flushes, user reads
        self._trail = DeferredAudit(audit, audit_wait_s)
        self.sessions = OpcUaSessions(users, self._trail, anonymous=anonymous, checks=self._checks, reads=self._reads,
                                      wait_s=login_wait_s, counts=self.counts)
        self.model: Any = None
        self._last_call: tuple[str, str, str, float] | None = None  # method, status, error, monotonic time

    # ------------------------------------------------------------------ part sink
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
                "results": self.counts["results"], "audit_queued": len(self._trail), "audit_dropped": self._trail.dropped,
                **{k: v for k, v in self.counts.items() if k not in ("jobs", "results")}}

    def link_status(self) -> OpcUaLinkStatus:
        """What the PLC view shows: endpoint, sessions, the last method call, states, counters (read-only)."""
        last = None
        if self._last_call is not None:
            method, status, error, at = self._last_call
            last = LastCommand(method, "", status, error, 0, time.monotonic() - at)
        clients = tuple(sorted(
            (OpcUaClient(login.address, login.user.name if login.user is not None else "")
             for login, _close in list(self.sessions.sessions.values())), key=lambda c: (c.address, c.user)))
        counts = {k: int(v) for k, v in self.counts.items() if k not in ("jobs", "results", "results_not_published")}
        return OpcUaLinkStatus(listening=self.url, serving=self._thread is not None and self._ready.is_set()
                               and self._loop is not None, clients=clients, last_command=last,
                               vision_state=self.vision_state, automatic_state=self.automatic_state,
                               jobs=self.counts["jobs"], results=self.counts["results"],
                               results_not_published=self.counts["results_not_published"], counts=counts)

    def _noted(self, method: str, status: str, error: str = "") -> None:
        self._last_call = (method, status, error, time.monotonic())

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
        from asyncua import ua

        from inspector.plc import opcua_model
        from inspector.plc.opcua_transport import StationServer

        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._queue = asyncio.Queue(maxsize=10_000)
        from inspector.plc.opcua_transport import limits

        server = StationServer(self.sessions, _user_manager())
        server.limits = limits(MAX_MESSAGE_BYTES)
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
        own = await server.register_namespace(f"urn:inspector:{self.station_name}:vision-system")
        self.model = await opcua_model.build(server, handlers, own)
        events = await server.get_event_generator(self.model.result_event_type, self.model.system)
        async with server:
            self._ready.set()
            log.info("plc: OPC UA server at %s (anonymous %s)", self.url, "allowed" if self.anonymous else "refused")
            publisher = asyncio.create_task(self._publish(events))
            watcher = asyncio.create_task(self._watch())
            flusher = asyncio.create_task(self._flush_trail())
            await self._stopping.wait()
            publisher.cancel()
            watcher.cancel()
            flusher.cancel()
        self.sessions.digest()
        try:  # what the trail still holds, within one bounded wait
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(self._reads, self._trail.flush),
                                   self.audit_wait_s + 1.0)
        except Exception:  # noqa: BLE001 - logged by the flush; the rows are lost with the process
            log.warning("plc: OPC UA stopped with %d audit rows unwritten", len(self._trail))
        for pool in (self._worker, self._checks, self._reads):
            pool.shutdown(wait=False)

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

    # ------------------------------------------------------------------ audit
    def _audit(self, user: str, action: str, target: str = "", old: object = None, new: object = None) -> None:
        """Queue a row that may wait (refusals): written in the background, never on the event loop."""
        self._trail.add(user, action, target, old, new)

    async def _flush_trail(self) -> None:
        """Write queued rows, digest failed logins once per `DIGEST_S`, close sessions of changed users."""
        loop = asyncio.get_running_loop()
        last_digest = last_sweep = loop.time()
        while True:
            await asyncio.sleep(0.5)
            now = loop.time()
            if now - last_sweep >= _SWEEP_S:
                last_sweep = now
                await self.sessions.sweep()
            if now - last_digest >= DIGEST_S:
                last_digest = now
                self.sessions.digest()
            if len(self._trail):
                await loop.run_in_executor(self._reads, self._trail.flush)

    # ------------------------------------------------------------------ methods
    def _method(self, name: str) -> Callable[..., Any]:
        body = getattr(self, "_do_" + re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower())

        async def call(parent: Any, *args: Any) -> Any:
            from asyncua import ua

            need = _NEEDS[name]
            session = current_session.get()
            login = self.sessions.login_of(session)
            try:
                who, role = await self.sessions.role_of(session)
            except _Refusal as exc:
                self.counts["calls_denied"] += 1
                self._noted(name, "refused", str(exc))
                log.warning("plc: OPC UA %s refused: %s", name, exc)
                self._audit(login.user.name if login is not None and login.user is not None else ANONYMOUS,
                            f"opcua.{name}.denied", "", None, str(exc))
                return ua.StatusCode(ua.UInt32(exc.status))
            if role is None or role < need:
                self.counts["calls_denied"] += 1
                why = f"{name}: needs the {need.label} role or higher ({f'{who}, {role.label}' if role else 'anonymous'})"
                self._noted(name, "refused", why)
                log.warning("plc: OPC UA %s", why)
                self._audit(who or ANONYMOUS, f"opcua.{name}.denied", "", None, why)
                return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadUserAccessDenied))
            assert who is not None
            values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
            too_large = _oversized(values) or _miscounted(name, values) or _mistyped(name, values)
            if too_large:
                self.counts["calls_refused"] += 1
                self._noted(name, "refused", too_large)
                self._audit(who, f"opcua.{name}.refused", "", None, too_large)
                return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadInvalidArgument))
            self._noted(name, "working")
            job = asyncio.get_running_loop().run_in_executor(self._worker, partial(body, _Call(self, name, who), *values))
            try:
                outputs = await asyncio.wait_for(job, self.call_wait_s)
            except _Refusal as exc:
                self.counts["calls_refused"] += 1
                self._noted(name, "refused", str(exc))
                log.warning("plc: OPC UA %s by %s refused: %s", name, who, exc)
                self._audit(who, f"opcua.{name}.refused", "", None, str(exc))
                await self._show_states()
                return ua.StatusCode(ua.UInt32(exc.status))
            except TimeoutError:
                self.counts["calls_timed_out"] += 1
                self._noted(name, "refused", f"the station did not answer within {self.call_wait_s:.0f} s")
                log.error("plc: OPC UA %s by %s: the station did not answer within %.0f s", name, who, self.call_wait_s)
                return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadTimeout))
            self.counts["calls"] += 1
            self._noted(name, "done")
            await self._show_states()
            return outputs

        return call

    def _do_halt(self, call: _Call, cause: int = 0, description: str = "") -> list[Any]:
        call.commit(_because("station", cause, description))
        self._station(lambda: self.commands.set_running(False))
        came_from = self.vision_state
        self._continuous = None
        if came_from != "Halted":
            self._set_states("Halted", "Initialized", f"{came_from}ToHalted")
        return self._error_ok()

    def _do_reset(self, call: _Call, cause: int = 0, description: str = "") -> list[Any]:
        # Reset leads to Preoperational (211/311/411); the station initialises at once and goes on
        # to Operational by itself (PreoperationalToOperationalAuto), inspecting again
        call.commit(_because("station", cause, description))
        self._station(lambda: self.commands.set_running(True))
        self._continuous = None
        if self.vision_state != "Preoperational":
            self._set_states("Preoperational", "Initialized", f"{self.vision_state}ToPreoperational")
        self._set_states("Operational", "Ready", "PreoperationalToOperationalAuto", "InitializedToReadyAuto")
        return self._error_ok()

    def _do_select_mode_automatic(self, call: _Call) -> list[Any]:
        from asyncua import ua

        if self.vision_state not in ("Preoperational", "Operational"):
            raise _Refusal(ua.StatusCodes.BadInvalidState,
                           f"the VisionStateMachine is {self.vision_state}: Reset first")
        call.commit("station")
        self._station(lambda: self.commands.set_running(True))
        if self.vision_state == "Preoperational":
            self._set_states("Operational", "Ready", "PreoperationalToOperational", "InitializedToReadyAuto")
        return self._error_ok()

    def _do_start_single_job(self, call: _Call, meas: Any, part: Any, recipe: Any, product: Any,
                             params: Any) -> list[Any]:
        # production, like a photo-eye or a Modbus trigger: not audited (the part is stored with
        # its verdict), so a locked database never holds the line up
        from asyncua import ua

        self._require_ready()
        owed = self._jobs_owed()
        if owed >= self.max_jobs_in_flight:
            self.counts["jobs_refused_busy"] += 1
            raise _Refusal(ua.StatusCodes.BadTooManyOperations,
                           f"{owed} jobs still wait for their results (at most {self.max_jobs_in_flight})")
        job = self._new_job(meas, recipe, product)
        part_id = _text(part) or job.job_id
        if not re.fullmatch(PART_ID_PATTERN, part_id):
            raise _Refusal(ua.StatusCodes.BadInvalidArgument,
                           f"PartId {part_id[:80]!r}: 1-64 letters, digits, '.', '_', ':' or '-'")
        self._set_states("Operational", "SingleExecution", automatic_transition="ReadyToSingleExecution")
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
        finally:  # ready for the next job at once: parts overlap on a line
            self._set_states("Operational", "Ready", automatic_transition="SingleExecutionToReadyAuto")
        self.counts["jobs"] += 1
        return [self._variant("JobIdDataType", Id=job.job_id), ua.Variant(0, ua.VariantType.Int32)]

    def _do_start_continuous(self, call: _Call, meas: Any, part: Any, recipe: Any, product: Any,
                             params: Any) -> list[Any]:
        from asyncua import ua

        self._require_ready()
        job = self._new_job(meas, recipe, product)
        call.commit(f"job {job.job_id}")
        self._station(lambda: self.commands.set_running(True))
        self._continuous = job
        self._set_states("Operational", "ContinuousExecution", automatic_transition="ReadyToContinuousExecution")
        return [self._variant("JobIdDataType", Id=job.job_id), ua.Variant(0, ua.VariantType.Int32)]

    def _do_stop(self, call: _Call, cause: int = 0, description: str = "") -> list[Any]:
        return self._end_job(call, "Stop", cause, description)

    def _do_abort(self, call: _Call, cause: int = 0, description: str = "") -> list[Any]:
        return self._end_job(call, "Abort", cause, description)

    def _end_job(self, call: _Call, how: str, cause: int, description: str) -> list[Any]:
        self._require_operational()
        call.commit(_because(f"job {self._continuous.job_id}" if self._continuous else "station", cause, description))
        if self.automatic_state in ("SingleExecution", "ContinuousExecution"):
            self._set_states("Operational", "Ready", automatic_transition=f"{self.automatic_state}ToReady{how}")
        self._continuous = None
        return self._error_ok()

    # ------------------------------------------------------------------ method helpers (worker thread)
    def _new_job(self, meas: Any, recipe: Any, product: Any) -> _Job:
        from asyncua import ua

        rid, pid = _text(recipe), _text(product)
        for kind, ident, slot in (("RecipeId", rid, 0), ("ProductId", pid, 1)):
            if ident and (self._prepared is None or self._prepared[slot] != ident):
                raise _Refusal(ua.StatusCodes.BadInvalidArgument, f"{kind} {ident[:80]!r} is not a prepared recipe")
        return _Job(f"job-{self._run_tag}-{next(self._seq)}", _text(meas), rid, pid, time.monotonic())

    def _jobs_owed(self) -> int:
        """Single jobs started within `_JOB_OWED_S` whose result has not come back (a lost one stops counting)."""
        since = time.monotonic() - _JOB_OWED_S
        owed = 0
        with self._lock:
            for job in reversed(self._jobs.values()):
                if job.started < since or owed >= self.max_jobs_in_flight:
                    break
                owed += 1
        return owed

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

    def _set_states(self, vision: str, automatic: str, vision_transition: str = "",
                    automatic_transition: str = "") -> None:
        """The new states, and the spec's transitions that led there (shown by `_show_states`)."""
        with self._lock:
            self.vision_state, self.automatic_state = vision, automatic
            if vision_transition:
                self._transitions[0] = (vision_transition, self._transitions[0][1] + 1)
            if automatic_transition:
                self._transitions[1] = (automatic_transition, self._transitions[1][1] + 1)

    # ------------------------------------------------------------------ loop tasks
    async def _show_states(self) -> None:
        from inspector.plc.opcua_model import show_state

        with self._lock:
            vision, automatic = self.vision_state, self.automatic_state
            transitions = list(self._transitions)
        for i, (nodes, state) in enumerate(((self.model.vision, vision), (self.model.automatic, automatic))):
            (name, seq), shown = transitions[i], self._shown[i]
            await show_state(self.model, nodes, state, name if seq != shown else "")
            self._shown[i] = seq

    async def _watch(self) -> None:
        """Follow the station: Error after a persistent fault while Operational (never for an overload)."""
        faults = 0
        while True:
            await asyncio.sleep(1.0)
            try:
                fault = await asyncio.get_running_loop().run_in_executor(self._worker, self.commands.fault)
            except Exception:
                log.exception("plc: station fault read failed")
                continue
            faults = faults + 1 if fault else 0
            if faults >= _ERROR_POLLS and self.vision_state == "Operational":
                log.error("plc: station fault (%s): VisionStateMachine -> Error (Reset to resume)", fault)
                self._continuous = None
                self._set_states("Error", "Initialized", "OperationalToErrorAuto")
                await self._show_states()

    async def _publish(self, events: Any) -> None:
        from inspector.plc.opcua_model import publish, result_record

        assert self._queue is not None
        while True:
            part = await self._queue.get()
            with self._lock:
                job = self._jobs.pop(part.part_id, None)
            if job is None:
                job = self._continuous or _Job(f"auto-{self._run_tag}-{next(self._seq)}", "")
            prepared = self._prepared or ("", "")
            try:
                record = result_record(self.model, part, job.job_id, f"result-{self._run_tag}-{next(self._seq)}",
                                       meas_id=job.meas_id, recipe_id=job.recipe_id or prepared[0],
                                       product_id=job.product_id or prepared[1], configuration=self.station_name)
                self.results.add(record)
                await publish(self.model, events, part, record)
                self.counts["results"] += 1
            except Exception:
                self.counts["results_not_published"] += 1
                log.exception("plc: ResultReady for part %s failed", part.part_id)


VISION_CODES = {"Preoperational": 0, "Halted": 1, "Operational": 2, "Error": 3}


def _user_manager() -> Any:
    """An asyncua `UserManager` that hands over the answer `OpcUaSessions.activate` gave off the loop."""
    from asyncua.crypto.permission_rules import User, UserRole
    from asyncua.server.user_managers import UserManager

    class StationUsers(UserManager):
        def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                     certificate: Any = None) -> Any:
            # ``certificate`` is the secure channel's client certificate, not a user token
            # (X509 user tokens are not offered): the user is the name and password, or anonymous
            answer = login_answer.get()
            if answer is None:
                return None
            # asyncua's rules let its Anonymous role read nothing; ours may watch: a nameless
            # User, whom every method call refuses (no station role)
            return User(role=UserRole.User, name=answer.user.name if answer.user is not None else None)

    return StationUsers()


def _oversized(values: list[Any]) -> str:
    """Why the arguments of a call are too large, or empty (each id at most `MAX_ID_CHARS`)."""
    for v in values:
        if isinstance(v, list):
            if len(v) > MAX_PARAMETERS:
                return f"Parameters: {len(v)} elements, at most {MAX_PARAMETERS}"
            continue
        ident = getattr(v, "Id", None)
        if isinstance(ident, str) and len(ident) > MAX_ID_CHARS:
            return f"{type(v).__name__.removesuffix('DataType')}: {len(ident)} characters, at most {MAX_ID_CHARS}"
    return ""


def _miscounted(method: str, values: list[Any]) -> str:
    """Why the number of arguments is wrong for ``method`` (the spec's; Cause and CauseDescription may be left out)."""
    from inspector.plc.mv_ids import METHODS

    inputs = [name for name, _, _ in METHODS[method].inputs]
    least = 0 if inputs == ["Cause", "CauseDescription"] else len(inputs)
    if least <= len(values) <= len(inputs):
        return ""
    return f"{method}: {len(values)} arguments, the spec's are {', '.join(inputs) or 'none'}"


def _mistyped(method: str, values: list[Any]) -> str:
    """Why an argument is not the spec's structure (an unknown encoding id, or another structure), else ""."""
    from asyncua import ua

    from inspector.plc.mv_ids import METHODS, STRUCTURES

    for (arg, dtype, _), value in zip(METHODS[method].inputs, values, strict=False):
        if isinstance(value, ua.ExtensionObject):  # asyncua could not decode it: not one of our encodings
            return f"{arg}: an ExtensionObject with encoding {value.TypeId.to_string()}, not a {dtype}"
        if isinstance(dtype, str) and dtype in STRUCTURES and value is not None and type(value).__name__ != dtype:
            return f"{arg}: a {type(value).__name__}, not a {dtype}"
    return ""


def _because(note: str, cause: int, description: str) -> str:
    """An audit note with the caller's Cause and CauseDescription (OPC 40100-1 Halt, Reset, Stop, Abort)."""
    if not cause and not description:
        return note
    return f"{note} (cause {int(cause or 0)}: {str(description or '')[:200]})"


def _text(value: Any) -> str:
    """The ``Id`` of one of the spec's id structures (empty when absent)."""
    ident = getattr(value, "Id", None)
    return str(ident).strip() if ident else ""


def _default_cert_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("inspector")) / "opcua"

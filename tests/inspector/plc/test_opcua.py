"""The OPC UA server (OPC 40100-1 subset) with a real asyncua client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from inspector.plc.opcua_model import NAMESPACE, RESULT_ABORTED, RESULT_COMPLETED
from inspector.plc.opcua_server import OpcUaPlc
from tests.inspector.plc.test_modbus import FakeStation, free_port, part

pytest.importorskip("asyncua")
from asyncua import Client, ua
from asyncua.ua.uaerrors import BadUserAccessDenied, UaError, UaStatusCodeError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def db(tmp_path):
    from inspector.access.audit import AuditLog
    from inspector.access.users import UserStore
    from inspector.storage.db import migrate, open_database

    engine = open_database(f"sqlite:///{tmp_path / 'ua.db'}")
    migrate(engine)
    users = UserStore(engine)
    users.create_user("plc", "operator-pass", "operator", by="test")
    users.create_user("eng", "engineer-pass", "engineer", by="test")
    yield users, AuditLog(engine)
    engine.dispose()


class UaStation(FakeStation):
    """A FakeStation that also says whether it has a fault (what `OpcUaCommands.fault` asks)."""

    def __init__(self) -> None:
        super().__init__()
        self.faulted = ""

    def fault(self) -> str:
        return self.faulted


def make_server(db, tmp_path: Path, **kw) -> tuple[UaStation, OpcUaPlc]:
    users, audit = db
    station = UaStation()
    kw.setdefault("insecure", True)  # these clients use the None endpoint (off unless configured)
    server = OpcUaPlc(station, port=free_port(), users=users, audit=audit, cert_dir=tmp_path / "pki", **kw)
    return station, server


async def connect(server: OpcUaPlc, user: str | None = "plc", password: str = "operator-pass",
                  watchdog_s: float = 1.0) -> Client:
    c = Client(server.url, timeout=10, watchdog_intervall=watchdog_s)
    if user is not None:
        c.set_user(user)
        c.set_password(password)
    await c.connect()
    await c.load_data_type_definitions()
    return c


async def nodes(c: Client):
    idx = await c.get_namespace_index(NAMESPACE)
    vs = await c.nodes.objects.get_child(f"{idx}:VisionSystem")
    vsm = await vs.get_child(f"{idx}:VisionStateMachine")
    auto = await vsm.get_child(f"{idx}:AutomaticModeStateMachine")
    return idx, vs, vsm, auto


async def single_job(auto, idx: int, part_id: str, meas: str = "") -> str:
    job, err = await auto.call_method(f"{idx}:StartSingleJob", ua.MeasIdDataType(Id=meas), ua.PartIdDataType(Id=part_id),
                                      ua.RecipeIdExternalDataType(Id=""), ua.ProductIdDataType(Id=""),
                                      ua.Variant([], ua.VariantType.Variant))
    assert err == 0
    return str(job.Id)


class Events:
    def __init__(self) -> None:
        self.got: list = []
        self.arrived: list[float] = []

    def event_notification(self, ev) -> None:
        self.got.append(ev)
        self.arrived.append(time.perf_counter())


async def subscribe(c: Client, vs, idx: int) -> Events:
    handler = Events()
    sub = await c.create_subscription(5, handler)
    etype = await c.nodes.base_event_type.get_child(f"{idx}:ResultReadyEventType")
    await sub.subscribe_events(vs, etype)
    return handler


async def until(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_address_space_follows_the_spec_names(db, tmp_path) -> None:
    _, server = make_server(db, tmp_path)

    async def main() -> None:
        c = await connect(server)
        try:
            idx, vs, vsm, auto = await nodes(c)
            names = {(await n.read_browse_name()).Name for n in await vsm.get_children()}
            assert {"CurrentState", "Halt", "Reset", "SelectModeAutomatic", "AutomaticModeStateMachine"} <= names
            names = {(await n.read_browse_name()).Name for n in await auto.get_children()}
            assert {"CurrentState", "StartSingleJob", "StartContinuous", "Stop", "Abort"} <= names
            recipes = await vs.get_child(f"{idx}:RecipeManagement")
            names = {(await n.read_browse_name()).Name for n in await recipes.get_children()}
            assert {"PrepareRecipe", "UnprepareRecipe", "PrepareProduct", "UnprepareProduct"} <= names
            method = await auto.get_child(f"{idx}:StartSingleJob")
            args = await (await method.get_child("0:InputArguments")).read_value()
            assert [a.Name for a in args] == ["MeasId", "PartId", "RecipeId", "ProductId", "Parameters"]
            outs = await (await method.get_child("0:OutputArguments")).read_value()
            assert [a.Name for a in outs] == ["JobId", "Error"]
            state = await vsm.get_child("0:CurrentState")
            assert (await state.read_value()).Text == "Preoperational"
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            assert (await state.read_value()).Text == "Operational"
            assert (await (await auto.get_child("0:CurrentState")).read_value()).Text == "Ready"
            await auto.call_method(f"{idx}:StartContinuous", ua.MeasIdDataType(Id=""), ua.PartIdDataType(Id=""),
                                   ua.RecipeIdExternalDataType(Id=""), ua.ProductIdDataType(Id=""),
                                   ua.Variant([], ua.VariantType.Variant))
            assert (await (await auto.get_child("0:CurrentState")).read_value()).Text == "ContinuousExecution"
            await auto.call_method(f"{idx}:Stop")
            assert (await (await auto.get_child("0:CurrentState")).read_value()).Text == "Ready"
            await vsm.call_method(f"{idx}:Halt")
            assert (await state.read_value()).Text == "Halted"
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    assert (tmp_path / "pki" / "server_cert.der").exists()


def test_single_jobs_come_back_as_result_ready_events(db, tmp_path) -> None:
    station, server = make_server(db, tmp_path)

    async def main() -> None:
        c = await connect(server)
        try:
            idx, vs, vsm, auto = await nodes(c)
            events = await subscribe(c, vs, idx)
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            jobs = {}
            for i in range(5):
                pid = f"P-{4711 + i}"
                jobs[pid] = await single_job(auto, idx, pid, meas=f"m{i}")
                server.submit_part(part(pid, "NG" if i == 1 else "OK", ("cam2",) if i == 2 else ()))
            await until(lambda: len(events.got) >= 5)
            got = {e.PartId.Id: e for e in events.got}
            assert set(got) == set(jobs) and len(set(jobs.values())) == 5
            for pid, e in got.items():
                assert e.JobId.Id == jobs[pid]
            assert got["P-4713"].IsPartial is True and got["P-4713"].ResultState == RESULT_ABORTED
            assert got["P-4711"].ResultState == RESULT_COMPLETED and got["P-4711"].IsPartial is False
            assert got["P-4712"].ResultContent[0].Value == "NG" and got["P-4711"].ResultContent[0].Value == "OK"
            assert got["P-4711"].MeasId.Id == "m0"
            assert got["P-4711"].ProcessingTimes.AcquisitionDuration is not None
            last = await vs.get_child([f"{idx}:ResultManagement", f"{idx}:Results", f"{idx}:LastResult"])
            assert (await (await last.get_child(f"{idx}:JobId")).read_value()).Id == jobs["P-4715"]
            assert (await last.read_value()).PartId.Id == "P-4715"
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    assert station.triggered == [f"P-{4711 + i}" for i in range(5)]


def test_bad_part_id_and_wrong_state_are_refused(db, tmp_path) -> None:
    station, server = make_server(db, tmp_path)

    async def main() -> None:
        c = await connect(server)
        try:
            idx, _, vsm, auto = await nodes(c)
            with pytest.raises(UaStatusCodeError):  # Preoperational: not Ready yet
                await single_job(auto, idx, "P1")
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            for bad in ("bad id", "x" * 65, "../etc", "-lead"):
                with pytest.raises(UaStatusCodeError):
                    await single_job(auto, idx, bad)
            assert await single_job(auto, idx, "")  # empty PartId: the JobId names the part
            unknown = ua.ExtensionObject(TypeId=ua.NodeId(9999, idx), Body=b"\x00\x00\x00\x00\x02\x00\x00\x00P9")
            with pytest.raises(UaStatusCodeError):  # a PartId the server cannot decode is refused, never dropped
                await auto.call_method(f"{idx}:StartSingleJob", ua.MeasIdDataType(Id=""), unknown,
                                       ua.RecipeIdExternalDataType(Id=""), ua.ProductIdDataType(Id=""),
                                       ua.Variant([], ua.VariantType.Variant))
            with pytest.raises(UaStatusCodeError):  # another structure where a PartIdDataType belongs
                await auto.call_method(f"{idx}:StartSingleJob", ua.MeasIdDataType(Id=""), ua.JobIdDataType(Id="P9"),
                                       ua.RecipeIdExternalDataType(Id=""), ua.ProductIdDataType(Id=""),
                                       ua.Variant([], ua.VariantType.Variant))
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    assert len(station.triggered) == 1 and station.triggered[0].startswith("job-")
    actions = [e.action for e in db[1].list(limit=50)]
    assert actions.count("opcua.StartSingleJob.refused") == 7


def test_wrong_credentials_and_anonymous_are_refused_and_audited(db, tmp_path) -> None:
    _, server = make_server(db, tmp_path)

    async def main() -> None:
        with pytest.raises((UaError, OSError, asyncio.TimeoutError)):
            await connect(server, "plc", "wrong-password")
        with pytest.raises((UaError, OSError, asyncio.TimeoutError)):
            await connect(server, None)

    with server:
        asyncio.run(main())
    rows = [(e.user, e.action, e.target) for e in db[1].list(limit=50)]
    assert ("(anonymous)", "opcua.login_failed", "plc") in rows
    # anonymous is not even offered (no token policy), so asyncua refuses it before any login
    assert server.stats()["logins_failed"] == 1


def test_anonymous_when_enabled_may_watch_but_not_start_jobs(db, tmp_path) -> None:
    station, server = make_server(db, tmp_path, anonymous=True)

    async def main() -> None:
        c = await connect(server, None)
        try:
            idx, _, vsm, _ = await nodes(c)
            assert (await (await vsm.get_child("0:CurrentState")).read_value()).Text == "Preoperational"
            with pytest.raises(BadUserAccessDenied):
                await vsm.call_method(f"{idx}:SelectModeAutomatic")
        finally:
            await c.disconnect()
        c = await connect(server)  # an operator may run jobs, not prepare recipes
        try:
            idx, vs, vsm, _ = await nodes(c)
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
            recipes = await vs.get_child(f"{idx}:RecipeManagement")
            with pytest.raises(BadUserAccessDenied):
                await recipes.call_method(f"{idx}:PrepareRecipe", ua.RecipeIdExternalDataType(Id="2"),
                                          ua.RecipeIdInternalDataType(Id=""))
        finally:
            await c.disconnect()
        c = await connect(server, "eng", "engineer-pass")
        try:
            idx, vs, _, _ = await nodes(c)
            recipes = await vs.get_child(f"{idx}:RecipeManagement")
            out = await recipes.call_method(f"{idx}:PrepareRecipe", ua.RecipeIdExternalDataType(Id="2"),
                                            ua.RecipeIdInternalDataType(Id=""))
            assert out[1] is True and out[2] == 0
            with pytest.raises(UaStatusCodeError):  # FakeStation has recipes 0..3 only
                await recipes.call_method(f"{idx}:PrepareProduct", ua.ProductIdDataType(Id="9"))
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    assert station.triggered == [] and station.recipes == [2]
    rows = [(e.user, e.action) for e in db[1].list(limit=50)]
    assert ("(anonymous)", "opcua.SelectModeAutomatic.denied") in rows
    assert ("plc", "opcua.PrepareRecipe.denied") in rows
    assert ("eng", "opcua.PrepareRecipe") in rows and ("plc", "opcua.SelectModeAutomatic") in rows


def test_sign_and_encrypt_endpoint_accepts_a_client(db, tmp_path) -> None:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from cryptography.x509.oid import ExtendedKeyUsageOID

    _, server = make_server(db, tmp_path)

    async def main() -> None:
        key, cert = tmp_path / "client_key.pem", tmp_path / "client_cert.der"
        await setup_self_signed_certificate(key, cert, "urn:test:client", "localhost",
                                            [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "test client"})
        probe = Client(server.url)
        endpoints = await probe.connect_and_get_server_endpoints()
        modes = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
        assert ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt) in modes
        c = Client(server.url, timeout=10)
        c.application_uri = "urn:test:client"
        await c.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        c.set_user("plc")
        c.set_password("operator-pass")
        await c.connect()
        try:
            idx = await c.get_namespace_index(NAMESPACE)
            vsm = await c.nodes.objects.get_child([f"{idx}:VisionSystem", f"{idx}:VisionStateMachine"])
            await vsm.call_method(f"{idx}:SelectModeAutomatic")
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    assert server.vision_state == "Operational"

"""Issue 30.1: a generic client that knows only OPC 40100-1's official ids works with the station's server.

The facts below (NodeIds in the namespace http://opcfoundation.org/UA/MachineVision,
BrowseNames, argument lists, the binary encodings of the id structures) are written out here
from the OPC Foundation's published NodeSet, independently of the server's own table
(`inspector.plc.mv_ids` is not imported). The client encodes and decodes the spec's
structures by hand, byte by byte, so nothing it sends or reads depends on the server's classes.
"""

from __future__ import annotations

import asyncio
import struct

import pytest

from tests.inspector.plc.test_modbus import part
from tests.inspector.plc.test_opcua import connect, make_server, until

pytest.importorskip("asyncua")
from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import extensionobject_to_binary, nodeid_from_binary

pytestmark = pytest.mark.timeout(120)

MV = "http://opcfoundation.org/UA/MachineVision"
OBJECT_TYPES = {"VisionSystemType": 1003, "RecipeManagementType": 1004, "ConfigurationManagementType": 1006,
                "ResultManagementType": 1007, "SafetyStateManagementType": 1009, "ResultFolderType": 1016,
                "VisionStateMachineType": 1017, "VisionAutomaticModeStateMachineType": 1021,
                "ResultReadyEventType": 1024}
DATA_TYPES = {"RecipeIdExternalDataType": 3002, "ProductIdDataType": 3003, "PartIdDataType": 3004,
              "ProcessingTimesDataType": 3005, "ResultDataType": 3006, "ConfigurationIdDataType": 3008,
              "ResultStateDataType": 3009, "RecipeIdInternalDataType": 3013, "TriStateBooleanDataType": 3014,
              "MeasIdDataType": 3015, "JobIdDataType": 3016, "TrimmedString": 3017, "Handle": 3018,
              "ResultIdDataType": 3021}
BINARY_ENCODINGS = {"RecipeIdExternalDataType": 5002, "MeasIdDataType": 5006, "JobIdDataType": 5008,
                    "PartIdDataType": 5013, "ProcessingTimesDataType": 5016, "ResultDataType": 5018,
                    "ConfigurationIdDataType": 5090, "ProductIdDataType": 5224, "RecipeIdInternalDataType": 5268,
                    "ResultIdDataType": 5274}
VISION_STATES = {"Preoperational": 5028, "Halted": 5029, "Error": 5030, "Operational": 5031}
AUTOMATIC_STATES = {"Initialized": 5056, "Ready": 5057, "SingleExecution": 5058, "ContinuousExecution": 5059}
RESULT_READY_FIELDS = {"ResultId", "IsPartial", "IsSimulated", "ResultState", "MeasId", "PartId", "ExternalRecipeId",
                       "InternalRecipeId", "ProductId", "ExternalConfigurationId", "InternalConfigurationId", "JobId",
                       "CreationTime", "ProcessingTimes", "ResultContent"}
I32, U32, STR, BOOL, UTC, ANY = 6, 7, 12, 1, 294, 24
CAUSE = [("Cause", I32), ("CauseDescription", STR)]
ERROR = [("Error", I32)]
JOB_IN = [("MeasId", "MeasIdDataType"), ("PartId", "PartIdDataType"), ("RecipeId", "RecipeIdExternalDataType"),
          ("ProductId", "ProductIdDataType"), ("Parameters", ANY)]
RESULT_IN = [("ResultId", "ResultIdDataType"), ("Timeout", I32)]
#: method: (path from the VisionSystem, inputs, outputs) with DataTypes by name (MV) or number (namespace 0)
METHODS = {
    "Halt": (["VisionStateMachine"], CAUSE, ERROR),
    "Reset": (["VisionStateMachine"], CAUSE, ERROR),
    "SelectModeAutomatic": (["VisionStateMachine"], [], ERROR),
    "StartSingleJob": (["VisionStateMachine", "AutomaticModeStateMachine"], JOB_IN, [("JobId", "JobIdDataType"), *ERROR]),
    "StartContinuous": (["VisionStateMachine", "AutomaticModeStateMachine"], JOB_IN,
                        [("JobId", "JobIdDataType"), *ERROR]),
    "Stop": (["VisionStateMachine", "AutomaticModeStateMachine"], CAUSE, ERROR),
    "Abort": (["VisionStateMachine", "AutomaticModeStateMachine"], CAUSE, ERROR),
    "GetRecipeListFiltered": (["RecipeManagement"], [
        ("ExternalId", "RecipeIdExternalDataType"), ("ProductId", "ProductIdDataType"),
        ("IsPrepared", "TriStateBooleanDataType"), ("MaxResults", U32), ("StartIndex", U32), ("Timeout", I32)], [
        ("IsComplete", BOOL), ("ResultCount", U32), ("RecipeHandle", "Handle"),
        ("RecipeList", "RecipeIdInternalDataType"), *ERROR]),
    "PrepareRecipe": (["RecipeManagement"], [("ExternalId", "RecipeIdExternalDataType"),
                                             ("InternalIdIn", "RecipeIdInternalDataType")],
                      [("InternalIdOut", "RecipeIdInternalDataType"), ("IsCompleted", BOOL), *ERROR]),
    "UnprepareRecipe": (["RecipeManagement"], [("ExternalId", "RecipeIdExternalDataType"),
                                               ("InternalIdIn", "RecipeIdInternalDataType")],
                        [("InternalIdOut", "RecipeIdInternalDataType"), *ERROR]),
    "PrepareProduct": (["RecipeManagement"], [("ProductId", "ProductIdDataType")],
                       [("InternalId", "RecipeIdInternalDataType"), *ERROR]),
    "UnprepareProduct": (["RecipeManagement"], [("ProductId", "ProductIdDataType")],
                         [("InternalId", "RecipeIdInternalDataType"), *ERROR]),
    "GetResultById": (["ResultManagement"], RESULT_IN,
                      [("ResultHandle", "Handle"), ("Result", "ResultDataType"), *ERROR]),
    "GetResultComponentsById": (["ResultManagement"], RESULT_IN, [
        ("HasTransferableDataOnFile", BOOL), ("ResultHandle", "Handle"), ("IsPartial", BOOL), ("IsSimulated", BOOL),
        ("ResultState", "ResultStateDataType"), ("MeasId", "MeasIdDataType"), ("PartId", "PartIdDataType"),
        ("ExternalRecipeId", "RecipeIdExternalDataType"), ("InternalRecipeId", "RecipeIdInternalDataType"),
        ("ProductId", "ProductIdDataType"), ("ExternalConfigurationId", "ConfigurationIdDataType"),
        ("InternalConfigurationId", "ConfigurationIdDataType"), ("JobId", "JobIdDataType"), ("CreationTime", UTC),
        ("ProcessingTimes", "ProcessingTimesDataType"), ("ResultContent", ANY), *ERROR]),
    "GetResultListFiltered": (["ResultManagement"], [
        ("ResultState", "ResultStateDataType"), ("MeasId", "MeasIdDataType"), ("PartId", "PartIdDataType"),
        ("ExternalRecipeId", "RecipeIdExternalDataType"), ("InternalRecipeId", "RecipeIdInternalDataType"),
        ("ExternalConfigurationId", "ConfigurationIdDataType"), ("InternalConfigurationId", "ConfigurationIdDataType"),
        ("ProductId", "ProductIdDataType"), ("JobId", "JobIdDataType"), ("MaxResults", U32), ("StartIndex", U32),
        ("Timeout", I32)], [
        ("IsComplete", BOOL), ("ResultCount", U32), ("ResultHandle", "Handle"), ("ResultList", "ResultDataType"),
        *ERROR]),
}


# ---------------------------------------------------------------------- the spec's binary encoding, by hand
def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<i", len(raw)) + raw


def encoded(ns: int, type_name: str, ident: str) -> ua.Variant:
    """An id structure as the spec encodes it: its Default Binary encoding id and body (mask first when it has one)."""
    masked = type_name not in ("JobIdDataType", "ResultIdDataType")
    body = (struct.pack("<I", 0) if masked else b"") + _string(ident)  # mask 0: no optional field present
    return ua.Variant(ua.ExtensionObject(TypeId=ua.NodeId(BINARY_ENCODINGS[type_name], ns), Body=body),
                      ua.VariantType.ExtensionObject)


def decoded_id(value: object, ns: int, type_name: str) -> str:
    """The Id of an id structure received, read from its bytes on the wire (checks the encoding id)."""
    buf = Buffer(extensionobject_to_binary(value))
    assert nodeid_from_binary(buf) == ua.NodeId(BINARY_ENCODINGS[type_name], ns), type_name
    assert buf.read(1) == b"\x01"  # a binary body
    buf.read(4)  # its length
    if type_name not in ("JobIdDataType", "ResultIdDataType"):
        buf.read(4)  # the optional-field mask
    (length,) = struct.unpack("<i", buf.read(4))
    return buf.read(length).decode() if length > 0 else ""


def dtype(ns: int, name_or_number: str | int) -> ua.NodeId:
    return ua.NodeId(name_or_number, 0) if isinstance(name_or_number, int) else ua.NodeId(DATA_TYPES[name_or_number], ns)


async def vision_system(c):
    ns = await c.get_namespace_index(MV)
    return ns, await c.nodes.objects.get_child(f"{ns}:VisionSystem")


def cause(code: int, text: str) -> list[ua.Variant]:
    return [ua.Variant(code, ua.VariantType.Int32), ua.Variant(text, ua.VariantType.String)]


# ---------------------------------------------------------------------- tests
def test_types_sit_at_their_official_ids_and_the_instance_uses_them(ua_db, tmp_path) -> None:
    _, server = make_server(ua_db, tmp_path)

    async def main() -> None:
        c = await connect(server)
        try:
            ns, vs = await vision_system(c)
            for name, ident in {**OBJECT_TYPES, **DATA_TYPES, "ResultType": 2002}.items():
                assert await c.get_node(ua.NodeId(ident, ns)).read_browse_name() == ua.QualifiedName(name, ns), name
            for name, ident in BINARY_ENCODINGS.items():
                encodings = await c.get_node(ua.NodeId(DATA_TYPES[name], ns)).get_referenced_nodes(
                    ua.ObjectIds.HasEncoding)
                assert ua.NodeId(ident, ns) in [e.nodeid for e in encodings], name
                assert (await c.get_node(ua.NodeId(ident, ns)).read_browse_name()).Name == "Default Binary"
            expect = {(): 1003, ("VisionStateMachine",): 1017,
                      ("VisionStateMachine", "AutomaticModeStateMachine"): 1021, ("RecipeManagement",): 1004,
                      ("ResultManagement",): 1007, ("ResultManagement", "Results"): 1016}
            for path, ident in expect.items():
                node = await vs.get_child([f"{ns}:{p}" for p in path]) if path else vs
                assert await node.read_type_definition() == ua.NodeId(ident, ns), path
            state = await vs.get_child([f"{ns}:VisionStateMachine", "0:CurrentState"])
            assert await state.read_type_definition() == ua.NodeId(ua.ObjectIds.FiniteStateVariableType)
            last = await vs.get_child([f"{ns}:ResultManagement", f"{ns}:Results", f"{ns}:LastResult"])
            assert await last.read_type_definition() == ua.NodeId(2002, ns)
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())


def test_every_method_has_the_spec_signature(ua_db, tmp_path) -> None:
    _, server = make_server(ua_db, tmp_path)

    async def main() -> None:
        c = await connect(server)
        try:
            ns, vs = await vision_system(c)
            for name, (path, ins, outs) in METHODS.items():
                method = await vs.get_child([f"{ns}:{p}" for p in [*path, name]])
                for prop, spec in (("0:InputArguments", ins), ("0:OutputArguments", outs)):
                    if not spec:
                        continue
                    args = await (await method.get_child(prop)).read_value()
                    assert [(a.Name, a.DataType) for a in args] == [(n, dtype(ns, d)) for n, d in spec], (name, prop)
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())


def test_an_event_filter_on_the_official_result_ready_type_gets_every_result(ua_db, tmp_path) -> None:
    station, server = make_server(ua_db, tmp_path)
    n = 10

    class Events:
        def __init__(self) -> None:
            self.got: list = []

        def event_notification(self, ev) -> None:
            self.got.append(ev)

    async def main() -> None:
        c = await connect(server)
        try:
            ns, vs = await vision_system(c)
            handler, on_server = Events(), Events()
            sub = await c.create_subscription(5, handler)
            await sub.subscribe_events(vs, ua.NodeId(1024, ns))
            server_sub = await c.create_subscription(5, on_server)  # a generic client's usual notifier
            await server_sub.subscribe_events(c.nodes.server, ua.NodeId(1024, ns))
            vsm = await vs.get_child(f"{ns}:VisionStateMachine")
            auto = await vsm.get_child(f"{ns}:AutomaticModeStateMachine")
            await vsm.call_method(f"{ns}:SelectModeAutomatic")
            jobs = {}
            for i in range(n):
                pid = f"SPEC-{i}"
                job, err = await auto.call_method(
                    f"{ns}:StartSingleJob", encoded(ns, "MeasIdDataType", f"meas-{i}"),
                    encoded(ns, "PartIdDataType", pid), encoded(ns, "RecipeIdExternalDataType", ""),
                    encoded(ns, "ProductIdDataType", ""), ua.Variant([], ua.VariantType.Variant))
                assert err == 0
                jobs[pid] = decoded_id(job, ns, "JobIdDataType")
                server.submit_part(part(pid, "NG" if i % 3 == 0 else "OK"))
            await until(lambda: len(handler.got) >= n and len(on_server.got) >= n)
            assert len(handler.got) == n and len(on_server.got) == n
            assert [decoded_id(e.PartId, ns, "PartIdDataType") for e in on_server.got] == [f"SPEC-{i}" for i in range(n)]
            assert {e.SourceNode for e in on_server.got} == {vs.nodeid}
            for i, ev in enumerate(handler.got):
                fields = set(ev.get_event_props_as_fields_dict())
                assert RESULT_READY_FIELDS <= fields, RESULT_READY_FIELDS - fields
                pid = decoded_id(ev.PartId, ns, "PartIdDataType")
                assert pid == f"SPEC-{i}"  # the PLC's part id, in the spec's encoding, honoured
                assert decoded_id(ev.JobId, ns, "JobIdDataType") == jobs[pid]
                assert decoded_id(ev.MeasId, ns, "MeasIdDataType") == f"meas-{i}"
                assert ev.ResultContent[0].Value == ("NG" if i % 3 == 0 else "OK")
            # the results can be fetched again by id and filtered
            results = await vs.get_child(f"{ns}:ResultManagement")
            rid = handler.got[3].ResultId
            _, record, err = await results.call_method(f"{ns}:GetResultById", ua.Variant(rid), ua.Variant(0, ua.VariantType.Int32))
            assert err == 0 and decoded_id(record.PartId, ns, "PartIdDataType") == "SPEC-3"
            out = await results.call_method(f"{ns}:GetResultComponentsById", ua.Variant(rid),
                                            ua.Variant(0, ua.VariantType.Int32))
            assert decoded_id(out[6], ns, "PartIdDataType") == "SPEC-3" and out[-1] == 0
            empty = {k: encoded(ns, k, "") for k in ("MeasIdDataType", "RecipeIdExternalDataType",
                                                     "RecipeIdInternalDataType", "ConfigurationIdDataType",
                                                     "ProductIdDataType", "JobIdDataType")}
            complete, count, _, found, err = await results.call_method(
                f"{ns}:GetResultListFiltered", ua.Variant(0, ua.VariantType.Int32), empty["MeasIdDataType"],
                encoded(ns, "PartIdDataType", "SPEC-7"), empty["RecipeIdExternalDataType"],
                empty["RecipeIdInternalDataType"], empty["ConfigurationIdDataType"], empty["ConfigurationIdDataType"],
                empty["ProductIdDataType"], empty["JobIdDataType"], ua.Variant(10, ua.VariantType.UInt32),
                ua.Variant(0, ua.VariantType.UInt32), ua.Variant(0, ua.VariantType.Int32))
            assert (complete, count, err) == (True, 1, 0)
            assert decoded_id(found[0].JobId, ns, "JobIdDataType") == jobs["SPEC-7"]
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    assert station.triggered == [f"SPEC-{i}" for i in range(n)]


def test_state_machines_current_state_and_id_and_the_cause_methods_are_audited(ua_db, tmp_path) -> None:
    station, server = make_server(ua_db, tmp_path)
    seen: list[tuple[str, ua.NodeId, str, ua.NodeId]] = []

    async def main() -> None:
        c = await connect(server)
        try:
            ns, vs = await vision_system(c)
            vsm = await vs.get_child(f"{ns}:VisionStateMachine")
            auto = await vsm.get_child(f"{ns}:AutomaticModeStateMachine")

            async def look() -> None:
                vstate, astate = await vsm.get_child("0:CurrentState"), await auto.get_child("0:CurrentState")
                seen.append(((await vstate.read_value()).Text, await (await vstate.get_child("0:Id")).read_value(),
                             (await astate.read_value()).Text, await (await astate.get_child("0:Id")).read_value()))

            await look()
            assert await vsm.call_method(f"{ns}:SelectModeAutomatic") == 0
            await look()
            assert await vsm.call_method(f"{ns}:Halt", *cause(7, "door opened")) == 0
            await look()
            last = await vsm.get_child("0:LastTransition")
            assert await (await last.get_child("0:Id")).read_value() == ua.NodeId(5049, ns)  # OperationalToHalted
            assert await vsm.call_method(f"{ns}:Reset", *cause(8, "door closed")) == 0
            await look()
            job, err = await auto.call_method(
                f"{ns}:StartContinuous", encoded(ns, "MeasIdDataType", ""), encoded(ns, "PartIdDataType", ""),
                encoded(ns, "RecipeIdExternalDataType", ""), encoded(ns, "ProductIdDataType", ""),
                ua.Variant([], ua.VariantType.Variant))
            assert err == 0 and decoded_id(job, ns, "JobIdDataType")
            await look()
            assert await auto.call_method(f"{ns}:Stop", *cause(1, "shift end")) == 0
            await look()
            await auto.call_method(f"{ns}:StartContinuous", encoded(ns, "MeasIdDataType", ""),
                                   encoded(ns, "PartIdDataType", ""), encoded(ns, "RecipeIdExternalDataType", ""),
                                   encoded(ns, "ProductIdDataType", ""), ua.Variant([], ua.VariantType.Variant))
            assert await auto.call_method(f"{ns}:Abort", *cause(2, "jam")) == 0
            last = await auto.get_child("0:LastTransition")
            assert await (await last.get_child("0:Id")).read_value() == ua.NodeId(5072, ns)  # ContinuousExecutionToReadyAbort
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    v, a = VISION_STATES, AUTOMATIC_STATES
    want = [("Preoperational", v["Preoperational"], "Initialized", a["Initialized"]),
            ("Operational", v["Operational"], "Ready", a["Ready"]),
            ("Halted", v["Halted"], "Initialized", a["Initialized"]),
            ("Operational", v["Operational"], "Ready", a["Ready"]),
            ("Operational", v["Operational"], "ContinuousExecution", a["ContinuousExecution"]),
            ("Operational", v["Operational"], "Ready", a["Ready"])]
    ns = seen[0][1].NamespaceIndex
    assert seen == [(vs, ua.NodeId(vi, ns), as_, ua.NodeId(ai, ns)) for vs, vi, as_, ai in want]
    rows = {(e.user, e.action, e.target) for e in ua_db[1].list(limit=100)}
    assert ("plc", "opcua.Halt", "station (cause 7: door opened)") in rows
    assert ("plc", "opcua.Reset", "station (cause 8: door closed)") in rows
    assert any(action == "opcua.Stop" and target.endswith("(cause 1: shift end)") for _, action, target in rows)
    assert any(action == "opcua.Abort" and target.endswith("(cause 2: jam)") for _, action, target in rows)
    assert station.running is True  # Reset resumed inspection after the Halt


def test_recipe_management_with_the_spec_arguments(ua_db, tmp_path) -> None:
    station, server = make_server(ua_db, tmp_path)
    got: dict[str, object] = {}

    async def recipe_list(recipes, ns: int, prepared: int) -> list[str]:
        complete, count, _, found, err = await recipes.call_method(
            f"{ns}:GetRecipeListFiltered", encoded(ns, "RecipeIdExternalDataType", ""),
            encoded(ns, "ProductIdDataType", ""), ua.Variant(prepared, ua.VariantType.Int32),
            ua.Variant(10, ua.VariantType.UInt32), ua.Variant(0, ua.VariantType.UInt32),
            ua.Variant(0, ua.VariantType.Int32))
        assert complete is True and err == 0 and count == len(found)
        return [decoded_id(r, ns, "RecipeIdInternalDataType") for r in found]

    async def main() -> None:
        c = await connect(server, "eng", "engineer-pass")
        try:
            ns, vs = await vision_system(c)
            recipes = await vs.get_child(f"{ns}:RecipeManagement")
            got["before"] = await recipe_list(recipes, ns, 2)  # DONTCARE_2: the recipe the station runs
            got["prepared_before"] = await recipe_list(recipes, ns, 1)  # TRUE_1: none prepared yet
            out = await recipes.call_method(f"{ns}:PrepareRecipe", encoded(ns, "RecipeIdExternalDataType", "2"),
                                            encoded(ns, "RecipeIdInternalDataType", ""))
            got["prepare"] = (decoded_id(out[0], ns, "RecipeIdInternalDataType"), out[1], out[2])
            got["prepared"] = await recipe_list(recipes, ns, 1)
            out = await recipes.call_method(f"{ns}:UnprepareRecipe", encoded(ns, "RecipeIdExternalDataType", "2"),
                                            encoded(ns, "RecipeIdInternalDataType", ""))
            got["unprepare"] = (decoded_id(out[0], ns, "RecipeIdInternalDataType"), out[1])
            got["prepared_after"] = await recipe_list(recipes, ns, 1)
        finally:
            await c.disconnect()

    with server:
        asyncio.run(main())
    assert got == {"before": ["0"], "prepared_before": [], "prepare": ("2", True, 0), "prepared": ["2"],
                   "unprepare": ("2", 0), "prepared_after": []}
    assert station.recipes == [2]
    actions = [e.action for e in ua_db[1].list(limit=50)]
    assert "opcua.PrepareRecipe" in actions and "opcua.UnprepareRecipe" in actions

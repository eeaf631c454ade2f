"""The OPC 40100-1 (OPC UA for Machine Vision) address space of the station: its Basic Vision System subset.

Built with asyncua's API on the station's own server (never loaded from the OPC Foundation
NodeSet): the namespace ``http://opcfoundation.org/UA/MachineVision``, the spec's structures
(MeasIdDataType, PartIdDataType, JobIdDataType, ResultIdDataType, ProductIdDataType,
RecipeIdExternalDataType, RecipeIdInternalDataType, ProcessingTimesDataType), the
ResultReadyEventType, and one ``VisionSystem`` object under Objects::

    VisionSystem (VisionSystemType)
      VisionStateMachine (VisionStateMachineType)   CurrentState, Halt, Reset, SelectModeAutomatic
        AutomaticModeStateMachine (VisionAutomaticModeStateMachineType)
                                                    CurrentState, StartSingleJob, StartContinuous, Stop, Abort
      RecipeManagement (RecipeManagementType)       PrepareRecipe, UnprepareRecipe, PrepareProduct, UnprepareProduct
      ResultManagement (ResultManagementType)       Results/LastResult/... (the last part's result)

The states are the spec's names; the state machines expose ``CurrentState`` (LocalizedText)
with its ``Id`` property, not the spec's full State/Transition objects (a subset, as a Basic
Vision System may).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.structures104 import new_struct, new_struct_field

from inspector.pipeline.results import PartResult

NAMESPACE = "http://opcfoundation.org/UA/MachineVision"

VISION_STATES = ("Preoperational", "Halted", "Operational", "Error")
AUTOMATIC_STATES = ("Initialized", "Ready", "SingleExecution", "ContinuousExecution")

#: ResultStateDataType (OPC 40100-1 12.19): the processing state of a result, not its verdict
RESULT_UNDEFINED, RESULT_COMPLETED, RESULT_PROCESSING, RESULT_ABORTED, RESULT_FAILED = 0, 1, 2, 3, 4

_ID_TYPES = ("MeasIdDataType", "PartIdDataType", "ProductIdDataType", "JobIdDataType", "ResultIdDataType")
_BINARY_ID_TYPES = ("RecipeIdExternalDataType", "RecipeIdInternalDataType")

Handler = Callable[..., Awaitable[Any]]


@dataclass
class VisionModel:
    """The nodes the server writes to and the structure classes its methods take and give."""

    idx: int
    system: Node
    vision_state: Node
    automatic_state: Node
    result_event_type: Node
    last_result: dict[str, Node] = field(default_factory=dict)
    types: dict[str, type] = field(default_factory=dict)
    methods: dict[str, Node] = field(default_factory=dict)

    def make(self, name: str, **values: Any) -> Any:
        """An instance of the spec structure ``name`` (``make("JobIdDataType", Id="j1")``)."""
        obj = self.types[name]()
        for k, v in values.items():
            setattr(obj, k, v)
        return obj


async def _structures(server: Server, idx: int) -> dict[str, ua.NodeId]:
    ids: dict[str, ua.NodeId] = {}
    for name in _ID_TYPES:
        fields = [new_struct_field("Id", ua.VariantType.String)]
        if name in ("MeasIdDataType", "PartIdDataType", "ProductIdDataType"):
            fields.append(new_struct_field("Description", ua.VariantType.LocalizedText, optional=True))
        node, _ = await new_struct(server, idx, name, fields)
        ids[name] = node.nodeid
    for name in _BINARY_ID_TYPES:
        node, _ = await new_struct(server, idx, name, [
            new_struct_field("Id", ua.VariantType.String),
            new_struct_field("Version", ua.VariantType.String, optional=True),
            new_struct_field("Hash", ua.VariantType.ByteString, optional=True),
            new_struct_field("HashAlgorithm", ua.VariantType.String, optional=True),
            new_struct_field("Description", ua.VariantType.LocalizedText, optional=True),
        ])
        ids[name] = node.nodeid
    node, _ = await new_struct(server, idx, "ProcessingTimesDataType", [
        new_struct_field("StartTime", ua.VariantType.DateTime),
        new_struct_field("EndTime", ua.VariantType.DateTime),
        new_struct_field("AcquisitionDuration", ua.VariantType.Double, optional=True),
        new_struct_field("ProcessingDuration", ua.VariantType.Double, optional=True),
    ])
    ids["ProcessingTimesDataType"] = node.nodeid
    return ids


def _arg(name: str, datatype: ua.NodeId, description: str, array: bool = False) -> ua.Argument:
    a = ua.Argument()
    a.Name = name
    a.DataType = datatype
    a.ValueRank = ua.ValueRank.OneDimension if array else ua.ValueRank.Scalar
    a.ArrayDimensions = [0] if array else []
    a.Description = ua.LocalizedText(description)
    return a


def _nid(ident: int) -> ua.NodeId:
    return ua.NodeId(ua.Int32(ident))


def _int32() -> ua.NodeId:
    return _nid(ua.ObjectIds.Int32)


async def _state_variable(parent: Node, idx: int, initial: str) -> Node:
    var = await parent.add_variable(idx, "CurrentState", ua.LocalizedText(initial),
                                    datatype=_nid(ua.ObjectIds.LocalizedText))
    await var.add_property(0, "Id", ua.NodeId(), varianttype=ua.VariantType.NodeId)
    return var


async def build(server: Server, handlers: Mapping[str, Handler]) -> VisionModel:
    """Add the VisionSystem to ``server`` (before `Server.start`); ``handlers`` maps method names to callbacks.

    Each handler is called as ``handler(parent_nodeid, *input_variants)`` by asyncua.
    """
    idx = await server.register_namespace(NAMESPACE)
    ids = await _structures(server, idx)
    loaded = await server.load_data_type_definitions()
    # a structure asyncua knows already (a second server in this process) is not returned again
    types = {name: loaded.get(name) or getattr(ua, name) for name in ids}
    object_types = await _object_types(server, idx)
    event_type = await _result_ready_event_type(server, idx, ids)

    system = await server.nodes.objects.add_object(idx, "VisionSystem", objecttype=object_types["VisionSystemType"])
    await system.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
    vsm = await system.add_object(idx, "VisionStateMachine", objecttype=object_types["VisionStateMachineType"])
    vision_state = await _state_variable(vsm, idx, "Preoperational")
    auto = await vsm.add_object(idx, "AutomaticModeStateMachine",
                                objecttype=object_types["VisionAutomaticModeStateMachineType"])
    automatic_state = await _state_variable(auto, idx, "Initialized")
    recipes = await system.add_object(idx, "RecipeManagement", objecttype=object_types["RecipeManagementType"])
    results = await system.add_object(idx, "ResultManagement", objecttype=object_types["ResultManagementType"])
    model = VisionModel(idx, system, vision_state, automatic_state, event_type, types=types)

    for name, (parent, ins, outs) in _method_signatures(ids, vsm, auto, recipes).items():
        model.methods[name] = await parent.add_method(idx, name, handlers[name], ins, outs)
    await _add_last_result(model, results, ids)
    return model


async def _object_types(server: Server, idx: int) -> dict[str, ua.NodeId]:
    """The spec's object types the VisionSystem's objects are instances of, by name."""
    base_obj = server.nodes.base_object_type
    fsm = server.get_node(_nid(ua.ObjectIds.FiniteStateMachineType))
    out: dict[str, ua.NodeId] = {}
    for parent, name in ((base_obj, "VisionSystemType"), (fsm, "VisionStateMachineType"),
                         (fsm, "VisionAutomaticModeStateMachineType"), (base_obj, "RecipeManagementType"),
                         (base_obj, "ResultManagementType")):
        out[name] = (await parent.add_object_type(idx, name)).nodeid
    return out


async def _result_ready_event_type(server: Server, idx: int, ids: Mapping[str, ua.NodeId]) -> Node:
    """The ResultReadyEventType with the spec's fields (OPC 40100-1)."""
    ext = ua.VariantType.ExtensionObject
    return await server.create_custom_event_type(idx, "ResultReadyEventType", ua.ObjectIds.BaseEventType, [
        ("IsPartial", ua.VariantType.Boolean),
        ("IsSimulated", ua.VariantType.Boolean),
        ("ResultState", ua.VariantType.Int32),
        ("MeasId", ext, ids["MeasIdDataType"]),
        ("PartId", ext, ids["PartIdDataType"]),
        ("ExternalRecipeId", ext, ids["RecipeIdExternalDataType"]),
        ("InternalRecipeId", ext, ids["RecipeIdInternalDataType"]),
        ("ProductId", ext, ids["ProductIdDataType"]),
        ("JobId", ext, ids["JobIdDataType"]),
        ("ResultId", ext, ids["ResultIdDataType"]),
        ("CreationTime", ua.VariantType.DateTime),
        ("ProcessingTimes", ext, ids["ProcessingTimesDataType"]),
        ("ResultContent", ua.VariantType.Variant, _nid(ua.ObjectIds.BaseDataType)),
    ])


def _method_signatures(
    ids: Mapping[str, ua.NodeId], vsm: Node, auto: Node, recipes: Node,
) -> dict[str, tuple[Node, list[ua.Argument], list[ua.Argument]]]:
    """Each method's parent object, input and output arguments, in the order they are added."""
    error = [_arg("Error", _int32(), "0 OK; > 0 errors of the spec; < 0 application-specific")]
    job_in = [
        _arg("MeasId", ids["MeasIdDataType"], "the client's id of the inspection run (may be empty)"),
        _arg("PartId", ids["PartIdDataType"], "the client's part id: 1-64 letters, digits, '.', '_', ':', '-'"),
        _arg("RecipeId", ids["RecipeIdExternalDataType"], "external id of a prepared recipe (may be empty)"),
        _arg("ProductId", ids["ProductIdDataType"], "product of a prepared recipe (may be empty)"),
        _arg("Parameters", _nid(ua.ObjectIds.BaseDataType), "recipe-specific parameters (none used)", array=True),
    ]
    job_out = [_arg("JobId", ids["JobIdDataType"], "system-wide unique id of the job"), *error]
    recipe_ext = _arg("ExternalId", ids["RecipeIdExternalDataType"], "the environment's id of the recipe")
    recipe_int = ids["RecipeIdInternalDataType"]
    product = _arg("ProductId", ids["ProductIdDataType"], "the product whose recipe is meant")
    return {
        "Halt": (vsm, [], error),
        "Reset": (vsm, [], error),
        "SelectModeAutomatic": (vsm, [], error),
        "StartSingleJob": (auto, job_in, job_out),
        "StartContinuous": (auto, job_in, job_out),
        "Stop": (auto, [], error),
        "Abort": (auto, [], error),
        "PrepareRecipe": (recipes, [recipe_ext, _arg("InternalIdIn", recipe_int, "internal id (takes precedence)")],
                          [_arg("InternalIdOut", recipe_int, "the recipe selected"),
                           _arg("IsCompleted", _nid(ua.ObjectIds.Boolean), "prepared before returning"), *error]),
        "UnprepareRecipe": (recipes, [recipe_ext, _arg("InternalId", recipe_int, "internal id (takes precedence)")],
                            error),
        "PrepareProduct": (recipes, [product], [_arg("InternalId", recipe_int, "the recipe selected"), *error]),
        "UnprepareProduct": (recipes, [product], error),
    }


async def _add_last_result(model: VisionModel, results: Node, ids: Mapping[str, ua.NodeId]) -> None:
    """ResultManagement's Results/LastResult variables, empty until the first part, into ``model.last_result``."""
    idx = model.idx
    ext = ua.VariantType.ExtensionObject
    folder = await results.add_folder(idx, "Results")
    last = await folder.add_object(idx, "LastResult")
    for name, value, vtype, dtype in (
        ("ResultId", model.make("ResultIdDataType", Id=""), ext, ids["ResultIdDataType"]),
        ("IsPartial", False, ua.VariantType.Boolean, None),
        ("ResultState", RESULT_UNDEFINED, ua.VariantType.Int32, None),
        ("MeasId", model.make("MeasIdDataType", Id=""), ext, ids["MeasIdDataType"]),
        ("PartId", model.make("PartIdDataType", Id=""), ext, ids["PartIdDataType"]),
        ("JobId", model.make("JobIdDataType", Id=""), ext, ids["JobIdDataType"]),
        ("ExternalRecipeId", model.make("RecipeIdExternalDataType", Id=""), ext, ids["RecipeIdExternalDataType"]),
        ("InternalRecipeId", model.make("RecipeIdInternalDataType", Id=""), ext, ids["RecipeIdInternalDataType"]),
        ("ProductId", model.make("ProductIdDataType", Id=""), ext, ids["ProductIdDataType"]),
        ("CreationTime", datetime.fromtimestamp(0, UTC), ua.VariantType.DateTime, None),
        ("ResultContent", ["", ""], ua.VariantType.String, _nid(ua.ObjectIds.BaseDataType)),
    ):
        model.last_result[name] = await last.add_variable(idx, name, ua.Variant(value, vtype), datatype=dtype)


async def publish(model: VisionModel, events: Any, part: PartResult, job_id: str, result_id: str, *,
                  meas_id: str = "", recipe_id: str = "", product_id: str = "") -> None:
    """Write ``part`` to the LastResult variables and fire its ResultReadyEvent from the VisionSystem.

    ResultState is the spec's processing state: Completed, or Aborted for a part still
    missing an image at its deadline (IsPartial true; its verdict is NG: fail safe). The
    verdict and its reason are the ResultContent (``["OK" | "NG", reason]``).
    """
    start = datetime.fromtimestamp(part.triggered_at, UTC)
    times = model.make("ProcessingTimesDataType", StartTime=start,
                       EndTime=start + timedelta(milliseconds=part.times.verdict_ms),
                       AcquisitionDuration=float(part.times.acquired_ms),
                       ProcessingDuration=max(0.0, float(part.times.verdict_ms - part.times.acquired_ms)))
    fields: dict[str, Any] = {
        "ResultId": model.make("ResultIdDataType", Id=result_id),
        "IsPartial": part.incomplete,
        "IsSimulated": False,
        "ResultState": ua.Variant(RESULT_ABORTED if part.incomplete else RESULT_COMPLETED, ua.VariantType.Int32),
        "MeasId": model.make("MeasIdDataType", Id=meas_id),
        "PartId": model.make("PartIdDataType", Id=part.part_id),
        "JobId": model.make("JobIdDataType", Id=job_id),
        "ExternalRecipeId": model.make("RecipeIdExternalDataType", Id=recipe_id),
        "InternalRecipeId": model.make("RecipeIdInternalDataType", Id=part.recipe),
        "ProductId": model.make("ProductIdDataType", Id=product_id),
        "CreationTime": datetime.now(UTC),
    }
    content = ua.Variant([part.verdict.value, part.reason], ua.VariantType.String)  # a BaseDataType[] value
    for name, node in model.last_result.items():
        if name == "ResultContent":
            await node.write_value(content)
        elif name in fields:
            await node.write_value(fields[name])
    ev = events.event
    for name, value in fields.items():
        setattr(ev, name, value)
    ev.ProcessingTimes = times
    ev.ResultContent = content
    ev.Message = ua.LocalizedText(f"part {part.part_id}: {part.verdict.value} ({part.reason})"[:500])
    ev.Severity = 500 if part.ng else 100
    ev.SourceName = "VisionSystem"
    await events.trigger()

"""The station's VisionSystem instance after OPC 40100-1 (OPC UA for Machine Vision).

The types live at their official NodeIds in ``http://opcfoundation.org/UA/MachineVision``
(`inspector.plc.mv_types`, built from the id table `inspector.plc.mv_ids`); this module adds
one instance of them under Objects, in the station's own namespace (BrowseNames in the
MachineVision one), and writes its states and results::

    VisionSystem (VisionSystemType)
      VisionStateMachine (VisionStateMachineType)   0:CurrentState + 0:Id, 0:LastTransition,
                                                    Halt, Reset, SelectModeAutomatic
        AutomaticModeStateMachine (VisionAutomaticModeStateMachineType)
                                                    0:CurrentState + 0:Id, 0:LastTransition,
                                                    StartSingleJob, StartContinuous, Stop, Abort
      RecipeManagement (RecipeManagementType)       GetRecipeListFiltered, PrepareRecipe, UnprepareRecipe,
                                                    PrepareProduct, UnprepareProduct
      ResultManagement (ResultManagementType)       GetResultById, GetResultComponentsById,
                                                    GetResultListFiltered,
        Results (ResultFolderType)
          LastResult (ResultType)                   the last part's ResultDataType and its components

CurrentState's ``Id`` is the NodeId of the state object in the type (e.g. Operational is
``ns=MV;i=5031``), LastTransition's ``Id`` that of the transition taken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Node, Server, ua

from inspector.pipeline.results import PartResult
from inspector.plc import mv_ids as mv
from inspector.plc.mv_types import MvTypes, add_method, add_types, empty_variant, nid, typed_object, variant_type

NAMESPACE = mv.NAMESPACE

VISION_STATES = tuple(mv.VISION_STATES)
AUTOMATIC_STATES = tuple(mv.AUTOMATIC_STATES)

#: ResultStateDataType (OPC 40100-1 12.19): the processing state of a result, not its verdict
RESULT_UNDEFINED, RESULT_COMPLETED, RESULT_PROCESSING, RESULT_ABORTED, RESULT_FAILED = 0, 1, 2, 3, 4

Handler = Callable[..., Awaitable[Any]]


@dataclass
class StateNodes:
    """One state machine's standard variables: CurrentState, LastTransition and their properties."""

    current: Node
    current_id: Node
    last: Node
    last_id: Node
    last_time: Node


@dataclass
class VisionModel:
    """The nodes the server writes to and the structure classes its methods take and give."""

    t: MvTypes
    system: Node
    vision: StateNodes
    automatic: StateNodes
    result_event_type: ua.NodeId
    last_result: Node
    last_components: dict[str, Node] = field(default_factory=dict)
    types: dict[str, type] = field(default_factory=dict)
    methods: dict[str, Node] = field(default_factory=dict)

    @property
    def idx(self) -> int:
        """The MachineVision namespace's index on this server."""
        return self.t.idx

    def make(self, name: str, **values: Any) -> Any:
        """An instance of the spec structure ``name`` (``make("JobIdDataType", Id="j1")``)."""
        obj = self.types[name]()
        for k, v in values.items():
            setattr(obj, k, v)
        return obj


async def build(server: Server, handlers: Mapping[str, Handler], own: int) -> VisionModel:
    """Add the types and the VisionSystem to ``server`` (before `Server.start`).

    ``handlers`` maps method names to callbacks, each called as ``handler(parent_nodeid,
    *input_variants)`` by asyncua; ``own`` is the station's namespace index (instance nodes).
    """
    idx = await server.register_namespace(NAMESPACE)
    t = await add_types(server, idx, own)
    loaded = await server.load_data_type_definitions()
    # a structure asyncua knows already (a second server in this process) is not returned again
    types = {name: loaded.get(name) or getattr(ua, name) for name in mv.STRUCTURES}

    def new() -> ua.NodeId:
        return nid(0, own)

    system = await typed_object(server.nodes.objects, new(), t.qname("VisionSystem"),
                                t.object_type("VisionSystemType"), reference=ua.ObjectIds.Organizes)
    await system.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
    await server.nodes.server.add_reference(system.nodeid, ua.ObjectIds.HasNotifier)
    vsm = await typed_object(system, new(), t.qname("VisionStateMachine"), t.object_type("VisionStateMachineType"))
    auto = await typed_object(vsm, new(), t.qname("AutomaticModeStateMachine"),
                              t.object_type("VisionAutomaticModeStateMachineType"))
    recipes = await typed_object(system, new(), t.qname("RecipeManagement"), t.object_type("RecipeManagementType"))
    results = await typed_object(system, new(), t.qname("ResultManagement"), t.object_type("ResultManagementType"))
    folder = await typed_object(results, new(), t.qname("Results"), t.object_type("ResultFolderType"))
    parents = {"VisionStateMachineType": vsm, "VisionAutomaticModeStateMachineType": auto,
               "RecipeManagementType": recipes, "ResultManagementType": results}
    model = VisionModel(t, system, await _state_nodes(vsm, own, t, "Preoperational", mv.VISION_STATES),
                        await _state_nodes(auto, own, t, "Initialized", mv.AUTOMATIC_STATES),
                        t.id(mv.RESULT_READY_EVENT_TYPE), await _last_result(folder, own, t), types=types)
    for name, m in mv.METHODS.items():
        node = await add_method(parents[m.owner], new(), t, name, (new(), new()))
        server.link_method(node, handlers[name])
        model.methods[name] = node
    for name in mv.RESULT_COMPONENTS:
        model.last_components[name] = await model.last_result.get_child(t.qname(name))
    return model


async def _variable(parent: Node, nodeid: ua.NodeId, bname: ua.QualifiedName, value: ua.Variant,
                    datatype: ua.NodeId, typedef: int) -> Node:
    """A component variable of type ``typedef`` (asyncua's own helper always makes BaseDataVariableType)."""
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = bname
    item.ParentNodeId = parent.nodeid
    item.ReferenceTypeId = nid(ua.ObjectIds.HasComponent)
    item.NodeClass = ua.NodeClass.Variable
    item.TypeDefinition = nid(typedef, 0)
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(bname.Name)
    attrs.Value = value
    attrs.DataType = datatype
    attrs.ValueRank = ua.ValueRank.Scalar
    attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    item.NodeAttributes = attrs
    result = (await parent.session.add_nodes([item]))[0]
    result.StatusCode.check()
    return Node(parent.session, result.AddedNodeId)


async def _state_nodes(machine: Node, own: int, t: MvTypes, initial: str, states: Mapping[str, mv.State]) -> StateNodes:
    text = nid(ua.ObjectIds.LocalizedText)
    current = await _variable(machine, nid(0, own), ua.QualifiedName("CurrentState", 0),
                              ua.Variant(ua.LocalizedText(initial)), text, mv.UA_FINITESTATEVARIABLETYPE)
    current_id = await current.add_property(nid(0, own), ua.QualifiedName("Id", 0),
                                            ua.Variant(t.id(states[initial].id), ua.VariantType.NodeId))
    last = await _variable(machine, nid(0, own), ua.QualifiedName("LastTransition", 0),
                           ua.Variant(ua.LocalizedText("")), text, mv.UA_FINITETRANSITIONVARIABLETYPE)
    last_id = await last.add_property(nid(0, own), ua.QualifiedName("Id", 0),
                                      ua.Variant(ua.NodeId(), ua.VariantType.NodeId))
    last_time = await last.add_property(nid(0, own), ua.QualifiedName("TransitionTime", 0),
                                        ua.Variant(datetime.fromtimestamp(0, UTC), ua.VariantType.DateTime))
    return StateNodes(current, current_id, last, last_id, last_time)


async def _last_result(folder: Node, own: int, t: MvTypes) -> Node:
    """Results/LastResult: a ResultType variable (ResultDataType) with the type's component variables."""
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nid(0, own)
    item.BrowseName = t.qname("LastResult")
    item.ParentNodeId = folder.nodeid
    item.ReferenceTypeId = nid(ua.ObjectIds.Organizes)
    item.NodeClass = ua.NodeClass.Variable
    item.TypeDefinition = t.id(mv.RESULT_TYPE)
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText("LastResult")
    attrs.DataType = t.datatype("ResultDataType")
    attrs.ValueRank = ua.ValueRank.Scalar
    attrs.AccessLevel = attrs.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
    item.NodeAttributes = attrs
    result = (await folder.session.add_nodes([item]))[0]
    result.StatusCode.check()
    last = Node(folder.session, result.AddedNodeId)
    fields = {f.name: f for f in mv.STRUCTURES["ResultDataType"].fields}
    for name in mv.RESULT_COMPONENTS:
        f = fields[name]
        await last.add_variable(nid(0, own), t.qname(name), empty_variant(f.datatype, f.array),
                                datatype=t.datatype(f.datatype))
    return last


async def show_state(model: VisionModel, nodes: StateNodes, state: str, transition: str) -> None:
    """Write a state machine's CurrentState (and Id) and, when ``transition`` is named, its LastTransition."""
    states = mv.VISION_STATES if state in mv.VISION_STATES else mv.AUTOMATIC_STATES
    await nodes.current.write_value(ua.LocalizedText(state))
    await nodes.current_id.write_value(ua.Variant(model.t.id(states[state].id), ua.VariantType.NodeId))
    if transition:
        transitions = mv.VISION_TRANSITIONS if transition in mv.VISION_TRANSITIONS else mv.AUTOMATIC_TRANSITIONS
        await nodes.last.write_value(ua.LocalizedText(transition))
        await nodes.last_id.write_value(ua.Variant(model.t.id(transitions[transition].id), ua.VariantType.NodeId))
        await nodes.last_time.write_value(ua.Variant(datetime.now(UTC), ua.VariantType.DateTime))


def result_record(model: VisionModel, part: PartResult, job_id: str, result_id: str, *, meas_id: str = "",
                  recipe_id: str = "", product_id: str = "", configuration: str = "") -> Any:
    """The ResultDataType of ``part``.

    ResultState is the spec's processing state: Completed, or Aborted for a part still
    missing an image at its deadline (IsPartial true; its verdict is NG: fail safe). The
    verdict and its reason are the ResultContent (``["OK" | "NG", reason]``).
    """
    start = datetime.fromtimestamp(part.triggered_at, UTC)
    times = model.make("ProcessingTimesDataType", StartTime=start,
                       EndTime=start + timedelta(milliseconds=part.times.verdict_ms),
                       AcquisitionDuration=float(part.times.acquired_ms),
                       ProcessingDuration=max(0.0, float(part.times.verdict_ms - part.times.acquired_ms)))
    return model.make(
        "ResultDataType", ResultId=model.make("ResultIdDataType", Id=result_id), HasTransferableDataOnFile=False,
        IsPartial=part.incomplete, IsSimulated=False, ResultState=RESULT_ABORTED if part.incomplete else RESULT_COMPLETED,
        MeasId=model.make("MeasIdDataType", Id=meas_id), PartId=model.make("PartIdDataType", Id=part.part_id),
        ExternalRecipeId=model.make("RecipeIdExternalDataType", Id=recipe_id),
        InternalRecipeId=model.make("RecipeIdInternalDataType", Id=part.recipe),
        ProductId=model.make("ProductIdDataType", Id=product_id),
        ExternalConfigurationId=model.make("ConfigurationIdDataType", Id=""),
        InternalConfigurationId=model.make("ConfigurationIdDataType", Id=configuration),
        JobId=model.make("JobIdDataType", Id=job_id), CreationTime=datetime.now(UTC), ProcessingTimes=times,
        ResultContent=[ua.Variant(part.verdict.value, ua.VariantType.String), ua.Variant(part.reason, ua.VariantType.String)])


def field_variant(name: str, value: Any) -> ua.Variant:
    """A field of a ResultDataType as the Variant its property or component variable holds."""
    dtype = next(f for f in mv.STRUCTURES["ResultDataType"].fields if f.name == name).datatype
    if name == "ResultContent":
        return ua.Variant(list(value or []), ua.VariantType.Variant)
    return ua.Variant(value, variant_type(dtype))


async def publish(model: VisionModel, events: Any, part: PartResult, record: Any) -> None:
    """Write ``record`` (`result_record` of ``part``) to LastResult and fire its ResultReadyEvent.

    The event's source is the VisionSystem; it is notified on the VisionSystem and on the Server object.
    """
    await model.last_result.write_value(ua.Variant(record, ua.VariantType.ExtensionObject))
    for name, node in model.last_components.items():
        await node.write_value(field_variant(name, getattr(record, name)))
    ev = events.event
    for name in mv.RESULT_READY_PROPERTIES:
        setattr(ev, name, field_variant(name, getattr(record, name)))
    ev.Message = ua.LocalizedText(f"part {part.part_id}: {part.verdict.value} ({part.reason})"[:500])
    ev.Severity = 500 if part.ng else 100
    ev.SourceName = "VisionSystem"
    ev.SourceNode = model.system.nodeid
    # the same event from the VisionSystem and from the Server object (a generic client's
    # usual notifier; the Server HasNotifier the VisionSystem)
    for notifier in (model.system.nodeid, nid(ua.ObjectIds.Server)):
        ev.emitting_node = notifier
        await events.trigger()

"""The OPC 40100-1 types at their official NodeIds, built in code on an asyncua server from `mv_ids`.

`add_types` adds to the MachineVision namespace: the DataTypes the station uses with their
official Default Binary encodings and structure definitions (so a client that encodes a
PartIdDataType as the spec does is understood), the object types with their instance
declarations (the state machines' states and transitions, every method with the spec's
arguments), ResultType and the ResultReadyEventType with all its properties. Instances are
made by `inspector.plc.opcua_model` with `typed_object`, `add_method` and `empty_variant`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from asyncua import Node, Server, ua

from inspector.plc import mv_ids as mv


def nid(ident: int, ns: int = 0) -> ua.NodeId:
    """The numeric NodeId ``ns=<ns>;i=<ident>`` (0: a new id the server picks in ``ns``)."""
    return ua.NodeId(ua.Int32(ident), ua.Int16(ns))


class MvTypes:
    """NodeIds of the MachineVision namespace on one server (its namespace index ``idx``).

    Nodes the spec gives no id (a state's StateNumber, the instance's nodes) go to the
    station's own namespace ``own`` (ids made by the server), never into the MachineVision one.
    """

    def __init__(self, idx: int, own: int) -> None:
        self.idx, self.own = idx, own

    def id(self, ident: int) -> ua.NodeId:
        """The NodeId ``ns=<MV>;i=<ident>``."""
        return nid(ident, self.idx)

    def datatype(self, name_or_id: str | int) -> ua.NodeId:
        """A DataType named in `mv_ids` (a MachineVision one by name, a namespace-0 one by number)."""
        if isinstance(name_or_id, int):
            return nid(name_or_id, 0)
        for table in (mv.SIMPLE_TYPES, mv.ENUMS):
            if name_or_id in table:
                return self.id(table[name_or_id][0])
        return self.id(mv.STRUCTURES[name_or_id].id)

    def object_type(self, name: str) -> ua.NodeId:
        return self.id(mv.OBJECT_TYPES[name][0])

    def qname(self, name: str) -> ua.QualifiedName:
        return ua.QualifiedName(name, self.idx)


async def add_types(server: Server, idx: int, own: int) -> MvTypes:
    """Add the types to ``server`` (before it starts) in the namespace with index ``idx`` (``own``: `MvTypes`)."""
    t = MvTypes(idx, own)
    await _data_types(server, t)
    await _object_types(server, t)
    await _result_type(server, t)
    await _result_ready_event_type(server, t)
    return t


async def _data_types(server: Server, t: MvTypes) -> None:
    for name, (ident, base) in mv.SIMPLE_TYPES.items():
        await server.get_node(nid(base, 0)).add_data_type(t.id(ident), t.qname(name))
        # asyncua 2.x names its alias after the BrowseName and skips names namespace 0 has
        # (OPC UA 1.05 has its own TrimmedString and Handle): map the id to the built-in type itself
        ua.basetype_by_datatype.setdefault(t.id(ident), ua.ObjectIdNames[base])
    enum_parent = server.get_node(nid(mv.UA_ENUMERATION, 0))
    for name, (ident, names) in mv.ENUMS.items():
        node = await enum_parent.add_data_type(t.id(ident), t.qname(name))
        edef = ua.EnumDefinition()
        edef.Fields = [ua.EnumField(Name=n, Value=i, DisplayName=ua.LocalizedText(n)) for i, n in enumerate(names)]
        await node.write_data_type_definition(edef)
    for name, s in mv.STRUCTURES.items():
        parent = t.id(mv.STRUCTURES[s.base].id) if s.base else nid(mv.UA_STRUCTURE, 0)
        node = await server.get_node(parent).add_data_type(t.id(s.id), t.qname(name))
        if s.abstract:
            await node.write_attribute(ua.AttributeIds.IsAbstract, ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
        await _encoding(node, t.id(s.binary))
        sdef = ua.StructureDefinition()
        sdef.BaseDataType = parent
        sdef.DefaultEncodingId = t.id(s.binary)
        optional = any(f.optional for f in s.fields)
        sdef.StructureType = ua.StructureType.StructureWithOptionalFields if optional else ua.StructureType.Structure
        sdef.Fields = [_field(t, f) for f in s.fields]
        await node.write_data_type_definition(sdef)


async def _encoding(dtype: Node, nodeid: ua.NodeId) -> None:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = ua.QualifiedName("Default Binary", 0)
    item.ParentNodeId = dtype.nodeid
    item.ReferenceTypeId = nid(ua.ObjectIds.HasEncoding)
    item.NodeClass = ua.NodeClass.Object
    item.TypeDefinition = nid(ua.ObjectIds.DataTypeEncodingType)
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText("Default Binary")
    item.NodeAttributes = attrs
    (await dtype.session.add_nodes([item]))[0].StatusCode.check()


def _field(t: MvTypes, f: mv.Field) -> ua.StructureField:
    out = ua.StructureField()
    out.Name = f.name
    out.DataType = t.datatype(f.datatype)
    out.IsOptional = f.optional
    out.ValueRank = ua.ValueRank.OneDimension if f.array else ua.ValueRank.Scalar
    if f.array:
        out.ArrayDimensions = [0]
    return out


async def typed_object(parent: Node, nodeid: ua.NodeId, bname: ua.QualifiedName, typedef: ua.NodeId, *,
                       reference: int = mv.UA_HASCOMPONENT) -> Node:
    """An object under ``parent`` of type ``typedef``, without copying the type's children (the caller adds them)."""
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = bname
    item.ParentNodeId = parent.nodeid
    item.ReferenceTypeId = nid(reference, 0)
    item.NodeClass = ua.NodeClass.Object
    item.TypeDefinition = typedef
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText(bname.Name)
    attrs.EventNotifier = 0
    item.NodeAttributes = attrs
    result = (await parent.session.add_nodes([item]))[0]
    result.StatusCode.check()
    return Node(parent.session, result.AddedNodeId)


async def add_method(parent: Node, nodeid: ua.NodeId, t: MvTypes, name: str,
                     argument_ids: tuple[ua.NodeId, ua.NodeId]) -> Node:
    """The method ``name`` of `mv_ids.METHODS` under ``parent``, with its arguments' properties at ``argument_ids``."""
    m = mv.METHODS[name]
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = t.qname(name)
    item.NodeClass = ua.NodeClass.Method
    item.ParentNodeId = parent.nodeid
    item.ReferenceTypeId = nid(mv.UA_HASCOMPONENT, 0)
    attrs = ua.MethodAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.Executable = attrs.UserExecutable = True
    item.NodeAttributes = attrs
    result = (await parent.session.add_nodes([item]))[0]
    result.StatusCode.check()
    method = Node(parent.session, result.AddedNodeId)
    for args, bname, args_id in ((m.inputs, "InputArguments", argument_ids[0]),
                             (m.outputs, "OutputArguments", argument_ids[1])):
        if args:
            prop = await method.add_property(args_id, ua.QualifiedName(bname, 0), method_arguments(t, args),
                                             varianttype=ua.VariantType.ExtensionObject, datatype=ua.ObjectIds.Argument)
            await prop.write_value_rank(ua.ValueRank.OneDimension)
            await prop.set_modelling_rule(True)
    return method


def method_arguments(t: MvTypes, args: tuple[mv.Arg, ...]) -> list[ua.Argument]:
    """The spec's arguments of a method as `ua.Argument` values (names and DataTypes in the spec's order)."""
    out = []
    for name, dtype, array in args:
        a = ua.Argument()
        a.Name = name
        a.DataType = t.datatype(dtype)
        a.ValueRank = ua.ValueRank.OneDimension if array else ua.ValueRank.Scalar
        a.ArrayDimensions = [0] if array else []
        a.Description = ua.LocalizedText(name)
        out.append(a)
    return out


async def _object_types(server: Server, t: MvTypes) -> None:
    for name, (ident, base) in mv.OBJECT_TYPES.items():
        await server.get_node(nid(base, 0)).add_object_type(t.id(ident), t.qname(name))
    for owner, bname, ident, typename, mandatory in mv.COMPONENTS:
        decl = await typed_object(server.get_node(t.object_type(owner)), t.id(ident), t.qname(bname),
                                  t.object_type(typename))
        await decl.set_modelling_rule(mandatory)
    for name, m in mv.METHODS.items():
        node = await add_method(server.get_node(t.object_type(m.owner)), t.id(m.id), t, name,
                                (t.id(m.argument_ids[0]), t.id(m.argument_ids[1])))
        await node.set_modelling_rule(m.mandatory)
    await _state_machine(server, t, "VisionStateMachineType", mv.VISION_STATES, mv.VISION_TRANSITIONS)
    await _state_machine(server, t, "VisionAutomaticModeStateMachineType", mv.AUTOMATIC_STATES,
                         mv.AUTOMATIC_TRANSITIONS)


async def _state_machine(server: Server, t: MvTypes, owner: str, states: dict[str, mv.State],
                         transitions: dict[str, mv.Transition]) -> None:
    """The type's State and Transition objects (no modelling rule: they are shared by every instance)."""
    machine = server.get_node(t.object_type(owner))
    for name, s in states.items():
        node = await typed_object(machine, t.id(s.id), t.qname(name), nid(mv.UA_STATETYPE, 0))
        await node.add_property(nid(0, t.own), ua.QualifiedName("StateNumber", 0), ua.Variant(s.number, ua.VariantType.UInt32))
    all_states = {**mv.VISION_STATES, **mv.AUTOMATIC_STATES}
    for name, tr in transitions.items():
        node = await typed_object(machine, t.id(tr.id), t.qname(name), nid(mv.UA_TRANSITIONTYPE, 0))
        await node.add_property(nid(0, t.own), ua.QualifiedName("TransitionNumber", 0), ua.Variant(tr.number, ua.VariantType.UInt32))
        await node.add_reference(t.id(all_states[tr.source].id), mv.UA_FROMSTATE)
        await node.add_reference(t.id(all_states[tr.target].id), mv.UA_TOSTATE)
        if tr.cause:
            await node.add_reference(t.id(mv.METHODS[tr.cause].id), mv.UA_HASCAUSE)


_BUILTIN_VARIANTS = {mv.UA_BOOLEAN: ua.VariantType.Boolean, mv.UA_INT32: ua.VariantType.Int32,
                     mv.UA_UINT32: ua.VariantType.UInt32, mv.UA_STRING: ua.VariantType.String,
                     mv.UA_UTCTIME: ua.VariantType.DateTime, mv.UA_BASEDATATYPE: ua.VariantType.Variant,
                     mv.UA_LOCALIZEDTEXT: ua.VariantType.LocalizedText}


def variant_type(dtype: str | int) -> ua.VariantType:
    """How a value of the DataType ``dtype`` of `mv_ids` travels in a Variant."""
    if isinstance(dtype, int):
        return _BUILTIN_VARIANTS[dtype]
    if dtype in mv.SIMPLE_TYPES:
        return _BUILTIN_VARIANTS[mv.SIMPLE_TYPES[dtype][1]]
    return ua.VariantType.Int32 if dtype in mv.ENUMS else ua.VariantType.ExtensionObject


def empty_variant(dtype: str | int, array: bool = False) -> ua.Variant:
    """The value a variable of ``dtype`` holds before it has one (empty, zero, false, 1970)."""
    vtype = variant_type(dtype)
    if array:
        return ua.Variant([], vtype)
    empty = {ua.VariantType.Boolean: False, ua.VariantType.Int32: 0, ua.VariantType.UInt32: 0,
             ua.VariantType.String: "", ua.VariantType.DateTime: datetime.fromtimestamp(0, UTC),
             ua.VariantType.LocalizedText: ua.LocalizedText("")}
    return ua.Variant(empty.get(vtype), vtype)


async def _result_type(server: Server, t: MvTypes) -> None:
    base = server.get_node(nid(mv.UA_BASEDATAVARIABLETYPE, 0))
    rtype = await base.add_variable_type(t.id(mv.RESULT_TYPE), t.qname("ResultType"), t.datatype("ResultDataType"))
    fields = {f.name: f for f in mv.STRUCTURES["ResultDataType"].fields}
    for name, (ident, mandatory) in mv.RESULT_COMPONENTS.items():
        f = fields[name]
        var = await rtype.add_variable(t.id(ident), t.qname(name), empty_variant(f.datatype, f.array),
                                       datatype=t.datatype(f.datatype))
        await var.set_modelling_rule(mandatory)


async def _result_ready_event_type(server: Server, t: MvTypes) -> None:
    base = server.get_node(nid(mv.UA_BASEEVENTTYPE, 0))
    etype = await base.add_object_type(t.id(mv.RESULT_READY_EVENT_TYPE), t.qname("ResultReadyEventType"))
    for name, (ident, dtype, mandatory) in mv.RESULT_READY_PROPERTIES.items():
        array = name == "ResultContent"
        prop = await etype.add_property(t.id(ident), t.qname(name), empty_variant(dtype, array),
                                        datatype=t.datatype(dtype))
        if array:
            await prop.write_value_rank(ua.ValueRank.OneDimension)
        await prop.set_modelling_rule(mandatory)

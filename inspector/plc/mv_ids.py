"""Official ids of OPC 40100-1 (OPC UA for Machine Vision, v1.00) that the station's server uses.

Facts of the specification (the numeric identifiers the OPC Foundation publishes for the
namespace ``http://opcfoundation.org/UA/MachineVision``), written out as a typed table: the
server builds its address space from these (`inspector.plc.mv_types`); nothing is loaded from
a NodeSet file. Every number here is in the MachineVision namespace unless it is a ``UA_*``
constant (namespace 0). Only what the station instantiates or refers to is listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NAMESPACE: Final = "http://opcfoundation.org/UA/MachineVision"

# ---------------------------------------------------------------------- namespace 0 (OPC 10000-5)
UA_BOOLEAN, UA_INT32, UA_UINT32, UA_STRING, UA_BYTESTRING = 1, 6, 7, 12, 15
UA_LOCALIZEDTEXT, UA_BASEDATATYPE, UA_STRUCTURE, UA_ENUMERATION = 21, 24, 22, 29
UA_DOUBLE, UA_DURATION, UA_UTCTIME, UA_NODEID = 11, 290, 294, 17
UA_BASEOBJECTTYPE, UA_FOLDERTYPE, UA_BASEDATAVARIABLETYPE, UA_PROPERTYTYPE = 58, 61, 63, 68
UA_BASEEVENTTYPE, UA_FINITESTATEMACHINETYPE, UA_FINITESTATEVARIABLETYPE = 2041, 2771, 2760
UA_FINITETRANSITIONVARIABLETYPE, UA_STATETYPE, UA_TRANSITIONTYPE = 2767, 2307, 2310
UA_HASCOMPONENT, UA_HASPROPERTY, UA_HASSUBTYPE, UA_HASMODELLINGRULE = 47, 46, 45, 37
UA_FROMSTATE, UA_TOSTATE, UA_HASCAUSE = 51, 52, 53
UA_MANDATORY, UA_OPTIONAL = 78, 80

# ---------------------------------------------------------------------- object and variable types
OBJECT_TYPES: Final[dict[str, tuple[int, int]]] = {  # name: (id, supertype in namespace 0)
    "VisionSystemType": (1003, UA_BASEOBJECTTYPE),
    "RecipeManagementType": (1004, UA_BASEOBJECTTYPE),
    "ConfigurationManagementType": (1006, UA_BASEOBJECTTYPE),
    "ResultManagementType": (1007, UA_BASEOBJECTTYPE),
    "SafetyStateManagementType": (1009, UA_BASEOBJECTTYPE),
    "ResultFolderType": (1016, UA_FOLDERTYPE),
    "VisionStateMachineType": (1017, UA_FINITESTATEMACHINETYPE),
    "VisionAutomaticModeStateMachineType": (1021, UA_FINITESTATEMACHINETYPE),
}
RESULT_TYPE: Final = 2002  # VariableType (BaseDataVariableType), DataType ResultDataType
RESULT_READY_EVENT_TYPE: Final = 1024  # subtype of BaseEventType

# ---------------------------------------------------------------------- data types


@dataclass(frozen=True)
class Field:
    """One field of a structure: its DataType is a name of this table or a ``UA_*`` id."""

    name: str
    datatype: str | int
    optional: bool = False
    array: bool = False


@dataclass(frozen=True)
class Structure:
    """A structure DataType, its Default Binary encoding and its fields in the spec's order."""

    id: int
    binary: int
    fields: tuple[Field, ...]
    base: str | None = None  # supertype in this namespace (else Structure)
    abstract: bool = False


SIMPLE_TYPES: Final[dict[str, tuple[int, int]]] = {  # name: (id, supertype in namespace 0)
    "ResultStateDataType": (3009, UA_INT32),
    "TrimmedString": (3017, UA_STRING),
    "Handle": (3018, UA_UINT32),
}
ENUMS: Final[dict[str, tuple[int, tuple[str, ...]]]] = {
    "TriStateBooleanDataType": (3014, ("FALSE_0", "TRUE_1", "DONTCARE_2")),
}
_BINARY_ID = (Field("Id", "TrimmedString"), Field("Version", "TrimmedString", optional=True),
              Field("Hash", UA_BYTESTRING, optional=True), Field("HashAlgorithm", UA_STRING, optional=True),
              Field("Description", UA_LOCALIZEDTEXT, optional=True))
_ID_DESCRIBED = (Field("Id", "TrimmedString"), Field("Description", UA_LOCALIZEDTEXT, optional=True))
STRUCTURES: Final[dict[str, Structure]] = {  # in dependency order
    "BinaryIdBaseDataType": Structure(3019, 5027, _BINARY_ID, abstract=True),
    "RecipeIdExternalDataType": Structure(3002, 5002, _BINARY_ID, base="BinaryIdBaseDataType"),
    "RecipeIdInternalDataType": Structure(3013, 5268, _BINARY_ID, base="BinaryIdBaseDataType"),
    "ConfigurationIdDataType": Structure(3008, 5090, _BINARY_ID, base="BinaryIdBaseDataType"),
    "ProductIdDataType": Structure(3003, 5224, _ID_DESCRIBED),
    "PartIdDataType": Structure(3004, 5013, _ID_DESCRIBED),
    "MeasIdDataType": Structure(3015, 5006, _ID_DESCRIBED),
    "JobIdDataType": Structure(3016, 5008, (Field("Id", "TrimmedString"),)),
    "ResultIdDataType": Structure(3021, 5274, (Field("Id", "TrimmedString"),)),
    "ProcessingTimesDataType": Structure(3005, 5016, (
        Field("StartTime", UA_UTCTIME), Field("EndTime", UA_UTCTIME),
        Field("AcquisitionDuration", UA_DURATION, optional=True),
        Field("ProcessingDuration", UA_DURATION, optional=True))),
    "ResultDataType": Structure(3006, 5018, (
        Field("ResultId", "ResultIdDataType"), Field("HasTransferableDataOnFile", UA_BOOLEAN, optional=True),
        Field("IsPartial", UA_BOOLEAN), Field("IsSimulated", UA_BOOLEAN, optional=True),
        Field("ResultState", "ResultStateDataType"), Field("MeasId", "MeasIdDataType", optional=True),
        Field("PartId", "PartIdDataType", optional=True),
        Field("ExternalRecipeId", "RecipeIdExternalDataType", optional=True),
        Field("InternalRecipeId", "RecipeIdInternalDataType"), Field("ProductId", "ProductIdDataType", optional=True),
        Field("ExternalConfigurationId", "ConfigurationIdDataType", optional=True),
        Field("InternalConfigurationId", "ConfigurationIdDataType"), Field("JobId", "JobIdDataType"),
        Field("CreationTime", UA_UTCTIME), Field("ProcessingTimes", "ProcessingTimesDataType", optional=True),
        Field("ResultContent", UA_BASEDATATYPE, optional=True, array=True))),
}

# ---------------------------------------------------------------------- ResultReadyEventType's properties
#: name: (id, DataType, mandatory); ResultContent is BaseDataType[]
RESULT_READY_PROPERTIES: Final[dict[str, tuple[int, str | int, bool]]] = {
    "ResultId": (6295, "ResultIdDataType", True),
    "IsPartial": (6296, UA_BOOLEAN, True),
    "IsSimulated": (6297, UA_BOOLEAN, False),
    "ResultState": (6298, "ResultStateDataType", True),
    "MeasId": (6299, "MeasIdDataType", False),
    "JobId": (6300, "JobIdDataType", True),
    "ExternalRecipeId": (6301, "RecipeIdExternalDataType", False),
    "InternalRecipeId": (6302, "RecipeIdInternalDataType", True),
    "CreationTime": (6303, UA_UTCTIME, True),
    "PartId": (6304, "PartIdDataType", False),
    "ProcessingTimes": (6305, "ProcessingTimesDataType", False),
    "ResultContent": (6306, UA_BASEDATATYPE, False),
    "ExternalConfigurationId": (6045, "ConfigurationIdDataType", False),
    "InternalConfigurationId": (6142, "ConfigurationIdDataType", True),
    "ProductId": (6143, "ProductIdDataType", False),
}
#: ResultType's component variables the LastResult variable carries: name: (id in ResultType, mandatory)
RESULT_COMPONENTS: Final[dict[str, tuple[int, bool]]] = {
    "ResultId": (6046, True), "IsPartial": (6052, True), "IsSimulated": (6053, False), "ResultState": (6054, True),
    "MeasId": (6055, False), "PartId": (6094, False), "ExternalRecipeId": (6095, False),
    "InternalRecipeId": (6284, True), "ProductId": (6327, False), "ExternalConfigurationId": (6328, False),
    "InternalConfigurationId": (6329, True), "JobId": (6330, True), "CreationTime": (6331, True),
    "ProcessingTimes": (6332, False), "ResultContent": (6333, False),
}

# ---------------------------------------------------------------------- state machines


@dataclass(frozen=True)
class State:
    """A state object of a state machine type: its id and StateNumber."""

    id: int
    number: int


@dataclass(frozen=True)
class Transition:
    """A transition object of a state machine type; ``cause`` is the method that causes it ("" = automatic)."""

    id: int
    number: int
    source: str
    target: str
    cause: str = ""


VISION_STATES: Final[dict[str, State]] = {
    "Preoperational": State(5028, 1), "Halted": State(5029, 2), "Error": State(5030, 3), "Operational": State(5031, 4),
}
AUTOMATIC_STATES: Final[dict[str, State]] = {
    "Initialized": State(5056, 5), "Ready": State(5057, 6), "SingleExecution": State(5058, 7),
    "ContinuousExecution": State(5059, 8),
}
VISION_TRANSITIONS: Final[dict[str, Transition]] = {t_name: t for t_name, t in (
    ("PreoperationalToHaltedAuto", Transition(5033, 120, "Preoperational", "Halted")),
    ("PreoperationalToHalted", Transition(5032, 121, "Preoperational", "Halted", "Halt")),
    ("PreoperationalToErrorAuto", Transition(5034, 130, "Preoperational", "Error")),
    ("PreoperationalToOperationalAuto", Transition(5254, 140, "Preoperational", "Operational")),
    ("PreoperationalToOperational", Transition(5253, 141, "Preoperational", "Operational", "SelectModeAutomatic")),
    ("HaltedToPreoperationalAuto", Transition(5038, 210, "Halted", "Preoperational")),
    ("HaltedToPreoperational", Transition(5037, 211, "Halted", "Preoperational", "Reset")),
    ("ErrorToPreoperationalAuto", Transition(5040, 310, "Error", "Preoperational")),
    ("ErrorToPreoperational", Transition(5039, 311, "Error", "Preoperational", "Reset")),
    ("ErrorToHaltedAuto", Transition(5042, 320, "Error", "Halted")),
    ("ErrorToHalted", Transition(5041, 321, "Error", "Halted", "Halt")),
    ("ErrorToOperationalAuto", Transition(5255, 340, "Error", "Operational")),
    ("OperationalToPreoperationalAuto", Transition(5048, 410, "Operational", "Preoperational")),
    ("OperationalToPreoperational", Transition(5047, 411, "Operational", "Preoperational", "Reset")),
    ("OperationalToHaltedAuto", Transition(5050, 420, "Operational", "Halted")),
    ("OperationalToHalted", Transition(5049, 421, "Operational", "Halted", "Halt")),
    ("OperationalToErrorAuto", Transition(5051, 430, "Operational", "Error")),
)}
AUTOMATIC_TRANSITIONS: Final[dict[str, Transition]] = {t_name: t for t_name, t in (
    ("InitializedToReadyAuto", Transition(5061, 560, "Initialized", "Ready")),
    ("InitializedToReadyRecipe", Transition(5060, 561, "Initialized", "Ready", "PrepareRecipe")),
    ("InitializedToReadyProduct", Transition(5045, 562, "Initialized", "Ready", "PrepareProduct")),
    ("ReadyToInitializedAuto", Transition(5063, 650, "Ready", "Initialized")),
    ("ReadyToInitializedRecipe", Transition(5062, 651, "Ready", "Initialized", "UnprepareRecipe")),
    ("ReadyToInitializedProduct", Transition(5044, 652, "Ready", "Initialized", "UnprepareProduct")),
    ("ReadyToSingleExecutionAuto", Transition(5065, 670, "Ready", "SingleExecution")),
    ("ReadyToSingleExecution", Transition(5064, 671, "Ready", "SingleExecution", "StartSingleJob")),
    ("ReadyToContinuousExecutionAuto", Transition(5067, 680, "Ready", "ContinuousExecution")),
    ("ReadyToContinuousExecution", Transition(5066, 681, "Ready", "ContinuousExecution", "StartContinuous")),
    ("SingleExecutionToReadyAuto", Transition(5070, 760, "SingleExecution", "Ready")),
    ("SingleExecutionToReadyStop", Transition(5068, 761, "SingleExecution", "Ready", "Stop")),
    ("SingleExecutionToReadyAbort", Transition(5069, 762, "SingleExecution", "Ready", "Abort")),
    ("ContinuousExecutionToReadyAuto", Transition(5073, 860, "ContinuousExecution", "Ready")),
    ("ContinuousExecutionToReadyStop", Transition(5071, 861, "ContinuousExecution", "Ready", "Stop")),
    ("ContinuousExecutionToReadyAbort", Transition(5072, 862, "ContinuousExecution", "Ready", "Abort")),
)}

# ---------------------------------------------------------------------- methods
Arg = tuple[str, str | int, bool]  # name, DataType (a name of this table or a UA_* id), array


@dataclass(frozen=True)
class Method:
    """A method of an object type: its id in the type, whether mandatory, and its arguments in the spec's order."""

    owner: str
    id: int
    mandatory: bool
    argument_ids: tuple[int, int]  # its InputArguments and OutputArguments properties (0: none)
    inputs: tuple[Arg, ...]
    outputs: tuple[Arg, ...]


_ERROR: tuple[Arg, ...] = (("Error", UA_INT32, False),)
_CAUSE: tuple[Arg, ...] = (("Cause", UA_INT32, False), ("CauseDescription", UA_STRING, False))
_JOB_IN: tuple[Arg, ...] = (("MeasId", "MeasIdDataType", False), ("PartId", "PartIdDataType", False),
                            ("RecipeId", "RecipeIdExternalDataType", False), ("ProductId", "ProductIdDataType", False),
                            ("Parameters", UA_BASEDATATYPE, True))
_JOB_OUT: tuple[Arg, ...] = (("JobId", "JobIdDataType", False), *_ERROR)
_RESULT_IN: tuple[Arg, ...] = (("ResultId", "ResultIdDataType", False), ("Timeout", UA_INT32, False))
METHODS: Final[dict[str, Method]] = {
    "Halt": Method("VisionStateMachineType", 7094, True, (6254, 6255), _CAUSE, _ERROR),
    "Reset": Method("VisionStateMachineType", 7093, True, (6256, 6257), _CAUSE, _ERROR),
    "SelectModeAutomatic": Method("VisionStateMachineType", 7095, False, (0, 6258), (), _ERROR),
    "StartSingleJob": Method("VisionAutomaticModeStateMachineType", 7098, True, (6281, 6282), _JOB_IN, _JOB_OUT),
    "StartContinuous": Method("VisionAutomaticModeStateMachineType", 7009, True, (6086, 6087), _JOB_IN, _JOB_OUT),
    "Stop": Method("VisionAutomaticModeStateMachineType", 7096, True, (6287, 6288), _CAUSE, _ERROR),
    "Abort": Method("VisionAutomaticModeStateMachineType", 7097, True, (6285, 6286), _CAUSE, _ERROR),
    "GetRecipeListFiltered": Method("RecipeManagementType", 7014, True, (6156, 6157), (
        ("ExternalId", "RecipeIdExternalDataType", False), ("ProductId", "ProductIdDataType", False),
        ("IsPrepared", "TriStateBooleanDataType", False), ("MaxResults", UA_UINT32, False),
        ("StartIndex", UA_UINT32, False), ("Timeout", UA_INT32, False)), (
        ("IsComplete", UA_BOOLEAN, False), ("ResultCount", UA_UINT32, False), ("RecipeHandle", "Handle", False),
        ("RecipeList", "RecipeIdInternalDataType", True), *_ERROR)),
    "PrepareRecipe": Method("RecipeManagementType", 7015, True, (6148, 6149), (
        ("ExternalId", "RecipeIdExternalDataType", False), ("InternalIdIn", "RecipeIdInternalDataType", False)), (
        ("InternalIdOut", "RecipeIdInternalDataType", False), ("IsCompleted", UA_BOOLEAN, False), *_ERROR)),
    "UnprepareRecipe": Method("RecipeManagementType", 7055, True, (6152, 6153), (
        ("ExternalId", "RecipeIdExternalDataType", False), ("InternalIdIn", "RecipeIdInternalDataType", False)), (
        ("InternalIdOut", "RecipeIdInternalDataType", False), *_ERROR)),
    "PrepareProduct": Method("RecipeManagementType", 7060, False, (6172, 6173), (("ProductId", "ProductIdDataType", False),), (
        ("InternalId", "RecipeIdInternalDataType", False), *_ERROR)),
    "UnprepareProduct": Method("RecipeManagementType", 7059, False, (6176, 6177), (("ProductId", "ProductIdDataType", False),), (
        ("InternalId", "RecipeIdInternalDataType", False), *_ERROR)),
    "GetResultById": Method("ResultManagementType", 7026, True, (6209, 6210), _RESULT_IN, (
        ("ResultHandle", "Handle", False), ("Result", "ResultDataType", False), *_ERROR)),
    "GetResultComponentsById": Method("ResultManagementType", 7007, True, (6024, 6025), _RESULT_IN, (
        ("HasTransferableDataOnFile", UA_BOOLEAN, False), ("ResultHandle", "Handle", False),
        ("IsPartial", UA_BOOLEAN, False), ("IsSimulated", UA_BOOLEAN, False),
        ("ResultState", "ResultStateDataType", False), ("MeasId", "MeasIdDataType", False),
        ("PartId", "PartIdDataType", False), ("ExternalRecipeId", "RecipeIdExternalDataType", False),
        ("InternalRecipeId", "RecipeIdInternalDataType", False), ("ProductId", "ProductIdDataType", False),
        ("ExternalConfigurationId", "ConfigurationIdDataType", False),
        ("InternalConfigurationId", "ConfigurationIdDataType", False), ("JobId", "JobIdDataType", False),
        ("CreationTime", UA_UTCTIME, False), ("ProcessingTimes", "ProcessingTimesDataType", False),
        ("ResultContent", UA_BASEDATATYPE, True), *_ERROR)),
    "GetResultListFiltered": Method("ResultManagementType", 7089, True, (6213, 6214), (
        ("ResultState", "ResultStateDataType", False), ("MeasId", "MeasIdDataType", False),
        ("PartId", "PartIdDataType", False), ("ExternalRecipeId", "RecipeIdExternalDataType", False),
        ("InternalRecipeId", "RecipeIdInternalDataType", False),
        ("ExternalConfigurationId", "ConfigurationIdDataType", False),
        ("InternalConfigurationId", "ConfigurationIdDataType", False), ("ProductId", "ProductIdDataType", False),
        ("JobId", "JobIdDataType", False), ("MaxResults", UA_UINT32, False), ("StartIndex", UA_UINT32, False),
        ("Timeout", UA_INT32, False)), (
        ("IsComplete", UA_BOOLEAN, False), ("ResultCount", UA_UINT32, False), ("ResultHandle", "Handle", False),
        ("ResultList", "ResultDataType", True), *_ERROR)),
}

#: the instance declarations of the types' object components: (owner type, BrowseName, id, type, mandatory)
COMPONENTS: Final[tuple[tuple[str, str, int, str, bool], ...]] = (
    ("VisionSystemType", "VisionStateMachine", 5053, "VisionStateMachineType", True),
    ("VisionSystemType", "ConfigurationManagement", 5004, "ConfigurationManagementType", False),
    ("VisionSystemType", "RecipeManagement", 5015, "RecipeManagementType", False),
    ("VisionSystemType", "ResultManagement", 5020, "ResultManagementType", False),
    ("VisionSystemType", "SafetyStateManagement", 5023, "SafetyStateManagementType", False),
    ("VisionStateMachineType", "AutomaticModeStateMachine", 5024, "VisionAutomaticModeStateMachineType", False),
    ("ResultManagementType", "Results", 5245, "ResultFolderType", False),
)

"""`ManagementMethods`: the RecipeManagement and ResultManagement methods of the OPC UA server (OPC 40100-1).

A part of `inspector.plc.opcua_server.OpcUaPlc` (its base class), kept apart so that each file
does one thing: these bodies run on the server's worker thread, as every method call does, and
answer with the spec's output arguments or raise `Refusal` (a Bad status code).
Recipes are the station's, selected by number (as over Modbus); results are the last
`inspector.plc.opcua_results.RESULTS_KEPT` ResultReady events.
"""

from __future__ import annotations

from typing import Any, Protocol

from inspector.plc.opcua_results import FILTER_FIELDS, ResultStore
from inspector.plc.opcua_results import ident as id_text
from inspector.plc.opcua_sessions import Refusal

#: GetResultComponentsById's outputs after HasTransferableDataOnFile and ResultHandle, before Error
_COMPONENT_OUTPUTS = ("IsPartial", "IsSimulated", "ResultState", "MeasId", "PartId", "ExternalRecipeId",
                      "InternalRecipeId", "ProductId", "ExternalConfigurationId", "InternalConfigurationId", "JobId",
                      "CreationTime", "ProcessingTimes", "ResultContent")


class Committing(Protocol):
    """One method call: writes its audit row before its change (`inspector.plc.opcua_server`'s call)."""

    def commit(self, note: str) -> None: ...


class RecipeCommands(Protocol):
    """What these methods ask of the station."""

    def select_recipe(self, number: int) -> None: ...

    def recipe_number(self) -> int: ...


class ManagementMethods:
    """RecipeManagement's and ResultManagement's method bodies (worker thread)."""

    commands: RecipeCommands
    model: Any  # inspector.plc.opcua_model.VisionModel once the server runs
    results: ResultStore
    _prepared: tuple[str, str] | None  # (external recipe id, product id) selected by PrepareRecipe

    def _error_ok(self) -> list[Any]:
        from asyncua import ua

        return [ua.Variant(0, ua.VariantType.Int32)]

    def _variant(self, type_name: str, **values: Any) -> Any:
        from asyncua import ua

        return ua.Variant(self.model.make(type_name, **values), ua.VariantType.ExtensionObject)

    def _do_prepare_recipe(self, call: Committing, external: Any, internal: Any) -> list[Any]:
        from asyncua import ua

        ident = id_text(internal) or id_text(external)
        self._select(call, ident)
        self._prepared = (id_text(external) or ident, "")
        return [self._variant("RecipeIdInternalDataType", Id=ident), ua.Variant(True, ua.VariantType.Boolean),
                ua.Variant(0, ua.VariantType.Int32)]

    def _do_unprepare_recipe(self, call: Committing, external: Any, internal: Any) -> list[Any]:
        ident = id_text(internal) or id_text(external)
        self._unprepare(call, f"recipe {ident}", ident)
        return [self._variant("RecipeIdInternalDataType", Id=ident), *self._error_ok()]

    def _do_prepare_product(self, call: Committing, product: Any) -> list[Any]:
        from asyncua import ua

        ident = id_text(product)
        self._select(call, ident)
        self._prepared = ("", ident)
        return [self._variant("RecipeIdInternalDataType", Id=ident), ua.Variant(0, ua.VariantType.Int32)]

    def _do_unprepare_product(self, call: Committing, product: Any) -> list[Any]:
        ident = id_text(product)
        self._unprepare(call, f"product {ident}", ident)
        return [self._variant("RecipeIdInternalDataType", Id=ident), *self._error_ok()]

    def _do_get_recipe_list_filtered(self, call: Committing, external: Any, product: Any, is_prepared: Any,
                                     max_results: int, start: int, timeout: int) -> list[Any]:
        # the station's active recipe is the one it can run now (recipes are selected by number)
        from asyncua import ua

        number = str(self.commands.recipe_number())
        prepared = self._prepared is not None and number in self._prepared
        wanted = [(id_text(external), self._prepared[0] if self._prepared else ""),
                  (id_text(product), self._prepared[1] if self._prepared else "")]
        match = all(not want or want in (have, number) for want, have in wanted)
        if int(is_prepared or 0) in (0, 1):  # TriStateBooleanDataType: FALSE_0, TRUE_1, DONTCARE_2
            match = match and prepared == bool(int(is_prepared or 0))
        found = [self.model.make("RecipeIdInternalDataType", Id=number)] if match else []
        page = found[int(start or 0):][:int(max_results or len(found) or 1)]
        return [ua.Variant(True, ua.VariantType.Boolean), ua.Variant(len(found), ua.VariantType.UInt32),
                ua.Variant(0, ua.VariantType.UInt32), ua.Variant(page, ua.VariantType.ExtensionObject),
                *self._error_ok()]

    def _do_get_result_by_id(self, call: Committing, result_id: Any, timeout: int = 0) -> list[Any]:
        from asyncua import ua

        record = self._result(result_id)
        return [ua.Variant(0, ua.VariantType.UInt32), ua.Variant(record, ua.VariantType.ExtensionObject),
                *self._error_ok()]

    def _do_get_result_components_by_id(self, call: Committing, result_id: Any, timeout: int = 0) -> list[Any]:
        from asyncua import ua

        from inspector.plc.opcua_model import field_variant

        record = self._result(result_id)
        out = [ua.Variant(False, ua.VariantType.Boolean), ua.Variant(0, ua.VariantType.UInt32)]
        out += [field_variant(name, getattr(record, name)) for name in _COMPONENT_OUTPUTS]
        return [*out, *self._error_ok()]

    def _do_get_result_list_filtered(self, call: Committing, state: int, *args: Any) -> list[Any]:
        from asyncua import ua

        filters = {name: id_text(v) for name, v in zip(FILTER_FIELDS, args[:len(FILTER_FIELDS)], strict=True)}
        max_results, start = (int(v or 0) for v in args[len(FILTER_FIELDS):len(FILTER_FIELDS) + 2])
        page, count = self.results.filtered(int(state or 0), filters, max_results, start)
        return [ua.Variant(start + len(page) >= count, ua.VariantType.Boolean),
                ua.Variant(count, ua.VariantType.UInt32), ua.Variant(0, ua.VariantType.UInt32),
                ua.Variant(page, ua.VariantType.ExtensionObject), *self._error_ok()]

    def _result(self, result_id: Any) -> Any:
        from asyncua import ua

        record = self.results.get(id_text(result_id))
        if record is None:
            raise Refusal(ua.StatusCodes.BadNotFound,
                           f"ResultId {id_text(result_id)[:80]!r}: unknown, or older than the last {len(self.results)}")
        return record

    def _select(self, call: Committing, ident: str) -> None:
        """Select a product recipe by its number (the station's recipes are numbered, as for Modbus)."""
        from asyncua import ua

        if not ident:
            raise Refusal(ua.StatusCodes.BadInvalidArgument, "no recipe id given")
        if not ident.isdigit():
            raise Refusal(ua.StatusCodes.BadNotFound, f"recipe {ident[:80]!r}: recipes are selected by number")
        call.commit(f"recipe {ident}")
        try:
            self.commands.select_recipe(int(ident))
        except RuntimeError as exc:  # no recipes on this station yet
            raise Refusal(ua.StatusCodes.BadNotSupported, str(exc)) from None
        except (ValueError, LookupError) as exc:
            raise Refusal(ua.StatusCodes.BadNotFound, str(exc)) from None

    def _unprepare(self, call: Committing, note: str, ident: str) -> None:
        from asyncua import ua

        if self._prepared is None or ident not in self._prepared:
            raise Refusal(ua.StatusCodes.BadNotFound, f"recipe {ident[:80]!r} is not prepared")
        call.commit(note)
        self._prepared = None


"""`ResultStore`: the recent results ResultManagement's GetResult* methods answer from (OPC 40100-1).

The station keeps every part in its database; the OPC UA server keeps the ResultDataType of
its last `RESULTS_KEPT` ResultReady events in memory, so that a client that missed an event
(or wants one again) can fetch it by ResultId or filter the recent ones. Older results are
answered "not found" (BadNotFound); nothing here reaches into the database.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

RESULTS_KEPT = 1000
MAX_LIST = 100  # results in one GetResultListFiltered answer, whatever MaxResults asks

#: the id filters of GetResultListFiltered, in the spec's argument order after ResultState
FILTER_FIELDS = ("MeasId", "PartId", "ExternalRecipeId", "InternalRecipeId", "ExternalConfigurationId",
                 "InternalConfigurationId", "ProductId", "JobId")


def ident(value: Any) -> str:
    """The ``Id`` of one of the spec's id structures (empty when absent)."""
    got = getattr(value, "Id", None)
    return str(got).strip() if got else ""


class ResultStore:
    """The last `RESULTS_KEPT` results (ResultDataType values), by ResultId, oldest first; thread-safe."""

    def __init__(self, kept: int = RESULTS_KEPT) -> None:
        self._kept = kept
        self._by_id: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, record: Any) -> None:
        """Keep ``record`` (a ResultDataType); the oldest goes when more than ``kept`` are held."""
        with self._lock:
            self._by_id[ident(record.ResultId)] = record
            while len(self._by_id) > self._kept:
                self._by_id.popitem(last=False)

    def get(self, result_id: str) -> Any | None:
        """The result ``result_id``, or None when it is unknown or no longer kept."""
        with self._lock:
            return self._by_id.get(result_id)

    def filtered(self, state: int, filters: dict[str, str], max_results: int, start: int) -> tuple[list[Any], int]:
        """Results matching every non-empty filter (``state`` 0: any), oldest first: (``start``.. page, count)."""
        wanted = [(k, v) for k, v in filters.items() if v]
        with self._lock:
            found = [r for r in self._by_id.values() if (not state or int(r.ResultState) == state)
                     and all(ident(getattr(r, k, None)) == v for k, v in wanted)]
        limit = min(max_results or MAX_LIST, MAX_LIST)
        return found[start:start + limit], len(found)

"""GenICam node maps as `FeatureTree`s, and the errors GenApi and GenTL raise.

Shared by the GenTL system (discovery) and `GenTLCamera`; nothing here acquires images.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from camera.features import Feature, FeatureError, FeatureType, Visibility

try:
    from genicam.genapi import GenericException as _GenApiError  # type: ignore[import-untyped]
    from genicam.gentl import GenericException as _GenTLError  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - genicam is a runtime dependency
    _GenApiError = _GenTLError = RuntimeError  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

#: What a GenApi node or a GenTL module raises when the device says no (or has gone).
DEVICE_ERRORS: tuple[type[Exception], ...] = (_GenApiError, _GenTLError)


def short_error(exc: BaseException) -> str:
    """GenApi messages carry the C++ file and line; keep the first sentence."""
    return str(exc).split(" : ")[0].strip()


_TYPES: dict[int, FeatureType] = {2: "int", 3: "bool", 4: "command", 5: "float", 6: "str", 9: "enum"}  # EInterfaceType
_CATEGORY = 8  # EInterfaceType.intfICategory
_VISIBILITIES: tuple[Visibility, ...] = ("Beginner", "Expert", "Guru", "Invisible")  # EVisibility 0..3
_NI, _NA, _WO, _RO, _RW = range(5)  # EAccessMode


class GenICamFeatureTree:
    """A GenICam node map as a `FeatureTree`.

    The feature list (a walk of the category tree from ``Root``) is cached; values,
    ranges and access modes are read live. `rebind` points the tree at a new node map
    of the same device (after a reconnect).

    Args:
        node_map: The remote device's node map, or None while the camera is closed.
        owner: Name used in error messages (the camera id).
    """

    def __init__(self, node_map: Any | None = None, *, owner: str = "camera") -> None:
        self._node_map = node_map
        self._owner = owner
        self._features: list[Feature] | None = None
        self._category_of: dict[str, str] = {}

    def rebind(self, node_map: Any | None) -> None:
        """Use another node map (same device re-opened, or None when closed)."""
        self._node_map = node_map

    def refresh(self) -> None:
        """Forget the cached feature list (ranges and access modes change with settings)."""
        self._features = None

    def features(self) -> list[Feature]:
        if self._features is None:
            root = self._lookup("Root")
            features: list[Feature] = []
            self._walk(root, "Root", features, set())
            self._features = features
            self._category_of = {f.name: f.category for f in features}
        return list(self._features)

    def _walk(self, category: Any, name: str, out: list[Feature], seen: set[str]) -> None:
        for child in category.features:
            node = child.node
            if node.name in seen:  # a feature may be listed in several categories: first wins
                continue
            seen.add(node.name)
            kind = int(node.principal_interface_type)
            if kind == _CATEGORY:
                self._walk(child, node.name, out, seen)
            elif kind in _TYPES:
                out.append(_describe(child, name))

    def get(self, name: str) -> Any:
        node = self._lookup(name)
        kind = _TYPES.get(int(node.node.principal_interface_type))
        if kind is None:
            raise FeatureError(f"{name}: not a value feature")
        if kind == "command":
            return None
        if int(node.node.get_access_mode()) not in (_RO, _RW):
            raise FeatureError(f"{name}: not readable now")
        try:
            return node.value
        except DEVICE_ERRORS as exc:
            raise FeatureError(f"{name}: read failed: {short_error(exc)}") from None

    def set(self, name: str, value: Any) -> Any:
        """Validate (range, increment, enum entries) and write; return the device's value."""
        node = self._lookup(name)
        v = self.describe(name).validate(value)  # live: ranges and access follow other settings
        try:
            if v is None:  # command
                node.execute()
                return None
            node.value = v
            return node.value if int(node.node.get_access_mode()) in (_RO, _RW) else v
        except DEVICE_ERRORS as exc:
            raise FeatureError(f"{name}: the device refused {v!r}: {short_error(exc)}") from None

    def describe(self, name: str) -> Feature:
        """One feature as the device describes it now (live range, entries, access)."""
        node = self._lookup(name)
        if int(node.node.principal_interface_type) not in _TYPES:
            raise FeatureError(f"{name}: not a value feature")
        if self._features is None:
            self.features()
        return _describe(node, self._category_of.get(name, "Root"))

    def _lookup(self, name: str) -> Any:
        if self._node_map is None:
            raise FeatureError(f"{name}: {self._owner} is not open")
        try:
            if not self._node_map.has_node(name):
                raise FeatureError(f"{name}: no such feature on {self._owner}")
            return self._node_map.get_node(name)
        except DEVICE_ERRORS as exc:
            raise FeatureError(f"{name}: {short_error(exc)}") from None

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.features())


def _describe(node: Any, category: str) -> Feature:
    """A `Feature` describing a typed GenApi node as it is now."""
    n = node.node
    kind = _TYPES[int(n.principal_interface_type)]
    access = int(n.get_access_mode())
    vis = int(n.visibility)
    f = Feature(
        name=n.name,
        type=kind,
        category=category,
        display_name=n.display_name or n.name,
        description=n.tooltip or n.description or "",
        visibility=_VISIBILITIES[vis] if 0 <= vis < len(_VISIBILITIES) else "Beginner",
        writable=access in (_WO, _RW),
    )
    if access in (_NI, _NA):
        return f  # ranges/entries of an unavailable node may not be readable
    try:
        if kind in ("int", "float"):
            f.minimum, f.maximum, f.unit = node.min, node.max, node.unit or ""
            fixed_step = int(node.inc_mode) == 1 if kind == "int" else node.has_inc()  # EIncMode.fixedIncrement
            if fixed_step:
                f.increment = node.inc
        elif kind == "enum":
            f.enum_entries = tuple(node.symbolics)  # only the entries available now
    except DEVICE_ERRORS as exc:
        log.debug("feature %s: limits unavailable: %s", n.name, short_error(exc))
    return f

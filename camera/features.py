"""Feature trees: a camera's settings as typed, validated nodes (GenICam-shaped).

GenTL cameras expose their GenICam node map through this interface; the simulator
builds its own tree with the same kinds of nodes, so the settings dialog and recipes
treat both alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

FeatureType = Literal["int", "float", "enum", "bool", "str", "command"]
Visibility = Literal["Beginner", "Expert", "Guru", "Invisible"]
VISIBILITY_ORDER: dict[str, int] = {"Beginner": 0, "Expert": 1, "Guru": 2, "Invisible": 3}


class FeatureError(ValueError):
    """A feature write was refused (unknown, read-only, out of range, not in enum)."""


@dataclass
class Feature:
    """One node of a feature tree."""

    name: str
    type: FeatureType
    category: str = "Root"
    display_name: str = ""
    description: str = ""
    visibility: Visibility = "Beginner"
    writable: bool = True
    minimum: float | None = None
    maximum: float | None = None
    increment: float | None = None
    unit: str = ""
    enum_entries: tuple[str, ...] = ()

    def validate(self, value: Any) -> Any:
        """Coerce and check a value for this node; raise `FeatureError` if invalid."""
        if not self.writable:
            raise FeatureError(f"{self.name}: read-only")
        try:
            if self.type == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                v: Any = int(value)
            elif self.type == "float":
                v = float(value)
            elif self.type == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0"):
                        raise TypeError
                    v = value.lower() in ("true", "1")
                else:
                    v = bool(value)
            elif self.type == "enum":
                v = str(value)
                if v not in self.enum_entries:
                    raise FeatureError(f"{self.name}: {v!r} is not one of {', '.join(self.enum_entries)}")
            elif self.type == "command":
                v = None
            else:
                v = str(value)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, FeatureError):
                raise
            raise FeatureError(f"{self.name}: expected {self.type}, got {value!r}") from None
        if self.type in ("int", "float"):
            if self.minimum is not None and v < self.minimum:
                raise FeatureError(f"{self.name}: {v} is below the minimum {self.minimum:g}")
            if self.maximum is not None and v > self.maximum:
                raise FeatureError(f"{self.name}: {v} is above the maximum {self.maximum:g}")
            if (
                self.type == "int"
                and self.increment
                and self.minimum is not None
                and (v - int(self.minimum)) % int(self.increment)
            ):
                raise FeatureError(f"{self.name}: {v} is not a multiple of {int(self.increment)} from {int(self.minimum)}")
        return v


class FeatureTree(Protocol):
    """Read and write a camera's features."""

    def features(self) -> list[Feature]: ...

    def get(self, name: str) -> Any: ...

    def set(self, name: str, value: Any) -> Any:
        """Validate and write; return the value the device reports afterwards."""
        ...


@dataclass
class DictFeatureTree:
    """A feature tree backed by Python values, with per-feature write hooks.

    Used by the simulated and replay cameras. ``on_write(name, value)`` applies a
    change to the device (may raise `FeatureError` to refuse it).
    """

    nodes: dict[str, Feature] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    on_write: Callable[[str, Any], None] | None = None

    def add(self, feature: Feature, value: Any) -> None:
        self.nodes[feature.name] = feature
        self.values[feature.name] = value

    def features(self) -> list[Feature]:
        return list(self.nodes.values())

    def get(self, name: str) -> Any:
        if name not in self.nodes:
            raise FeatureError(f"{name}: no such feature")
        return self.values[name]

    def set(self, name: str, value: Any) -> Any:
        if name not in self.nodes:
            raise FeatureError(f"{name}: no such feature")
        v = self.nodes[name].validate(value)
        if self.on_write is not None:
            self.on_write(name, v)
        if self.nodes[name].type != "command":
            self.values[name] = v
        return self.values.get(name)

    def __iter__(self) -> Iterator[Feature]:
        return iter(self.nodes.values())


def settings_digest(tree: FeatureTree) -> str:
    """A short sha256 over the readable, writable settings (result provenance)."""
    items = {}
    for f in tree.features():
        if f.type == "command" or not f.writable:
            continue
        try:
            items[f.name] = tree.get(f.name)
        except Exception:  # noqa: BLE001, S112 - a node may be unreadable in the current state
            continue
    blob = json.dumps(items, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

"""The shapes of the documents helm-egress reads, checked before any field is used.

Any field of a chart document may hold any type: ``exportTo: 5``, ``metadata: x``, a list
as a port name. Every reader checks its document against a shape here first, so a wrong
type is one located problem (the YAML path and what was found) instead of an exception
deep in a later stage. Shapes are open: keys they do not name are not helm-egress's
business and are never looked at. ``null`` is accepted wherever a key is optional, as
Kubernetes reads it as absent.

Plain Python, no jsonschema: every chart has workloads, and this runs on each of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Found = tuple[str, str]  # (YAML path, message)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    kind = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)
    for base, name in ((Mapping, "a mapping"), (list, "a list"), (str, "a string")):
        if isinstance(value, base) and type(value) not in (dict, list, str):
            kind = name
    return f"{kind} ({text})"


class Shape:
    expected = "a value"

    def accepts(self, value: Any) -> bool:
        return True

    def problems(self, value: Any, path: str) -> Iterator[Found]:
        if value is not None and not self.accepts(value):
            yield path, f"expected {self.expected}, found {_describe(value)}"
        elif value is not None:
            yield from self.inside(value, path)

    def inside(self, value: Any, path: str) -> Iterator[Found]:
        return iter(())


class _Str(Shape):
    expected = "a string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str)


class _Int(Shape):
    expected = "an integer"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)


class _IntOrStr(Shape):
    expected = "an integer or a string"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class _Bool(Shape):
    expected = "true or false"

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


class _Any(Shape):
    pass


Str: Shape = _Str()
Int: Shape = _Int()
IntOrStr: Shape = _IntOrStr()
Bool: Shape = _Bool()
AnyValue: Shape = _Any()


class Seq(Shape):
    expected = "a list"

    def __init__(self, item: Shape) -> None:
        self.item = item

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list)

    def inside(self, value: Any, path: str) -> Iterator[Found]:
        for i, item in enumerate(value):
            if item is None and not isinstance(self.item, _Any):
                yield f"{path}[{i}]", f"expected {self.item.expected}, found null"
            else:
                yield from self.item.problems(item, f"{path}[{i}]")


class Map(Shape):
    """A mapping: ``fields`` checked by name; with ``values``, every value (and key, which
    must then be a string) is checked too."""

    expected = "a mapping"

    def __init__(self, fields: dict[str, Shape] | None = None, values: Shape | None = None) -> None:
        self.fields: dict[str, Shape] = fields if fields is not None else {}
        self.values = values

    def accepts(self, value: Any) -> bool:
        return isinstance(value, Mapping)

    def inside(self, value: Any, path: str) -> Iterator[Found]:
        for key, item in value.items():
            if self.values is None and key not in self.fields:
                continue
            sub = f"{path}.{key}" if path else str(key)
            if self.values is not None and not isinstance(key, str):
                yield sub, f"keys must be strings; quote {key!r}"
                continue
            shape = self.fields.get(key, self.values)
            if key not in self.fields and item is None and not isinstance(shape, _Any):
                # Only a named field may be null (absent); a label's value may not.
                yield sub, f"expected {shape.expected if shape else 'a value'}, found null"
            elif shape is not None:
                yield from shape.problems(item, sub)


def check(shape: Shape, value: Any, path: str = "") -> list[Found]:
    """Every place ``value`` does not have ``shape``, as (path, message) pairs."""
    return list(shape.problems(value, path))


# --- Kubernetes and Istio documents, as far as helm-egress reads them --------------------

LABELS = Map(values=Str)
ANNOTATIONS = Map(values=AnyValue)  # values are checked where helm-egress reads them
METADATA = Map({"name": Str, "namespace": Str, "labels": LABELS, "annotations": ANNOTATIONS})
SELECTOR = Map({
    "matchLabels": LABELS,
    "matchExpressions": Seq(Map({"key": Str, "operator": Str, "values": Seq(Str)})),
})
POD_TEMPLATE = Map({"metadata": METADATA})


def workload(kind: str) -> Shape:
    if kind == "Pod":
        return Map({"apiVersion": Str, "metadata": METADATA})
    if kind == "CronJob":
        spec: Shape = Map({"jobTemplate": Map({"spec": Map({"selector": SELECTOR, "template": POD_TEMPLATE})})})
    elif kind == "ReplicationController":
        spec = Map({"selector": LABELS, "template": POD_TEMPLATE})
    else:
        spec = Map({"selector": SELECTOR, "template": POD_TEMPLATE})
    return Map({"apiVersion": Str, "metadata": METADATA, "spec": spec})


SERVICEENTRY = Map({
    "apiVersion": Str,
    "metadata": METADATA,
    "spec": Map({
        "hosts": Seq(Str),
        "addresses": Seq(Str),
        "exportTo": Seq(Str),
        "location": Str,
        "resolution": Str,
        "ports": Seq(Map({"number": Int, "name": Str, "protocol": Str, "targetPort": Int})),
        "endpoints": Seq(Map({"address": Str, "ports": Map(values=Int), "labels": LABELS, "network": Str,
                              "locality": Str, "weight": Int, "serviceAccount": Str})),
        "workloadSelector": Map({"labels": LABELS}),
        "subjectAltNames": Seq(Str),
    }),
})

_PEER = Map({"ipBlock": Map({"cidr": Str, "except": Seq(Str)}), "podSelector": SELECTOR,
             "namespaceSelector": SELECTOR})
NETWORKPOLICY = Map({
    "apiVersion": Str,
    "metadata": METADATA,
    "spec": Map({
        "podSelector": SELECTOR,
        "policyTypes": Seq(Str),
        "egress": Seq(Map({"ports": Seq(Map({"protocol": Str, "port": IntOrStr, "endPort": Int})),
                           "to": Seq(_PEER)})),
    }),
})

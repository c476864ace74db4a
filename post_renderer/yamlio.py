"""Every ruamel.yaml instance helm-egress uses is built here, per run, never shared.

Reading: the C safe loader (``ruamel.yaml.clib``) when installed, else the pure one;
both construct only plain data, so tags such as ``!!python/object`` are refused, and
aliases become shared references, so an alias bomb costs no memory. What a stage then
walks is bounded by ``check_size``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from post_renderer.errors import EgressError, Location

# Walking an alias-heavy document visits shared nodes again and again; past this many
# visits the document is refused instead of hanging the renderer.
MAX_NODES = 200_000
MAX_DEPTH = 200
_SURROGATE = re.compile("[\udc80-\udcff]")


class _Constructor(SafeConstructor):
    pass


# YAML 1.1's "value" tag turns a bare `=` into a special object; real charts emit it
# (prometheus-operator CRD enums), and Kubernetes reads it as the string "=".
_Constructor.add_constructor(
    "tag:yaml.org,2002:value", lambda self, node: self.construct_scalar(node)
)


class _Resolver(VersionedResolver):
    """YAML 1.2 tag resolution, worked out once per loader.

    ruamel re-derives the document's YAML version for every scalar, which is over a third
    of the time spent reading a workload. Manifests carry no %YAML directives, and the
    fields helm-egress reads are strings under either version.
    """

    _table: Any = None

    @property
    def processing_version(self) -> Any:
        return (1, 2)

    @property
    def versioned_resolver(self) -> Any:
        if self._table is None:
            self._table = VersionedResolver.versioned_resolver.fget(self)  # type: ignore[attr-defined]
        return self._table


def safe_loader() -> YAML:
    yaml = YAML(typ="safe")
    yaml.Constructor = _Constructor
    yaml.Resolver = _Resolver
    return yaml


def roundtrip_loader() -> YAML:
    """Comment- and line-preserving reading, for small inputs such as values files."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    return yaml


def load(yaml: YAML, text: str, where: Location, *, line_offset: int = 0) -> Any:
    """Parse one YAML document; any failure becomes a located ``EgressError``."""
    data, _ = _parse(yaml, text, where, line_offset, keep_nodes=False)
    return data


def load_with_nodes(text: str, where: Location) -> tuple[Any, Node | None]:
    """Parse one document and keep its node tree, whose marks give every value's line.

    Composing with the C parser and constructing from the nodes is far cheaper than
    round-trip loading, and lines are all a values file needs.
    """
    return _parse(safe_loader(), text, where, 0, keep_nodes=True)


def _parse(yaml: YAML, text: str, where: Location, line_offset: int, *, keep_nodes: bool) -> tuple[Any, Node | None]:
    if _has_surrogate(text):
        bad = next(i for i, c in enumerate(text) if "\udc80" <= c <= "\udcff")
        line = text.count("\n", 0, bad) + 1 + line_offset
        raise EgressError.one(where.at(line=line), "invalid UTF-8 in a document helm-egress must read")
    node: Node | None = None
    try:
        if keep_nodes:
            node = yaml.compose(io.StringIO(text))
            data = yaml.constructor.construct_document(node) if node is not None else None
        else:
            data = yaml.load(io.StringIO(text))
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        at: int | None = mark.line + 1 + line_offset if mark is not None else None
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise EgressError.one(where.at(line=at), f"invalid YAML: {what}") from e
    except YAMLError as e:
        raise EgressError.one(where, f"invalid YAML: {e}") from e
    except RecursionError as e:
        raise EgressError.one(where, "invalid YAML: nested too deeply") from e
    check_size(data, where)
    return data, node


def node_line(root: Node | None, path: Sequence[str | int]) -> int | None:
    """1-based line of the deepest node along ``path`` (mapping keys point at the key)."""
    if root is None:
        return None
    line = root.start_mark.line
    node: Node = root
    for item in path:
        child: Node | None = None
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.value == item:
                    line, child = key.start_mark.line, value
        elif isinstance(node, SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
            child = node.value[item]
            line = child.start_mark.line
        if child is None:
            break
        node = child
    return int(line) + 1


def _has_surrogate(text: str) -> bool:
    # Undecodable input bytes arrive as lone surrogates (surrogateescape).
    return _SURROGATE.search(text) is not None


def check_size(data: Any, where: Location) -> None:
    """Refuse data whose tree, aliases expanded, is too large or deep to walk safely."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    visits = 0
    while stack:
        node, depth = stack.pop()
        visits += 1
        if visits > MAX_NODES or depth > MAX_DEPTH:
            raise EgressError.one(
                where,
                "document is too large or too deeply nested once aliases are expanded "
                f"(more than {MAX_NODES} nodes or {MAX_DEPTH} levels); refusing it",
            )
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)

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
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor, SafeConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

try:
    # ruamel.yaml.clib's libyaml parser, the one ruamel's C loader uses.
    from _ruamel_yaml import CParser
except ImportError:  # pragma: no cover - a declared dependency on CPython; else whole reads
    CParser = None

from post_renderer import numbers
from post_renderer.errors import EgressError, Location

# Walking an alias-heavy document visits shared nodes again and again; past this many
# visits the document is refused instead of hanging the renderer.
MAX_NODES = 200_000
MAX_DEPTH = 200
# Limits checked on the text, before any parser sees it. libyaml's composer recurses in C
# (about 30,000 levels crash the process) and its flow scanner is quadratic in depth, so
# depth is bounded from the text first: brackets plus twice the deepest block indentation
# is an upper bound; only text above SAFE_NESTING pays for an exact, early-stopping count.
MAX_CHARS = 16 * 1024 * 1024
SAFE_NESTING = 2000
_SURROGATE = re.compile("[\udc80-\udcff]")
# Indentation and compact indicators (`- - x`, `? `) at the start of each line; YAML's
# line breaks include lone CR, NEL, LS and PS.
_LEAD = re.compile("(?:^|[\r\x85\u2028\u2029])[ \t?:-]+", re.MULTILINE)


_INT, _FLOAT, _STR = (Tag(suffix=f"tag:yaml.org,2002:{t}") for t in ("int", "float", "str"))
# go-yaml's special floats, which it resolves as YAML 1.2 does.
_SPECIAL_FLOATS = frozenset((".inf", ".Inf", ".INF", ".nan", ".NaN", ".NAN"))


class _Constructor(SafeConstructor):
    """Numbers as Kubernetes reads them (see numbers.py): a chart's ``port: 0443`` is the
    291 the cluster opens. ``strict``: a number we would read otherwise under YAML 1.2 is
    refused instead, located: what a user writes for helm-egress alone (values, policy,
    annotations) must mean one thing to every reader."""

    strict = False

    def construct_yaml_int(self, node: Any) -> Any:
        value = self._number(node)
        if isinstance(value, int):
            return value
        raise ConstructorError(None, None, f"{node.value!r} is not an integer Kubernetes reads", node.start_mark)

    def construct_yaml_float(self, node: Any) -> Any:
        if node.value.lstrip("+-") in _SPECIAL_FLOATS:
            return SafeConstructor.construct_yaml_float(self, node)
        value = self._number(node)
        if isinstance(value, (int, float)):
            return float(value)
        raise ConstructorError(None, None, f"{node.value!r} is not a number Kubernetes reads", node.start_mark)

    def construct_yaml_str(self, node: Any) -> Any:
        if self.strict and not node.style and node.value[:1] in numbers.HINT:
            self._agree(node, node.value)
        return SafeConstructor.construct_yaml_str(self, node)

    def _number(self, node: Any) -> int | float | None:
        value = numbers.plain(node.value)
        if self.strict and not node.style:
            self._agree(node, value)
        return value

    def _agree(self, node: Any, kube: object) -> None:
        """Refuse a plain scalar YAML 1.2 reads otherwise than Kubernetes (``kube``, the
        text itself when a string)."""
        tag = VersionedResolver.resolve(self.resolver, ScalarNode, node.value, (True, False))
        text = node.value
        yaml12: object = text
        if tag in (_INT, _FLOAT):
            if len(text) > numbers.MAX_CHARS:
                raise NumberError(f"a number of {len(text)} characters; helm-egress reads numbers of at most "
                                  f"{numbers.MAX_CHARS}", node.start_mark)
            yaml12 = (SafeConstructor.construct_yaml_int if tag == _INT
                      else SafeConstructor.construct_yaml_float)(self, node)
        if type(yaml12) is type(kube) and (yaml12 == kube or yaml12 != yaml12):  # nan
            return
        if isinstance(kube, str):
            raise NumberError(f"{text} reads as the string {text!r} in Kubernetes ({numbers.spelling_why(text)}), "
                              f"as the number {yaml12} in YAML 1.2; write a number of at most 64 bits, or quote it",
                              node.start_mark)
        if isinstance(yaml12, int) and isinstance(kube, int):
            fix = f"write {yaml12} (or {kube}, if that is what you mean)"
        else:
            fix = f"write {kube}" if isinstance(kube, int) else "write it as a plain decimal number"
        raise NumberError(f"{text} reads as {kube} in Kubernetes ({numbers.spelling_why(text)}), as {yaml12!r} "
                          f"in YAML 1.2; {fix}" + ("" if isinstance(yaml12, int) else ", or quote it for a string"), node.start_mark)


class NumberError(ConstructorError):
    """A number that readers disagree on, or too long to read: located, not a syntax error."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(None, None, problem, mark)


for _tag in ("int", "float", "str"):
    # Registered by function, not by name: a subclass's method is only used when registered.
    _Constructor.add_constructor(f"tag:yaml.org,2002:{_tag}", getattr(_Constructor, f"construct_yaml_{_tag}"))


class _StrictConstructor(_Constructor):
    strict = True


class _RoundTripConstructor(RoundTripConstructor):
    """Refuses an integer too long to convert (Python's limit is 4,300 digits); the safe
    read of the same document took it for the string Kubernetes reads."""

    def construct_yaml_int(self, node: Any) -> Any:
        if len(node.value) > numbers.MAX_CHARS:
            raise NumberError(f"a number of {len(node.value)} characters; helm-egress reads numbers of at most "
                              f"{numbers.MAX_CHARS}", node.start_mark)
        return RoundTripConstructor.construct_yaml_int(self, node)


_RoundTripConstructor.add_constructor("tag:yaml.org,2002:int", _RoundTripConstructor.construct_yaml_int)


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

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        tag = VersionedResolver.resolve(self, kind, value, implicit)
        if kind is not ScalarNode or not implicit[0] or not value or value[0] not in numbers.HINT:
            return tag
        # As go-yaml resolves it: a number whenever strconv reads one, never otherwise.
        number = numbers.plain(value)
        if number is not None:
            return _INT if isinstance(number, int) else _FLOAT
        if tag in (_INT, _FLOAT) and value.lstrip("+-") not in _SPECIAL_FLOATS:
            return _STR
        return tag

    @property
    def processing_version(self) -> Any:
        return (1, 2)

    @property
    def versioned_resolver(self) -> Any:
        if self._table is None:
            self._table = VersionedResolver.versioned_resolver.fget(self)  # type: ignore[attr-defined]
        return self._table


def safe_loader(*, strict_numbers: bool = False) -> YAML:
    """``strict_numbers``: refuse numbers YAML 1.2 and Kubernetes read differently (for
    what only helm-egress reads); else read them as Kubernetes does (the chart's documents)."""
    yaml = YAML(typ="safe")
    yaml.Constructor = _StrictConstructor if strict_numbers else _Constructor
    yaml.Resolver = _Resolver
    return yaml


def roundtrip_loader() -> YAML:
    """Comment- and line-preserving reading, for small inputs such as values files."""
    yaml = YAML(typ="rt")
    yaml.Constructor = _RoundTripConstructor
    yaml.preserve_quotes = True
    return yaml


def load(yaml: YAML, text: str, where: Location, *, line_offset: int = 0) -> Any:
    """Parse one YAML document; any failure becomes a located ``EgressError``."""
    data, _ = _parse(yaml, text, where, line_offset, keep_nodes=False)
    return data


# What ``load_pruned`` keeps: a mapping of key -> what to keep of its value; KEEP_ALL keeps
# a value whole, KEEP_LINES a mapping whole with the line of each of its keys (see
# ``KeyLines``). A mapping under a sequence's key prunes each of its items; any other
# value is kept whole wherever its key is kept.
KEEP_ALL = True


class _KeepLines:
    def __repr__(self) -> str:
        return "KEEP_LINES"


KEEP_LINES = _KeepLines()
Keep = dict[str, "Keep | bool | _KeepLines"]
# The 1-based input line of each key of the mappings a ``Keep`` marks KEEP_LINES, by the
# key's path from the document's root: what a message about one annotation points at.
KeyLines = dict[tuple[str, ...], int]


def load_pruned(yaml: YAML, text: str, where: Location, keep: Keep, *,
                line_offset: int = 0) -> tuple[Any, KeyLines]:
    """Parse one document, but construct only the parts ``keep`` names.

    For reading a few fields of large documents (a workload's labels and annotations,
    not its pod spec): the C parser's events are read once, the kept parts are built as
    ``load`` builds them (a string directly, any other scalar by the same constructor),
    and the rest is only checked. Whatever those checks cannot vouch for on their own --
    a tag, an anchor or alias, a key that is not a plain string, a duplicate key, a size
    or depth near the limits, a syntax error -- sends the document through a whole read,
    so what is refused, and the located error, are exactly those of ``load``.
    """
    if CParser is not None and len(text) <= MAX_CHARS and not _has_surrogate(text):
        pruner = _Pruner(yaml, text, line_offset)
        try:
            data = pruner.document(keep)
        except Exception:  # noqa: BLE001 - the whole read below is the reference; it decides
            pass
        else:
            check_size(data, where)
            return data, pruner.key_lines
    return load_with_key_lines(yaml, text, where, keep, line_offset=line_offset)


def load_with_key_lines(yaml: YAML, text: str, where: Location, keep: Keep, *,
                        line_offset: int = 0) -> tuple[Any, KeyLines]:
    """``load``, and the lines of the keys ``keep`` marks KEEP_LINES, from the same parse."""
    data, root = _parse(yaml, text, where, line_offset, keep_nodes=True)
    lines: KeyLines = {}
    if root is not None:
        _key_lines(root, keep, (), line_offset, lines)
    return data, lines


def _key_lines(node: Node, keep: Keep | bool | _KeepLines, path: tuple[str, ...], offset: int,
               lines: KeyLines) -> None:
    # The safe constructor has already flattened merge keys into the nodes it built from,
    # so a merged key is found where its anchor wrote it.
    if not isinstance(node, MappingNode) or not (isinstance(keep, dict) or keep is KEEP_LINES):
        return
    for key, value in node.value:
        if not isinstance(key, ScalarNode) or not isinstance(key.value, str):
            continue
        if keep is KEEP_LINES:
            lines[(*path, key.value)] = key.start_mark.line + 1 + offset
        elif isinstance(keep, dict) and key.value in keep:
            _key_lines(value, keep[key.value], (*path, key.value), offset, lines)


class _Unusual(Exception):
    """Something only a whole read can judge."""


# Plain keys already resolved ((resolver, key) -> is a string); manifests reuse a few
# hundred keys.
_STRING_KEYS: dict[tuple[type, str], bool] = {}


class _Pruner:
    def __init__(self, yaml: YAML, text: str, line_offset: int = 0) -> None:
        self.key_lines: KeyLines = {}
        self.line_offset = line_offset + 1  # marks count lines from 0
        self.resolver = yaml.resolver
        self.constructor = yaml.constructor  # for the scalars that are not strings
        self.table = self.resolver.versioned_resolver
        self.str_tag = self.resolver.resolve(ScalarNode, "", (False, True))
        self.parser = CParser(text)
        self.next = self.parser.get_event
        self.events = 0

    def document(self, keep: Keep) -> Any:
        try:
            self.next()  # stream start
            start = self.next()
            if type(start) is StreamEndEvent:
                return None
            if getattr(start, "version", None) is not None or getattr(start, "tags", None):
                raise _Unusual
            root = self.node(self.next(), keep, 0, ())
            if type(self.next()) is not DocumentEndEvent or type(self.next()) is not StreamEndEvent:
                raise _Unusual  # a second document: ``load`` says so, located
        finally:
            self.parser.dispose()
        return root

    def node(self, event: Any, keep: Keep | bool | _KeepLines, depth: int, path: tuple[str, ...]) -> Any:
        """The value starting at ``event``, pruned to ``keep``, as ``load`` constructs it;
        ``path``: its keys from the root, kept only where lines may be wanted below."""
        self._count(event, depth)
        cls = type(event)
        if cls is ScalarEvent:
            value = event.value
            # Quoted, or plain with no implicit type starting with its first character:
            # a string, as the resolver would say (most scalars in a manifest).
            if not event.implicit[0] or (value and value[0] not in self.table):
                return value
            tag = self.resolver.resolve(ScalarNode, value, event.implicit)
            if tag == self.str_tag:
                return value
            node = ScalarNode(tag, value, event.start_mark, event.end_mark, style=event.style)
            return self.constructor.construct_object(node, deep=True)
        if cls is SequenceStartEvent:
            items: list[Any] = []
            while True:
                item = self.next()
                if type(item) is SequenceEndEvent:
                    return items
                # A Keep on a sequence applies to each of its items (a pod's containers).
                items.append(self.node(item, keep if isinstance(keep, dict) else KEEP_ALL, depth + 1, ()))
        mapping: dict[str, Any] = {}
        seen: set[str] = set()
        while True:
            k = self.next()
            if type(k) is MappingEndEvent:
                return mapping
            key = self._key(k, seen)
            if isinstance(keep, dict):
                inner = keep.get(key)
            else:
                inner = KEEP_ALL
                if keep is KEEP_LINES:
                    self.key_lines[(*path, key)] = k.start_mark.line + self.line_offset
            value = self.next()
            if inner is None:
                self._skip(value, depth + 1)
            else:
                below = (*path, key) if inner is not KEEP_ALL else ()
                mapping[key] = self.node(value, inner, depth + 1, below)

    def _count(self, event: Any, depth: int) -> None:
        self.events += 1
        if self.events > MAX_NODES or depth >= MAX_DEPTH:
            raise _Unusual  # near the limits: ``load`` decides, with ``check_size``
        if event.anchor is not None or getattr(event, "tag", None) is not None:
            raise _Unusual  # an alias, an anchor or an explicit tag
        if type(event) not in (ScalarEvent, MappingStartEvent, SequenceStartEvent):
            raise _Unusual

    def _key(self, k: Any, seen: set[str]) -> str:
        if type(k) is not ScalarEvent or k.tag is not None or k.anchor is not None:
            raise _Unusual  # a collection, tagged or anchored key
        key: str = k.value
        if k.implicit[0] and (not key or key[0] in self.table):
            self._plain_key(key)
        if key in seen:
            raise _Unusual  # a duplicate key
        seen.add(key)
        return key

    def _plain_key(self, key: str) -> None:
        """Refuse a plain key that does not resolve to a string."""
        memo = (type(self.resolver), key)
        known = _STRING_KEYS.get(memo)
        if known is None:
            known = self.resolver.resolve(ScalarNode, key, (True, False)) == self.str_tag
            if len(_STRING_KEYS) < 10_000:
                _STRING_KEYS[memo] = known
        if not known:
            raise _Unusual  # null, bool, number or merge key: construction decides

    def _skip(self, event: Any, depth: int) -> None:
        """Consume the node starting at ``event``, checking what ``load`` would check.

        Most of a workload is skipped, so this is the hot loop: iterative, one frame per
        open collection (its keys so far, or None in a sequence).
        """
        self._count(event, depth)
        if type(event) is ScalarEvent:
            return
        nxt, table = self.next, self.table
        stack: list[set[str] | None] = [set() if type(event) is MappingStartEvent else None]
        events = self.events
        while stack:
            seen = stack[-1]
            if seen is None:
                item = nxt()
                cls = type(item)
                if cls is SequenceEndEvent:
                    stack.pop()
                    continue
            else:
                k = nxt()
                cls = type(k)
                if cls is MappingEndEvent:
                    stack.pop()
                    continue
                if cls is not ScalarEvent or k.tag is not None or k.anchor is not None:
                    raise _Unusual  # a collection, tagged or anchored key
                key = k.value
                if k.implicit[0] and (not key or key[0] in table):
                    self._plain_key(key)
                if key in seen:
                    raise _Unusual  # a duplicate key
                seen.add(key)
                events += 1
                item = nxt()
                cls = type(item)
            events += 1
            if item.anchor is not None:
                raise _Unusual  # an alias or an anchor
            if cls is ScalarEvent:
                if item.tag is not None:
                    raise _Unusual
                continue
            if item.tag is not None or depth + len(stack) >= MAX_DEPTH:
                raise _Unusual
            if cls is MappingStartEvent:
                stack.append(set())
            elif cls is SequenceStartEvent:
                stack.append(None)
            else:
                raise _Unusual
        self.events = events
        if events > MAX_NODES:
            raise _Unusual


def load_with_nodes(text: str, where: Location, *, strict_numbers: bool = False) -> tuple[Any, Node | None]:
    """Parse one document and keep its node tree, whose marks give every value's line.

    Composing with the C parser and constructing from the nodes is far cheaper than
    round-trip loading, and lines are all a values file needs.
    """
    return _parse(safe_loader(strict_numbers=strict_numbers), text, where, 0, keep_nodes=True)


def nesting_bound(text: str) -> int:
    """An upper bound of the nesting depth of ``text``, read off the text alone."""
    flow = text.count("[") + text.count("{")
    if flow > SAFE_NESTING:
        return flow
    lead = max((len(m.group()) for m in _LEAD.finditer(text)), default=0)
    return flow + 2 * (lead + 1)


def _check_nesting(text: str, where: Location, line_offset: int) -> None:
    if nesting_bound(text) <= SAFE_NESTING:
        return
    # Count exactly with libyaml's events (iterative), stopping at the first level too many.
    depth = 0
    events = safe_loader().parse(io.StringIO(text))
    try:
        for event in events:
            if isinstance(event, (MappingStartEvent, SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 + line_offset if event.start_mark else None
                    raise EgressError.one(where.at(line=line), f"nested more than {MAX_DEPTH} levels deep; refusing it")
            elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
                depth -= 1
    except YAMLError:
        return  # the real parse reports it, located
    finally:
        events.close()


def _parse(yaml: YAML, text: str, where: Location, line_offset: int, *, keep_nodes: bool) -> tuple[Any, Node | None]:
    if len(text) > MAX_CHARS:
        raise EgressError.one(where, f"larger than {MAX_CHARS // (1024 * 1024)} MiB; refusing to parse it")
    _check_nesting(text, where, line_offset)
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
        raise EgressError.one(where.at(line=at), what if isinstance(e, NumberError) else f"invalid YAML: {what}") from e
    except YAMLError as e:
        # A reader error (a character YAML does not allow) knows its offset, not its line.
        position = getattr(e, "position", None)
        at = text.count("\n", 0, position) + 1 + line_offset if isinstance(position, int) else None
        message = str(e).split("\n", 1)[0]
        raise EgressError.one(where.at(line=at), f"invalid YAML: {message}") from e
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

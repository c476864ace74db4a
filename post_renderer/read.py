"""Read: the one stage that parses documents of the stream; every later stage takes its data from here.

A document is parsed only when a stage needs it, and then once:

- always: pod-bearing workloads (pruned to ``WORKLOAD_FIELDS``), the chart's own
  ServiceEntries and NetworkPolicies, helm-egress's own earlier output (a document of a
  generated kind that carries the ``generated-by`` annotation), and documents whose kind
  cannot be read from the text (flow-style or JSON documents) -- ``Documents.sources``;
- when the run asks for them: the documents another stage's ``Need`` picks (the mesh
  objects an output kind reads, the chart objects a ``--policy`` judges), pruned to the
  fields it names, or whole. A document two stages need is read whole.

Everything else stays text. A document that cannot be read keeps its problems, and the
stage that needs it reports them when it runs, so a run reports what it reported when
each stage parsed its own documents.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple

from post_renderer import yamlio
from post_renderer.errors import EgressError, Location, Problem, Problems
from post_renderer.stream import Document, Stream

GENERATED_BY = "helm-egress.io/generated-by"

# kind -> API groups it is a workload in ("" is the core group).
WORKLOAD_KINDS: dict[str, frozenset[str]] = {
    "Deployment": frozenset({"apps", "extensions"}),
    "StatefulSet": frozenset({"apps"}),
    "DaemonSet": frozenset({"apps", "extensions"}),
    "ReplicaSet": frozenset({"apps", "extensions"}),
    "ReplicationController": frozenset({""}),
    "Job": frozenset({"batch"}),
    "CronJob": frozenset({"batch"}),
    "Pod": frozenset({""}),
    "Rollout": frozenset({"argoproj.io"}),
}
# Egress documents a chart renders itself: kind -> API group.
POLICY_KINDS = {"ServiceEntry": "networking.istio.io", "NetworkPolicy": "networking.k8s.io"}

# Every field ``workloads`` reads from a workload, for ``yamlio.load_pruned``: pod specs
# are most of a workload's bytes and none of its business. A field read but not listed
# here reads as absent; test_pruned_read compares pruned with whole reads on real charts.
# Annotations keep their keys' lines: errors about them point there. Of the containers,
# only what lets a pod run around its proxy (``bypass.evasions``), and the named ports a
# Service's targetPort resolves to on a hostNetwork pod (``Workload.host_ports``).
_CONTAINER: yamlio.Keep = {
    "name": yamlio.KEEP_ALL,
    "ports": {"name": yamlio.KEEP_ALL, "containerPort": yamlio.KEEP_ALL, "protocol": yamlio.KEEP_ALL},
    "restartPolicy": yamlio.KEEP_ALL,
    "securityContext": {"runAsUser": yamlio.KEEP_ALL, "runAsGroup": yamlio.KEEP_ALL, "privileged": yamlio.KEEP_ALL,
                        "capabilities": {"add": yamlio.KEEP_ALL}},
}
_POD_SPEC: yamlio.Keep = {
    "serviceAccountName": yamlio.KEEP_ALL,
    "serviceAccount": yamlio.KEEP_ALL,
    "hostNetwork": yamlio.KEEP_ALL,
    "securityContext": {"runAsUser": yamlio.KEEP_ALL, "runAsGroup": yamlio.KEEP_ALL},
    "containers": _CONTAINER,
    "initContainers": _CONTAINER,
    # Whether its pods get a token for the API server: mounted for them, or projected by hand.
    "automountServiceAccountToken": yamlio.KEEP_ALL,
    "volumes": {"projected": {"sources": {"serviceAccountToken": {"audience": yamlio.KEEP_ALL}}}},
}
_TEMPLATE: yamlio.Keep = {"metadata": {"annotations": yamlio.KEEP_LINES, "labels": yamlio.KEEP_ALL}, "spec": _POD_SPEC}
WORKLOAD_FIELDS: yamlio.Keep = {
    "apiVersion": yamlio.KEEP_ALL,
    "kind": yamlio.KEEP_ALL,
    "metadata": {"annotations": yamlio.KEEP_LINES, "name": yamlio.KEEP_ALL, "namespace": yamlio.KEEP_ALL,
                 "labels": yamlio.KEEP_ALL},
    # A bare Pod's own spec, with the controllers' selector and templates.
    "spec": {"selector": yamlio.KEEP_ALL, **_POD_SPEC, "template": _TEMPLATE,
             "jobTemplate": {"spec": {"template": _TEMPLATE}}},
}

Wants = Callable[[Document], bool]


class Need(NamedTuple):
    """What a later stage needs parsed: the documents ``wants`` picks by their text, and of
    each the fields ``fields`` names (see ``yamlio.load_pruned``; None: all of it)."""

    wants: Wants
    fields: yamlio.Keep | None = None


class Parsed(NamedTuple):
    """One document as the reading stage parsed it."""

    doc: Document
    data: Any  # pruned to the fields its one reader needs; None when it could not be read
    where: Location  # the document, for messages about it
    problems: tuple[Problem, ...]  # why it could not be read
    key_lines: yamlio.KeyLines  # of a workload's annotations

    def use(self, problems: Problems) -> Any:
        """The data, for the stage that needs it; why it could not be read goes to ``problems``."""
        problems.extend(list(self.problems))
        return self.data


class Documents(NamedTuple):
    """What the reading stage hands on."""

    stream: Stream
    parsed: dict[int, Parsed]  # every document read, by index, in stream order
    sources: tuple[Parsed, ...]  # those read always (see the module's docstring), for ``workloads.scan``
    generated: frozenset[int]  # indices of helm-egress's own earlier output: regenerated, not read
    # The items of Lists, each a document of its own for every stage (Helm creates each
    # one): its index, past the stream's, -> the index of the List that holds it.
    listed: dict[int, int] = {}

    def wanted(self, wants: Wants) -> list[Parsed]:
        """The chart's documents ``wants`` picks, in stream order (they were read for it)."""
        return [p for p in self.parsed.values() if p.doc.index not in self.generated and wants(p.doc)]

    def holder(self, index: int) -> int:
        """The stream document that carries document ``index``: itself, or its List."""
        return self.listed.get(index, index)


def read(stream: Stream, generated_kinds: Collection[str], needs: Sequence[Need] = ()) -> Documents:
    """``generated_kinds``: the kinds helm-egress writes; only a document of one of these can
    be its own earlier output (any other keeps its annotations, and is not searched for
    them: CRDs are most of some streams' bytes). ``needs``: what the stages that run this
    time read besides the sources."""
    loader = yamlio.safe_loader()
    parsed: dict[int, Parsed] = {}
    sources: list[Parsed] = []
    generated: set[int] = set()
    listed: dict[int, int] = {}

    def take(doc: Document, p: Parsed | None) -> None:
        """Read ``doc`` (``p``: already parsed whole) if a stage needs it."""
        source = _is_source(doc, generated_kinds)
        fields = [n.fields for n in needs if n.wants(doc)] if needs else []
        if not source and not fields:
            return
        if p is None:
            if source:
                fields.append(WORKLOAD_FIELDS if doc.kind in WORKLOAD_KINDS and GENERATED_BY not in doc.raw else None)
            p = _parse(loader, doc, fields[0] if len(fields) == 1 else None, source=source)
        parsed[doc.index] = p
        if source:
            sources.append(p)
            # An item of a List is the chart's whatever it carries: a List cannot be
            # dropped in part, so it is never taken for an earlier output of ours.
            if doc.index not in listed and _is_generated(p.data, generated_kinds):
                generated.add(doc.index)

    for doc in stream.documents:
        unsure = doc.kind is None and _may_have_kind(doc)
        whole = _parse(loader, doc, None, source=unsure) if unsure or _may_be_list(doc) else None
        items = _items(whole) if whole is not None else []
        if items:
            assert whole is not None
            # Helm decodes any object with `items` as a List and creates every item (the
            # resource builder's Flatten); the List itself is written back as it came.
            for path, item in items:
                index = len(stream.documents) + len(listed)
                listed[index] = doc.index
                take(*_item_document(index, whole, path, item))
            continue
        if unsure:
            # The text cannot tell the kind (JSON, flow style, a tag, an indented root, an
            # open quote before it): the parse does, and every stage picks the document by it.
            assert whole is not None
            data = whole.data
            doc.settle_kind(_field(data, "kind"))
            metadata = data.get("metadata") if isinstance(data, dict) else None
            p = parsed[doc.index] = whole._replace(where=whole.where._replace(
                kind=doc.kind_hint, name=whole.where.name or _field(metadata, "name")))
            if p.problems or _is_source(doc, generated_kinds):
                # What fails to parse is reported by the stage that needs every source.
                sources.append(p)
                if _is_generated(data, generated_kinds):
                    generated.add(doc.index)
            continue
        take(doc, None)
    return Documents(stream, parsed, tuple(sources), frozenset(generated), listed)


def _is_source(doc: Document, generated_kinds: Collection[str]) -> bool:
    kind = doc.kind
    return kind is not None and (kind in WORKLOAD_KINDS or kind in POLICY_KINDS or (
        kind in generated_kinds and GENERATED_BY in doc.raw))


_ITEMS = re.compile(rb"""^(?:["']?items["']?[ \t]*:|\?)""", re.MULTILINE)


def _may_be_list(doc: Document) -> bool:
    """Whether Helm may take ``doc`` for a List: its kind names one, or a top-level line
    starts with an ``items`` key (or a complex key, ``? ``). Helm decodes any object with
    ``items`` as a list and creates each item (``pkg/kube``: the builder's ``Flatten``)."""
    if doc.kind is not None and doc.kind.endswith("List"):
        return True
    kept = doc.kept_bytes()
    if kept is None:
        return _ITEMS.search(doc.view.encode("utf-8", "surrogateescape")) is not None
    # The splitter noted the lines that may start one, in its one pass over the stream.
    base, start, end = kept
    return any(_ITEMS.match(base, at, end) is not None for at in doc.items_lines)


def _items(listed: Parsed) -> list[tuple[str, dict[str, Any]]]:
    """The items of a List, nested Lists flattened, each with its path: what Helm creates.
    An item with neither kind nor apiVersion takes its List's kind less ``List`` and its
    List's apiVersion, as the decoder names it."""
    data = listed.data
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        return []
    out: list[tuple[str, dict[str, Any]]] = []

    def walk(items: list[Any], holder: dict[str, Any], path: str) -> None:
        list_kind = str(holder.get("kind") or "")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            at = f"{path}[{i}]"
            if not item.get("kind") and not item.get("apiVersion") and list_kind.endswith("List"):
                # apimachinery's unstructured list decoding names a bare item after its List.
                item = {"apiVersion": holder.get("apiVersion"), "kind": list_kind.removesuffix("List"), **item}
            if isinstance(item.get("items"), list):
                walk(item["items"], item, f"{at}.items")
            else:
                out.append((at, item))

    walk(data["items"], data, "items")
    return out


def _item_document(index: int, listed: Parsed, path: str, item: dict[str, Any]) -> tuple[Document, Parsed]:
    """A List's item as a document of its own: its text for the stages that search text,
    and its data as the List's parse read it, located in the List."""
    doc = Document(index, json.dumps(item, ensure_ascii=False, default=str), listed.doc.start_line, True)
    kind = _field(item, "kind")
    doc.settle_kind(kind)
    metadata = item.get("metadata")
    name = _field(metadata, "name")
    where = listed.where._replace(kind=kind, name=f"{name or ''} in {path}".strip())
    return doc, Parsed(doc, item, where, (), {})


def _field(data: Any, key: str) -> str | None:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _may_have_kind(doc: Document) -> bool:
    """Whether a document whose text does not tell its kind may have one: a key spelled
    ``kind`` somewhere, or a double-quoted escape that could spell it."""
    return doc.has_content and ("kind" in doc.raw or "\\" in doc.raw)


def _parse(loader: Any, doc: Document, fields: yamlio.Keep | None, *, source: bool) -> Parsed:
    where = Location(file="stdin", line=doc.start_line, doc_index=doc.index, kind=doc.kind_hint, name=doc.name)
    offset = doc.start_line - 1
    try:
        if fields is not None:
            data, lines = yamlio.load_pruned(loader, doc.parse_text, where, fields, line_offset=offset)
            if not isinstance(data, dict) or data.get("kind") == doc.kind:
                return Parsed(doc, data, where, (), lines)
            # The text's kind line misled: the fields were chosen for another kind.
        if source:  # it may be a workload: its annotations' lines come from the same parse
            data, lines = yamlio.load_with_key_lines(loader, doc.parse_text, where, WORKLOAD_FIELDS,
                                                     line_offset=offset)
        else:
            data, lines = yamlio.load(loader, doc.parse_text, where, line_offset=offset), {}
    except EgressError as e:
        return Parsed(doc, None, where, tuple(e.problems), {})
    return Parsed(doc, data, where, (), lines)


def _is_generated(data: Any, generated_kinds: Collection[str]) -> bool:
    if not isinstance(data, dict):
        return False
    metadata = data.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    kind = data.get("kind")
    return isinstance(annotations, dict) and GENERATED_BY in annotations and isinstance(kind, str) \
        and kind in generated_kinds

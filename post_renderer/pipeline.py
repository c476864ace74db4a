"""The ``render`` job: stream in, augmented stream out. Pure: no I/O, no printing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from post_renderer import annotations
from post_renderer import stream as streams
from post_renderer.emit import emit
from post_renderer.errors import EgressError, Location, Problems
from post_renderer.model import Existing, Workload
from post_renderer.normalize import normalize
from post_renderer.names import dns_label
from post_renderer.settings import Settings
from post_renderer.synth import (
    Claim,
    Generated,
    Planned,
    Wanted,
    network_policy,
    plan,
    policy_names,
    register,
    service_entries,
)
from post_renderer.validate import networkpolicy_problems, serviceentry_problems
from post_renderer.values import ValuesFile, load_egress
from post_renderer.workloads import release_from_labels, scan


@dataclass(frozen=True)
class Result:
    output: str
    notes: list[str] = field(default_factory=list)
    generated: list[Generated] = field(default_factory=list)


def render(
    text: str, values: Sequence[ValuesFile], settings: Settings, *, allowlist: ValuesFile | None = None
) -> Result:
    stream = streams.split(text)
    problems = Problems()
    egress = load_egress(values, settings, problems)
    allowed = load_egress([allowlist], settings, problems) if allowlist else None
    inventory = scan(stream, problems)
    if stream.is_empty:
        problems.raise_if_any()
        return Result(text, [*inventory.notes, "the input holds no documents; nothing to add"])
    notes = list(inventory.notes)
    if settings.normalize:
        normalized = normalize(stream, inventory.existing, settings, problems, notes)
        serviceentries, replacements = normalized.serviceentries, normalized.replacements
    else:
        serviceentries = [e for e in inventory.existing if e.kind == "ServiceEntry"]
        replacements = {}
    # Where documents that name no namespace land: Helm's -n, which charts that do name one
    # almost always write as {{ .Release.Namespace }}.
    home = settings.namespace or _most_common_namespace(inventory.workloads)
    claims: list[Claim] = []
    for se in serviceentries:
        register(claims, existing_claims(se, home), se.location, problems)
    for entry in allowed.entries if allowed else ():
        # The allowlist stands for cluster-wide ServiceEntries, exported everywhere.
        register(claims, [Claim(d, p.number, p.protocol, None, f"the global allowlist ({entry.source})", entry.name)
                          for d in entry.hosts or entry.addresses for p in entry.ports], entry.origin, problems)

    intents = {
        w.doc_index: annotations.read(w, stream.documents[w.doc_index], settings, problems)
        for w in inventory.workloads
    }
    release_wide = plan(egress.entries, problems)
    own = {i: plan(intent.entries, problems) for i, intent in intents.items()}
    problems.raise_if_any()

    served: list[Workload] = []
    for w in inventory.workloads:
        if w.hook is not None:
            if intents[w.doc_index].declared:
                notes.append(f"{w.location.render()}: Helm hook ({w.hook}): egress annotations not applied")
            continue
        if intents[w.doc_index].ignore:
            notes.append(f"{w.location.render()}: {settings.annotation_prefix}/ignore: no egress policy")
            continue
        if egress.present or intents[w.doc_index].declared:
            served.append(w)

    release = settings.release or release_from_labels(stream)
    if release is None and release_wide:
        raise EgressError.one(
            Location(),
            "cannot tell the release name: no document carries an app.kubernetes.io/instance "
            "label; pass --release NAME",
        )

    wanted: list[Wanted] = []
    if release_wide:
        namespaces = sorted(
            {_namespace(w, settings) for w in served if egress.present} or {settings.namespace},
            key=lambda n: (n is not None, n or ""),
        )
        for namespace in namespaces:
            wanted += [Wanted(p, namespace, dns_label(release or "", p.entry.name)) for p in release_wide]
    for w in served:
        for p in own[w.doc_index]:
            name = p.entry.name if p.entry.name == dns_label(w.name) else dns_label(w.name, p.entry.name)
            wanted.append(Wanted(p, _namespace(w, settings), name))
    generated = service_entries(
        wanted, claims=claims, home=home, release=release, settings=settings, problems=problems, notes=notes
    )
    problems.raise_if_any()

    if settings.network_policy == "kubernetes":
        names = policy_names(served)
        for w in served:
            planned: list[Planned] = (release_wide if egress.present else []) + own[w.doc_index]
            sources = ([f"values:{_basename(egress.file)}"] if egress.file else []) + (
                [f"annotations:{w.kind}/{w.name}"] if intents[w.doc_index].declared else []
            )
            generated.append(
                network_policy(w, names[w.doc_index], planned, release=release, sources=sources, settings=settings)
            )
    _check_generated(generated)
    anchor = min((w.doc_index for w in inventory.workloads if w.hook is None), default=None)
    output = emit(stream, generated, drop=inventory.generated, anchor=anchor, replace=replacements)
    return Result(output, notes, generated)


def existing_claims(se: Existing, home: str | None) -> list[Claim]:
    """What a ServiceEntry of the stream serves, in the namespaces it is exported to."""
    metadata = se.data.get("metadata") or {}
    spec = se.data.get("spec") or {}
    namespace = metadata.get("namespace") or home
    export_to = spec.get("exportTo")
    scope: frozenset[str | None] | None
    if not export_to or "*" in export_to:
        scope = None  # absent means every namespace, unless the mesh says otherwise
    else:
        scope = frozenset(namespace if e == "." else e for e in export_to if e != "~")
    dests = [str(d) for d in [*(spec.get("hosts") or []), *(spec.get("addresses") or [])]]
    source = f"ServiceEntry {metadata.get('name')} (document {se.doc_index})"
    return [
        Claim(d, int(p["number"]), str(p.get("protocol") or "").upper(), scope, source, str(metadata.get("name")))
        for d in dests
        for p in spec.get("ports") or []
        if isinstance(p, dict) and isinstance(p.get("number"), int)
    ]


def _most_common_namespace(workloads: Sequence[Workload]) -> str | None:
    counts = Counter(w.namespace for w in workloads if w.namespace)
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None


def _namespace(w: Workload, settings: Settings) -> str | None:
    return w.namespace or settings.namespace


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _check_generated(generated: Sequence[Generated]) -> None:
    """Every generated document must pass Istio's and the API server's rules.

    A failure here means helm-egress itself is wrong, but it is reported like bad input,
    located at the declaration that produced the document, so nothing invalid reaches
    the cluster.
    """
    problems = Problems()
    for g in generated:
        check = serviceentry_problems if g.kind == "ServiceEntry" else networkpolicy_problems
        for message in check(g.body["spec"]):
            problems.add(g.origin, f"generated {g.kind} {g.name} would be rejected: {message}")
    problems.raise_if_any()

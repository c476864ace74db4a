"""The ``render`` job: stream in, augmented stream out. Pure: no I/O, no printing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from post_renderer import annotations
from post_renderer import stream as streams
from post_renderer.emit import emit
from post_renderer.errors import EgressError, Location, Problems
from post_renderer.model import Workload
from post_renderer.names import dns_label
from post_renderer.settings import Settings
from post_renderer.synth import (
    Generated,
    Planned,
    Wanted,
    network_policy,
    plan,
    policy_names,
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


def render(text: str, values: Sequence[ValuesFile], settings: Settings) -> Result:
    stream = streams.split(text)
    problems = Problems()
    egress = load_egress(values, settings, problems)
    inventory = scan(stream, problems)
    if stream.is_empty:
        problems.raise_if_any()
        return Result(text, [*inventory.notes, "the input holds no documents; nothing to add"])
    notes = list(inventory.notes)

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
    generated = service_entries(wanted, release=release, settings=settings, problems=problems, notes=notes)
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
    output = emit(stream, generated, drop=inventory.generated, anchor=anchor)
    return Result(output, notes, generated)


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

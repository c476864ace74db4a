"""The ``render`` job: stream in, augmented stream out. Pure: no I/O, no printing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from post_renderer import stream as streams
from post_renderer.emit import emit
from post_renderer.errors import EgressError, Location, Problems
from post_renderer.settings import Settings
from post_renderer.synth import Generated, network_policy, plan, policy_names, service_entries
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
    egress = load_egress(values, settings)
    problems = Problems()
    inventory = scan(stream, problems)
    problems.raise_if_any()
    notes = list(inventory.notes)
    if stream.is_empty:
        return Result(text, [*notes, "the input holds no documents; nothing to add"])

    planned = plan(egress.entries, problems)
    problems.raise_if_any()
    generated: list[Generated] = []
    if egress.present:
        release = settings.release or release_from_labels(stream)
        if release is None and planned:
            raise EgressError.one(
                Location(),
                "cannot tell the release name: no document carries an app.kubernetes.io/instance "
                "label; pass --release NAME",
            )
        workloads = inventory.workloads
        namespaces = sorted(
            {w.namespace or settings.namespace for w in workloads} or {settings.namespace},
            key=lambda n: (n is not None, n or ""),
        )
        generated += service_entries(planned, release=release or "", namespaces=namespaces, settings=settings)
        if settings.network_policy == "kubernetes":
            names = policy_names(workloads)
            sources = [f"values:{_basename(egress.file)}"] if egress.file else []
            for w in workloads:
                generated.append(
                    network_policy(w, names[w.doc_index], planned, release=release, sources=sources, settings=settings)
                )
    _check_generated(generated)
    anchor = min((w.doc_index for w in inventory.workloads), default=None)
    output = emit(stream, generated, drop=inventory.generated, anchor=anchor)
    return Result(output, notes, generated)


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

"""Stage: plan who may reach what, once per workload.

Which workloads get policies (hooks, ignored ones and those with nothing declared do
not), the release name, each served workload's access (its entries, policy name, Sidecar
wishes), and which ServiceEntry serves each destination. The answer is one read-only
``Context``: every output kind and ``explain`` read it, none changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from post_renderer.access import Access, Context
from post_renderer.errors import EgressError, Location, Problem, Problems
from post_renderer.find import Found
from post_renderer.model import Workload
from post_renderer.names import dns_label, label_value_problem
from post_renderer.reach import gather
from post_renderer.serving import serve
from post_renderer.settings import Settings
from post_renderer.synth import Wanted, hostnames_by_name, policy_names, registry_only_message
from post_renderer.workloads import release_from_labels


class Plan(NamedTuple):
    ctx: Context
    served: list[Workload]  # the workloads that get policies, in stream order
    status: dict[int, str]  # why each workload has (no) policy, by document index
    notes: list[str]
    warnings: list[Problem]


def plan(found: Found, settings: Settings, label_selected: Callable[[Access], bool]) -> Plan:
    """``label_selected``: whether an output kind selects the workload's pods by their
    labels alone (Sidecar, CiliumNetworkPolicy), so the pods must carry some."""
    served, status, notes, warnings = _served(found, settings)
    release = settings.release or release_from_labels(found.documents.stream)
    if settings.release is None and release is not None and label_value_problem(release) and (
            found.release_wide or served):
        # It becomes a label value and part of object names; --release is validated too.
        raise EgressError.one(Location(), f"the stream's app.kubernetes.io/instance label, {release!r}, is not a "
                                          "valid release name; pass --release NAME")
    if release is None and found.release_wide:
        raise EgressError.one(
            Location(),
            "cannot tell the release name: no document carries an app.kubernetes.io/instance "
            "label; pass --release NAME",
        )
    names = policy_names(served)
    access = [
        Access(
            workload=w,
            namespace=w.namespace or settings.namespace,
            policy_name=names[w.doc_index],
            planned=tuple((found.release_wide if found.egress.present else []) + found.own[w.doc_index]),
            sources=tuple(([f"values:{_basename(found.egress.file)}"] if found.egress.file else [])
                          + ([f"annotations:{w.kind}/{w.name}"] if found.intents[w.doc_index].declared else [])),
            sidecar=settings.sidecar and found.intents[w.doc_index].sidecar,
            sidecar_hosts=found.intents[w.doc_index].sidecar_hosts,
        )
        for w in served
    ]
    gathered = gather(found, access, settings)
    access = gathered.access
    warnings += gathered.warnings
    notes += gathered.notes
    problems = Problems()
    problems.extend(gathered.errors)
    for a in access:
        if not a.workload.stable_labels and label_selected(a):
            have = f" but {', '.join(sorted(a.workload.pod_labels))}, which change with each release" \
                if a.workload.pod_labels else ""
            problems.add(a.workload.location, (
                f"the workload's pods have no labels{have}, so no Sidecar or CiliumNetworkPolicy can select them "
                f'alone across releases; add labels, or exclude it with {settings.annotation_prefix}/ignore: "true"'))
    wanted = _wanted(found, served, release, settings)
    service_entries = serve(found.claims, found.serviceentries, wanted, found.home, settings, problems)
    problems.raise_if_any()
    ctx = Context(settings=settings, release=release, home=found.home, access=access,
                  service_entries=service_entries, inmesh=found.inmesh, workloads=list(found.inventory.workloads))
    if settings.network_policy == "none":
        warnings += _names_unenforced(access, settings)
    return Plan(ctx, served, status, notes, warnings)


HOST_NETWORK_UNENFORCED = "no NetworkPolicy, CiliumNetworkPolicy, Sidecar or ServiceEntry applies to its pods"


def _served(found: Found, settings: Settings) -> tuple[list[Workload], dict[int, str], list[str], list[Problem]]:
    """The workloads that get policies, each workload's status, and what to say about them."""
    served: list[Workload] = []
    status: dict[int, str] = {}
    notes: list[str] = []
    warnings: list[Problem] = []
    prefix = settings.annotation_prefix
    for w in found.inventory.workloads:
        intent = found.intents[w.doc_index]
        if w.hook is not None:
            status[w.doc_index] = f"Helm hook ({w.hook}): no policy"
            if intent.declared:
                notes.append(f"{w.location.render()}: Helm hook ({w.hook}): egress annotations not applied")
        elif intent.ignore:
            status[w.doc_index] = f"{prefix}/ignore: no policy"
            notes.append(f"{w.location.render()}: {prefix}/ignore: no egress policy")
            if found.egress.present:
                warnings.append(Problem(w.location, "values apply to the release, but no policy selects this "
                                                    f"workload ({prefix}/ignore)"))
        elif found.egress.present or intent.declared:
            served.append(w)
            status[w.doc_index] = "policy" if settings.network_policy != "none" else "policies turned off"
            if w.host_network:
                status[w.doc_index] = f"hostNetwork: {HOST_NETWORK_UNENFORCED}"
                warnings.append(Problem(w.location, (
                    f"hostNetwork: true: {HOST_NETWORK_UNENFORCED}: its pods share the node's network namespace, so "
                    "Istio injects no proxy (ambient never captures them) and pod policies do not select them "
                    "(Kubernetes leaves that undefined, most network plugins see the node); its egress is not "
                    "enforced: drop hostNetwork, or restrict the node itself")))
            if settings.network_policy == "none" and found.egress.present:
                warnings.append(Problem(w.location, "values apply to the release, but no policy selects this "
                                                    "workload (--network-policy none)"))
        else:
            status[w.doc_index] = "no egress declared: no policy"
            if intent.sidecar_hosts or not intent.sidecar:
                notes.append(f"{w.location.render()}: {prefix}/sidecar annotations apply only to a "
                             "workload with egress declared; this one gets no policy")
    return served, status, notes, warnings


def _wanted(found: Found, served: list[Workload], release: str | None, settings: Settings) -> list[Wanted]:
    """The ServiceEntries to write: release-wide ones per namespace served, then each
    workload's own, named after the release or the workload."""
    wanted: list[Wanted] = []
    if found.release_wide:
        namespaces = sorted(
            {w.namespace or settings.namespace for w in served if found.egress.present} or {settings.namespace},
            key=lambda n: (n is not None, n or ""),
        )
        for namespace in namespaces:
            wanted += [Wanted(p, namespace, dns_label(release or "", p.entry.name)) for p in found.release_wide]
    for w in served:
        for p in found.own[w.doc_index]:
            name = p.entry.name if p.entry.name == dns_label(w.name) else dns_label(w.name, p.entry.name)
            wanted.append(Wanted(p, w.namespace or settings.namespace, name))
    return wanted


def _names_unenforced(access: list[Access], settings: Settings) -> list[Problem]:
    """With no network policy at all, each workload's hostnames rest on the mesh alone."""
    out = []
    for a in access:
        hosts = hostnames_by_name(a.planned)
        if not hosts:
            continue
        if settings.mesh == "ambient":
            # ztunnel ignores REGISTRY_ONLY (istio/istio#54281): only a NetworkPolicy sends
            # the pods' traffic to the waypoint rather than out.
            out.append(Problem(a.workload.location, (
                f"hostname egress ({', '.join(hosts[:3])}{', ...' if len(hosts) > 3 else ''}) is not enforced: in "
                "ambient mode ztunnel ignores REGISTRY_ONLY and no network policy is written (--network-policy none), "
                "so the pods reach any host directly; use --network-policy kubernetes or cilium")))
        else:
            out.append(Problem(a.workload.location, registry_only_message(
                hosts, "no network policy is written (--network-policy none)")))
    return out


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]

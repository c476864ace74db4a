"""Istio Sidecar (`--sidecar`): each workload's proxy knows only the hosts it declared.

ServiceEntries are exported to the whole namespace, so without a Sidecar every workload of
the namespace may call every host any of them declared. A Sidecar per workload imports
only its own destinations (from the namespace of the ServiceEntry that serves each), the
release's own Services and the in-mesh hosts a user adds, with `REGISTRY_ONLY` for the rest.
It configures the proxy; it is not a boundary (a pod that bypasses the proxy is not bound
by it), which is why README pairs it with `--network-policy cilium`. istiod needs no
import: the proxy reaches it through its bootstrap configuration.
"""

from __future__ import annotations

from typing import Final

from post_renderer.access import Access, Context
from post_renderer.addresses import normal_host
from post_renderer.errors import Problem
from post_renderer.reach import Reach
from post_renderer.settings import Settings
from post_renderer.synth import SOURCE_ANNOTATION, WORKLOAD_ANNOTATION, Generated, Planned, metadata
from post_renderer.validate import sidecar_problems

KIND = "Sidecar"
TEMPLATE = "templates/helm-egress-sidecars.yaml"
SETTINGS = frozenset({"sidecar", "sidecar_hosts", "cluster_domain", "istio_api_version", "annotation_prefix",
                      "namespace"})
LAYER: Final = "mesh"
REPORT: Final = "sidecar"
LABEL_SELECTOR = True  # a workloadSelector has labels only
NEEDS_MESH = True  # the release's Services, the chart's own Sidecars
NOTHING = "~/*"  # imports no service: for a workload with nothing to import
check = sidecar_problems


def wanted(settings: Settings) -> bool:
    return settings.sidecar


def covers(access: Access, settings: Settings) -> bool:
    return settings.sidecar and access.sidecar


def build(ctx: Context) -> list[Generated]:
    out = []
    for a in ctx.access:
        if not a.sidecar:
            continue
        hosts = egress_hosts(a, ctx)
        annotations = {
            WORKLOAD_ANNOTATION: f"{a.workload.kind}/{a.workload.name}",
            SOURCE_ANNOTATION: ",".join(a.sources) if a.sources else "defaults",
        }
        body = {
            "apiVersion": ctx.settings.istio_api_version,
            "kind": KIND,
            "metadata": metadata(a.policy_name, a.namespace, ctx.release, annotations),
            "spec": {
                # Never version or chart labels: a rollout's old pods would lose their Sidecar.
                "workloadSelector": {"labels": ctx.label_selector(a).labels},
                "egress": [{"hosts": hosts or [NOTHING]}],
                "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
            },
        }
        out.append(Generated(KIND, a.policy_name, a.namespace, body, a.workload.location))
    return out


def egress_hosts(access: Access, ctx: Context) -> list[str]:
    """Its declared destinations, what it reaches in the cluster (the release's Services,
    in-cluster destinations, the mesh's Services, cluster DNS), then the hosts a user added."""
    hosts = [host for host, _ in ctx.imports(access)]
    hosts += [host for r in access.reach for host in r.imports]
    hosts += [*ctx.settings.sidecar_hosts, *(h.host for h in access.sidecar_hosts)]
    return list(dict.fromkeys(hosts))


def errors(ctx: Context) -> list[Problem]:
    """What would make the Sidecars wrong: refused before anything is written."""
    out: list[Problem] = []
    mine = [a for a in ctx.access if a.sidecar]
    with_sidecar = {a.workload.doc_index for a in mine}
    for a in mine:
        scope = ctx.scope(a)
        carried = ctx.label_selector(a).still
        for chart in ctx.inmesh.sidecars:
            if chart.selects(a.workload.pod_labels, scope, ctx.home):
                out.append(Problem(chart.location, (
                    f"Sidecar {chart.name} selects the pods of {a.workload.kind}/{a.workload.name}, which --sidecar gives "
                    "its own Sidecar; Istio leaves two Sidecars for one pod undefined: remove this one, or opt the "
                    f'workload out with {ctx.settings.annotation_prefix}/sidecar: "false"')))
                continue
            # Ours selects by labels only, so it also takes in pods that carry more.
            for w in (w for w in carried if chart.selects(w.pod_labels, scope, ctx.home)):
                out.append(Problem(chart.location, (
                    f"Sidecar {chart.name} selects the pods of {w.kind}/{w.name}, which carry every label "
                    f"{a.workload.kind}/{a.workload.name}'s Sidecar {a.policy_name} selects by, so it selects them too; Istio "
                    "leaves two Sidecars for one pod undefined: give the workloads distinguishing labels, or opt "
                    f'{a.workload.kind}/{a.workload.name} out with {ctx.settings.annotation_prefix}/sidecar: "false"')))
        for b in carried:
            if b.doc_index in with_sidecar:
                out.append(Problem(a.workload.location, (
                    f"its pod labels also select the pods of {b.kind}/{b.name}, so both Sidecars "
                    "would select them (undefined in Istio); give the workloads distinguishing labels, or opt one out "
                    f'with {ctx.settings.annotation_prefix}/sidecar: "false"')))
        added = [(h, a.workload.location.at("--sidecar-host")) for h in ctx.settings.sidecar_hosts]
        added += [(h.host, h.origin) for h in a.sidecar_hosts]
        own = set(a.hostnames)
        for host, where in added:
            # Declared hosts are canonical (lower case, no trailing dot); DNS names are not
            # case-sensitive, so 'API.Stripe.com.' must not slip past as another name.
            dns_name = normal_host(host.partition("/")[2])
            taken = next((f"{other} ({by.kind}/{by.name})" for other in ctx.overlapping(dns_name) if other not in own
                          and (by := ctx.declared_by_another(other, a)) is not None), None)
            if taken:
                out.append(Problem(where, (
                    f"{host} would import {taken}'s declared destination into the Sidecar of "
                    f"{a.workload.kind}/{a.workload.name}; declare it on this workload instead")))
        for imported, p in ctx.imports(a):
            if "." not in imported.partition("/")[2]:
                out.append(Problem(p.entry.origin, (
                    f"{imported}: a Sidecar cannot import a short host name (Istio accepts only fully qualified "
                    "names); declare the host with its domain")))
    return out


def notes(ctx: Context) -> list[str]:
    if any(a.sidecar for a in ctx.access) and any(not (s.namespace or ctx.home) for s in ctx.inmesh.services):
        domain = ctx.settings.cluster_domain
        return [f"the stream does not say which namespace the release's Services are in: Sidecars import every "
                f"Service of their own namespace (./*.svc.{domain}); pass --namespace NS to name only the release's"]
    return []


def warnings(ctx: Context) -> list[Problem]:
    out = []
    with_sidecar = {a.workload.doc_index for a in ctx.access if a.sidecar}
    for a in ctx.access:
        if not a.sidecar:
            continue
        for w in ctx.label_selector(a).still:
            if w.doc_index not in with_sidecar:
                # A workloadSelector has labels only: nothing can leave these pods out.
                out.append(Problem(w.location, (
                    f"its pods carry every label {a.workload.kind}/{a.workload.name}'s Sidecar {a.policy_name} selects by "
                    "and differ in no other that lasts across releases, so that Sidecar configures their proxy too (REGISTRY_ONLY, only its imports); give the workloads "
                    f'distinguishing pod labels, or opt that workload out with {ctx.settings.annotation_prefix}/sidecar: '
                    '"false"')))
        for p in a.planned:
            for address in p.entry.addresses:
                claim = next((ctx.serving(a, address, port.number) for port in p.entry.ports), None)
                if claim is not None and not claim.hosts:
                    out.append(Problem(p.entry.origin, (
                        f"{address} is served by {claim.source}, whose host is not known here, so the Sidecar of "
                        f"{a.workload.kind}/{a.workload.name} cannot import it; add it with --sidecar-host NS/HOST")))
    return out



def explain(ctx: Context, access: Access, planned: Planned, dest: str, port: int) -> str:
    return f"{KIND} {access.policy_name}"


def explain_reach(ctx: Context, access: Access, reach: Reach) -> str | None:
    return f"{KIND} {access.policy_name}: imports {', '.join(reach.imports)}" if reach.imports else None

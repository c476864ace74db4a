"""Stage (explain only): for every workload, what it may reach, who declared it, and the
layer each output kind adds for it: its external destinations, and what it reaches in the
cluster. Text comes from the kinds themselves (``explain``, ``explain_reach``), so a new
kind shows up here without a change to this module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from post_renderer.access import Access, Context
from post_renderer.kinds import KINDS, Kind
from post_renderer.model import Workload
from post_renderer.synth import Generated

if TYPE_CHECKING:
    from post_renderer.destpolicy import Policy


class Destination(NamedTuple):
    """One host or address and port a workload may reach, and why."""

    destination: str
    port: int
    protocol: str
    declared_in: str
    served_by: str | None  # the ServiceEntry (or allowlist) that lets the mesh route it
    allowed_by: str | None  # the NetworkPolicy or CiliumNetworkPolicy that lets the packets out
    approved: bool | None = None  # by the destination policy; None without one
    layers: tuple[str, ...] = ()  # every generated object that enforces it, and what each opens


class InCluster(NamedTuple):
    """One thing in the cluster a workload may reach (``Context.reach``), and who asked."""

    what: str  # "cluster DNS", "Service web", "Kubernetes API server"
    declared_by: str  # a flag, where it was declared, the chart's RBAC; "every policy"
    layers: tuple[str, ...]  # every generated object that opens it, and what each opens


class WorkloadReport(NamedTuple):
    workload: str  # Kind/name
    namespace: str | None
    policy: str | None  # the generated NetworkPolicy's (or CiliumNetworkPolicy's) name
    status: str  # why it has (no) policy
    destinations: tuple[Destination, ...]
    sidecar: str | None = None  # the generated Istio Sidecar's name
    in_cluster: tuple[InCluster, ...] = ()


def reports(workloads: Sequence[Workload], status: dict[int, str], ctx: Context, generated: Sequence[Generated],
            approval: Policy | None) -> list[WorkloadReport]:
    by_index = {a.workload.doc_index: a for a in ctx.access}
    written = {(g.kind, g.namespace, g.name) for g in generated}
    return [_report(w, status[w.doc_index], by_index.get(w.doc_index), ctx, written, approval) for w in workloads]


def _report(w: Workload, status: str, access: Access | None, ctx: Context, written: set[tuple[str, str | None, str]],
            approval: Policy | None) -> WorkloadReport:
    objects: dict[str, str] = {}  # WorkloadReport field -> the workload's object of that kind
    layered: list[Kind] = []
    for kind in KINDS:
        if kind.REPORT is None:
            if kind.wanted(ctx.settings):
                layered.append(kind)
        elif access is not None and (kind.KIND, access.namespace, access.policy_name) in written:
            objects[kind.REPORT] = access.policy_name
            layered.append(kind)
    # As traffic meets them: the proxy's configuration, then the network.
    layered.sort(key=lambda k: k.LAYER != "mesh")
    rows = []
    # No proxy and no pod policy sees a hostNetwork workload's pods (plan's warning):
    # nothing enforces a row.
    enforcing = [] if w.host_network else layered
    for p in access.planned if access else ():
        entry = p.entry
        for dest in [*entry.hosts, *entry.addresses]:
            for port in entry.ports:
                assert access is not None
                claim = ctx.serving(access, dest, port.number)
                layers = tuple(text for k in enforcing if (text := k.explain(ctx, access, p, dest, port.number)))
                approved = None
                if approval is not None:
                    from post_renderer.destpolicy import Request

                    approved = approval.approves(Request(dest, dest in entry.addresses, (port.number, port.number),
                                                         ctx.scope(access), entry.origin))
                rows.append(Destination(dest, port.number, port.protocol, entry.origin.brief(),
                                        claim.source if claim else None, None if w.host_network else objects.get("policy"),
                                        approved, layers))
    in_cluster = []
    if access is not None:
        for r in ctx.reach(access):
            opened = tuple(text for k in layered if (text := k.explain_reach(ctx, access, r)))
            # What no object of this run opens is not listed (a Sidecar import without
            # --sidecar); a hostNetwork workload's rows are, with nothing enforcing them.
            if opened:
                in_cluster.append(InCluster(r.why, r.by, () if w.host_network else opened))
    return WorkloadReport(f"{w.kind}/{w.name}", w.namespace or ctx.settings.namespace, objects.get("policy"), status,
                          tuple(rows), objects.get("sidecar"), tuple(in_cluster))

"""Reach source: the release's own Services, whose pods every workload of the release may call.

Each Service with a pod selector is reached on its target ports (a NetworkPolicy sees the
packet after the Service's DNAT: the pod's port, not the Service's) in its namespace, and
imported by every Sidecar. With ``--same-namespace``, every pod of the workload's own
namespace on every port instead, as earlier versions did; the Services of other namespaces are still
named one by one. A Service whose pods run with hostNetwork is reached on the nodes instead
(``hostnet``): no pod rule, ``--same-namespace``'s among them, selects those pods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from post_renderer.errors import Problem
from post_renderer.hostnet import HostNetwork, Nodes, Unopened, on_nodes, unnamed_warning
from post_renderer.reach import Reach, Reached, pods
from post_renderer.settings import Settings

if TYPE_CHECKING:
    from post_renderer.access import Access
    from post_renderer.find import Found

NEED = None  # the Services come with the mesh objects (``inmesh``)


def reach(found: Found, access: Sequence[Access], settings: Settings) -> Reached:
    home = found.home
    domain = settings.cluster_domain
    services = sorted(found.inmesh.services, key=lambda s: (s.namespace or home or "", s.name))
    every_pod = Reach("every pod of its namespace", pods("", {}, (), settings), by="--same-namespace")
    # Built once per Service and shared by every workload: the kinds write a rule list that
    # workloads with the same reach share once (a chart of 50 Services and 50 workloads).
    hostnet = HostNetwork(found.inventory.workloads, home)
    warnings: list[Problem] = []
    # (namespace, with its pods, without them, its host-network pods)
    peered: list[tuple[str | None, Reach, Reach, Nodes | None]] = []
    for s in services:
        namespace = s.namespace or home
        # Helm's namespace is not in the stream: the Service's name cannot be written in
        # full, so a Sidecar imports every Service of its own namespace, nothing external.
        imported = f"{namespace}/{s.name}.{namespace}.svc.{domain}" if namespace else f"./*.svc.{domain}"
        what = f"Service {namespace}/{s.name}" if namespace else f"Service {s.name}"
        alone = Reach(what, imports=(imported,), by="the release")
        full = alone if s.selector is None or not s.target_ports else alone._replace(
            peer=pods(namespace or "", s.selector, s.target_ports, settings))
        nodes = hostnet.select(namespace, s.selector, s.target_ports) if full.peer else None
        if nodes is not None:
            full = on_nodes(full, nodes, settings)
            # --same-namespace's every pod leaves host-network pods out just the same.
            alone = on_nodes(alone, nodes._replace(pods_too=False), settings)
            if nodes.unnamed and settings.network_policy != "none":
                warnings.append(unnamed_warning(s.location, what, nodes))
        peered.append((namespace, full, alone, nodes))
    on_hosts = [(full.why, nodes) for _, full, _, nodes in peered if nodes is not None]
    unopened = Unopened(settings)
    # One list per namespace, shared by its workloads (``reach.gather`` merges it once).
    by_scope: dict[str | None, list[Reach]] = {}
    out: dict[int, list[Reach]] = {}
    for a in access:
        scope = a.namespace or home
        if scope not in by_scope:
            if settings.allow_same_namespace:
                # Its own namespace's Services are in that rule already.
                by_scope[scope] = [every_pod, *(alone if namespace == scope else full
                                                for namespace, full, alone, _ in peered)]
            else:
                by_scope[scope] = [full for _, full, _, _ in peered]
        out[a.workload.doc_index] = by_scope[scope]
        for what, nodes in on_hosts:
            unopened.add(a.workload, what, nodes)
    return Reached(out, warnings + unopened.warnings, unopened.notes())

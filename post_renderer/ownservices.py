"""Reach source: the release's own Services, whose pods every workload of the release may call.

Each Service with a pod selector is reached on its target ports (a NetworkPolicy sees the
packet after the Service's DNAT: the pod's port, not the Service's) in its namespace, and
imported by every Sidecar. With ``--same-namespace``, every pod of the workload's own
namespace on every port instead, as earlier versions did; the Services of other namespaces are still
named one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

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
    out: dict[int, list[Reach]] = {}
    notes: list[str] = []
    for a in access:
        scope = a.namespace or home
        mine: list[Reach] = []
        if settings.allow_same_namespace:
            mine.append(Reach("every pod of its namespace (--same-namespace)", pods("", {}, (), settings)))
        for s in services:
            namespace = s.namespace or home
            # Helm's namespace is not in the stream: the Service's name cannot be written in
            # full, so a Sidecar imports every Service of its own namespace, nothing external.
            imported = f"{namespace}/{s.name}.{namespace}.svc.{domain}" if namespace else f"./*.svc.{domain}"
            if s.selector is None or not s.target_ports or (settings.allow_same_namespace and namespace == scope):
                mine.append(Reach(f"Service {s.name} (the release's)", imports=(imported,)))
                continue
            peer = pods(namespace or "", s.selector, s.target_ports, settings)
            mine.append(Reach(f"Service {s.name} (the release's)", peer, (imported,)))
        out[a.workload.doc_index] = mine
    return Reached(out, [], notes)

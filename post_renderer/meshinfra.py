"""Reach source: the mesh's own infrastructure every workload needs besides istiod.

The cluster DNS Service is imported by every Sidecar: a resolver retries a truncated
answer over TCP, and under REGISTRY_ONLY the proxy sends TCP to a Service it does not know
to the BlackHole (UDP is not proxied; the policies reach the DNS pods already). The mesh
Services named with ``--mesh-service`` (a tracing collector, an access-log sink, a CA)
are imported by every Sidecar and reached by every policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from post_renderer.reach import Reach, Reached, pods
from post_renderer.settings import Settings

if TYPE_CHECKING:
    from post_renderer.access import Access
    from post_renderer.find import Found

NEED = None


def reach(found: Found, access: Sequence[Access], settings: Settings) -> Reached:
    domain = settings.cluster_domain
    common: list[Reach] = []
    if settings.dns_service is not None:
        namespace, name = settings.dns_service
        common.append(Reach(f"cluster DNS Service {namespace}/{name}",
                            imports=(f"{namespace}/{name}.{namespace}.svc.{domain}",), by="--dns-service"))
    for s in settings.mesh_services:
        common.append(Reach(f"mesh Service {s.namespace}/{s.name}", pods(s.namespace, s.labels, s.ports, settings),
                            (f"{s.namespace}/{s.name}.{s.namespace}.svc.{domain}",), by="--mesh-service"))
    # One list for all: workloads with the same reach share its rules (``reach.gather``).
    return Reached({a.workload.doc_index: common for a in access}, [], [])

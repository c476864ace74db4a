"""Reach source: in-cluster destinations a workload calls, outside its release's Services.

Every in-cluster host a Sidecar imports for it (``--sidecar-host``, the ``sidecar-hosts``
annotation) gets the matching network peer: the Service's pods on their target ports when
the Service is in the stream, else every pod of the Service's namespace. Without it the
mesh would route the call and the network layer drop it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from post_renderer.inmesh import Service
from post_renderer.reach import Reach, Reached, pods
from post_renderer.settings import Settings

if TYPE_CHECKING:
    from post_renderer.access import Access
    from post_renderer.find import Found

NEED = None  # the Services come with the mesh objects (``inmesh``)


def service_name(host: str, domain: str) -> tuple[str, str] | None:
    """(namespace, Service) a cluster-local DNS name names, ``*`` for any Service of the
    namespace; None for any other name."""
    suffix = f".svc.{domain}"
    if not host.endswith(suffix):
        return None
    parts = host[: -len(suffix)].split(".")
    if len(parts) != 2 or not parts[1] or parts[1] == "*" or not parts[0]:
        return None
    return parts[1], parts[0]


def peer_reach(why: str, namespace: str, service: str, ports: tuple[tuple[str, int | str], ...],
               services: dict[tuple[str, str], Service], settings: Settings) -> Reach:
    """The pods of ``namespace``/``service`` ("*": any), on ``ports`` (empty: every port)
    unless the Service is in the stream, whose selector and target ports say it exactly."""
    known = services.get((namespace, service))
    if known is not None and known.selector is not None and known.target_ports:
        return Reach(why, pods(namespace, known.selector, known.target_ports, settings))
    return Reach(why, pods(namespace, {}, ports, settings))


def reach(found: Found, access: Sequence[Access], settings: Settings) -> Reached:
    home = found.home
    domain = settings.cluster_domain
    services = {(s.namespace or home or "", s.name): s for s in found.inmesh.services}
    out: dict[int, list[Reach]] = {}
    notes: list[str] = []
    for a in access:
        if not a.sidecar:
            continue
        scope = a.namespace or home or ""
        mine: list[Reach] = []
        added = [(h, "--sidecar-host") for h in settings.sidecar_hosts]
        added += [(h.host, f"{settings.annotation_prefix}/sidecar-hosts") for h in a.sidecar_hosts]
        for imported, by in added:
            namespace, _, dns_name = imported.partition("/")
            named = service_name(dns_name, domain)
            if named is None or namespace in ("*", "~"):
                continue  # not a Service of the cluster, or from any namespace: no peer to name
            namespace = scope if namespace == "." else namespace
            if named[0] != namespace:
                continue  # imported from a namespace it does not live in: Istio finds nothing
            mine.append(peer_reach(f"{imported} ({by})", namespace, named[1], (), services, settings))
        out[a.workload.doc_index] = mine
    return Reached(out, [], notes)

"""Istio ServiceEntry: one per declared entry and namespace served, exported to that namespace only.

Which entries get one, under which name, is the plan's (``serving.serve``): destinations a
ServiceEntry in the stream (or on the global allowlist) already serves get no second one;
declarations that disagree on a protocol are refused there (IST0177). This module writes
the ServiceEntries planned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from post_renderer.access import Access, Context
from post_renderer.errors import Problem
from post_renderer.model import EgressEntry
from post_renderer.reach import Reach
from post_renderer.serving import ALLOWLIST_SOURCE, doubled_notes, skipped_notes
from post_renderer.settings import Settings
from post_renderer.synth import (
    SOURCE_ANNOTATION,
    Generated,
    Planned,
    metadata,
    every_address_message,
    tcp_without_addresses,
    through_waypoint,
)
from post_renderer.validate import serviceentry_problems

KIND = "ServiceEntry"
TEMPLATE = "templates/helm-egress-serviceentries.yaml"
SETTINGS = frozenset({"istio_api_version", "mesh", "waypoint"})
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
LAYER: Final = "mesh"
REPORT: Final = None  # one per destination, not per workload
LABEL_SELECTOR = False
NEEDS_MESH = False
check = serviceentry_problems


def wanted(settings: Settings) -> bool:
    return True  # the reason helm-egress exists: every flavour gets them


def covers(access: Access, settings: Settings) -> bool:
    return False


def errors(ctx: Context) -> list[Problem]:
    """The plan refused what Istio would (IST0177); what ambient cannot route is refused here."""
    if ctx.settings.mesh != "ambient":
        return []
    out = []
    seen: set[tuple[str, int | None]] = set()
    for a in ctx.access:
        for p in a.planned:
            wild = [h for h in p.entry.hosts if h.startswith("*.")]
            where = p.entry.origin
            if wild and (where.file or "", where.line) not in seen:
                seen.add((where.file or "", where.line))
                out.append(Problem(where, (
                    f"{', '.join(wild)}: ztunnel and waypoints do not support wildcard hosts (Istio ServiceEntry "
                    "reference, since 1.28), so ambient mode cannot enforce them; declare each host")))
    return out


def waypoint_labels(ctx: Context, namespace: str | None) -> dict[str, str]:
    """The labels that bind a ServiceEntry in ``namespace`` to the egress waypoint."""
    waypoint = ctx.settings.waypoint
    if ctx.settings.mesh != "ambient" or waypoint is None:
        return {}
    labels = {USE_WAYPOINT: waypoint.name}
    if waypoint.namespace is not None and waypoint.namespace != (namespace or ctx.home):
        labels[USE_WAYPOINT_NAMESPACE] = waypoint.namespace
    return labels


def build(ctx: Context) -> list[Generated]:
    out: list[Generated] = []
    for written in ctx.service_entries.written:
        w = written.wanted
        entry, resolution = w.planned.entry, w.planned.resolution
        spec: dict[str, Any] = {"hosts": list(written.hosts)}
        if entry.addresses:
            spec["addresses"] = list(entry.addresses)
        spec["ports"] = [{"number": p.number, "name": p.name, "protocol": p.protocol} for p in entry.ports]
        spec["location"] = "MESH_EXTERNAL"
        spec["resolution"] = resolution.value
        spec["exportTo"] = ["."]
        body = {
            "apiVersion": ctx.settings.istio_api_version,
            "kind": KIND,
            "metadata": metadata(written.name, w.namespace, ctx.release, {SOURCE_ANNOTATION: entry.source},
                                 waypoint_labels(ctx, w.namespace) if through_waypoint(entry) else None),
            "spec": spec,
        }
        out.append(Generated(KIND, written.name, w.namespace, body, entry.origin))
    return out


def warnings(ctx: Context) -> list[Problem]:
    out = []
    for want, claim in ctx.service_entries.skipped:
        if claim.source.startswith(ALLOWLIST_SOURCE):
            out.append(Problem(want.planned.entry.origin, f"already covered by {claim.source}; the declaration "
                                                          "only opens the workload's egress policies"))
    for written in ctx.service_entries.written:
        entry = written.wanted.planned.entry
        for number, protocol in _raw_tcp_ports(entry):
            port, why = every_address_message(number, protocol)
            out.append(Problem(entry.origin, f"{port} on a hostname without addresses: ServiceEntry "
                                             f"{written.name} matches all traffic on that port ({why}); add "
                                             "addresses or use TLS/HTTP"))
    return out


def entry_warnings(entries: Sequence[EgressEntry]) -> list[Problem]:
    """IST0134 for declared entries, before any ServiceEntry exists (check --no-stream)."""
    return [Problem(entry.origin, f"{port} on a hostname without addresses matches all traffic on that port "
                                  f"({why}); add addresses or use TLS/HTTP")
            for entry in entries if entry.hosts for number, protocol in _raw_tcp_ports(entry)
            for port, why in [every_address_message(number, protocol)]]


def _raw_tcp_ports(entry: EgressEntry) -> list[tuple[Any, str]]:
    return tcp_without_addresses({"addresses": list(entry.addresses),
                                  "ports": [{"number": p.number, "protocol": p.protocol} for p in entry.ports]})


def notes(ctx: Context) -> list[str]:
    return skipped_notes(ctx.service_entries) + doubled_notes(ctx.service_entries)


def explain(ctx: Context, access: Access, planned: Planned, dest: str, port: int) -> str | None:
    claim = ctx.serving(access, dest, port)
    if claim is None:
        return None
    if claim.namespace == "*":
        return "ServiceEntry (global allowlist)"
    waypoint = ctx.settings.waypoint
    if waypoint is not None and through_waypoint(planned.entry) and (claim.namespace, claim.name) in ctx.written:
        return f"ServiceEntry {claim.name} (through waypoint {waypoint.namespace or '.'}/{waypoint.name})"
    return f"ServiceEntry {claim.name}"


def explain_reach(ctx: Context, access: Access, reach: Reach) -> None:
    return None  # its hosts are external: what the cluster serves needs no ServiceEntry

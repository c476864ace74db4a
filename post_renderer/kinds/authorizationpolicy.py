"""Istio AuthorizationPolicy (`--mesh ambient`): each hostname admits only the workloads that declared it.

In ambient mode no proxy runs in the pod, and ztunnel ignores REGISTRY_ONLY: hostnames are
held at an egress waypoint instead. Each ServiceEntry for hostnames is bound to the
waypoint (``istio.io/use-waypoint``, see the ServiceEntry kind), and this kind writes one
ALLOW policy per such ServiceEntry, attached to it with ``targetRefs`` (Istio >= 1.24, same
namespace), with one rule per port admitting exactly the service accounts of the workloads
that declared the destination on that port. The per-workload NetworkPolicy lets the pod
reach only DNS, the waypoint (HBONE) and its declared addresses, so the waypoint is the one
way out for a name.

Sources are SPIFFE principals, ``<trust domain>/ns/<namespace>/sa/<service account>``:
understood by every ambient-capable Istio (1.24+), with no cap on how many (the newer
``source.serviceAccounts`` takes at most 16), and Istio matches the trust domain's aliases
itself.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from post_renderer.access import Access, Context
from post_renderer.errors import Location, Problem
from post_renderer.names import dns_subdomain_problem
from post_renderer.reach import Reach
from post_renderer.settings import Settings
from post_renderer.synth import SOURCE_ANNOTATION, Generated, Planned, metadata, through_waypoint
from post_renderer.validate import authorizationpolicy_problems

KIND = "AuthorizationPolicy"
TEMPLATE = "templates/helm-egress-authorizationpolicies.yaml"
API_VERSION = "security.istio.io/v1"
SETTINGS = frozenset({"mesh", "trust_domain"})
LAYER: Final = "mesh"
REPORT: Final = None  # one per ServiceEntry, not per workload
LABEL_SELECTOR = False  # it selects a ServiceEntry, never pods
NEEDS_MESH = True  # the chart's own AuthorizationPolicies add to ours
check = authorizationpolicy_problems


class Grant(NamedTuple):
    """Who may reach one ServiceEntry through the waypoint, port by port."""

    namespace: str | None  # the ServiceEntry's, where the policy must live too
    name: str  # the ServiceEntry's, and the policy's
    ports: dict[int, dict[str, None]]  # port -> principals, in the order first declared
    origin: Location
    sources: dict[str, None]
    ours: bool  # a ServiceEntry this run writes, bound to the waypoint; else the chart's
    bound: bool  # the chart's carries istio.io/use-waypoint


def wanted(settings: Settings) -> bool:
    return settings.mesh == "ambient"


def covers(access: Access, settings: Settings) -> bool:
    return False


def principal(ctx: Context, access: Access) -> str | None:
    namespace = ctx.scope(access)
    if namespace is None:
        return None
    return f"{ctx.settings.trust_domain}/ns/{namespace}/sa/{access.workload.service_account}"


def _through_waypoint(access: Access) -> bool:
    return any(through_waypoint(p.entry) for p in access.planned)


def errors(ctx: Context) -> list[Problem]:
    out = []
    for a in ctx.access:
        if not _through_waypoint(a):
            continue
        w = a.workload
        if ctx.scope(a) is None:
            out.append(Problem(w.location, (
                "ambient mode admits a workload by its service account, whose name includes its namespace, and "
                "neither the workload nor the stream names one; pass --namespace NS")))
        why = dns_subdomain_problem(w.service_account, "service account name")
        if why:
            out.append(Problem(w.location.at("serviceAccountName"), why))
    return out


def grants(ctx: Context) -> dict[tuple[str | None, str], Grant]:
    """Every ServiceEntry of a known namespace that serves a declared hostname, and who
    declared it on which port. The global allowlist's ServiceEntries are the platform's:
    where they live is not in the stream (``warnings``)."""
    written = {(w.wanted.namespace or ctx.home, w.name): w.wanted.namespace for w in ctx.service_entries.written}
    out: dict[tuple[str | None, str], Grant] = {}
    for a in ctx.access:
        who = principal(ctx, a)
        if who is None:
            continue
        for p in a.planned:
            if not through_waypoint(p.entry):
                continue
            for host in p.entry.hosts:
                for port in p.entry.ports:
                    claim = ctx.serving(a, host, port.number)
                    if claim is None or claim.namespace == "*":
                        continue
                    key = (claim.namespace, claim.name)
                    # Ours live where they were written (no namespace: Helm's); the chart's where it put them.
                    grant = out.get(key) or out.setdefault(key, Grant(
                        written.get(key, claim.namespace), claim.name, {}, p.entry.origin, {}, key in written,
                        claim.bound))
                    grant.ports.setdefault(port.number, {})[who] = None
                    grant.sources[p.entry.source] = None
    return out


def build(ctx: Context) -> list[Generated]:
    out = []
    for grant in grants(ctx).values():
        rules = [{"from": [{"source": {"principals": sorted(principals)}}],
                  "to": [{"operation": {"ports": [str(port)]}}]}
                 for port, principals in sorted(grant.ports.items())]
        body: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": metadata(grant.name, grant.namespace, ctx.release,
                                 {SOURCE_ANNOTATION: ",".join(grant.sources)}),
            "spec": {
                "targetRefs": [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": grant.name}],
                "action": "ALLOW",
                "rules": rules,
            },
        }
        out.append(Generated(KIND, grant.name, grant.namespace, body, grant.origin))
    return out


def warnings(ctx: Context) -> list[Problem]:
    out = []
    by_account: dict[tuple[str | None, str], Access] = {}
    for a in ctx.access:
        if not _through_waypoint(a):
            continue
        key = (ctx.scope(a), a.workload.service_account)
        first = by_account.setdefault(key, a)
        if first is not a:
            out.append(Problem(a.workload.location, (
                f"it shares service account {a.workload.service_account} with {first.workload.kind}/"
                f"{first.workload.name}; ambient policies admit service accounts, so each may reach the hosts "
                "either declared; give each workload its own serviceAccountName")))
    for a in ctx.access:
        for p in a.planned:
            for host in p.entry.hosts if through_waypoint(p.entry) else ():
                claim = next((c for port in p.entry.ports if (c := ctx.serving(a, host, port.number))), None)
                if claim is not None and claim.namespace == "*":
                    out.append(Problem(p.entry.origin, (
                        f"{host} is served by {claim.source}, whose namespace the release does not know: no "
                        "AuthorizationPolicy of this release can hold it to the workloads that declared it")))
    found = grants(ctx)
    for grant in found.values():
        if not grant.ours and not grant.bound:
            out.append(Problem(grant.origin, (
                f"the chart's ServiceEntry {grant.name} serves it but is not bound to a waypoint (no "
                "istio.io/use-waypoint label): its traffic never reaches the waypoint, and the network policy lets "
                "no hostname out directly, so the host is unreachable; label that ServiceEntry")))
        for chart in ctx.inmesh.authorizations:
            if (chart.namespace or ctx.home) == (grant.namespace or ctx.home) and ("ServiceEntry", grant.name) in \
                    chart.targets and chart.action == "ALLOW":
                out.append(Problem(chart.location, (
                    f"AuthorizationPolicy {chart.name} (kept as it is) is attached to ServiceEntry {grant.name} too: "
                    "ALLOW policies add up, so whoever it admits may also reach that host")))
    if found:
        out.append(Problem(next(iter(found.values())).origin, (
            "ambient: ztunnel and waypoints read every ServiceEntry's exportTo as '*' (Istio >= 1.28), so "
            f"{', '.join(g.name for g in found.values())} and their ALLOW policies apply mesh-wide: calls from other "
            "namespaces to the same hosts are denied unless those namespaces have their own ServiceEntry for them")))
    return out


def notes(ctx: Context) -> list[str]:
    return []


def explain(ctx: Context, access: Access, planned: Planned, dest: str, port: int) -> str | None:
    if dest not in planned.entry.hosts or not through_waypoint(planned.entry):
        return None
    claim = ctx.serving(access, dest, port)
    who = principal(ctx, access)
    if claim is None or claim.namespace == "*" or who is None:
        return None
    return f"{KIND} {claim.name}: admits {who} on port {port}"


def explain_reach(ctx: Context, access: Access, reach: Reach) -> None:
    return None  # it admits workloads to external hosts at the waypoint, nothing in the cluster

"""Cilium CiliumNetworkPolicy (`--network-policy cilium`): hostnames enforced by name.

One policy per workload, selecting its pods by the labels they keep across releases. Hostnames become
`toFQDNs`: Cilium's DNS proxy learns which IPs a selected name resolved to and opens
exactly those. That only works when DNS itself goes through the proxy, so the rule to the
cluster DNS carries `rules.dns`. Istio's `*.example.com` (any depth below example.com, never
example.com itself) is `**.example.com` from Cilium 1.19; older Cilium only has `*`, one
label, so `--cilium-wildcard-depth N` writes `*.example.com`, `*.*.example.com` ... N deep.
"""

from __future__ import annotations

from typing import Any, Final

from post_renderer.access import Access, Context
from post_renderer.addresses import IPNetwork, network
from post_renderer.errors import Problem
from post_renderer.model import Workload, per_release
from post_renderer.reach import Reach, cidrs_text, peer_text, ports_text
from post_renderer.settings import PeerSelector, PortSpec, Settings
from post_renderer.synth import (
    cidr_block,
    Generated,
    Planned,
    SOURCE_ANNOTATION,
    WORKLOAD_ANNOTATION,
    by_name,
    metadata,
)
from post_renderer.validate import ciliumnetworkpolicy_problems

KIND = "CiliumNetworkPolicy"
TEMPLATE = "templates/helm-egress-ciliumnetworkpolicies.yaml"
API_VERSION = "cilium.io/v2"
NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace"
MAX_PORTS = 40  # per toPorts item (CRD maxItems)
# Which DNS queries the proxy answers. Every name: in-cluster Service names, the search-path
# expansions a resolver walks (`api.stripe.com.<ns>.svc.cluster.local.`, node search
# domains that are not in the stream) and names the app resolves but never connects to.
# Narrowing it does not narrow egress — `toFQDNs` does that — and Cilium answers a refused
# query with REFUSED, which stops musl's search-path walk (see README).
DNS_QUERIES = [{"matchPattern": "*"}]
SETTINGS = frozenset({"network_policy", "namespace", "dns", "dns_peers", "istiod",
                      "cilium_wildcard_depth", "mesh", "waypoint"})
LAYER: Final = "network"
REPORT: Final = "policy"
LABEL_SELECTOR = True
NEEDS_MESH = True  # the chart's own Cilium policies widen what its selection may reach
check = ciliumnetworkpolicy_problems


def wanted(settings: Settings) -> bool:
    return settings.network_policy == "cilium"


def covers(access: Access, settings: Settings) -> bool:
    return wanted(settings)


def build(ctx: Context) -> list[Generated]:
    return [_policy(a, ctx) for a in ctx.access]


def fqdn_selectors(host: str, depth: int) -> list[dict[str, str]]:
    """Cilium selectors matching exactly what Istio's ``host`` matches (to ``depth`` labels
    below a wildcard's domain when ``depth`` > 0, any depth when 0)."""
    if not host.startswith("*."):
        return [{"matchName": host}]
    if depth == 0:
        return [{"matchPattern": "**" + host[1:]}]
    return [{"matchPattern": "*." * level + host[2:]} for level in range(1, depth + 1)]


def _policy(access: Access, ctx: Context) -> Generated:
    settings = ctx.settings
    workload = access.workload
    ambient = settings.mesh == "ambient"
    rules: list[dict[str, Any]] = []
    for r in ctx.reach(access):
        if r.peer is not None:
            # In ambient mode the pod's names go to the waypoint: no toFQDNs, so no DNS
            # proxying is needed.
            rules.append(_to_pods(_in_scope(r.peer, access, ctx), dns=r.dns and not ambient))
        if r.entities:
            # The API server's identity and the nodes' (where host-network pods listen) are
            # entities: CIDR rules never select them (cilium/cilium#14724, #20550), whatever
            # their addresses. The nodes come with their ports only (``hostnet``).
            rules.append(_ported({"toEntities": list(r.entities)}, r.ports))
        elif r.cidrs:
            rules.append(_ported({"toCIDRSet": [cidr_block(net) for net in r.cidrs]}, r.ports))

    # toFQDNs may not share a rule with other L3 selectors: names and CIDRs get their own
    # rules. Destinations with the same ports share one, different ports never do.
    by_ports: dict[tuple[tuple[int, str], ...], list[dict[str, str]]] = {}
    cidrs: dict[tuple[IPNetwork, ...], set[tuple[int, str]]] = {}
    for entry in ctx.targets(access):
        names: dict[str, set[tuple[int, str]]] = {}
        by_port: dict[tuple[int, str], dict[IPNetwork, None]] = {}
        for t in entry:
            if t.address:
                by_port.setdefault((t.port, t.transport), {})[network(t.dest)] = None
            else:
                names.setdefault(t.dest, set()).add((t.port, t.transport))
        for host, ports in names.items():
            selectors = by_ports.setdefault(tuple(sorted(ports)), [])
            for selector in fqdn_selectors(host, settings.cilium_wildcard_depth or 0):
                if selector not in selectors:
                    selectors.append(selector)
        for port, ranges in by_port.items():
            cidrs.setdefault(tuple(ranges), set()).add(port)
    for fqdn_ports, selectors in by_ports.items():
        rules.append({"toFQDNs": selectors, "toPorts": _to_ports(fqdn_ports)})
    for nets, cidr_ports in cidrs.items():
        rules.append({"toCIDRSet": [cidr_block(net) for net in nets],
                      "toPorts": _to_ports(tuple(sorted(cidr_ports)))})

    annotations = {
        WORKLOAD_ANNOTATION: f"{workload.kind}/{workload.name}",
        SOURCE_ANNOTATION: ",".join(access.sources) if access.sources else "defaults",
    }
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata(access.policy_name, access.namespace, ctx.release, annotations),
        "spec": {
            "endpointSelector": _endpoint_selector(access, ctx),
            "egress": rules,
        },
    }
    return Generated(KIND, access.policy_name, access.namespace, body, workload.location)


def _in_scope(peer: PeerSelector, access: Access, ctx: Context) -> PeerSelector:
    return peer._replace(namespace=peer.namespace or ctx.scope(access) or "")


def explain_reach(ctx: Context, access: Access, reach: Reach) -> str | None:
    opened = []
    if reach.peer is not None:
        proxied = " with rules.dns (toFQDNs learns from the answers)" \
            if reach.dns and ctx.settings.mesh != "ambient" else ""
        opened.append(f"toEndpoints {peer_text(_in_scope(reach.peer, access, ctx))}{proxied}")
    if reach.entities:
        opened.append(f"toEntities {', '.join(reach.entities)} {ports_text(reach.ports)}")
    elif reach.cidrs:
        opened.append(f"toCIDRSet {cidrs_text(reach.cidrs)} {ports_text(reach.ports)}")
    return f"{KIND} {access.policy_name}: {'; '.join(opened)}" if opened else None


def _endpoint_selector(access: Access, ctx: Context) -> dict[str, Any]:
    """The workload's stable labels (``Context.label_selector``: never version or chart, so
    a rollout's old pods stay selected); where another workload's pods carry all of them
    and more, a key only those carry must be absent, or this policy would select them too."""
    selection = ctx.label_selector(access)
    absent: set[str] = set()
    for other in selection.still:
        extra = _extra_keys(other, access.workload)
        if extra:  # none: refused (errors) or warned (warnings)
            absent.add(extra[0])
    selector: dict[str, Any] = {"matchLabels": selection.labels}
    if absent:
        selector["matchExpressions"] = [{"key": key, "operator": "DoesNotExist"} for key in sorted(absent)]
    return selector


def _extra_keys(other: Workload, mine: Workload) -> list[str]:
    """Label keys ``other``'s pods carry and ``mine``'s never do; stable ones first, whose
    presence no release changes."""
    return sorted(set(other.pod_labels) - set(mine.pod_labels), key=lambda k: (per_release(k), k))


def _twins(access: Access, ctx: Context) -> list[Workload]:
    """Workloads whose pods its selector takes in and no label tells apart: theirs carry
    every stable label of its pods and no key its own do not."""
    return [w for w in ctx.label_selector(access).still if not _extra_keys(w, access.workload)]


def errors(ctx: Context) -> list[Problem]:
    served = {a.workload.doc_index for a in ctx.access}
    out = []
    for a in ctx.access:
        twins = [w for w in _twins(a, ctx) if w.doc_index in served]
        if twins:
            other = twins[0]
            out.append(Problem(a.workload.location, (
                f"its pods and those of {other.kind}/{other.name} differ in no label that lasts across releases "
                "(version and chart labels change with each), so no CiliumNetworkPolicy can select one without the "
                "other; give the workloads distinguishing pod labels")))
    return out


def notes(ctx: Context) -> list[str]:
    out = []
    for chart in ctx.inmesh.cilium:
        for a in ctx.access:
            if chart.selects(a.workload.pod_labels, ctx.scope(a), ctx.home):
                out.append(f"{chart.location.render()}: {chart.kind} {chart.name} (kept as it is) also selects "
                           f"{a.workload.kind}/{a.workload.name}; Cilium allows the union of both policies' egress")
    return out


def _to_pods(peer: PeerSelector, *, dns: bool = False) -> dict[str, Any]:
    # No namespace (a waypoint in a workload's namespace the stream does not name): a
    # namespaced policy's endpoint selectors stay in its own.
    labels = {NAMESPACE_LABEL: peer.namespace} if peer.namespace else {}
    labels.update({f"k8s:{k}": v for k, v in peer.labels.items()})
    rule: dict[str, Any] = {"toEndpoints": [{"matchLabels": labels}]}
    if not peer.ports:  # every port
        return rule
    to_ports: dict[str, Any] = {"ports": [{"port": str(port), "protocol": proto} for proto, port in peer.ports]}
    if dns:
        # Without an L7 DNS rule the proxy never sees a query, never learns an IP, and
        # every toFQDNs rule allows nothing.
        to_ports["rules"] = {"dns": list(DNS_QUERIES)}
    rule["toPorts"] = [to_ports]
    return rule


def _ported(rule: dict[str, Any], ports: tuple[PortSpec, ...]) -> dict[str, Any]:
    if ports:  # none: every port
        rule["toPorts"] = [{"ports": [{"port": str(port), "protocol": proto} for proto, port in ports]}]
    return rule


def _to_ports(ports: tuple[tuple[int, str], ...]) -> list[dict[str, Any]]:
    items = [{"port": str(number), "protocol": proto} for number, proto in ports]
    return [{"ports": items[i : i + MAX_PORTS]} for i in range(0, len(items), MAX_PORTS)]


def warnings(ctx: Context) -> list[Problem]:
    """Pods of a workload we write nothing for that a policy selects anyway; what the
    per-depth ladder for older Cilium cannot match, each once per workload; where `**.`
    is written without saying for which Cilium."""
    served = {a.workload.doc_index for a in ctx.access}
    out = []
    for a in ctx.access:
        for w in _twins(a, ctx):
            if w.doc_index not in served:
                out.append(Problem(w.location, (
                    f"its pods differ from {a.workload.kind}/{a.workload.name}'s in no label that lasts across releases "
                    f"(version and chart labels change with each), so that workload's {KIND} {a.policy_name} selects "
                    "them too: they get only its egress; give the workloads distinguishing pod labels")))
    out += _double_star_warnings(ctx)
    depth = ctx.settings.cilium_wildcard_depth
    if not depth:
        return out
    for a in ctx.access:
        wild = [h for p in a.planned if by_name(p) for h in p.entry.hosts if h.startswith("*.")]
        if wild:
            deeper = ".".join(["x"] * (depth + 1))
            out.append(Problem(a.workload.location, (
                f"--cilium-wildcard-depth {depth}: {', '.join(dict.fromkeys(wild))} match(es) names at most "
                f"{depth} label(s) deep in the CiliumNetworkPolicy; deeper names (e.g. {deeper}{wild[0][1:]}) are "
                "blocked although Istio would route them; Cilium >= 1.19 matches any depth (depth 0)")))
    return out


# Cilium <= 1.18 accepts `**.` and reads it as `*.`, one label; multi-level from 1.19
# (cilium/cilium#43420, flagged in the 1.19 upgrade notes).
DOUBLE_STAR = ("Cilium >= 1.19 matches it at any depth below, but Cilium <= 1.18 accepts it and reads ** as one label "
               "(cilium/cilium#43420), so deeper names")


def _double_star_warnings(ctx: Context) -> list[Problem]:
    """Wherever a `**.` pattern is written, ours or the chart's, unless the run said which
    Cilium it is for (--cilium-wildcard-depth)."""
    depth = ctx.settings.cilium_wildcard_depth
    out = []
    if depth is None and ctx.settings.mesh != "ambient":
        for a in ctx.access:
            wild = [h for p in a.planned if by_name(p) for h in p.entry.hosts if h.startswith("*.")]
            if wild:
                patterns = ", ".join(dict.fromkeys("**" + h[1:] for h in wild))
                out.append(Problem(a.workload.location, (
                    f"its {KIND} {a.policy_name} writes matchPattern {patterns}: {DOUBLE_STAR} (e.g. a.b{wild[0][1:]}) "
                    "are silently blocked although Istio routes them; pass --cilium-wildcard-depth 0 for Cilium >= 1.19, "
                    "or N for the ladder *.x ... N labels deep on older Cilium")))
    if depth != 0:
        for where, pattern in ctx.inmesh.double_star:
            out.append(Problem(where, (
                f"matchPattern {pattern}: {DOUBLE_STAR} are silently dropped; on older Cilium write the ladder "
                "(*.x, *.*.x, ...), or pass --cilium-wildcard-depth 0 if the cluster runs Cilium >= 1.19")))
    return out


def explain(ctx: Context, access: Access, planned: Planned, dest: str, port: int) -> str:
    depth = ctx.settings.cilium_wildcard_depth or 0

    def opens_name(host: str, number: int) -> str:
        selectors = fqdn_selectors(host, depth)
        return "toFQDNs " + ", ".join(next(iter(sel.values())) for sel in selectors) + f" on port {number}"

    return f"{KIND} {access.policy_name}: {ctx.network_reach(access, planned, dest, port, opens_name)}"

"""Kubernetes NetworkPolicy (`--network-policy kubernetes`): one egress policy per workload.

It can name pods and IP blocks, never hosts: for a hostname the entry's ports open to the
hostname CIDRs (by default the whole internet, metadata and link-local excepted).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from post_renderer.access import Access, Context, selected_too
from post_renderer.addresses import IPNetwork, network
from post_renderer.dialled import Target
from post_renderer.errors import Problem
from post_renderer.inmesh import selector_matcher
from post_renderer.model import Workload, per_release
from post_renderer.reach import Reach, cidrs_text, peer_text, ports_text, unaddressed
from post_renderer.settings import PeerSelector, PortSpec, Settings
from post_renderer.synth import (
    cidr_block,
    Generated,
    Planned,
    SOURCE_ANNOTATION,
    WORKLOAD_ANNOTATION,
    hostnames_by_name,
    metadata,
    registry_only_message,
    waypoint_namespace,
)
from post_renderer.validate import networkpolicy_problems

KIND = "NetworkPolicy"
TEMPLATE = "templates/helm-egress-networkpolicies.yaml"
SETTINGS = frozenset({"network_policy", "namespace", "dns", "dns_peers", "istiod",
                      "hostname_cidrs", "hostname_excepts", "mesh", "waypoint"})
LAYER: Final = "network"
REPORT: Final = "policy"
LABEL_SELECTOR = False  # its own pod selector, narrowed where it takes in other pods
NEEDS_MESH = True  # the release's Services: their pods are reached on their target ports
check = networkpolicy_problems


def wanted(settings: Settings) -> bool:
    return settings.network_policy == "kubernetes"


def covers(access: Access, settings: Settings) -> bool:
    return wanted(settings)


def errors(ctx: Context) -> list[Problem]:
    return []


def notes(ctx: Context) -> list[str]:
    return []


Shared = dict[tuple[object, ...], list[dict[str, Any]]]


def build(ctx: Context) -> list[Generated]:
    shared: Shared = {}
    return [network_policy(a, ctx, shared) for a in ctx.access]


def network_policy(access: Access, ctx: Context, shared: Shared) -> Generated:
    """``shared``: egress rules already built, by the entries they open (and the waypoint's
    namespace, what they reach in the cluster, and what they dial); workloads with the same
    entries (every one, with only values) share one list, written once (``emit``)."""
    settings = ctx.settings
    workload = access.workload
    # What every policy reaches follows from the settings, the entries (a waypoint) and
    # the waypoint's namespace: the key holds those.
    waypoint_ns = waypoint_namespace(settings, ctx.scope(access))
    # Sources share one Reach among workloads: the same objects give the same rules.
    key = (access.planned, waypoint_ns, tuple(map(id, access.reach)), ctx.dialled_key(access))
    rules = shared.get(key)
    if rules is None:
        rules = shared[key] = _egress_rules(ctx.targets(access), settings, ctx.reach(access))
    annotations = {
        WORKLOAD_ANNOTATION: f"{workload.kind}/{workload.name}",
        SOURCE_ANNOTATION: ",".join(access.sources) if access.sources else "defaults",
    }
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": KIND,
        "metadata": metadata(access.policy_name, access.namespace, ctx.release, annotations),
        "spec": {
            "podSelector": _pod_selector(access, ctx),
            "policyTypes": ["Egress"],
            "egress": rules,
        },
    }
    return Generated(KIND, access.policy_name, access.namespace, body, workload.location)


def _egress_rules(targets: Sequence[Sequence[Target]], settings: Settings,
                  reach: tuple[Reach, ...]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for r in reach:
        if r.peer is not None:
            rules.append(_peer_rule(r.peer))
        if r.cidrs:
            rules.append(_block_rule(r.cidrs, r.ports))
    rules.extend(_destination_rules(targets, settings))
    return rules


def _taken_in(access: Access, ctx: Context) -> list[Workload]:
    """Other workloads of its namespace (ours, hooks, ignored ones) whose pods its own pod
    selector selects too."""
    mine = access.workload
    scope = ctx.scope(access)
    matches = selector_matcher(mine.pod_selector)
    labels = mine.pod_selector.get("matchLabels")
    # Only workloads with all its matchLabels can match; the matcher judges the rest.
    candidates = ctx.carrying_all(labels if isinstance(labels, dict) else {})
    return [w for w in candidates if w.doc_index != mine.doc_index
            and (w.namespace or ctx.settings.namespace or ctx.home) == scope
            and matches(w.pod_labels)]


def _pod_selector(access: Access, ctx: Context) -> dict[str, Any]:
    """Its own pod selector, narrowed where that selects another workload's pods too:
    a label only those pods carry must be absent, or a label value of its own present."""
    selector = access.workload.pod_selector
    own = access.workload.pod_labels
    labels = dict(selector.get("matchLabels") or {})
    expressions = list(selector.get("matchExpressions") or [])
    absent: set[str] = set()
    for other in _taken_in(access, ctx):
        extra = sorted(set(other.pod_labels) - set(own))
        # A label a release changes tells them apart only until the next release.
        differ = sorted((k for k in own if other.pod_labels.get(k) != own[k]), key=lambda k: (per_release(k), k))
        if extra:
            absent.add(extra[0])
        elif differ:
            labels[differ[0]] = own[differ[0]]
        # identical pod labels: nothing tells them apart (warnings)
    if not absent and labels == (selector.get("matchLabels") or {}):
        return selector
    out: dict[str, Any] = {}
    if labels:
        out["matchLabels"] = dict(sorted(labels.items()))
    expressions += [{"key": key, "operator": "DoesNotExist"} for key in sorted(absent)]
    if expressions:
        out["matchExpressions"] = expressions
    return out


def warnings(ctx: Context) -> list[Problem]:
    """Pods its selector cannot leave out; hostnames it opens to any host."""
    served = {a.workload.doc_index for a in ctx.access}
    out = []
    for a in ctx.access:
        for w in _taken_in(a, ctx):
            if w.pod_labels == a.workload.pod_labels:
                out.append(selected_too(w, a, KIND, "each of the two gets the union of both policies' egress"
                                        if w.doc_index in served else "they get only its egress"))
    if ctx.settings.mesh == "ambient" or not any(c.prefixlen == 0 for c in ctx.settings.hostname_cidrs):
        # The waypoint holds names in ambient mode; --hostname-cidr narrowed them to known
        # ranges (a proxy, a NAT).
        return out
    for a in ctx.access:
        hosts = hostnames_by_name(a.planned)
        # The ports opened to the hostname CIDRs: where the proxy dials a name (a serving
        # ServiceEntry may send it to another port, or to addresses only).
        ports = sorted({t.port for entry in ctx.targets(a) for t in entry if not t.address})
        if hosts and ports:
            out.append(Problem(a.workload.location, registry_only_message(
                hosts, f"its NetworkPolicy opens port(s) {', '.join(map(str, ports))} to any host")))
    return out


def explain(ctx: Context, access: Access, planned: Planned, dest: str, port: int) -> str:
    cidrs = ", ".join(str(c) for c in ctx.settings.hostname_cidrs)

    def opens_name(host: str, number: int) -> str:
        return f"any host on port {number} ({cidrs}; hostnames cannot be named in a NetworkPolicy)"

    return f"{KIND} {access.policy_name}: {ctx.network_reach(access, planned, dest, port, opens_name)}"


def explain_reach(ctx: Context, access: Access, reach: Reach) -> str | None:
    opened = []
    if reach.peer is not None:
        opened.append(peer_text(reach.peer))
    if reach.cidrs:
        opened.append(f"ipBlock {cidrs_text(reach.cidrs)} {ports_text(reach.ports)}")
    elif reach.entities:
        # What Cilium opens by identity a NetworkPolicy can open only by address: the gap
        # check warns of, said where the reader looks.
        opened.append(unaddressed(reach.entities))
    return f"{KIND} {access.policy_name}: {'; '.join(opened)}" if opened else None


def _peer_rule(peer: PeerSelector) -> dict[str, Any]:
    # Namespace and pod selector in ONE peer: both must match. As two peers they would
    # open the port to every pod of the namespace and to any pod anywhere. No namespace
    # (a waypoint in a workload's namespace that the stream does not name): the policy's own.
    selected: dict[str, Any] = {"podSelector": {"matchLabels": dict(peer.labels)}}
    if peer.namespace:
        selected = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer.namespace}}, **selected}
    rule: dict[str, Any] = {"to": [selected]}
    if peer.ports:  # none: every port
        rule["ports"] = [{"protocol": proto, "port": port} for proto, port in peer.ports]
    return rule


def _block_rule(cidrs: tuple[IPNetwork, ...], ports: tuple[PortSpec, ...]) -> dict[str, Any]:
    rule: dict[str, Any] = {"to": [{"ipBlock": cidr_block(net)} for net in cidrs]}
    if ports:
        rule["ports"] = [{"protocol": proto, "port": port} for proto, port in ports]
    return rule


def _destination_rules(targets: Sequence[Sequence[Target]], settings: Settings) -> list[dict[str, Any]]:
    # Ports that reach the same ranges share one rule; different ranges never do, or one
    # entry's ports (or one endpoint's) would open on another's addresses.
    grouped: dict[tuple[IPNetwork, ...], set[tuple[int, str]]] = {}
    for entry in targets:
        by_port: dict[tuple[int, str], dict[IPNetwork, None]] = {}
        for t in entry:
            ranges = by_port.setdefault((t.port, t.transport), {})
            # A name cannot be written in a NetworkPolicy: the hostname CIDRs stand for it.
            ranges.update(dict.fromkeys((network(t.dest),) if t.address else settings.hostname_cidrs))
        for port, ranges in by_port.items():
            if ranges:  # an empty `to` would open every destination
                grouped.setdefault(tuple(ranges), set()).add(port)
    rules = []
    for nets, ports in grouped.items():
        peers = [{"ipBlock": cidr_block(net, settings.hostname_excepts if net in settings.hostname_cidrs else ())}
                 for net in nets]
        rules.append(
            {
                "to": peers,
                "ports": [{"protocol": proto, "port": number} for number, proto in sorted(ports)],
            }
        )
    return rules

"""Synthesize ServiceEntry and egress NetworkPolicy documents from entries and workloads.

Builds plain data in the key order Kubernetes users read; ``emit`` writes it out.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from post_renderer.errors import Location, Problems
from post_renderer.model import HTTP_FAMILY, TLS_FAMILY, EgressEntry, Workload
from post_renderer.names import dns_label
from post_renderer.settings import IPNetwork, PeerSelector, Settings, excepts_for
from post_renderer.workloads import GENERATED_BY

SOURCE_ANNOTATION = "helm-egress.io/source"
WORKLOAD_ANNOTATION = "helm-egress.io/workload"


@dataclass(frozen=True)
class Generated:
    kind: str
    name: str
    namespace: str | None
    body: dict[str, Any]
    origin: Location


@dataclass(frozen=True)
class Resolution:
    value: str
    reason: str


def choose_resolution(entry: EgressEntry, problems: Problems) -> Resolution | None:
    """The resolution Istio accepts for ``entry``: the user's when valid, else derived."""
    wildcard = any(h.startswith("*.") for h in entry.hosts)
    cidr = any("/" in a for a in entry.addresses)
    many_hosts_raw = len(entry.hosts) > 1 and any(
        p.protocol not in HTTP_FAMILY and p.protocol not in TLS_FAMILY for p in entry.ports
    )
    where = entry.resolution_origin or entry.origin
    asked = entry.resolution
    if asked is not None:
        why: str | None = None
        if asked in ("DNS", "DNS_ROUND_ROBIN") and wildcard:
            why = "wildcard hosts cannot be resolved by DNS; use NONE (or omit resolution)"
        elif asked in ("DNS", "DNS_ROUND_ROBIN") and not entry.hosts:
            why = "an entry with only addresses has no host to resolve; use NONE (or omit resolution)"
        elif cidr and asked not in ("NONE", "STATIC"):
            why = "CIDR addresses are only allowed with NONE or STATIC"
        elif asked != "NONE" and many_hosts_raw:
            why = "several hosts with a port that is neither HTTP nor TLS need NONE"
        elif asked == "DYNAMIC_DNS":
            if not entry.hosts or not all(h.startswith("*.") for h in entry.hosts):
                why = "DYNAMIC_DNS needs every host to be a wildcard"
            elif entry.addresses:
                why = "DYNAMIC_DNS does not allow addresses"
            elif any(p.protocol not in ("HTTP", "HTTPS", "TLS", "GRPC", "HTTP2") for p in entry.ports):
                why = "DYNAMIC_DNS only allows HTTP, HTTPS, TLS, GRPC and HTTP2 ports"
        if why:
            problems.add(where, f"resolution {asked} is not valid here: {why}")
            return None
        return Resolution(asked, "as declared")
    if wildcard:
        return Resolution("NONE", "wildcard hosts cannot use DNS resolution")
    if not entry.hosts:
        return Resolution("NONE", "address-only entry")
    if cidr:
        return Resolution("NONE", "CIDR addresses need NONE")
    if many_hosts_raw:
        return Resolution("NONE", "several hosts with a non-HTTP, non-TLS port need NONE")
    return Resolution("DNS", "exact hostnames")


@dataclass(frozen=True)
class Planned:
    """An entry with the resolution its ServiceEntry will carry."""

    entry: EgressEntry
    resolution: Resolution


def plan(entries: Sequence[EgressEntry], problems: Problems) -> list[Planned]:
    out = []
    for entry in entries:
        resolution = choose_resolution(entry, problems)
        if resolution is not None:
            out.append(Planned(entry, resolution))
    return out


@dataclass(frozen=True)
class Wanted:
    """A ServiceEntry asked for: an entry, the namespace it serves, its preferred name."""

    planned: Planned
    namespace: str | None
    name: str


@dataclass(frozen=True)
class Claim:
    """A host (or address) and port some ServiceEntry already serves, and where."""

    dest: str
    port: int
    protocol: str  # upper-case; "" when unset
    scope: frozenset[str | None] | None  # namespaces it is exported to; None: all
    source: str
    name: str

    def reaches(self, namespace: str | None) -> bool:
        return self.scope is None or namespace in self.scope

    def overlaps(self, other: Claim) -> bool:
        return self.scope is None or other.scope is None or bool(self.scope & other.scope)

    def covers(self, dest: str, port: int, namespace: str | None) -> bool:
        # Istio matches `*.example.com` against any name below example.com.
        host_ok = dest == self.dest or (self.dest.startswith("*.") and dest.endswith(self.dest[1:]))
        return host_ok and port == self.port and self.reaches(namespace)


def destination_key(dest: str) -> str:
    """Hosts as they are; addresses canonical, so `10.0.0.5` and `10.0.0.5/32` are one."""
    try:
        net = ipaddress.ip_network(dest, strict=False)
    except ValueError:
        return dest
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def register(claims: list[Claim], new: list[Claim], where: Location, problems: Problems) -> bool:
    """Add ``new`` unless one disagrees on a protocol with an overlapping claim (IST0177)."""
    for c in new:
        for old in claims:
            if old.dest == c.dest and old.port == c.port and old.protocol != c.protocol and old.overlaps(c):
                problems.add(
                    where,
                    f"{c.dest}:{c.port} is declared as {c.protocol or 'unset'} here but as "
                    f"{old.protocol or 'unset'} by {old.source}; Istio allows one protocol per host and "
                    "port in a namespace scope (IST0177)",
                )
                return False
    claims.extend(new)
    return True


def service_entries(
    wanted: Sequence[Wanted],
    *,
    claims: list[Claim],
    reserved: set[tuple[str | None, str]],
    home: str | None,
    release: str | None,
    settings: Settings,
    problems: Problems,
    skipped: list[tuple[Wanted, Claim]],
) -> list[Generated]:
    """One ServiceEntry per wanted entry, minus those an existing one already covers.

    ``claims`` holds what ServiceEntries already in the stream, or cluster-wide ones on the
    global allowlist, serve; it grows with every ServiceEntry written here. ``home`` is
    the namespace documents without one land in, when it can be told. Entries left out
    because a claim covers them are appended to ``skipped``. Declarations
    that disagree on a protocol are refused; one that is covered produces no object.
    """
    out: list[Generated] = []
    taken = set(reserved)  # (namespace, name) of ServiceEntries already in the stream
    for w in wanted:
        entry, resolution = w.planned.entry, w.planned.resolution
        pairs = [(destination_key(d), port) for d in (entry.hosts or entry.addresses) for port in entry.ports]
        scope = w.namespace or home  # an unnamed namespace is the release's
        name = w.name
        if (scope, name) in taken:
            # Two objects of one kind and name in a namespace: Helm would refuse the release.
            name = dns_label(w.name, hashlib.sha256(entry.source.encode()).hexdigest()[:6])
        mine = [Claim(d, port.number, port.protocol, frozenset({scope}), f"ServiceEntry {name} ({entry.source})", name)
                for d, port in pairs]
        covering = [next((c for c in claims if c.covers(d, port.number, scope)), None) for d, port in pairs]
        if pairs and all(c is not None and c.protocol == port.protocol for c, (_, port) in zip(covering, pairs)):
            first = covering[0]
            assert first is not None
            skipped.append((w, first))
            continue
        if not register(claims, mine, entry.origin, problems):
            continue
        taken.add((scope, name))
        spec: dict[str, Any] = {"hosts": list(entry.hosts) or [name]}
        if entry.addresses:
            spec["addresses"] = list(entry.addresses)
        spec["ports"] = [{"number": p.number, "name": p.name, "protocol": p.protocol} for p in entry.ports]
        spec["location"] = "MESH_EXTERNAL"
        spec["resolution"] = resolution.value
        spec["exportTo"] = ["."]
        body = {
            "apiVersion": settings.istio_api_version,
            "kind": "ServiceEntry",
            "metadata": _metadata(name, w.namespace, release, {SOURCE_ANNOTATION: entry.source}),
            "spec": spec,
        }
        out.append(Generated("ServiceEntry", name, w.namespace, body, entry.origin))
    return out


def network_policy(
    workload: Workload,
    name: str,
    planned: Sequence[Planned],
    *,
    release: str | None,
    sources: Sequence[str],
    settings: Settings,
) -> Generated:
    rules: list[dict[str, Any]] = [
        _peer_rule(settings.dns),
        _peer_rule(settings.istiod),
    ]
    if settings.allow_same_namespace:
        # Any pod of the workload's own namespace, on any port: in-mesh calls stay open.
        rules.append({"to": [{"podSelector": {}}]})
    rules.extend(_destination_rules(planned, settings))
    namespace = workload.namespace or settings.namespace
    annotations = {
        WORKLOAD_ANNOTATION: f"{workload.kind}/{workload.name}",
        SOURCE_ANNOTATION: ",".join(sources) if sources else "defaults",
    }
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(name, namespace, release, annotations),
        "spec": {
            "podSelector": workload.pod_selector,
            "policyTypes": ["Egress"],
            "egress": rules,
        },
    }
    return Generated("NetworkPolicy", name, namespace, body, workload.location)


def policy_names(workloads: Sequence[Workload]) -> dict[int, str]:
    """``<workload>-egress``, with the kind added where two workloads share a name."""
    taken: dict[tuple[str | None, str], int] = {}
    for w in workloads:
        key = (w.namespace, w.name)
        taken[key] = taken.get(key, 0) + 1
    names: dict[int, str] = {}
    for w in workloads:
        clash = taken[(w.namespace, w.name)] > 1
        names[w.doc_index] = dns_label(w.name, w.kind.lower() if clash else "", "egress", limit=253)
    return names


def _metadata(name: str, namespace: str | None, release: str | None, annotations: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    labels = {"app.kubernetes.io/managed-by": "Helm"}
    if release:
        labels = {"app.kubernetes.io/instance": release, **labels}
    meta["labels"] = labels
    meta["annotations"] = {GENERATED_BY: "helm-egress", **annotations}
    return meta


def _peer_rule(peer: PeerSelector) -> dict[str, Any]:
    # Namespace and pod selector in ONE peer: both must match. As two peers they would
    # open the port to every pod of the namespace and to any pod anywhere.
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer.namespace}},
                "podSelector": {"matchLabels": dict(peer.labels)},
            }
        ],
        "ports": [{"protocol": proto, "port": port} for proto, port in peer.ports],
    }


def destinations(p: Planned, settings: Settings) -> list[IPNetwork]:
    """The IP ranges the sidecar actually dials for an entry.

    With NONE or STATIC, Envoy forwards to the original destination (or the endpoints), so
    addresses suffice when given; with DNS the upstream is whatever the name resolves to,
    which a NetworkPolicy cannot name: the configured hostname CIDRs stand in for it.
    """
    entry = p.entry
    nets = [ipaddress.ip_network(a, strict=False) for a in entry.addresses]
    if entry.hosts and not (entry.addresses and p.resolution.value in ("NONE", "STATIC")):
        nets = list(settings.hostname_cidrs) + [n for n in nets if n not in settings.hostname_cidrs]
    return nets


def _destination_rules(planned: Sequence[Planned], settings: Settings) -> list[dict[str, Any]]:
    # Entries that reach the same ranges share one rule; different ranges never do, or
    # one entry's ports would open on another's addresses.
    grouped: dict[tuple[IPNetwork, ...], set[tuple[int, str]]] = {}
    for p in planned:
        nets = tuple(destinations(p, settings))
        if not nets:
            continue
        ports = grouped.setdefault(nets, set())
        ports.update((port.number, port.transport) for port in p.entry.ports)
    rules = []
    for nets, ports in grouped.items():
        peers = []
        for net in nets:
            block: dict[str, Any] = {"cidr": str(net)}
            excepts = excepts_for(net, settings.hostname_excepts if net in settings.hostname_cidrs else ())
            if excepts:
                block["except"] = [str(e) for e in excepts]
            peers.append({"ipBlock": block})
        rules.append(
            {
                "to": peers,
                "ports": [{"protocol": proto, "port": number} for number, proto in sorted(ports)],
            }
        )
    return rules

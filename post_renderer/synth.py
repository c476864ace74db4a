"""What every output kind shares: planned entries, the claims ServiceEntries make on
destinations, generated documents and their metadata.

The kinds themselves live in ``post_renderer.kinds``; ``emit`` writes what they build.
"""

from __future__ import annotations

import functools

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from post_renderer.addresses import IPNetwork, covering_wildcards, excepts_for, network
from post_renderer.dialled import Upstream
from post_renderer.errors import Location, Problems
from post_renderer.model import HTTP_FAMILY, TLS_FAMILY, EgressEntry, Workload
from post_renderer.names import dns_label
from post_renderer.read import GENERATED_BY
from post_renderer.settings import HBONE_PORT, WAYPOINT_NAME_LABEL, PeerSelector, Settings

SOURCE_ANNOTATION = "helm-egress.io/source"
WORKLOAD_ANNOTATION = "helm-egress.io/workload"


class Generated(NamedTuple):
    kind: str
    name: str
    namespace: str | None
    body: dict[str, Any]
    origin: Location


# The ports ValidateServiceEntry (istio/istio pkg/config/validation/validation.go) lets a
# DYNAMIC_DNS entry carry, by Istio minor version: the resolution arrived in 1.28 with HTTP
# only; 1.29 added TLS; 1.30 GRPC and HTTP2. HTTPS is its own protocol there, never allowed.
DYNAMIC_DNS_PROTOCOLS = {28: ("HTTP",), 29: ("HTTP", "TLS"), 30: ("HTTP", "TLS", "GRPC", "HTTP2")}
FIRST_DYNAMIC_DNS = min(DYNAMIC_DNS_PROTOCOLS)


def dynamic_dns_protocols(istio_minor: int | None) -> tuple[str, ...]:
    """What every Istio of that minor version accepts; unknown: what every one with
    DYNAMIC_DNS does."""
    if istio_minor is None:
        return DYNAMIC_DNS_PROTOCOLS[FIRST_DYNAMIC_DNS]
    if istio_minor < FIRST_DYNAMIC_DNS:
        return ()
    return DYNAMIC_DNS_PROTOCOLS[min(istio_minor, max(DYNAMIC_DNS_PROTOCOLS))]


class Resolution(NamedTuple):
    value: str
    reason: str


def choose_resolution(entry: EgressEntry, problems: Problems, istio_minor: int | None = None) -> Resolution | None:
    """The resolution Istio (1.``istio_minor``, or any supported) accepts for ``entry``:
    the user's when valid, else derived."""
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
            else:
                why = _dynamic_dns_ports_problem(entry, istio_minor)
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


def _dynamic_dns_ports_problem(entry: EgressEntry, istio_minor: int | None) -> str | None:
    allowed = dynamic_dns_protocols(istio_minor)
    if not allowed:
        return f"Istio 1.{istio_minor} has no DYNAMIC_DNS (1.{FIRST_DYNAMIC_DNS} added it)"
    wrong = sorted({p.protocol for p in entry.ports if p.protocol not in allowed})
    if not wrong:
        return None
    version = f"Istio 1.{istio_minor}" if istio_minor is not None else (
        f"Istio 1.{FIRST_DYNAMIC_DNS}, the oldest with DYNAMIC_DNS (pass --istio-version for a newer one's)")
    newer = ", ".join(f"1.{minor} {'/'.join(protocols)}" for minor, protocols in sorted(DYNAMIC_DNS_PROTOCOLS.items()))
    return (f"{version} allows only {', '.join(allowed)} ports with DYNAMIC_DNS, not {', '.join(wrong)} "
            f"({newer}; HTTPS never: declare TLS)")


class Planned(NamedTuple):
    """An entry with the resolution its ServiceEntry will carry."""

    entry: EgressEntry
    resolution: Resolution


def plan(entries: Sequence[EgressEntry], problems: Problems, istio_minor: int | None = None) -> list[Planned]:
    out = []
    for entry in entries:
        resolution = choose_resolution(entry, problems, istio_minor)
        if resolution is not None:
            out.append(Planned(entry, resolution))
    return out


class Wanted(NamedTuple):
    """A ServiceEntry asked for: an entry, the namespace it serves, its preferred name."""

    planned: Planned
    namespace: str | None
    name: str


class Claim(NamedTuple):
    """A host (or address) and port some ServiceEntry already serves, and where."""

    dest: str
    port: int
    protocol: str  # upper-case; "" when unset
    scope: frozenset[str | None] | None  # namespaces it is exported to; None: all
    source: str
    name: str
    # The namespace the serving ServiceEntry lives in, what an Istio Sidecar imports it
    # from: None for the release's (Helm's -n), "*" when unknown (the global allowlist).
    namespace: str | None = None
    hosts: tuple[str, ...] = ()  # its ServiceEntry's hosts: how a Sidecar imports an address
    bound: bool = False  # its ServiceEntry carries istio.io/use-waypoint (ambient)
    # Where the proxy connects instead of the destination on its port (``dialled.dials``:
    # a chart ServiceEntry's targetPort or endpoints); None: the destination itself.
    dials: tuple[Upstream, ...] | None = None

    def reaches(self, namespace: str | None) -> bool:
        return self.scope is None or namespace in self.scope

    def overlaps(self, other: Claim) -> bool:
        return self.scope is None or other.scope is None or bool(self.scope & other.scope)

    @property
    def short_named(self) -> bool:
        """Its ServiceEntry names what it serves only by short hosts (the seed chart's
        address-only entries), which an Istio Sidecar cannot import."""
        return bool(self.hosts) and not any("." in h for h in self.hosts)


class Claims:
    """Claims in the order they were made, found by destination and port.

    What covers a destination is looked up under its own name and the wildcards above it
    (``covering_wildcards``) instead of testing every claim: with hundreds of workloads
    each declaring its own hosts, the scan made a render quadratic (300 x 60 hosts: 40 s).
    """

    def __init__(self, claims: Iterable[Claim] = ()) -> None:
        self._all: list[Claim] = []
        self._by_key: dict[tuple[str, int], list[tuple[int, Claim]]] = {}
        for c in claims:
            self._add(c)

    def _add(self, claim: Claim) -> None:
        self._by_key.setdefault((claim.dest, claim.port), []).append((len(self._all), claim))
        self._all.append(claim)

    def __iter__(self) -> Iterator[Claim]:
        return iter(self._all)

    def __len__(self) -> int:
        return len(self._all)

    def covering(self, dest: str, port: int, namespace: str | None) -> list[Claim]:
        """Every claim that covers ``dest:port`` for ``namespace``, in the order made."""
        found = [(n, c) for key in (dest, *covering_wildcards(dest)) for n, c in self._by_key.get((key, port), ())
                 if c.reaches(namespace)]
        if len(found) > 1:
            found.sort(key=lambda nc: nc[0])
        return [c for _, c in found]

    def register(self, new: list[Claim], where: Location, problems: Problems) -> bool:
        """Add ``new`` unless one disagrees on a protocol with an overlapping claim (IST0177).

        Every conflicting host and port is reported, not only the first.
        """
        conflicts = False
        for c in new:
            old = next((o for _, o in self._by_key.get((c.dest, c.port), ())
                        if o.protocol != c.protocol and o.overlaps(c)), None)
            if old is not None:
                problems.add(
                    where,
                    f"{c.dest}:{c.port} is declared as {c.protocol or 'unset'} here but as "
                    f"{old.protocol or 'unset'} by {old.source}; Istio allows one protocol per host and "
                    "port in a namespace scope (IST0177)",
                )
                conflicts = True
        if conflicts:
            return False
        for c in new:
            self._add(c)
        return True


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


def metadata(name: str, namespace: str | None, release: str | None, annotations: dict[str, str],
             labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    ours = {"app.kubernetes.io/managed-by": "Helm"}
    if release:
        ours = {"app.kubernetes.io/instance": release, **ours}
    meta["labels"] = {**ours, **(labels or {})}
    meta["annotations"] = {GENERATED_BY: "helm-egress", **annotations}
    return meta


def through_waypoint(entry: EgressEntry) -> bool:
    """Ambient: whether the entry's ServiceEntry is bound to the egress waypoint, which
    holds its hostnames to the workloads that declared them. Addresses alone go direct."""
    return bool(entry.hosts)


def by_name(p: Planned) -> bool:
    """Whether the sidecar dials what the entry's hostnames resolve to.

    With NONE or STATIC, Envoy forwards to the original destination (or the endpoints), so
    addresses suffice when given; otherwise the upstream is whatever a name resolves to.
    """
    return bool(p.entry.hosts) and not (p.entry.addresses and p.resolution.value in ("NONE", "STATIC"))


def addresses(p: Planned) -> list[IPNetwork]:
    return [network(a) for a in p.entry.addresses]


def cidr_block(net: IPNetwork, extra: tuple[IPNetwork, ...] = ()) -> dict[str, Any]:
    """A NetworkPolicy ``ipBlock`` or a Cilium ``toCIDRSet`` item: ``net`` less the ranges no
    rule may open (and ``extra``) that lie inside it."""
    block: dict[str, Any] = {"cidr": _text(net)}
    excepts = excepts_for(net, extra)
    if excepts:
        block["except"] = [_text(e) for e in excepts]
    return block


@functools.lru_cache(maxsize=1024)  # every workload's policy writes the same few ranges
def _text(net: IPNetwork) -> str:
    return str(net)


def waypoint_namespace(settings: Settings, scope: str | None) -> str | None:
    """Ambient: the namespace of the waypoint a workload in ``scope`` reaches, when known."""
    return settings.waypoint.namespace or scope if settings.waypoint is not None else None


def waypoint_peer(settings: Settings, namespace: str | None) -> PeerSelector:
    """The waypoint's pods in ``namespace`` (unknown: "", the policy's own), on HBONE only."""
    assert settings.waypoint is not None
    return PeerSelector(namespace or "", {WAYPOINT_NAME_LABEL: settings.waypoint.name}, (("TCP", HBONE_PORT),))


def needs_waypoint(planned: Sequence[Planned], settings: Settings) -> bool:
    return settings.mesh == "ambient" and any(through_waypoint(p.entry) for p in planned)


# Protocols Istio proxies as opaque TCP (pilot/pkg/networking/networking.go
# ModelProtocolToListenerProtocol: ListenerProtocolTCP without TLS's SNI match; unset is
# sniffed, with a TCP fallthrough): the listener is bound to the entry's address, 0.0.0.0
# without one, so the hosts are ignored and every destination on the port matches.
OPAQUE_TCP = frozenset({"", "TCP", "MONGO", "MYSQL", "REDIS"})


def tcp_without_addresses(spec: dict[str, Any]) -> list[tuple[Any, str]]:
    """The ports of a ServiceEntry spec that match every address on their number, and
    how each is written (unset: ""). istioctl's IST0134 flags only unset and TCP."""
    if spec.get("addresses"):
        return []
    return [(p.get("number"), str(p.get("protocol") or "")) for p in spec.get("ports") or []
            if isinstance(p, dict) and str(p.get("protocol") or "").upper() in OPAQUE_TCP]


def every_address_message(number: Any, protocol: str) -> tuple[str, str]:
    """A port of ``tcp_without_addresses``, and why it matches every address."""
    if protocol.upper() in ("", "TCP"):
        return f"TCP port {number}", "IST0134"
    return (f"{protocol} port {number}",
            f"Istio proxies {protocol} as plain TCP, its hosts ignored; istioctl's IST0134 flags only TCP")


def hostnames_by_name(planned: Sequence[Planned]) -> list[str]:
    """The hostnames of entries the sidecar dials by name, once each, in order."""
    return list(dict.fromkeys(h for p in planned if by_name(p) for h in p.entry.hosts))


def registry_only_message(hosts: Sequence[str], layer: str) -> str:
    """A workload's hostnames that no network layer names: only the mesh holds them."""
    return (f"hostname egress ({', '.join(hosts[:3])}{', ...' if len(hosts) > 3 else ''}) rests on Istio's "
            f"REGISTRY_ONLY alone: {layer}, and a pod that bypasses its proxy reaches any host; "
            "--network-policy cilium enforces the names (toFQDNs)")


def network_reach(settings: Settings, scope: str | None, p: Planned, dest: str, port: int) -> str | None:
    """What a network-layer kind opens for one destination (explain), when every such kind
    opens the same: the waypoint for a name in ambient mode, the addresses when the entry is
    reached by them. None for a name the kind opens its own way."""
    if dest in p.entry.hosts and settings.mesh == "ambient":
        name = settings.waypoint.name if settings.waypoint else "?"
        return f"waypoint {waypoint_namespace(settings, scope) or '.'}/{name} on port {HBONE_PORT} (HBONE) only"
    if dest in p.entry.hosts and by_name(p):
        return None
    return _reached_addresses(p, dest, port)


def _reached_addresses(p: Planned, dest: str, port: int) -> str:
    """What a network layer opens for a destination reached by its addresses (explain)."""
    nets = ", ".join(str(n) for n in addresses(p))
    return f"{nets} on port {port}" if dest not in p.entry.hosts else f"only its addresses {nets} on port {port}"

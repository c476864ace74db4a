"""What a platform team can set, with the defaults a stock cluster needs."""

from __future__ import annotations

import functools
import ipaddress
from typing import Literal, NamedTuple

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services answer on these; a workload reaching them can steal the
# node's cloud credentials, so no rule helm-egress writes may include them.
METADATA_ENDPOINTS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)
LINK_LOCAL: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
)
# IPv6 spellings of the IPv4 link-local range (and so of 169.254.169.254): a pod that may
# dial one of these may reach the metadata service through a translator or tunnel.
IPV4_LINK_LOCAL_IN_IPV6: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("::ffff:169.254.0.0/112"),  # IPv4-mapped (RFC 4291)
    ipaddress.ip_network("::169.254.0.0/112"),  # IPv4-compatible, deprecated but parsed
    ipaddress.ip_network("::ffff:0:169.254.0.0/112"),  # IPv4-translated (SIIT, RFC 2765)
    ipaddress.ip_network("64:ff9b::169.254.0.0/112"),  # NAT64 well-known prefix (RFC 6052)
    # NAT64 local-use prefix (RFC 8215): the operator chooses where the IPv4 address sits
    # (RFC 6052 section 2.2), so no narrower range is safe.
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2002:a9fe::/32"),  # 6to4 (RFC 3056)
)
FORBIDDEN: tuple[IPNetwork, ...] = METADATA_ENDPOINTS + LINK_LOCAL + IPV4_LINK_LOCAL_IN_IPV6

ISTIO_API_VERSIONS = ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")
NetworkPolicyFlavour = Literal["kubernetes", "cilium", "none"]
NETWORK_POLICY_FLAVOURS: tuple[NetworkPolicyFlavour, ...] = ("kubernetes", "cilium", "none")


class PeerSelector(NamedTuple):
    """Pods selected by labels in one namespace: one NetworkPolicy peer."""

    namespace: str
    labels: dict[str, str]
    ports: tuple[tuple[str, int], ...]  # (protocol, port)


KUBE_DNS = PeerSelector("kube-system", {"k8s-app": "kube-dns"}, (("UDP", 53), ("TCP", 53)))
ISTIOD = PeerSelector("istio-system", {"app": "istiod"}, (("TCP", 15012),))


class Settings(NamedTuple):
    release: str | None = None
    namespace: str | None = None
    network_policy: NetworkPolicyFlavour = "kubernetes"
    dns: PeerSelector = KUBE_DNS
    istiod: PeerSelector = ISTIOD
    allow_same_namespace: bool = True
    hostname_cidrs: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("0.0.0.0/0"),
        ipaddress.ip_network("::/0"),
    )
    hostname_excepts: tuple[IPNetwork, ...] = ()
    allow_broad_cidrs: bool = False
    istio_api_version: str = "networking.istio.io/v1"
    annotation_prefix: str = "helm-egress.io"
    normalize: bool = True
    # Cilium: 0 writes `**.example.com` for Istio's `*.example.com` (Cilium >= 1.19); N >= 1
    # writes the per-depth ladder `*.example.com` ... N labels deep, for older Cilium.
    cilium_wildcard_depth: int = 0
    sidecar: bool = False
    sidecar_hosts: tuple[str, ...] = ()  # in-mesh hosts every Sidecar imports, `namespace/dnsName`
    cluster_domain: str = "cluster.local"


def ip_network(text: str, *, strict: bool = False) -> IPNetwork:
    """An IP address or CIDR, as Istio and Kubernetes take them: no zone index
    (``fe80::1%eth0``), which ``ipaddress`` accepts and would carry into comparisons."""
    if "%" in text:
        raise ValueError(f"{text!r} has a zone index ('%...'); addresses are written without one")
    return ipaddress.ip_network(text, strict=strict)


def excepts_for(cidr: IPNetwork, extra: tuple[IPNetwork, ...] = ()) -> list[IPNetwork]:
    """The forbidden (and user-excluded) ranges strictly inside ``cidr``, collapsed.

    NetworkPolicy requires every ``except`` to be a strict subset of its ``cidr``.
    """
    return list(_excepts_for(cidr, extra))


@functools.lru_cache(maxsize=1024)  # the same few CIDRs, once per generated NetworkPolicy
def _excepts_for(cidr: IPNetwork, extra: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
    inside = [
        net
        for net in FORBIDDEN + extra
        if net.version == cidr.version and net.subnet_of(cidr) and net.prefixlen > cidr.prefixlen  # type: ignore[arg-type]
    ]
    collapsed: list[IPNetwork] = list(ipaddress.collapse_addresses(inside))  # type: ignore[type-var]
    return tuple(sorted(collapsed, key=lambda n: (int(n.network_address), n.prefixlen)))


def overlaps_forbidden(net: IPNetwork) -> tuple[bool, bool]:
    """(inside a forbidden range, strictly containing one) for an address or CIDR."""
    inside = any(net.version == f.version and net.subnet_of(f) for f in FORBIDDEN)  # type: ignore[arg-type]
    contains = any(
        net.version == f.version and f.subnet_of(net) and not net.subnet_of(f) for f in FORBIDDEN  # type: ignore[arg-type]
    )
    return inside, contains

"""Addresses and hosts, read one way by every stage: IP addresses and CIDRs as Istio and
Kubernetes take them, the ranges no rule may open, the CIDR arithmetic NetworkPolicy
demands, and hosts compared as Istio compares them.

The only module that imports ``ipaddress``: a second parser is how a zone index once
slipped through one reader (a policy rule that then approved nothing) while the others
refused it.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ZONE_INDEX = "has a zone index ('%...'); addresses are written without one"


class ZoneIndex(ValueError):
    """An address with a zone index (``fe80::1%eth0``): an interface of one machine, not a
    destination. ``ipaddress`` accepts it and keeps the zone in comparisons, so it would
    equal no address and lie inside some ranges that hold its address and not others."""


# --- parsing ----------------------------------------------------------------------


def network(text: str, *, strict: bool = False) -> IPNetwork:
    """An IP address or CIDR, as Istio and Kubernetes take them: never with a zone index.

    Raises ``ZoneIndex`` (a ``ValueError``) for one, ``ValueError`` for anything else that
    is not an address or CIDR (with ``strict``: also for host bits set)."""
    if "%" in text:
        raise ZoneIndex(f"{text!r} {ZONE_INDEX}")
    return ipaddress.ip_network(text, strict=strict)


@functools.lru_cache(maxsize=1024)  # every generated NetworkPolicy repeats the same few CIDRs
def canonical_network(text: str) -> IPNetwork | None:
    """``text`` as a CIDR written canonically enough for the API server (no host bits),
    or None."""
    try:
        return network(text, strict=True)
    except ValueError:
        return None


def is_address(text: str) -> bool:
    """Whether ``text`` is written as an IP address or CIDR. A zone index does not turn one
    into a host name: it stays an address, one that ``network`` refuses."""
    try:
        ipaddress.ip_network(text.strip().partition("%")[0], strict=False)
    except ValueError:
        return False
    return True


def is_ip_literal(text: str) -> bool:
    """An IP address or CIDR (``[::1]`` included), or a legacy IPv4 spelling that resolvers
    read as an address: something that belongs in addresses, never in hosts."""
    try:
        ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        return _inet_aton_spelling(text)
    return True


# One to four dot-separated numbers, each decimal, octal (leading 0) or hex (0x): what
# inet_aton() -- and so getaddrinfo(), curl, Envoy's resolver -- takes for an IPv4
# address ("2852039166", "0xa9fea9fe", "0251.0376.0251.0376" are all 169.254.169.254).
_INET_ATON_PART = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def _inet_aton_spelling(text: str) -> bool:
    parts = text.removesuffix(".").split(".")
    return 1 <= len(parts) <= 4 and all(p.isascii() and _INET_ATON_PART.fullmatch(p) for p in parts)


def _inet_aton(text: str) -> ipaddress.IPv4Network | None:
    """The address inet_aton() reads ``text`` as (``0xa9fea9fe``, ``2852039166``), or None."""
    if not _inet_aton_spelling(text):
        return None
    numbers: list[int] = []
    for part in text.removesuffix(".").split("."):
        hexadecimal = part[:2].lower() == "0x"
        base = 16 if hexadecimal else 8 if len(part) > 1 and part[0] == "0" else 10
        try:
            numbers.append(int(part[2:] or "0", 16) if hexadecimal else int(part, base))
        except ValueError:  # '09': not octal, and so no address
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    return ipaddress.IPv4Network(sum(n << 8 * (3 - i) for i, n in enumerate(head)) + last)


def forbidden_literal(text: str) -> bool:
    """Whether ``text``, an address or CIDR in any spelling a resolver reads (see
    ``is_ip_literal``), reaches a range no rule may open: such a host is not to be moved
    to addresses, where it would be refused too."""
    try:
        net: IPNetwork | None = network(text.strip("[]"), strict=False)
    except ValueError:
        net = _inet_aton(text)
    return net is not None and any(overlaps_forbidden(net))


# --- canonical forms --------------------------------------------------------------


_NOT_ADDRESS = re.compile(r"[^0-9A-Fa-f:./]")


@functools.lru_cache(maxsize=4096)  # asked per workload, destination and claim; parsing is the cost
def destination_key(dest: str) -> str:
    """Hosts as they are; addresses canonical, so `10.0.0.5` and `10.0.0.5/32` are one.
    An address with a zone index stays as written: it is no address, so it never equals one."""
    if _NOT_ADDRESS.search(dest.partition("%")[0]):
        # A host name: no address spelling has its letters. Parsing it only to fail cost
        # more than the rest of a render with thousands of hosts (the cache above holds 4096).
        return dest
    try:
        net = network(dest)
    except ValueError:
        return dest
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


def unmapped(net: IPNetwork) -> IPNetwork:
    """An IPv4-mapped IPv6 range as the IPv4 range it is: the same destinations."""
    if net.version == 6 and net.prefixlen >= 96 and net.subnet_of(_MAPPED):  # type: ignore[arg-type]
        return ipaddress.IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


# --- ranges no rule may open --------------------------------------------------------

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
# Where a cluster's pods, Services, nodes and private networks live (RFC 1918, RFC 6598's
# shared space that EKS, GKE and Tailscale use for pods, RFC 4193's unique local IPv6): a
# hostname stands for a public service, so the CIDRs standing in for hostnames leave these
# out unless the user says otherwise (--hostname-private-ranges).
PRIVATE_RANGES: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("fc00::/7"),
)
EVERY_ADDRESS: tuple[IPNetwork, ...] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def overlaps_forbidden(net: IPNetwork) -> tuple[bool, bool]:
    """(inside a forbidden range, strictly containing one) for an address or CIDR."""
    inside_one = any(inside(net, f) for f in FORBIDDEN)
    contains = any(inside(f, net) and not inside(net, f) for f in FORBIDDEN)
    return inside_one, contains


def excepts_for(cidr: IPNetwork, extra: tuple[IPNetwork, ...] = ()) -> list[IPNetwork]:
    """The forbidden (and user-excluded) ranges strictly inside ``cidr``, collapsed.

    NetworkPolicy requires every ``except`` to be a strict subset of its ``cidr``.
    """
    return list(_excepts_for(cidr, extra))


@functools.lru_cache(maxsize=1024)  # the same few CIDRs, once per generated NetworkPolicy
def _excepts_for(cidr: IPNetwork, extra: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
    collapsed = collapse(net for net in FORBIDDEN + extra if strictly_inside(net, cidr))
    return tuple(sorted(collapsed, key=lambda n: (int(n.network_address), n.prefixlen)))


# --- CIDR arithmetic ----------------------------------------------------------------


def inside(net: IPNetwork, outer: IPNetwork) -> bool:
    """Whether ``net`` lies inside ``outer`` (or is it); false across address families."""
    return net.version == outer.version and net.subnet_of(outer)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1024)
def strictly_inside(net: IPNetwork, outer: IPNetwork) -> bool:
    """Inside and smaller: what NetworkPolicy asks of an ``except`` and its ``cidr``."""
    return inside(net, outer) and net.prefixlen > outer.prefixlen


def collapse(nets: Iterable[IPNetwork]) -> list[IPNetwork]:
    """The fewest ranges covering exactly ``nets`` (of one address family)."""
    return list(ipaddress.collapse_addresses(nets))  # type: ignore[type-var]


# --- hosts --------------------------------------------------------------------------


def normal_host(text: str) -> str:
    """A host as Istio compares it: lower case, without the dot that only marks it absolute.
    Check it is ASCII first: lower-casing maps a KELVIN SIGN to 'k'."""
    host = text.strip().lower()
    return host[:-1] if len(host) > 1 and host.endswith(".") else host


def host_covers(rule: str, host: str) -> bool:
    """Whether host ``rule`` covers every name ``host`` stands for (both canonical), as
    Istio matches hosts.

    ``*.x`` covers every name below ``x`` at any depth, so it covers ``a.x``, ``*.x`` and
    ``*.a.x``; an exact name covers only itself, never a wildcard.
    """
    if rule == host:
        return True
    if not rule.startswith("*."):
        return False
    below = host[2:] if host.startswith("*.") else host
    return below.endswith(rule[1:])



def covering_wildcards(host: str) -> list[str]:
    """Every wildcard ``rule`` other than ``host`` itself for which ``host_covers(rule,
    host)`` holds, nearest first: what to look up instead of testing every rule."""
    below = host[2:] if host.startswith("*.") else host
    return ["*" + below[i:] for i in range(len(below)) if below[i] == "."]

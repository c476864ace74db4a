"""What the proxy connects to for a ServiceEntry's port: read once, for policies and judging.

The application dials a destination on a port ``number``; the proxy dials the upstream
Istio builds from the ServiceEntry (istio/istio pilot/pkg/serviceregistry/serviceentry
conversion.go, ``convertServiceEntryToInstances`` and ``convertEndpoint``):

- with ``endpoints`` (STATIC, DNS, DNS_ROUND_ROBIN): each endpoint's address (an FQDN
  endpoint is resolved by the proxy), on its own port for the port's name, else the port's
  ``targetPort``, else its ``number``; a ``unix://`` endpoint is a socket beside the proxy;
- DNS or DNS_ROUND_ROBIN without endpoints: each host, resolved by the proxy, on
  ``targetPort`` or ``number``;
- NONE: the address the application connected to, on ``targetPort`` from Istio 1.22
  (istio/istio#49585, ``ENABLE_RESOLUTION_NONE_TARGET_PORT``, on by default), on
  ``number`` before;
- STATIC without endpoints: nothing (no upstream host).

A ``workloadSelector`` sends traffic to pods or WorkloadEntries this module does not see,
and DYNAMIC_DNS to whatever name was asked for: both are left as the destination itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from post_renderer.addresses import is_address, network, normal_host, overlaps_forbidden
from post_renderer.numbers import go_uint
from post_renderer.settings import ISTIO_API_VERSIONS, Settings
from post_renderer.validate import is_fqdn

# The first Istio whose proxy sends a NONE entry's traffic to its targetPort.
FIRST_PASSTHROUGH_TARGET_PORT = 22


class Upstream(NamedTuple):
    """Where the proxy connects for a port of a ServiceEntry: a name it resolves or an IP
    address (canonical), on ``port``. ``dest`` None: the destination the application asked
    for itself."""

    dest: str | None
    port: int


class Target(NamedTuple):
    """What a network-layer policy opens for one destination and port of an entry."""

    dest: str  # a host name the proxy resolves, or an address or CIDR it connects to
    address: bool
    port: int
    transport: str  # TCP or UDP
    via: str | None = None  # the ServiceEntry that sends it here rather than where declared


def port_number(value: Any) -> int | None:
    """A port 1..65535, or None. A string is read as Cilium reads one
    (``strconv.ParseUint(p, 0, 16)``: "0443" is 291, "0x1bb" is 443)."""
    if isinstance(value, str):
        value = go_uint(value, 16)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    return None


def upstream_port(port: Mapping[str, Any], port_map: Any) -> int | None:
    """The port the proxy dials on an endpoint for a ServiceEntry ``port``: the endpoint's
    own map wins (by the port's name), then ``targetPort``, then ``number``."""
    return _mapped(port_map, str(port.get("name"))) or port_number(port.get("targetPort")) \
        or port_number(port.get("number"))


def _mapped(port_map: Any, name: str) -> int | None:
    return port_number(port_map.get(name)) if isinstance(port_map, Mapping) else None


def passthrough_target_port(settings: Settings) -> bool | None:
    """Whether the mesh's proxy sends a NONE entry to its targetPort: by --istio-version,
    else by the API version written (v1 is served from 1.22 on); None when neither tells."""
    if settings.istio_minor is not None:
        return settings.istio_minor >= FIRST_PASSTHROUGH_TARGET_PORT
    return True if settings.istio_api_version == ISTIO_API_VERSIONS[0] else None


def endpoint_address(endpoint: Any) -> str | None:
    """An endpoint's address as the proxy dials it: a canonical IP, or a lower-case FQDN.
    None for a socket beside the proxy, or an address Istio's webhook refuses."""
    address = endpoint.get("address") if isinstance(endpoint, Mapping) else None
    if not isinstance(address, str) or address.startswith("unix://"):
        return None
    try:
        net = network(address.strip())
    except ValueError:
        host = normal_host(address)
        return host if host.isascii() and is_fqdn(host) else None
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else None


def forbidden_endpoints(spec: Mapping[str, Any]) -> list[tuple[int, str]]:
    """(index, address) of each endpoint in a range no rule may open (metadata,
    link-local): never opened for what the ServiceEntry dials."""
    out = []
    for k, endpoint in enumerate(_list(spec.get("endpoints"))):
        address = endpoint_address(endpoint)
        if address is not None and is_address(address) and any(overlaps_forbidden(network(address))):
            out.append((k, address))
    return out


class Endpoint(NamedTuple):
    address: str  # as ``endpoint_address`` reads it
    ports: Any  # its port map, as written


def endpoints(spec: Mapping[str, Any]) -> tuple[Endpoint, ...]:
    """The endpoints of a ServiceEntry ``spec`` the proxy may connect to, each read once
    for all its ports (a ServiceEntry may hold 4,096 endpoints and 256 ports)."""
    forbidden = {k for k, _ in forbidden_endpoints(spec)}
    out = []
    for k, endpoint in enumerate(_list(spec.get("endpoints"))):
        address = endpoint_address(endpoint)
        if address is not None and k not in forbidden:
            out.append(Endpoint(address, endpoint.get("ports")))
    return tuple(out)


def dials(spec: Mapping[str, Any], listed: Sequence[Endpoint], port: Mapping[str, Any], dest_is_address: bool,
          passthrough: bool | None) -> tuple[Upstream, ...] | None:
    """What the proxy connects to for one destination of a ServiceEntry ``spec`` on
    ``port`` (an item of its ports); ``listed``: its ``endpoints(spec)``. None: the
    destination itself on the port's number.

    ``passthrough``: whether a NONE entry goes to its targetPort (``passthrough_target_port``);
    None (unknown): to both it and the number, so neither is cut off."""
    number = port_number(port.get("number"))
    if number is None or spec.get("workloadSelector") is not None:
        return None
    target = port_number(port.get("targetPort")) or number
    resolution = spec.get("resolution") or "NONE"
    if resolution == "NONE":
        if target == number or passthrough is False:
            return None
        return (Upstream(None, target),) if passthrough else (Upstream(None, number), Upstream(None, target))
    if resolution == "STATIC" or (resolution in ("DNS", "DNS_ROUND_ROBIN") and _list(spec.get("endpoints"))):
        name = str(port.get("name"))  # as upstream_port, with the port's own fields read once
        return tuple(dict.fromkeys(Upstream(e.address, _mapped(e.ports, name) or target) for e in listed))
    if resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if dest_is_address:
            # The application connected to an address of the entry; the proxy resolves the hosts.
            hosts = [normal_host(h) for h in _list(spec.get("hosts")) if isinstance(h, str)]
            return tuple(dict.fromkeys(Upstream(h, target) for h in hosts if is_fqdn(h)))
        return None if target == number else (Upstream(None, target),)
    return None


def port_dials(spec: Mapping[str, Any], listed: Sequence[Endpoint], port: Mapping[str, Any],
               passthrough: bool | None) -> tuple[tuple[Upstream, ...] | None, tuple[Upstream, ...] | None]:
    """``dials`` for a host of the entry and for an address of it, which differ only where
    the proxy resolves the hosts (DNS without endpoints)."""
    for_host = dials(spec, listed, port, False, passthrough)
    resolves_hosts = spec.get("resolution") in ("DNS", "DNS_ROUND_ROBIN") and not _list(spec.get("endpoints"))
    return for_host, dials(spec, listed, port, True, passthrough) if resolves_hosts else for_host


def _list(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []

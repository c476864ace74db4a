"""What the output would open, and who asked for it: the requests a destination policy judges.

Sources, each located where the user (or the chart) wrote it:

- entries of ``-f`` values, workload annotations and the global allowlist: every host and
  address, on every port, in each namespace the entry is opened in;
- the chart's own ServiceEntries (as they will be applied): hosts, addresses and endpoint
  addresses, on each port's ``number`` and ``targetPort`` (an endpoint's own port map
  wins), in every namespace the entry is exported to;
- the chart's own egress NetworkPolicies: each ``ipBlock.cidr`` (its ``except`` narrows
  nothing the policy has to approve), on the rule's ports; a rule without ``to`` opens
  every address, one without ports every port.

Not requests: what helm-egress adds around a declaration (DNS, istiod, the workload's
namespace, the hostname CIDRs standing in for a declared hostname: the hostname itself is
judged) and in-cluster peers (pod and namespace selectors) of a chart's NetworkPolicy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from post_renderer.destpolicy import PortRange, Request
from post_renderer.model import EgressEntry, Existing
from post_renderer.names import dns_label

_EVERY_ADDRESS = ("0.0.0.0/0", "::/0")


def from_entries(entries: Iterable[EgressEntry], namespaces: Sequence[str | None]) -> list[Request]:
    out = []
    for entry in entries:
        # An annotation's own entry is named after the workload the location already names.
        own = entry.origin.name is not None and entry.name == dns_label(entry.origin.name)
        who = "" if own else f"entry {entry.name}"
        dests = [(h, False) for h in entry.hosts] + [(a, True) for a in entry.addresses]
        for namespace in namespaces:
            for dest, address in dests:
                for port in entry.ports:
                    out.append(Request(dest, address, (port.number, port.number), namespace, entry.origin, who))
    return out


def from_serviceentry(se: Existing, home: str | None) -> list[Request]:
    metadata = _mapping(se.data.get("metadata"))
    spec = _mapping(se.data.get("spec"))
    namespaces = _export_scopes(spec.get("exportTo"), metadata.get("namespace") or home)
    ports = [p for p in _list(spec.get("ports")) if isinstance(p, dict)]
    numbers: list[PortRange | None] = [*sorted({r for p in ports for r in _se_ports(p)})] or [None]
    addresses = [str(a) for a in _list(spec.get("addresses"))]
    resolution = str(spec.get("resolution") or "NONE").upper()
    name = str(metadata.get("name"))
    dests: list[tuple[str, str, list[PortRange | None]]] = []
    for i, host in enumerate(_list(spec.get("hosts"))):
        host = str(host)
        # An address-only entry carries its own name as host (the seed charts' and
        # helm-egress's convention). With NONE or STATIC the proxy never resolves it, and a
        # single label never names a host outside the cluster: the addresses and endpoints
        # are what is reached, and they are judged.
        placeholder = host.lower().rstrip(".") == name.lower() and ("." not in name or resolution in ("NONE", "STATIC"))
        if addresses and placeholder:
            continue
        dests.append((host, f"spec.hosts[{i}]", numbers))
    dests += [(a, f"spec.addresses[{j}]", numbers) for j, a in enumerate(addresses)]
    for k, endpoint in enumerate(_list(spec.get("endpoints"))):
        address = _mapping(endpoint).get("address")
        if address is None or str(address).startswith("unix://"):
            continue  # a local socket leaves no pod
        mapped = _mapping(_mapping(endpoint).get("ports"))
        dialled = {_single(mapped.get(str(p.get("name")))) or _single(p.get("targetPort")) or _single(p.get("number"))
                   for p in ports}
        targets: list[PortRange | None] = [*sorted(r for r in dialled if r is not None)] or [None]
        dests.append((str(address), f"spec.endpoints[{k}].address", targets))
    return [
        Request(dest, _is_address(dest), port, namespace, se.location.at(path))
        for dest, path, port_list in dests
        for namespace in namespaces
        for port in port_list
    ]


def from_networkpolicy(np: Existing, home: str | None) -> list[Request]:
    metadata = _mapping(np.data.get("metadata"))
    spec = _mapping(np.data.get("spec"))
    types = spec.get("policyTypes")
    if not spec.get("egress") or (isinstance(types, list) and "Egress" not in types):
        return []  # no egress rules in force
    namespace: str | None = metadata.get("namespace") or home
    out: list[Request] = []
    for r, rule in enumerate(_list(spec.get("egress"))):
        rule = _mapping(rule)  # a null rule reads as {}: every destination, every port
        ports = _np_ports(rule.get("ports"))
        peers = _list(rule.get("to"))
        if not peers:
            for everything in _EVERY_ADDRESS:
                out += [Request(everything, True, p, namespace, np.location.at(f"spec.egress[{r}]"),
                                "an egress rule without `to` opens every destination") for p in ports]
            continue
        for t, peer in enumerate(peers):
            block = _mapping(peer).get("ipBlock")
            if block is None:
                continue  # pods and namespaces of the cluster
            cidr = _mapping(block).get("cidr")
            where = np.location.at(f"spec.egress[{r}].to[{t}].ipBlock.cidr")
            out += [Request(str(cidr), True, p, namespace, where) for p in ports]
    return out


def _export_scopes(export_to: Any, namespace: str | None) -> list[str | None]:
    """The namespaces a ServiceEntry is visible in; [None] for every namespace."""
    if not isinstance(export_to, list) or not export_to or "*" in export_to:
        return [None]
    scopes = {namespace if e == "." else str(e) for e in export_to if e != "~"}
    return sorted(scopes, key=lambda n: (n is not None, n or ""))


def _se_ports(port: dict[str, Any]) -> list[PortRange]:
    # The number is what the application dials, the targetPort what the proxy dials.
    return [r for r in (_single(port.get("number")), _single(port.get("targetPort"))) if r is not None]


def _np_ports(ports: Any) -> list[PortRange | None]:
    if not isinstance(ports, list) or not ports:
        return [None]
    out: list[PortRange | None] = []
    for item in ports:
        port = _mapping(item).get("port")
        end = _mapping(item).get("endPort")
        first = _single(port)
        if first is None:
            # No port, or a named one (it could be any number): every port of the protocol.
            out.append(None)
        elif isinstance(end, int) and not isinstance(end, bool) and end > first[0]:
            out.append((first[0], end))
        else:
            out.append(first)
    return list(dict.fromkeys(out))


def _single(value: Any) -> PortRange | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value, value
    return None


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return False
    return True


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []

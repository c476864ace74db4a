"""What the output would open, and who asked for it: the requests a destination policy judges.

Sources, each located where the user (or the chart) wrote it:

- entries of ``-f`` values, workload annotations and the global allowlist: every host and
  address, on every port, in each namespace the entry is opened in;
- the chart's own ServiceEntries (as they will be applied): hosts, addresses and endpoint
  addresses, on each port's ``number`` and ``targetPort`` (an endpoint's own port map
  wins), in every namespace the entry is exported to;
- the chart's own egress NetworkPolicies: each ``ipBlock.cidr`` (its ``except`` narrows
  nothing the policy has to approve), on the rule's ports; a rule without ``to`` opens
  every address, one without ports every port;
- the chart's own CiliumNetworkPolicies (and clusterwide ones): ``toFQDNs`` names and
  patterns, ``toCIDR``/``toCIDRSet`` ranges and the ``world`` entities, spelt as entities
  or as ``toEndpoints`` selectors on reserved labels (``reserved:world``), on the rule's
  ``toPorts``.
- the chart's own Istio WorkloadEntries (the endpoints of a ServiceEntry with a
  ``workloadSelector``): the address, on the ports of its port map;
- the chart's own Istio Sidecars with ``outboundTrafficPolicy.mode: ALLOW_ANY``: every
  address, on every port (no policy approves that);
- the chart's own ExternalName Services (the name, unless it is a Service of the cluster)
  and Endpoints/EndpointSlices (their addresses), which Istio routes like a ServiceEntry,
  on their ports, in every namespace the Service is visible in.

Not requests: what helm-egress adds around a declaration (DNS, istiod, the workload's
namespace, the hostname CIDRs standing in for a declared hostname: the hostname itself is
judged) and in-cluster peers (pod and namespace selectors) of a chart's NetworkPolicy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from post_renderer.addresses import is_address
from post_renderer.destpolicy import EVERY_NAMESPACE, PortRange, Request
from post_renderer.dialled import port_number, upstream_port
from post_renderer.errors import Location, Problems
from post_renderer.model import EgressEntry, Existing
from post_renderer.names import dns_label
from post_renderer.read import Documents, Need, Parsed
from post_renderer.stream import Document

_EVERY_ADDRESS = ("0.0.0.0/0", "::/0")


def wants(doc: Document) -> bool:
    """The chart's documents ``from_chart`` reads, picked by their text: parsed only when a
    policy judges them, and passed through untouched either way."""
    return doc.kind in CILIUM_KINDS or _allows_any(doc) or wants_service(doc) or doc.kind == "WorkloadEntry"


NEED = Need(wants)


def _allows_any(doc: Document) -> bool:
    return doc.kind == "Sidecar" and "allow_any" in doc.raw.lower()


def from_chart(documents: Documents, serviceentries: Iterable[Existing], home: str | None, problems: Problems,
               cluster_domain: str) -> list[Request]:
    """What the chart's own Cilium policies, Sidecars, Services and WorkloadEntries open."""
    chart = documents.wanted(wants)
    out: list[Request] = []
    for parsed in chart:
        if parsed.doc.kind in CILIUM_KINDS:
            out += from_cilium(parsed, home, problems)
        elif _allows_any(parsed.doc):
            out += from_sidecar(parsed, home, problems)
    out += from_services(chart, home, problems, cluster_domain)
    out += from_workloadentries(chart, serviceentries, home, problems)
    return out


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
        # helm-egress's convention): a single label never names a host outside the cluster,
        # and under STATIC the proxy sends whatever is asked to the endpoints. The addresses
        # and endpoints are what is reached, and they are judged. A dotted name under NONE
        # is a real host: an HTTP request for it goes wherever the application connected.
        placeholder = host.lower().rstrip(".") == name.lower() and ("." not in name or resolution == "STATIC")
        if addresses and placeholder:
            continue
        dests.append((host, f"spec.hosts[{i}]", numbers))
    dests += [(a, f"spec.addresses[{j}]", numbers) for j, a in enumerate(addresses)]
    for k, endpoint in enumerate(_list(spec.get("endpoints"))):
        address = _mapping(endpoint).get("address")
        if address is None or str(address).startswith("unix://"):
            continue  # a local socket leaves no pod
        dests.append((str(address), f"spec.endpoints[{k}].address", _dialled(ports, _mapping(endpoint).get("ports"))))
    return [
        Request(dest, is_address(dest), port, namespace, se.location.at(path))
        for dest, path, port_list in dests
        for namespace in namespaces
        for port in port_list
    ]


def _dialled(ports: Sequence[dict[str, Any]], port_map: Any) -> list[PortRange | None]:
    """The ports the proxy dials on an endpoint of a ServiceEntry with ``ports``."""
    dialled = {upstream_port(p, port_map) for p in ports}
    return [*sorted((n, n) for n in dialled if n is not None)] or [None]


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


CILIUM_KINDS = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")
# Entities outside the cluster; the others (cluster, host, kube-apiserver, ...) are inside.
_WORLD = {"world": _EVERY_ADDRESS, "all": _EVERY_ADDRESS, "world-ipv4": ("0.0.0.0/0",), "world-ipv6": ("::/0",)}


def from_cilium(parsed: Parsed, home: str | None, problems: Problems) -> list[Request]:
    """What a chart's own Cilium policy opens. It is parsed for this when a policy judges it
    (or for the mesh flavours), and passes through untouched either way."""
    data, where = _data(parsed, problems)
    if str(data.get("apiVersion", "")).rpartition("/")[0] != "cilium.io":
        return []
    metadata = _mapping(data.get("metadata"))
    clusterwide = parsed.doc.kind == "CiliumClusterwideNetworkPolicy"
    namespace = EVERY_NAMESPACE if clusterwide else (metadata.get("namespace") or home)
    specs = [("spec", data.get("spec"))] if data.get("spec") is not None else []
    specs += [(f"specs[{k}]", s) for k, s in enumerate(_list(data.get("specs")))]
    out: list[Request] = []
    for base, spec in specs:
        for r, rule in enumerate(_list(_mapping(spec).get("egress"))):
            out += _cilium_rule(_mapping(rule), f"{base}.egress[{r}]", where, namespace)
    return out


_EXPORT_TO = "networking.istio.io/exportTo"


def wants_service(doc: Document) -> bool:
    """Whether ``doc`` is read for :func:`from_services`: ExternalName Services, Services
    whose visibility their endpoints share, hand-written endpoints. Plain Services are not
    parsed for nothing."""
    return doc.kind in ("Endpoints", "EndpointSlice") or (
        doc.kind == "Service" and ("ExternalName" in doc.raw or _EXPORT_TO in doc.raw))


def from_services(docs: Iterable[Parsed], home: str | None, problems: Problems,
                  cluster_domain: str) -> list[Request]:
    """What a chart's ExternalName Services and its own Endpoints/EndpointSlices open.

    Istio routes a Service's endpoints to their addresses, like a ServiceEntry; an
    ExternalName Service is an alias of its name from Istio 1.21 (routed as that name is,
    its own ports ignored), but before that it was sent to the name on its own ports, which
    is what is judged. Visible in every namespace unless the Service's
    ``networking.istio.io/exportTo`` annotation narrows it. Parsed only when a policy judges
    them; they pass through untouched."""
    read = [(p.doc, *_data(p, problems)) for p in docs if wants_service(p.doc)]
    visible: dict[tuple[str | None, str], list[str | None]] = {}
    for doc, data, _ in read:
        metadata = _mapping(data.get("metadata"))
        if doc.kind == "Service" and data.get("apiVersion") == "v1" and isinstance(metadata.get("name"), str):
            visible[(metadata.get("namespace") or home, metadata["name"])] = _service_scopes(metadata, home)
    out: list[Request] = []
    for doc, data, where in read:
        api = str(data.get("apiVersion", ""))
        metadata = _mapping(data.get("metadata"))
        namespace = metadata.get("namespace") or home
        dests: list[tuple[str, str, list[PortRange | None]]] = []  # destination, path, ports
        if doc.kind == "Service" and api == "v1":
            spec = _mapping(data.get("spec"))
            name = spec.get("externalName")
            if spec.get("type") != "ExternalName" or not isinstance(name, str):
                continue
            if name.strip().lower().rstrip(".").endswith(f".svc.{cluster_domain}"):
                continue  # another Service of the cluster: an in-cluster peer
            listed = [p for p in _list(spec.get("ports")) if isinstance(p, dict)]
            numbers = sorted({r for p in listed for r in (_single(p.get("port")), _single(p.get("targetPort"))) if r})
            dests.append((name, "spec.externalName", [*numbers] or [None]))
            service = metadata.get("name")
        elif doc.kind == "Endpoints" and api == "v1":
            for s, subset in enumerate(_list(data.get("subsets"))):
                subset = _mapping(subset)
                ports = _endpoint_ports(subset.get("ports"))
                for key in ("addresses", "notReadyAddresses"):
                    for a, address in enumerate(_list(subset.get(key))):
                        dests.append((str(_mapping(address).get("ip")), f"subsets[{s}].{key}[{a}].ip", ports))
            service = metadata.get("name")
        elif doc.kind == "EndpointSlice" and api.rpartition("/")[0] == "discovery.k8s.io":
            ports = _endpoint_ports(data.get("ports"))
            for e, endpoint in enumerate(_list(data.get("endpoints"))):
                for a, address in enumerate(_list(_mapping(endpoint).get("addresses"))):
                    dests.append((str(address), f"endpoints[{e}].addresses[{a}]", ports))
            service = _mapping(metadata.get("labels")).get("kubernetes.io/service-name")
        else:
            continue
        # Endpoints are reached through their Service, as widely as it is visible.
        scopes = visible.get((namespace, service)) if isinstance(service, str) else None
        out += [Request(dest, is_address(dest), port, scope, where.at(path))
                for dest, path, port_list in dests for scope in scopes or [EVERY_NAMESPACE] for port in port_list]
    return out


def from_workloadentries(docs: Iterable[Parsed], serviceentries: Iterable[Existing], home: str | None,
                         problems: Problems) -> list[Request]:
    """What a chart's own Istio WorkloadEntries open. A ServiceEntry with a workloadSelector
    sends its hosts' traffic to them, so each address is reached like one of its endpoints,
    on the ports the proxy dials (its port map, or every port, when no such ServiceEntry is
    in the stream), in every namespace those are exported to (else its own). Parsed only when a policy
    judges them; they pass through untouched."""
    scopes: dict[str | None, set[str | None]] = {}
    selecting: dict[str | None, list[dict[str, Any]]] = {}  # namespace -> the ports of its ServiceEntries
    for se in serviceentries:
        metadata = _mapping(se.data.get("metadata"))
        spec = _mapping(se.data.get("spec"))
        if spec.get("workloadSelector") is not None:
            namespace = metadata.get("namespace") or home
            scopes.setdefault(namespace, set()).update(_export_scopes(spec.get("exportTo"), namespace))
            selecting.setdefault(namespace, []).extend(p for p in _list(spec.get("ports")) if isinstance(p, dict))
    out: list[Request] = []
    for parsed in docs:
        if parsed.doc.kind != "WorkloadEntry":
            continue
        data, where = _data(parsed, problems)
        if str(data.get("apiVersion", "")).rpartition("/")[0] != "networking.istio.io":
            continue
        spec = _mapping(data.get("spec"))
        address = spec.get("address")
        if address is None or str(address).startswith("unix://"):
            continue  # none: reached through a network gateway; a local socket leaves no pod
        namespace = _mapping(data.get("metadata")).get("namespace") or home
        port_map = _mapping(spec.get("ports"))
        ports: list[PortRange | None] = _dialled(selecting[namespace], port_map) if namespace in selecting else \
            [*sorted({r for r in map(_single, port_map.values()) if r is not None})] or [None]
        visible = sorted(scopes.get(namespace) or {namespace}, key=lambda n: (n is not None, n or ""))
        out += [Request(str(address), is_address(str(address)), port, scope, where.at("spec.address"))
                for scope in visible for port in ports]
    return out


def from_sidecar(parsed: Parsed, home: str | None, problems: Problems) -> list[Request]:
    """A chart's own Istio Sidecar with ``outboundTrafficPolicy.mode: ALLOW_ANY`` lets its
    pods' proxies pass traffic to any destination the mesh does not know: every address."""
    data, where = _data(parsed, problems)
    if str(data.get("apiVersion", "")).rpartition("/")[0] != "networking.istio.io":
        return []
    policy = _mapping(_mapping(data.get("spec")).get("outboundTrafficPolicy"))
    if str(policy.get("mode", "")).upper() != "ALLOW_ANY":
        return []
    namespace = _mapping(data.get("metadata")).get("namespace") or home
    return [Request(a, True, None, namespace, where.at("spec.outboundTrafficPolicy.mode"),
                    "ALLOW_ANY passes traffic to every destination") for a in _EVERY_ADDRESS]


def _service_scopes(metadata: dict[str, Any], home: str | None) -> list[str | None]:
    export = _mapping(metadata.get("annotations")).get(_EXPORT_TO)
    listed = [e.strip() for e in export.split(",")] if isinstance(export, str) else None
    return _export_scopes(listed, metadata.get("namespace") or home)


def _endpoint_ports(ports: Any) -> list[PortRange | None]:
    # A port without a number (an EndpointSlice's null port), or no ports at all: every port.
    numbers = [_single(_mapping(p).get("port")) for p in _list(ports)]
    return list(dict.fromkeys(numbers)) or [None]


def _data(parsed: Parsed, problems: Problems) -> tuple[dict[str, Any], Location]:
    return _mapping(parsed.use(problems)), parsed.where


def _cilium_rule(rule: dict[str, Any], path: str, where: Location, namespace: str | None) -> list[Request]:
    ports = _cilium_ports(rule.get("toPorts"))
    dests: list[tuple[str, bool, str, str]] = []  # destination, address, path, who
    for i, fqdn in enumerate(_list(rule.get("toFQDNs"))):
        fqdn = _mapping(fqdn)
        if isinstance(fqdn.get("matchName"), str):
            dests.append((fqdn["matchName"], False, f"{path}.toFQDNs[{i}].matchName", ""))
        pattern = fqdn.get("matchPattern")
        if isinstance(pattern, str):
            host = _pattern(pattern)
            same = host == pattern.strip().lower().rstrip(".")
            who = "" if same else f"matchPattern {pattern!r}"
            dests.append((host, False, f"{path}.toFQDNs[{i}].matchPattern", who))
    for i, cidr in enumerate(_list(rule.get("toCIDR"))):
        dests.append((str(cidr), True, f"{path}.toCIDR[{i}]", ""))
    for i, item in enumerate(_list(rule.get("toCIDRSet"))):
        item = _mapping(item)
        if "cidr" in item:
            dests.append((str(item["cidr"]), True, f"{path}.toCIDRSet[{i}].cidr", ""))
        else:  # a CiliumCIDRGroup is another object: what it holds cannot be judged here
            dests += [(a, True, f"{path}.toCIDRSet[{i}]", "a CIDR group reference") for a in _EVERY_ADDRESS]
    for i, entity in enumerate(_list(rule.get("toEntities"))):
        for a in _WORLD.get(str(entity), ()):
            dests.append((a, True, f"{path}.toEntities[{i}]", f"entity {entity}"))
    for i, selector in enumerate(_list(rule.get("toEndpoints"))):
        for a, who in _reserved(selector):
            dests.append((a, True, f"{path}.toEndpoints[{i}]", who))
    if "toGroups" in rule:
        dests += [(a, True, f"{path}.toGroups", "cloud provider groups") for a in _EVERY_ADDRESS]
    l3 = ("toFQDNs", "toCIDR", "toCIDRSet", "toEntities", "toGroups", "toEndpoints", "toServices", "toNodes",
          "toRequires")
    if not any(rule.get(k) for k in l3):
        # Ports alone: Cilium allows them to every destination.
        dests += [(a, True, path, "a rule without destinations opens every one") for a in _EVERY_ADDRESS]
    return [Request(d, address, p, namespace, where.at(at), who) for d, address, at, who in dests for p in ports]


# Cilium's reserved identities inside the cluster (pkg/labels IDName*): a selector naming
# one of these is the entity of that name, an in-cluster peer.
_IN_CLUSTER = frozenset({"host", "remote-node", "kube-apiserver", "health", "init", "ingress", "unmanaged", "none"})


def _reserved(selector: Any) -> list[tuple[str, str]]:
    """(address, who) for each address a ``toEndpoints`` selector on Cilium's reserved labels
    reaches. Cilium reads a key ``reserved:NAME`` (also ``$NAME``, or ``reserved.NAME`` in
    newer releases) as the reserved identity NAME and adds no namespace to such a selector
    (``getEndpointSelector``), so ``{"reserved:world": ""}`` is ``toEntities: [world]``
    (``EntitySelectorMapping``). Naming a world identity, ``all``, one Cilium does not
    define, or excluding one (NotIn, DoesNotExist: every other identity, the world's among
    them), reaches every address; naming an in-cluster identity is that in-cluster entity."""
    selector = _mapping(selector)
    named: list[tuple[str, bool]] = []  # identity, selected (not excluded)
    for key in _mapping(selector.get("matchLabels")):
        name = _reserved_name(key)
        if name is not None:
            named.append((name, True))
    for expression in _list(selector.get("matchExpressions")):
        expression = _mapping(expression)
        name = _reserved_name(expression.get("key"))
        if name is not None:
            named.append((name, expression.get("operator") in ("In", "Exists")))
    out: list[tuple[str, str]] = []
    for name, selected in named:
        if selected and name in _IN_CLUSTER:
            continue
        who = f"reserved:{name} selector" if selected else f"a selector excluding reserved:{name}"
        out += [(a, who) for a in (_WORLD.get(name, _EVERY_ADDRESS) if selected else _EVERY_ADDRESS)]
    return list(dict.fromkeys(out))


def _reserved_name(key: Any) -> str | None:
    if not isinstance(key, str):
        return None
    for prefix in ("reserved:", "$", "reserved."):
        if key.startswith(prefix):
            return key[len(prefix):]
    return None


def _cilium_ports(to_ports: Any) -> list[PortRange | None]:
    out: list[PortRange | None] = []
    for item in _list(to_ports):
        for port in _list(_mapping(item).get("ports")):
            first = _single(_mapping(port).get("port"))
            end = _single(_mapping(port).get("endPort"))
            if first is None:
                out.append(None)  # port 0, absent or named: every port
            else:
                out.append((first[0], end[0]) if end and end[0] > first[0] else first)
    return list(dict.fromkeys(out)) or [None]


def _pattern(pattern: str) -> str:
    """A Cilium matchPattern as the wildcard host covering every name it can match:
    ``*.example.com``, ``**.example.com`` and ``api-*.example.com`` all ask for
    ``*.example.com``; a ``*`` in the last label asks for everything."""
    labels = pattern.strip().lower().rstrip(".").split(".")
    starred = [i for i, label in enumerate(labels) if "*" in label]
    if not starred:
        return ".".join(labels)
    rest = labels[starred[-1] + 1:]
    return "*." + ".".join(rest) if rest else "*"


def _export_scopes(export_to: Any, namespace: str | None) -> list[str | None]:
    """The namespaces a ServiceEntry is visible in: EVERY_NAMESPACE, names, or None for "."
    when its namespace is not known."""
    if not isinstance(export_to, list) or not export_to or "*" in export_to:
        return [EVERY_NAMESPACE]
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
    # What does not parse ('٤٤٣', 'https') is a port name.
    number = port_number(value)
    return None if number is None else (number, number)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []

"""Source: in-cluster destinations a workload calls, outside its release's Services.

Declared three ways, each located where it was written:

- values, ``istio.inCluster``: a list of ``{namespace, service, ports, selector}`` for every
  workload the values apply to;
- the ``<prefix>/in-cluster`` annotation: ``NAMESPACE/SERVICE[:PORT[/PROTOCOL][,PORT...]]``
  items separated by white space, for that workload;
- an ``istio.egress`` entry (values or annotations) whose hosts are cluster names
  (``invoices.billing.svc.cluster.local``): a ServiceEntry for one would take that Service
  over for every proxy of the namespace as MESH_EXTERNAL (plaintext, breaking STRICT mTLS),
  so it becomes an in-cluster destination instead, never a ServiceEntry.

Each becomes a ``Reach``: the Sidecar imports ``ns/service.ns.svc.<domain>``, the network
policies reach the Service's pods on the target ports of the ports dialled (the Service's
selector and port map when it is in the stream; else the declared selector, or any pod of
its namespace, on the declared target ports). Every in-cluster host a Sidecar imports
for it (``--sidecar-host``, the ``sidecar-hosts`` annotation) gets its network peer the same
way, on every port when the Service is not in the stream. Where those labels select the pods
of a hostNetwork workload of the stream, the nodes are reached instead (``hostnet``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from post_renderer.errors import Location, Problem, Problems
from post_renderer.hostnet import HostNetwork, Nodes, Unopened, on_nodes, unnamed_warning
from post_renderer.inmesh import Service
from post_renderer.model import EgressEntry, InCluster, Workload
from post_renderer.names import dns_label_problem, label_key_problem, label_value_problem
from post_renderer.reach import Reach, Reached, pods
from post_renderer.settings import PortSpec, Settings

if TYPE_CHECKING:
    from post_renderer.access import Access
    from post_renderer.find import Found

NEED = None  # the Services come with the mesh objects (``inmesh``)
PROTOCOLS = ("TCP", "UDP", "SCTP")  # a Service port's
_PORT = re.compile(r"([0-9]{1,5})(?:/([A-Za-z]+))?\Z")
_SPLIT = re.compile(r"[\s]+", re.ASCII)
Locate = Callable[[Sequence[str | int]], Location]


# ------------------------------------------------------------------------ declarations


def cluster_service(host: str, domain: str) -> tuple[str, str] | None | bool:
    """(namespace, Service) a cluster name names — ``*`` for a wildcard over a namespace's
    Services, a headless Service's pod name (``web-0.web.ns.svc...``) naming its Service —
    False for a cluster name that names no Service, None for any other name."""
    for suffix in (f".svc.{domain}", ".svc"):
        if host.endswith(suffix):
            parts = host[: -len(suffix)].split(".")
            if len(parts) < 2 or parts[-1] == "*" or (parts[-2] == "*" and len(parts) > 2):
                return False
            return parts[-1], parts[-2]
    return None


def from_entries(entries: Sequence[EgressEntry], settings: Settings,
                 problems: Problems) -> tuple[list[EgressEntry], list[InCluster]]:
    """The external entries, and the in-cluster destinations the others declare."""
    external: list[EgressEntry] = []
    found: list[InCluster] = []
    for entry in entries:
        named = [(h, cluster_service(h, settings.cluster_domain)) for h in entry.hosts]
        cluster = [(h, n) for h, n in named if n is not None]
        if not cluster:
            external.append(entry)
            continue
        if len(cluster) < len(named) or entry.addresses:
            problems.add(entry.origin, (
                f"entry {entry.name}: {cluster[0][0]} is a cluster name, and a ServiceEntry for it would take that "
                "Service over for every proxy of the namespace (MESH_EXTERNAL: plaintext, breaking STRICT mTLS); "
                "declare cluster names in an entry of their own, or under istio.inCluster"))
            continue
        ports = tuple(("UDP" if p.protocol == "UDP" else "TCP", p.number, p.number) for p in entry.ports)
        for host, service in cluster:
            if not isinstance(service, tuple):
                problems.add(entry.origin, (
                    f"entry {entry.name}: {host} is a cluster name that names no Service (NAME.NAMESPACE.svc."
                    f"{settings.cluster_domain}, or *.NAMESPACE.svc.{settings.cluster_domain} for any of a namespace)"))
                continue
            found.append(InCluster(service[0], service[1], ports, {}, entry.origin))
    return external, found


def from_values(raw: Any, locate: Locate, problems: Problems) -> list[InCluster]:
    """``istio.inCluster``: a list of ``{namespace, service, ports, selector}``."""
    if not isinstance(raw, list):
        problems.add(locate([]), "must be a list of {namespace, service, ports, selector}")
        return []
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            problems.add(locate([i]), "must be a mapping with namespace, service and ports")
            continue
        for key in sorted(set(map(str, item)) - {"namespace", "service", "ports", "selector"}):
            problems.add(locate([i, key]), f"unknown key {key!r} (known: namespace, service, ports, selector)")
        names = [_name(item.get(key), locate([i, key]), what, problems)
                 for key, what in (("namespace", "namespace"), ("service", "Service name"))]
        ports = _value_ports(item.get("ports"), lambda path: locate([i, "ports", *path]), problems)
        selector = _selector(item.get("selector"), locate([i, "selector"]), problems)
        namespace, service = names
        if namespace and service and ports is not None and selector is not None:
            out.append(InCluster(namespace, service, ports, selector, locate([i])))
    return out


def from_annotation(text: str, where: Location, problems: Problems) -> list[InCluster]:
    """``NAMESPACE/SERVICE[:PORT[/PROTOCOL][,PORT...]]`` items, separated by white space."""
    out = []
    for item in filter(None, _SPLIT.split(text.strip())):
        target, _, ports_text = item.partition(":")
        namespace, slash, service = target.partition("/")
        if not slash:
            problems.add(where, f"{item}: expected NAMESPACE/SERVICE[:PORT[/PROTOCOL][,PORT...]]")
            continue
        names = [_name(namespace, where, "namespace", problems, item), _name(service, where, "Service name", problems, item)]
        ports: list[tuple[str, int, int | str]] = []
        for part in filter(None, ports_text.split(",")) if ports_text else ():
            m = _PORT.match(part.strip())
            protocol = (m.group(2) or "TCP").upper() if m else ""
            if not m or not 1 <= int(m.group(1)) <= 65535 or protocol not in PROTOCOLS:
                problems.add(where, f"{item}: {part!r} is not PORT[/TCP|UDP|SCTP] (1-65535)")
                continue
            ports.append((protocol, int(m.group(1)), int(m.group(1))))
        if names[0] and names[1]:
            out.append(InCluster(names[0], names[1], tuple(dict.fromkeys(ports)), {}, where))
    return out


def _name(value: Any, where: Location, what: str, problems: Problems, item: str | None = None) -> str | None:
    why = dns_label_problem(value, what) if isinstance(value, str) else f"{what} must be a string"
    if why:
        problems.add(where, f"{item}: {why}" if item else why)
        return None
    return str(value)


def _value_ports(raw: Any, locate: Locate, problems: Problems) -> tuple[tuple[str, int, int | str], ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add(locate([]), "must be a list of ports: a number, or {port, targetPort, protocol}")
        return None
    out: list[tuple[str, int, int | str]] = []
    ok = True
    for i, item in enumerate(raw):
        port, target, protocol = (item.get("port"), item.get("targetPort"), item.get("protocol", "TCP")) \
            if isinstance(item, dict) else (item, None, "TCP")
        if isinstance(item, dict):
            for key in sorted(set(map(str, item)) - {"port", "targetPort", "protocol"}):
                problems.add(locate([i, key]), f"unknown key {key!r} (known: port, targetPort, protocol)")
                ok = False
        if not isinstance(port, int) or not _number(port):
            problems.add(locate([i]), f"{port!r} is not a port (1-65535)")
            ok = False
            continue
        if target is not None and not (_number(target) or _port_name(target)):
            problems.add(locate([i, "targetPort"]), f"{target!r} is not a port (1-65535) or a port name")
            ok = False
            continue
        if protocol not in PROTOCOLS:
            problems.add(locate([i, "protocol"]), f"{protocol!r} is not one of {', '.join(PROTOCOLS)}")
            ok = False
            continue
        out.append((str(protocol), port, target if target is not None else port))
    return tuple(dict.fromkeys(out)) if ok else None


def _number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _port_name(value: Any) -> bool:
    # An IANA service name: what a container port's name may be.
    return isinstance(value, str) and re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?", value) is not None \
        and "--" not in value and any(c.isalpha() for c in value)


def _selector(raw: Any, where: Location, problems: Problems) -> dict[str, str] | None:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        problems.add(where, "must be a mapping of the pods' labels, key: value")
        return None
    out = {}
    for key, value in raw.items():
        why = label_key_problem(key) if isinstance(key, str) else "label keys must be strings"
        why = why or (label_value_problem(value) if isinstance(value, str) else "label values must be strings")
        if why:
            problems.add(where, f"{key!r}: {why}")
            return None
        out[key] = value
    return out


# ------------------------------------------------------------------------ reach


def service_name(host: str, domain: str) -> tuple[str, str] | None:
    named = cluster_service(host, domain)
    return named if isinstance(named, tuple) else None


def _target_ports(d: InCluster, known: Service | None, problems: Problems) -> tuple[PortSpec, ...] | None:
    """What the policies open for ``d``: the target ports of the ports it dials."""
    if known is not None and known.port_map:
        if not d.ports:
            return known.target_ports
        out: list[PortSpec] = []
        for protocol, port, _ in d.ports:
            targets = [(p, t) for p, n, t in known.port_map if n == port and p == protocol]
            if not targets:
                dialled = ", ".join(f"{n}/{p}" for p, n, _ in known.port_map)
                problems.add(d.origin, f"{d.namespace}/{d.service}: the Service has no port {port}/{protocol} "
                                       f"(it has {dialled})")
                return None
            out += targets
        return tuple(dict.fromkeys(out))
    if not d.ports:
        problems.add(d.origin, (
            f"{d.namespace}/{d.service}: the Service is not in the stream, so its ports are not known: declare "
            "the ports the workload dials (and their targetPort when the pods listen on another)"))
        return None
    return tuple(dict.fromkeys((p, t) for p, _, t in d.ports))


class _Nodes:
    """Declared destinations whose pods run with hostNetwork (``hostnet``): reached on the
    nodes, each Service's unresolved port names warned of once, and the callers the nodes
    are not opened for under NetworkPolicy without --node-cidr."""

    def __init__(self, found: Found, settings: Settings) -> None:
        self.hostnet = HostNetwork(found.inventory.workloads, found.home)
        self.settings = settings
        self.selected: dict[tuple[object, ...], Nodes | None] = {}
        self.of: dict[int, tuple[Reach, Nodes]] = {}  # by id of the reach turned
        self.warnings: list[Problem] = []
        self.unopened = Unopened(settings)

    def turn(self, r: Reach, labels: dict[str, str], ports: tuple[PortSpec, ...], where: Location) -> Reach:
        """``r`` reaching the nodes where ``labels`` select host-network pods of its namespace."""
        namespace = r.peer.namespace if r.peer is not None else ""
        key = (namespace, tuple(sorted(labels.items())), ports)
        if key not in self.selected:
            nodes = self.selected[key] = self.hostnet.select(namespace, labels, ports)
            if nodes is not None and nodes.unnamed and self.settings.network_policy != "none":
                self.warnings.append(unnamed_warning(where, r.why, nodes))
        nodes = self.selected[key]
        if nodes is None:
            return r
        turned = on_nodes(r, nodes, self.settings)
        self.of[id(turned)] = (turned, nodes)  # the reach held too: its id stays its own
        return turned

    def called(self, caller: Workload, reaches: Sequence[Reach]) -> None:
        for r in reaches:
            held = self.of.get(id(r))
            if held is not None:
                self.unopened.add(caller, r.why, held[1])


def destination_reach(d: InCluster, services: dict[tuple[str, str], Service], settings: Settings,
                      problems: Problems, nodes: _Nodes) -> Reach | None:
    known = services.get((d.namespace, d.service))
    ports = _target_ports(d, known, problems)
    if ports is None:
        return None
    labels = d.selector or (known.selector if known is not None and known.selector else {})
    host = f"{d.service}.{d.namespace}.svc.{settings.cluster_domain}"
    r = Reach(f"Service {d.namespace}/{d.service}", pods(d.namespace, labels, ports, settings),
              (f"{d.namespace}/{host}",), by=d.origin.brief())
    return nodes.turn(r, labels, ports, known.location if known is not None else d.origin)


def peer_reach(by: str, namespace: str, service: str, services: dict[tuple[str, str], Service],
               settings: Settings, nodes: _Nodes) -> Reach:
    """A Sidecar import's peer: the Service's pods on its target ports when it is in the
    stream, else every pod of its namespace."""
    known = services.get((namespace, service))
    why = f"Service {namespace}/{service}"
    if known is not None and known.selector is not None and known.target_ports:
        r = Reach(why, pods(namespace, known.selector, known.target_ports, settings), by=by)
        return nodes.turn(r, known.selector, known.target_ports, known.location)
    return Reach(why, pods(namespace, {}, (), settings), by=by)


def reach(found: Found, access: Sequence[Access], settings: Settings) -> Reached:
    home = found.home
    domain = settings.cluster_domain
    services = {(s.namespace or home or "", s.name): s for s in found.inmesh.services}
    problems = Problems()
    declared: dict[int, Reach | None] = {}  # by id: the release-wide ones are built (and refused) once
    nodes = _Nodes(found, settings)

    def built(d: InCluster) -> Reach | None:
        if id(d) not in declared:
            declared[id(d)] = destination_reach(d, services, settings, problems, nodes)
        return declared[id(d)]

    out: dict[int, list[Reach]] = {}
    release_wide = found.in_cluster if found.egress.present else ()
    for a in access:
        mine: list[Reach] = []
        for d in (*release_wide, *found.intents[a.workload.doc_index].in_cluster):
            r = built(d)
            if r is not None:
                mine.append(r)
        if a.sidecar:
            scope = a.namespace or home or ""
            added = [(h, "--sidecar-host") for h in settings.sidecar_hosts]
            added += [(h.host, f"{settings.annotation_prefix}/sidecar-hosts") for h in a.sidecar_hosts]
            for imported, by in added:
                namespace, _, dns_name = imported.partition("/")
                named = service_name(dns_name, domain)
                if named is None or namespace in ("*", "~"):
                    continue  # not a Service of the cluster, or from any namespace: no peer to name
                namespace = scope if namespace == "." else namespace
                if named[0] != namespace:
                    continue  # imported from a namespace it does not live in: Istio finds nothing
                mine.append(peer_reach(f"{by} {imported}", namespace, named[1], services, settings, nodes))
        out[a.workload.doc_index] = mine
        nodes.called(a.workload, mine)
    return Reached(out, nodes.warnings + nodes.unopened.warnings, nodes.unopened.notes(), list(problems.items))

"""What a workload must reach inside the cluster besides its external destinations.

Its external hosts and addresses are entries (``Planned``), served by ServiceEntries.
Everything else a real workload calls is a ``Reach``: the release's own Services, the
in-cluster destinations it declares, the mesh's own Services, the Kubernetes API server
when its RBAC says it talks to it. Each source of reach is one module of ``SOURCES``; it
says per workload what to open and why, and every per-workload output kind translates a
``Reach`` into its own terms (a NetworkPolicy peer or ipBlock, a Cilium endpoint, entity
or CIDR, a Sidecar import) and says what that opens (``explain_reach``). Cluster DNS and
istiod (the waypoint, in ambient mode) are no source's: every policy reaches them, whatever
the workload declares; ``Context.reach`` puts them first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from post_renderer.addresses import IPNetwork, excepts_for
from post_renderer.errors import Problem
from post_renderer.read import Need
from post_renderer.settings import HBONE_PORT, PeerSelector, PortSpec, Settings

if TYPE_CHECKING:
    from post_renderer.access import Access
    from post_renderer.find import Found


class Reach(NamedTuple):
    """One thing in the cluster a workload's policies let it reach."""

    why: str  # what it is, for explain: "Service web", "Kubernetes API server"
    peer: PeerSelector | None = None  # pods: a NetworkPolicy peer, Cilium toEndpoints
    imports: tuple[str, ...] = ()  # Istio Sidecar hosts, `namespace/dnsName`
    # Cilium entities (kube-apiserver; host and remote-node, the nodes where host-network
    # pods listen): CIDRs never select their identities, so a NetworkPolicy's ``cidrs``
    # stand in for them.
    entities: tuple[str, ...] = ()
    cidrs: tuple[IPNetwork, ...] = ()  # NetworkPolicy ipBlocks (Cilium: toCIDRSet, unless entities)
    ports: tuple[PortSpec, ...] = ()  # of the entities and CIDRs; empty: every port
    by: str = ""  # who asked, for explain: a flag, where it was declared, the chart's RBAC
    # The cluster DNS: Cilium must proxy its queries, or toFQDNs never learns an address.
    dns: bool = False

    def key(self) -> tuple[object, ...]:
        """What the reach opens, hashable (the peer's labels are a dict)."""
        peer = self.peer
        opened = (peer.namespace, tuple(sorted(peer.labels.items())), peer.ports) if peer else None
        return opened, self.imports, self.entities, self.cidrs, self.ports, self.dns


# A pod with ``hostNetwork: true`` shares its node's network namespace: Cilium gives it
# the node's identity, ``host`` on its own node and ``remote-node`` on the others (Cilium's
# policy language, "Entities Based": each "also includes all containers running in host
# networking mode"), never its pod labels; NetworkPolicy plugins do not select it by its
# labels either (projectcalico/calico#4667, #4493: prometheus-node-exporter). ``remote-node``
# needed ``enable-remote-node-identity``, on in Cilium's install defaults since the 1.6 -> 1.7
# upgrade (cilium/cilium#13042), deprecated in 1.15 (#30208) and always on once removed
# (#31228); with it off, other nodes were ``host`` too, so naming both holds either way.
NODE_ENTITIES = ("host", "remote-node")
# What a NetworkPolicy, which names no entity, needs given to open what an entity stands
# for: the option with the addresses, and what lives there.
_ADDRESSES = {"kube-apiserver": ("--apiserver-cidr", "the API server"),
              "host": ("--node-cidr", "the nodes (where host-network pods listen)"),
              "remote-node": ("--node-cidr", "the nodes (where host-network pods listen)")}


def unaddressed(entities: tuple[str, ...]) -> str:
    """What a NetworkPolicy opens for ``entities`` without their addresses, for explain."""
    flag, what = _ADDRESSES.get(entities[0], ("addresses", "it")) if entities else ("addresses", "it")
    return f"nothing: no {flag} (a NetworkPolicy names {what} only by address)"


class Reached(NamedTuple):
    """What one source adds: per workload (by document index), and what to say about it."""

    reach: dict[int, list[Reach]]
    warnings: list[Problem]
    notes: list[str]
    errors: list[Problem] = []  # what it cannot open as asked: refused before anything is written


class Source(Protocol):
    @property
    def NEED(self) -> Need | None: ...  # the documents it reads besides workloads, if any

    def reach(self, found: Found, access: Sequence[Access], settings: Settings) -> Reached: ...


def pods(namespace: str, labels: dict[str, str], ports: tuple[PortSpec, ...], settings: Settings) -> PeerSelector:
    """Pods of ``namespace`` ("": the policy's own) with ``labels`` ({}: every one) on
    ``ports`` (empty: every port). In ambient mode the workload's ztunnel reaches an
    in-mesh pod through HBONE on its port 15008, so that port is opened with the others."""
    if settings.mesh == "ambient" and ports and ("TCP", HBONE_PORT) not in ports:
        ports = (*ports, ("TCP", HBONE_PORT))
    return PeerSelector(namespace, labels, ports)


def ports_text(ports: tuple[PortSpec, ...]) -> str:
    """Ports as explain says them: "on ports UDP/53, TCP/53"; none is every port."""
    if not ports:
        return "on every port"
    return f"on port{'s' if len(ports) > 1 else ''} " + ", ".join(f"{proto}/{port}" for proto, port in ports)


def peer_text(peer: PeerSelector) -> str:
    """A peer as explain says it: "pods app=api in namespace prod on port TCP/http"."""
    who = "pods " + ", ".join(f"{k}={v}" for k, v in peer.labels.items()) if peer.labels else "every pod"
    where = f"in namespace {peer.namespace}" if peer.namespace else "in its own namespace"
    return f"{who} {where} {ports_text(peer.ports)}"


def cidrs_text(cidrs: tuple[IPNetwork, ...]) -> str:
    """CIDRs as explain says them, with the link-local and metadata ranges every block
    written for a reach leaves out."""
    out = []
    for net in cidrs:
        excepts = excepts_for(net)
        out.append(f"{net} (except {', '.join(map(str, excepts))})" if excepts else str(net))
    return ", ".join(out)


def sources() -> tuple[Source, ...]:
    # Imported here: the sources read the find stage's record, which imports this module's
    # users; the order is the order their rules are written in.
    from post_renderer import apiserver, incluster, meshinfra, ownservices

    return (ownservices, incluster, meshinfra, apiserver)


def needs(settings: Settings) -> list[Need]:
    return [s.NEED for s in sources() if s.NEED is not None]


class Gathered(NamedTuple):
    # Each with its reach, in source order, each reach once; equal reaches are one object.
    access: list[Access]
    warnings: list[Problem]
    notes: list[str]
    errors: list[Problem]


def gather(found: Found, access: Sequence[Access], settings: Settings) -> Gathered:
    keys: dict[int, tuple[object, ...]] = {}  # by id: sources share one Reach among workloads
    # One object for equal reaches, whichever source made them: the kinds build the rules
    # of equal reach lists once, and tell them by the objects' identity. Equal includes
    # who asked, or explain would name another workload's declaration.
    canonical: dict[tuple[object, ...], Reach] = {}
    out = Gathered([], [], [], [])
    results = [source.reach(found, access, settings) for source in sources()]  # alive: ``keys`` is by id
    for reached in results:
        out.warnings.extend(reached.warnings)
        out.notes.extend(reached.notes)
        out.errors.extend(reached.errors)
    # Merged one source at a time, each step remembered by what it merged: workloads the
    # sources give the same list (the release's Services, to every one of them) share the
    # step, and its tuple. Merging each workload anew made 200 workloads x 200 Services slow.
    Merged = tuple[dict[tuple[object, ...], Reach], tuple[Reach, ...]]
    start: Merged = ({}, ())
    steps: dict[tuple[int, int], Merged] = {}
    for a in access:
        state = start
        for reached in results:
            items = reached.reach.get(a.workload.doc_index)
            if not items:
                continue
            step = steps.get((id(state[1]), id(items)))
            if step is None:
                mine = dict(state[0])
                for r in items:
                    key = keys.get(id(r))
                    if key is None:
                        key = keys[id(r)] = r.key()
                    mine.setdefault(key, canonical.setdefault((key, r.why, r.by), r))
                step = steps[(id(state[1]), id(items))] = (mine, tuple(mine.values()))
            state = step
        out.access.append(a._replace(reach=state[1]))
    return out

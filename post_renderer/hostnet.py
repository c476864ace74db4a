"""Services whose pods run with ``hostNetwork: true``: reached on their nodes, never by labels.

Such a pod shares its node's network namespace and listens on the node's address; no
policy selects it by its labels (``reach.NODE_ENTITIES`` has the facts and sources), so a
pod peer for its Service opens nothing that reaches it. When a Service's selector selects
the pods of such a workload of the stream, its reach opens the nodes instead, on the
Service's target ports as numbers (its containerPort is the port it binds on the node; a
named target port is resolved through the workload's container ports, since only a pod
has port names): Cilium's ``host`` and ``remote-node`` entities, and for NetworkPolicy each
``--node-cidr``. The pod peer stays when the selector also selects the pods of a workload
with a network of its own. The nodes are never opened without ports, nor for a Service
whose pods are not host-network ones. Ambient: the nodes are not in the mesh, so no HBONE
port is opened on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from post_renderer.errors import Location, Problem
from post_renderer.inmesh import selector_matcher
from post_renderer.model import Workload
from post_renderer.reach import NODE_ENTITIES, Reach, ports_text
from post_renderer.settings import PortSpec, Settings


class Nodes(NamedTuple):
    """Where a Service's host-network pods are reached."""

    workloads: tuple[Workload, ...]  # the host-network workloads its selector selects
    ports: tuple[PortSpec, ...]  # its target ports, as numbers on the node
    pods_too: bool  # it also selects the pods of a workload with a network of its own
    unnamed: tuple[PortSpec, ...]  # named target ports none of their container ports names

    def names(self) -> str:
        return ", ".join(f"{w.kind}/{w.name}" for w in self.workloads)


class HostNetwork:
    """The stream's host-network workloads, for finding the Services that select them."""

    def __init__(self, workloads: Sequence[Workload], home: str | None) -> None:
        self.home = home
        self.hosted = [w for w in workloads if w.host_network]
        # Read only for a Service that selects a host-network workload: most streams have none.
        self.others = [w for w in workloads if not w.host_network] if self.hosted else []

    def select(self, namespace: str | None, labels: dict[str, str] | None,
               target_ports: tuple[PortSpec, ...]) -> Nodes | None:
        """The host-network workloads of ``namespace`` (None: Helm's, unnamed) whose pods
        ``labels`` select, and where they are reached; None when there are none. No
        labels (every pod of a namespace) never stand for the nodes: that would open them
        for a rule that names no Service's pods."""
        if not self.hosted or not labels:
            return None
        matches = selector_matcher({"matchLabels": labels})
        hosted = tuple(w for w in self.hosted if (w.namespace or self.home) == namespace and matches(w.pod_labels))
        if not hosted:
            return None
        ports: dict[PortSpec, None] = {}
        unnamed: list[PortSpec] = []
        for protocol, target in target_ports:
            if isinstance(target, int):
                ports[(protocol, target)] = None
                continue
            # The endpoints controller looks a name up per pod, with the Service port's protocol.
            numbers: list[PortSpec] = [(protocol, n) for w in hosted for name, proto, n in w.host_ports
                       if name == target and proto == protocol]
            if numbers:
                ports.update(dict.fromkeys(numbers))
            else:
                unnamed.append((protocol, target))
        pods_too = any((w.namespace or self.home) == namespace and matches(w.pod_labels) for w in self.others)
        return Nodes(hosted, tuple(ports), pods_too, tuple(unnamed))


def on_nodes(reach: Reach, nodes: Nodes, settings: Settings) -> Reach:
    """``reach`` opening the nodes on ``nodes.ports`` (nothing without ports), its pod peer
    kept only for pods with a network of their own."""
    ported = bool(nodes.ports)
    return reach._replace(peer=reach.peer if nodes.pods_too else None,
                          entities=NODE_ENTITIES if ported else (),
                          cidrs=settings.node_cidrs if ported else (),
                          ports=nodes.ports)


def unnamed_warning(where: Location, what: str, nodes: Nodes) -> Problem:
    names = ", ".join(f"{port!r} ({protocol})" for protocol, port in nodes.unnamed)
    return Problem(where, (
        f"{what}: targetPort {names} names no container port of its hostNetwork pods ({nodes.names()}), so "
        "Kubernetes gives the Service no endpoint there, and no policy opens it"))


class Unopened:
    """Under NetworkPolicy without ``--node-cidr``, the nodes are not opened: ``check``
    warns for each caller and Service, and ``render`` notes it once, as for the API server."""

    def __init__(self, settings: Settings) -> None:
        self.active = settings.network_policy == "kubernetes" and not settings.node_cidrs
        self.warnings: list[Problem] = []
        self._callers: dict[str, None] = {}
        self._services: dict[str, None] = {}

    def add(self, caller: Workload, what: str, nodes: Nodes) -> None:
        if not self.active or not nodes.ports or caller.host_network:
            return  # a host-network caller's own policy never applies (plan warns of that)
        self._callers[f"{caller.kind}/{caller.name}"] = None
        self._services[what] = None
        self.warnings.append(Problem(caller.location, (
            f"its NetworkPolicy opens {what} for it, whose pods ({nodes.names()}) run with hostNetwork: they listen "
            "on their node's address, which no pod selector selects and a NetworkPolicy names only by address; no "
            f"--node-cidr is given, so its calls to them {ports_text(nodes.ports)} are dropped; pass the nodes' "
            "addresses (kubectl get nodes -o wide) with --node-cidr")))

    def notes(self) -> list[str]:
        if not self._callers:
            return []
        return [f"the nodes are not opened for {', '.join(self._callers)}: the pods of {', '.join(self._services)} "
                "run with hostNetwork, which a NetworkPolicy names only by address; pass --node-cidr (the nodes' "
                "addresses)"]

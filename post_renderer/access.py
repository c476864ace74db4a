"""What each workload may reach, computed once: the model every output kind and ``explain`` read.

A workload's access is the entries it may reach (the release-wide values when they apply,
then its own annotations), each with the resolution its ServiceEntry carries and where it
was declared, plus the in-mesh hosts its Sidecar imports. ``Context`` adds what answers
"which ServiceEntry serves this destination, and from which namespace" (``serving.Serving``:
the chart's own ServiceEntries, the global allowlist and the ServiceEntries this run
writes). It is built once by the plan stage and never changed after; output kinds
(``post_renderer.kinds``) only translate it into their own objects.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import NamedTuple

from post_renderer.addresses import covering_wildcards, destination_key, is_address
from post_renderer.dialled import Target
from post_renderer.errors import Problem
from post_renderer.inmesh import InMesh
from post_renderer.model import Port, SidecarHost, Workload, per_release
from post_renderer.reach import Reach
from post_renderer.serving import Serving
from post_renderer.settings import Settings
from post_renderer.synth import (
    Claim,
    Claims,
    Planned,
    by_name,
    needs_waypoint,
    network_reach,
    waypoint_namespace,
    waypoint_peer,
)


class Access(NamedTuple):
    workload: Workload
    namespace: str | None  # where its policies go: its own, else --namespace
    policy_name: str  # `<workload>-egress`, shared by every per-workload kind
    planned: tuple[Planned, ...]  # release-wide entries first (when values apply), then its own
    sources: tuple[str, ...]  # values:<file>, annotations:<Kind/name>
    sidecar: bool = False  # gets a Sidecar: --sidecar, and not opted out
    sidecar_hosts: tuple[SidecarHost, ...] = ()
    # What it reaches in the cluster besides its entries (``reach``: its release's Services,
    # declared in-cluster destinations, the mesh's Services, the API server).
    reach: tuple[Reach, ...] = ()

    @property
    def hostnames(self) -> list[str]:
        """Every hostname it declared, once, in declaration order."""
        return list(dict.fromkeys(h for p in self.planned for h in p.entry.hosts))


class LabelSelection(NamedTuple):
    labels: dict[str, str]
    still: list[Workload]  # other workloads whose pods carry every one of ``labels``


class Context:
    """Everything an output kind reads; built once by the plan stage, read-only after."""

    def __init__(
        self, *, settings: Settings, release: str | None, home: str | None, access: list[Access],
        service_entries: Serving | None = None, inmesh: InMesh | None = None, workloads: list[Workload] | None = None,
    ) -> None:
        self.settings = settings
        self.release = release
        self.home = home  # where documents that name no namespace land, when it can be told
        self.access = access
        self.service_entries = service_entries if service_entries is not None else Serving(Claims(), (), (), ())
        self.inmesh = inmesh if inmesh is not None else InMesh()
        # Every pod-bearing workload of the stream, served or not (hooks, ignored, no egress):
        # a label selector written for one must not take in another's pods unnoticed.
        self.workloads: list[Workload] = workloads if workloads is not None else []

    def scope(self, access: Access) -> str | None:
        return access.namespace or self.home

    def carrying_all(self, labels: Mapping[str, object]) -> list[Workload]:
        """The workloads whose pods carry every one of ``labels`` (key=value), in stream
        order; every workload when there are none.

        Looked up in the label index under the rarest of them: tested against the
        workloads of its first label only, 3,000 workloads sharing that one label made a
        render quadratic (37 s)."""
        if not labels:
            return self.workloads
        index = self._by_label
        buckets = [index.get((str(k), str(v)), []) for k, v in labels.items()]
        rarest = min(buckets, key=len)
        return [w for w in rarest if all(w.pod_labels.get(str(k)) == str(v) for k, v in labels.items())]

    @cached_property
    def _by_label(self) -> dict[tuple[str, str], list[Workload]]:
        index: dict[tuple[str, str], list[Workload]] = {}
        for w in self.workloads:
            for pair in w.pod_labels.items():
                index.setdefault(pair, []).append(w)
        return index

    def carrying(self, access: Access) -> list[Workload]:
        """The other workloads of its namespace whose pods carry every one of its stable
        labels, and so are selected by a selector made of those alone."""
        mine = access.workload
        found = self._carrying.get(mine.doc_index)
        if found is None:  # asked by several kinds, for errors, warnings and selectors
            scope = self.scope(access)
            found = self._carrying[mine.doc_index] = [
                w for w in self.carrying_all(mine.stable_labels)
                if w.doc_index != mine.doc_index and (w.namespace or self.settings.namespace or self.home) == scope]
        return found

    def label_selector(self, access: Access) -> LabelSelection:
        """The labels a label-only selector (Sidecar, Cilium) selects its pods by, and the
        other workloads whose pods those still select.

        Its stable labels, never a per-release one (version, chart: a rollout's old pods
        carry the old value and would go unselected). Where that takes in another
        workload's pods, one more label of its own pods that theirs carry with another
        value, or not at all, leaves them out, if a stable one can."""
        found = self._selections.get(access.workload.doc_index)
        if found is not None:
            return found
        mine = access.workload
        labels = dict(mine.stable_labels)
        still = []
        for other in self.carrying(access):
            if any(other.pod_labels.get(k) != v for k, v in labels.items()):
                continue  # a label added for an earlier one leaves it out too
            differ = sorted(k for k, v in mine.pod_labels.items() if not per_release(k) and other.pod_labels.get(k) != v)
            if differ:
                labels[differ[0]] = mine.pod_labels[differ[0]]
            else:
                still.append(other)
        still = [w for w in still if all(w.pod_labels.get(k) == v for k, v in labels.items())]
        found = self._selections[mine.doc_index] = LabelSelection(dict(sorted(labels.items())), still)
        return found

    @cached_property
    def _selections(self) -> dict[int, LabelSelection]:
        return {}

    @cached_property
    def written(self) -> frozenset[tuple[str | None, str]]:
        """(namespace, name) of each ServiceEntry this run writes, as its claims name it."""
        return frozenset((w.wanted.namespace or self.home, w.name) for w in self.service_entries.written)

    @cached_property
    def declarers(self) -> dict[str, list[Access]]:
        """Each declared hostname, in the order first declared, and the first two
        workloads that declared it (enough to name another than any one of them)."""
        out: dict[str, list[Access]] = {}
        for a in self.access:
            for host in a.hostnames:
                found = out.setdefault(host, [])
                if len(found) < 2:
                    found.append(a)
        return out

    @cached_property
    def _declared_order(self) -> dict[str, int]:
        return {host: i for i, host in enumerate(self.declarers)}

    @cached_property
    def _declared_below(self) -> dict[str, list[str]]:
        """`.x` -> the declared hostnames below x (``*.x`` covers them)."""
        out: dict[str, list[str]] = {}
        for host in self.declarers:
            below = host[2:] if host.startswith("*.") else host
            for i, char in enumerate(below):
                if char == ".":
                    out.setdefault(below[i:], []).append(host)
        return out

    def overlapping(self, name: str) -> list[str]:
        """The declared hostnames that cover ``name`` or that ``name`` covers (a wildcard
        either side takes in the names below it), in the order first declared."""
        found = {h for h in (name, *covering_wildcards(name)) if h in self.declarers}
        if name.startswith("*."):
            found.update(self._declared_below.get(name[1:], ()))
        return sorted(found, key=self._declared_order.__getitem__)

    def declared_by_another(self, host: str, mine: Access) -> Workload | None:
        """The first workload other than ``mine`` that declared ``host``."""
        return next((a.workload for a in self.declarers.get(host, ()) if a is not mine), None)

    @cached_property
    def _carrying(self) -> dict[int, list[Workload]]:
        return {}

    def serving(self, access: Access, dest: str, port: int) -> Claim | None:
        """The ServiceEntry claim that lets the mesh route ``dest:port`` for this workload."""
        scope = self.scope(access)
        key = destination_key(dest)
        found = self.service_entries.claims.covering(key, port, scope)
        # Istio routes a name to the ServiceEntry with that exact host before a wildcard
        # one; a Sidecar can import only a ServiceEntry with an FQDN host; one whose
        # namespace is known names the narrowest import.
        return min(found, key=lambda c: (c.dest != key, c.short_named, c.namespace == "*"), default=None)

    @cached_property
    def dialling(self) -> bool:
        """Whether a ServiceEntry of the stream sends the proxy somewhere other than the
        destination on its port (a targetPort, endpoints): without one, no lookup is needed."""
        return any(c.dials is not None for c in self.service_entries.claims)

    def dialled(self, access: Access, dest: str, address: bool, port: Port) -> tuple[Target, ...]:
        """Where the workload's traffic to ``dest:port`` leaves the pod for: the destination
        itself, or what the ServiceEntry serving it dials instead (nothing: it has no
        upstream)."""
        claim = self.serving(access, dest, port.number) if self.dialling else None
        if claim is None or claim.dials is None:
            return (Target(dest, address, port.number, port.transport),)
        return tuple(Target(u.dest, is_address(u.dest), u.port, port.transport, claim.source) if u.dest else
                     Target(dest, address, u.port, port.transport, claim.source) for u in claim.dials)

    def targets(self, access: Access) -> tuple[tuple[Target, ...], ...]:
        """What a network-layer policy opens for each entry of the workload: each destination
        the pod reaches it by (its hostnames, when the proxy dials them by name and no
        ambient waypoint does; its addresses), on each port, as the serving ServiceEntry
        dials it."""
        found = self._targets.get(access.workload.doc_index)
        if found is None:  # read by the kinds' rules, their warnings and shared-rule keys
            ambient = self.settings.mesh == "ambient"
            per_entry = []
            for p in access.planned:
                names = p.entry.hosts if by_name(p) and not ambient else ()
                dests = [*((h, False) for h in names), *((a, True) for a in p.entry.addresses)]
                per_entry.append(tuple(t for dest, address in dests for port in p.entry.ports
                                       for t in self.dialled(access, dest, address, port)))
            found = self._targets[access.workload.doc_index] = tuple(per_entry)
        return found

    @cached_property
    def _targets(self) -> dict[int, tuple[tuple[Target, ...], ...]]:
        return {}

    def dialled_key(self, access: Access) -> tuple[tuple[Target, ...], ...] | None:
        """What the workload's entries dial, when a ServiceEntry sends some elsewhere: two
        workloads with the same entries may then still differ (exportTo)."""
        return self.targets(access) if self.dialling else None

    def network_reach(self, access: Access, p: Planned, dest: str, port: int, name: Callable[[str, int], str]) -> str:
        """What a network-layer kind opens for one destination of an entry (explain);
        ``name``: how the kind opens a host name on a port."""
        opens = network_reach(self.settings, self.scope(access), p, dest, port)
        reached = opens is None or dest in p.entry.addresses
        claim = self.serving(access, dest, port) if self.dialling and reached else None
        if claim is None or claim.dials is None:
            return name(dest, port) if opens is None else opens
        declared = next(q for q in p.entry.ports if q.number == port)
        targets = self.dialled(access, dest, dest in p.entry.addresses, declared)
        if not targets:
            return f"nothing: {claim.source} has no endpoint to send it to"
        where = "; ".join(f"{t.dest} on port {t.port}" if t.address else name(t.dest, t.port) for t in targets)
        return f"where {claim.source} sends it: {where}"

    def reach(self, access: Access) -> tuple[Reach, ...]:
        """Everything a workload's network policies open in the cluster: what every policy
        reaches (cluster DNS; istiod, or in ambient mode the waypoint its hostnames go
        through), then its own ``Access.reach``. The kinds write their rules from it and
        explain lists it, so what explain says is what is written."""
        settings = self.settings
        out = [Reach("cluster DNS", settings.dns, by="every policy", dns=True)]
        out += [Reach("cluster DNS", peer, by="--dns-peer", dns=True) for peer in settings.dns_peers]
        if settings.mesh == "ambient":
            # ztunnel, not the pod, talks to istiod; the pod's names go to the waypoint.
            if needs_waypoint(access.planned, settings):
                assert settings.waypoint is not None
                namespace = waypoint_namespace(settings, self.scope(access))
                out.append(Reach(f"waypoint {namespace or '.'}/{settings.waypoint.name}",
                                 waypoint_peer(settings, namespace), by="--waypoint"))
        else:
            out.append(Reach("istiod", settings.istiod, by="every policy"))
        return (*out, *access.reach)

    def imports(self, access: Access) -> list[tuple[str, Planned]]:
        """`namespace/host` Sidecar imports for every destination the workload declared.

        A host is imported from the namespace of the ServiceEntry that serves it (ours live
        with the workload; the chart's where it put them); the global allowlist's
        cluster-wide ServiceEntries from any namespace (`*/host`), since where a platform
        team keeps them is not in the stream. An address is imported by its ServiceEntry's
        host.
        """
        out: dict[str, Planned] = {}
        for p in access.planned:
            for dest in [*p.entry.hosts, *p.entry.addresses]:
                for port in p.entry.ports:
                    claim = self.serving(access, dest, port.number)
                    # "." is the Sidecar's own namespace: Helm's, like an unnamed ServiceEntry's.
                    namespace = (claim.namespace if claim else self.scope(access)) or "."
                    hosts = [dest] if dest in p.entry.hosts else list(claim.hosts if claim else ())
                    for host in hosts:
                        out.setdefault(f"{namespace}/{host}", p)
        return list(out.items())


def selected_too(other: Workload, access: Access, policy: str, effect: str) -> Problem:
    """``other``'s pods carry exactly ``access``'s pod labels, so ``policy`` selects them too."""
    w = access.workload
    return Problem(other.location, (
        f"its pods carry exactly the labels of {w.kind}/{w.name}'s, so that workload's {policy} {access.policy_name} "
        f"selects them too: {effect}; give the workloads distinguishing pod labels"))


"""Source: what the per-workload mesh and CNI policies must know about the rest of the stream.

The release's own Services (a Sidecar must keep importing them), and the Istio Sidecars and
CiliumNetworkPolicies the chart renders itself (a second Sidecar for one pod is undefined in
Istio; a second CiliumNetworkPolicy widens what a pod may reach). Parsed only when a flavour
that needs them is asked for (the reading stage is given ``wants``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from post_renderer import yamlio
from post_renderer.errors import Location, Problems
from post_renderer.read import Documents, Need
from post_renderer.names import dns_label_problem, label_key_problem, label_value_problem
from post_renderer.settings import PortSpec
from post_renderer.stream import Document

SERVICE = ("Service", "")
SIDECAR = ("Sidecar", "networking.istio.io")
CILIUM = ("CiliumNetworkPolicy", "cilium.io")
CILIUM_CLUSTERWIDE = ("CiliumClusterwideNetworkPolicy", "cilium.io")
AUTHORIZATION = ("AuthorizationPolicy", "security.istio.io")
_KINDS = {SERVICE, SIDECAR, CILIUM, CILIUM_CLUSTERWIDE, AUTHORIZATION}
_KIND_NAMES = frozenset(k for k, _ in _KINDS)


class Service(NamedTuple):
    name: str
    namespace: str | None
    # Its pods' labels; None without a selector (its endpoints are managed by hand, or it
    # is an ExternalName): no pod of the stream can be named for it.
    selector: dict[str, str] | None = None
    # What a caller's packets reach after the Service's DNAT, as a NetworkPolicy sees them:
    # (protocol, targetPort or port), each once.
    target_ports: tuple[PortSpec, ...] = ()
    location: Location = Location()
    # (protocol, port, target port): what a caller dials, and what its packet reaches.
    port_map: tuple[tuple[str, int, int | str], ...] = ()


class Selecting(NamedTuple):
    """A chart document that selects pods by labels (Sidecar, CiliumNetworkPolicy)."""

    kind: str
    name: str
    namespace: str | None  # None: the release's namespace; "*" for a clusterwide policy
    match_labels: dict[str, str]
    match_expressions: tuple[dict[str, Any], ...]
    location: Location

    def selects(self, labels: dict[str, str], namespace: str | None, home: str | None) -> bool:
        if self.namespace != "*" and (self.namespace or home) != namespace:
            return False
        return label_selector_matches({"matchLabels": self.match_labels,
                                       "matchExpressions": list(self.match_expressions)}, labels)


class Targeting(NamedTuple):
    """A chart AuthorizationPolicy attached to objects by ``targetRef(s)``."""

    name: str
    namespace: str | None
    action: str
    targets: tuple[tuple[str, str], ...]  # (kind, name), in the policy's namespace
    location: Location


class InMesh:
    def __init__(self) -> None:
        self.services: list[Service] = []
        self.sidecars: list[Selecting] = []
        self.cilium: list[Selecting] = []
        self.authorizations: list[Targeting] = []
        # Where the chart's own Cilium policies write a `**` matchPattern, and the pattern.
        self.double_star: list[tuple[Location, str]] = []


def wants(doc: Document) -> bool:
    """The documents ``scan`` reads, by the kind their text names."""
    return doc.kind in _KIND_NAMES


# Every field ``scan`` reads: a Service's spec and every object's labels are most of what
# it would otherwise build.
NEED = Need(wants, {
    "apiVersion": yamlio.KEEP_ALL,
    "kind": yamlio.KEEP_ALL,
    "metadata": {"name": yamlio.KEEP_ALL, "namespace": yamlio.KEEP_ALL},
    "spec": {"selector": yamlio.KEEP_ALL, "ports": yamlio.KEEP_ALL, "type": yamlio.KEEP_ALL,
             "workloadSelector": yamlio.KEEP_ALL, "endpointSelector": yamlio.KEEP_ALL,
             "targetRef": yamlio.KEEP_ALL, "targetRefs": yamlio.KEEP_ALL, "action": yamlio.KEEP_ALL,
             "egress": yamlio.KEEP_ALL},
})


def scan(documents: Documents, problems: Problems) -> InMesh:
    """From the chart's documents ``wants`` picked; helm-egress's own earlier output is
    regenerated, never read."""
    found = InMesh()
    for parsed in documents.wanted(wants):
        data = parsed.use(problems)
        if not isinstance(data, dict):
            continue
        where = parsed.where
        group = str(data.get("apiVersion", "")).rpartition("/")[0]
        kind = data.get("kind")
        if (kind, group) not in _KINDS:
            continue
        metadata = _mapping(data.get("metadata"))
        name, namespace = metadata.get("name"), metadata.get("namespace")
        if not isinstance(name, str):
            continue
        ns = namespace if isinstance(namespace, str) and namespace else None
        spec = _mapping(data.get("spec"))
        if (kind, group) == SERVICE:
            # A name or namespace the API server refuses: the Service never exists, and
            # neither a Sidecar host nor a namespace selector can be written for it.
            if not dns_label_problem(name, "Service name") and (ns is None or not dns_label_problem(ns, "namespace")):
                found.services.append(_service(name, ns, spec, where))
            continue
        if (kind, group) == AUTHORIZATION:
            many = spec.get("targetRefs")
            refs = [spec.get("targetRef"), *(many if isinstance(many, list) else [])]
            targets = tuple((str(r.get("kind")), str(r.get("name"))) for r in refs if isinstance(r, dict))
            if targets:
                found.authorizations.append(Targeting(name, ns, str(spec.get("action") or "ALLOW"), targets, where))
            continue
        if (kind, group) == SIDECAR:
            selector = spec.get("workloadSelector")
            if selector is None:
                continue  # the namespace default: a workload's own Sidecar takes precedence
            labels = _mapping(_mapping(selector).get("labels"))
            found.sidecars.append(Selecting("Sidecar", name, ns, _strings(labels), (), where))
            continue
        egress = spec.get("egress")
        for i, rule in enumerate(egress if isinstance(egress, list) else []):
            fqdns = _mapping(rule).get("toFQDNs")
            for j, fqdn in enumerate(fqdns if isinstance(fqdns, list) else []):
                pattern = _mapping(fqdn).get("matchPattern")
                if isinstance(pattern, str) and "**" in pattern:
                    found.double_star.append((where.at(f"spec.egress[{i}].toFQDNs[{j}].matchPattern"), pattern))
        selector = _mapping(spec.get("endpointSelector"))
        raw = selector.get("matchExpressions")
        expressions = tuple(e for e in raw if isinstance(e, dict)) if isinstance(raw, list) else ()
        clusterwide = (kind, group) == CILIUM_CLUSTERWIDE
        found.cilium.append(Selecting(str(kind), name, "*" if clusterwide else ns,
                                      _strip_source(_strings(_mapping(selector.get("matchLabels")))),
                                      expressions, where))
    return found


_PROTOCOLS = ("TCP", "UDP", "SCTP")


def _service(name: str, namespace: str | None, spec: dict[str, Any], where: Location) -> Service:
    selector = spec.get("selector")
    # Label values are strings, or the API server refuses the Service.
    pods = dict(selector) if isinstance(selector, dict) and selector and spec.get("type") != "ExternalName" and all(
        isinstance(k, str) and isinstance(v, str) and not label_key_problem(k) and not label_value_problem(v)
        for k, v in selector.items()) else None
    ports: dict[PortSpec, None] = {}
    port_map: list[tuple[str, int, int | str]] = []
    raw = spec.get("ports")
    for item in raw if isinstance(raw, list) else []:
        item = _mapping(item)
        protocol = item.get("protocol", "TCP")
        target = item.get("targetPort")
        if target is None or target == 0 or target == "":
            target = item.get("port")  # unset targetPort means the port (API defaulting)
        # Anything else the API server refuses, and the Service is never created.
        if protocol not in _PROTOCOLS or not isinstance(target, (int, str)) or not _pod_port(target):
            continue
        ports[(str(protocol), target)] = None
        number = item.get("port")
        if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= 65535:
            port_map.append((str(protocol), number, target))
    return Service(name, namespace, pods, tuple(ports), where, tuple(port_map))


def _pod_port(value: Any) -> bool:
    """A number 1-65535, or a container port's name (an IANA service name)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 1 <= value <= 65535
    return isinstance(value, str) and 0 < len(value) <= 15 and value.isascii() and not value.isdigit() \
        and value.replace("-", "").isalnum() and value == value.lower() and "--" not in value \
        and not value.startswith("-") and not value.endswith("-")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _strings(labels: dict[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in labels.items()}


def _label_key(key: str) -> str:
    # Cilium label keys may carry a source prefix (`k8s:app`, `any:app`); pods' labels don't.
    source, sep, rest = key.partition(":")
    return rest if sep and source in ("k8s", "any") else key


def _strip_source(labels: dict[str, str]) -> dict[str, str]:
    return {_label_key(k): v for k, v in labels.items()}


def label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels, matchExpressions) against a pod's labels."""
    return selector_matcher(selector)(labels)


def selector_matcher(selector: dict[str, Any]) -> Callable[[dict[str, str]], bool]:
    """``label_selector_matches`` with ``selector`` read once: for testing one selector
    against every workload of a stream."""
    match_labels = tuple(_strings(_mapping(selector.get("matchLabels"))).items())
    raw = selector.get("matchExpressions")
    expressions = [e for e in raw if isinstance(e, dict)] if isinstance(raw, list) else []

    def matches(labels: dict[str, str]) -> bool:
        for k, v in match_labels:
            if labels.get(k) != v:
                return False
        return all(_expression_holds(e, labels) for e in expressions)

    return matches


def _expression_holds(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key = _label_key(str(expr.get("key", "")))
    raw = expr.get("values")
    values = [str(v) for v in raw] if isinstance(raw, list) else []
    operator = expr.get("operator")
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    return False

"""The records that flow between stages.

Records are ``NamedTuple``s, not dataclasses: a post-renderer imports them on every run, and
a frozen dataclass costs ~0.8 ms to define (it compiles six generated methods), a
NamedTuple ~0.1 ms. Immutability, equality, hashing and ``repr`` are the same.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from post_renderer.errors import Location

# Istio's port protocols (pkg/config/protocol), upper-cased as helm-egress emits them.
PROTOCOLS = (
    "TCP", "UDP", "GRPC", "GRPC-WEB", "HTTP", "HTTP_PROXY", "HTTP2", "HTTPS", "TLS",
    "MONGO", "REDIS", "MYSQL",
)
HTTP_FAMILY = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})
TLS_FAMILY = frozenset({"HTTPS", "TLS"})
RESOLUTIONS = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")

# Pod labels whose value changes with a release or a controller revision: Helm's chart and
# app version (the recommended labels, and the older `chart: name-version`), and what
# controllers stamp on each revision's or each run's pods. During a rollout the old pods
# carry the old values, so a selector that names one of these lets them go unselected.
PER_RELEASE_LABELS = frozenset({
    "app.kubernetes.io/version", "helm.sh/chart", "chart", "pod-template-hash", "controller-revision-hash",
    "rollouts-pod-template-hash", "controller-uid", "job-name", "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
})


def per_release(key: str) -> bool:
    """Whether pods of one workload may carry other values of label ``key`` over time."""
    # batch.kubernetes.io/: job-name, controller-uid, job-completion-index, set per Job.
    return key in PER_RELEASE_LABELS or key.startswith("batch.kubernetes.io/")


class Port(NamedTuple):
    number: int
    protocol: str

    @property
    def name(self) -> str:
        # Port names must be DNS-1123 labels: HTTP_PROXY's underscore is not allowed.
        return f"{self.protocol.lower().replace('_', '-')}-{self.number}"

    @property
    def transport(self) -> str:
        """What a NetworkPolicy sees: Istio proxies everything but UDP over TCP."""
        return "UDP" if self.protocol == "UDP" else "TCP"


class EgressEntry(NamedTuple):
    """One external destination, validated and canonical."""

    name: str
    hosts: tuple[str, ...]
    addresses: tuple[str, ...]  # canonical: plain IPs, or networks with host bits clear
    ports: tuple[Port, ...]
    resolution: str | None  # as the user asked, upper-cased; None to choose
    origin: Location  # where it was declared
    source: str  # short, stable provenance for annotations, e.g. "values:prod.yaml#stripe"
    resolution_origin: Location | None = None  # where `resolution` was written, if it was


class Evasion(NamedTuple):
    """A setting of a workload that lets its pods' traffic leave around the mesh's proxy."""

    setting: str  # as written, e.g. 'sidecar.istio.io/inject: "false"'
    why: str  # what it does to the proxy's capture
    location: Location


class Workload(NamedTuple):
    """A pod-bearing document of the stream that gets an egress policy."""

    doc_index: int
    kind: str
    name: str
    namespace: str | None
    pod_selector: dict[str, Any]  # a LabelSelector: matchLabels and/or matchExpressions
    # metadata and pod template annotations, merged: key -> (value, YAML path of the map,
    # input line of the key)
    annotations: dict[str, tuple[Any, str, int | None]]
    location: Location
    # The labels its pods carry (pod template, or a bare Pod's own): what label-only
    # selectors (Istio Sidecar, CiliumNetworkPolicy endpointSelector) select it by.
    pod_labels: dict[str, str]
    hook: str | None = None  # the helm.sh/hook value; hooks get no policy
    service_account: str = "default"  # its pods' serviceAccountName: who ambient policies admit
    # What label-only selectors select it by: labels every pod it ever runs carries. Its
    # controller's spec.selector.matchLabels (immutable, so old and new pods carry them),
    # else (Jobs, CronJobs, bare Pods, expression-only selectors) its pod labels without
    # the per-release ones.
    stable_labels: dict[str, str] = {}
    # Its pods share the node's network namespace: no proxy is injected (Istio skips them,
    # ambient never captures them) and no pod-level policy selects them.
    host_network: bool = False
    # Of a hostNetwork workload only: its named container ports, (name, protocol, number).
    # A Service's named targetPort reaches such pods on the node's address at that number,
    # and a policy that opens the node can only name the number (only a pod has port names).
    host_ports: tuple[tuple[str, str, int], ...] = ()
    # Settings that take its pods' traffic past the proxy (``bypass.evasions``), hostNetwork too.
    evasions: tuple[Evasion, ...] = ()
    # Whether its pods get a token for the API server: True when the pod spec mounts one
    # (automountServiceAccountToken: true, or a projected serviceAccountToken without an
    # audience of its own), False when it turns the mount off, None when its ServiceAccount decides.
    token: bool | None = None


class Existing(NamedTuple):
    """A ServiceEntry or NetworkPolicy the chart itself rendered, read with the safe loader."""

    doc_index: int
    kind: str
    data: dict[str, Any]
    location: Location


class SidecarHost(NamedTuple):
    """An in-mesh host a user adds to a workload's Sidecar, `namespace/dnsName`."""

    host: str
    origin: Location


class InCluster(NamedTuple):
    """A Service of the cluster a workload calls (declared in values or annotations, or as
    a ``*.svc.<cluster domain>`` host): its Sidecar imports the name, its policies reach the
    pods behind it."""

    namespace: str
    service: str  # "*": any Service of the namespace
    # (protocol, port, target port): the Service ports the workload dials, and the pods'
    # ports behind them (the target port, when the Service is not in the stream); empty:
    # every port of the Service, which must then be in the stream.
    ports: tuple[tuple[str, int, int | str], ...]
    selector: dict[str, str]  # its pods' labels, when declared; {}: the Service's, if known
    origin: Location

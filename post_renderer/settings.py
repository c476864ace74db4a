"""What a platform team can set, with the defaults a stock cluster needs."""

from __future__ import annotations

from typing import Literal, NamedTuple

from post_renderer.addresses import EVERY_ADDRESS, PRIVATE_RANGES, IPNetwork

ISTIO_API_VERSIONS = ("networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")
NetworkPolicyFlavour = Literal["kubernetes", "cilium", "none"]
NETWORK_POLICY_FLAVOURS: tuple[NetworkPolicyFlavour, ...] = ("kubernetes", "cilium", "none")
Mesh = Literal["sidecar", "ambient"]
# Which workloads reach the Kubernetes API server: those the chart's RBAC binds (and whose
# pods get a token), every one, or none; a workload's annotation overrides it.
ApiserverAccess = Literal["rbac", "all", "none"]
APISERVER_ACCESS: tuple[ApiserverAccess, ...] = ("rbac", "all", "none")
MESHES: tuple[Mesh, ...] = ("sidecar", "ambient")
# What ambient waypoints listen on for the HBONE tunnel from ztunnel (istio.io ambient docs).
HBONE_PORT = 15008
WAYPOINT_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


class Waypoint(NamedTuple):
    """The ambient egress waypoint Gateway: in ``namespace``, or each workload's own when None."""

    namespace: str | None
    name: str


# A port as a NetworkPolicy (and Cilium) names it: (protocol, number or the pod's port name).
PortSpec = tuple[str, "int | str"]


class PeerSelector(NamedTuple):
    """Pods selected by labels in one namespace: one NetworkPolicy peer."""

    namespace: str  # "": the policy's own
    labels: dict[str, str]  # {}: every pod of the namespace
    ports: tuple[PortSpec, ...]  # empty: every port


class MeshService(NamedTuple):
    """A Service of the mesh's own (telemetry, a CA) every workload calls: every Sidecar
    imports it and every policy reaches its pods on ``ports`` (their target ports)."""

    namespace: str
    name: str
    ports: tuple[PortSpec, ...]
    labels: dict[str, str]  # its pods' labels; {}: any pod of its namespace on those ports


KUBE_DNS = PeerSelector("kube-system", {"k8s-app": "kube-dns"}, (("UDP", 53), ("TCP", 53)))
ISTIOD = PeerSelector("istio-system", {"app": "istiod"}, (("TCP", 15012),))


class Settings(NamedTuple):
    release: str | None = None
    namespace: str | None = None
    network_policy: NetworkPolicyFlavour = "kubernetes"
    dns: PeerSelector = KUBE_DNS
    # More DNS pods, reached like ``dns`` (NodeLocal DNSCache answers beside kube-dns).
    dns_peers: tuple[PeerSelector, ...] = ()
    istiod: PeerSelector = ISTIOD
    # Every pod of a workload's namespace on every port: wider than what it needs (its
    # release's Services, declared in-cluster destinations), so only when asked for.
    allow_same_namespace: bool = False
    hostname_cidrs: tuple[IPNetwork, ...] = EVERY_ADDRESS
    hostname_excepts: tuple[IPNetwork, ...] = PRIVATE_RANGES
    allow_broad_cidrs: bool = False
    istio_api_version: str = "networking.istio.io/v1"
    annotation_prefix: str = "helm-egress.io"
    normalize: bool = True
    # Cilium: 0 writes `**.example.com` for Istio's `*.example.com` (Cilium >= 1.19); N >= 1
    # writes the per-depth ladder `*.example.com` ... N labels deep, for older Cilium. None:
    # not said, written as 0, and `check` warns that Cilium < 1.19 reads `**.` as one label.
    cilium_wildcard_depth: int | None = None
    sidecar: bool = False
    sidecar_hosts: tuple[str, ...] = ()  # in-mesh hosts every Sidecar imports, `namespace/dnsName`
    cluster_domain: str = "cluster.local"
    # The cluster DNS Service every Sidecar imports (DNS over TCP goes through the proxy):
    # (namespace, name), or None to import none.
    dns_service: tuple[str, str] | None = ("kube-system", "kube-dns")
    mesh_services: tuple[MeshService, ...] = ()
    mesh: Mesh = "sidecar"
    waypoint: Waypoint | None = None  # with mesh "ambient"
    trust_domain: str = "cluster.local"  # of the SPIFFE principals ambient policies admit
    istio_minor: int | None = None  # --istio-version 1.N; None: hold to what every supported Istio accepts
    apiserver_access: ApiserverAccess = "rbac"
    # Where the API server's endpoints are, for NetworkPolicy (which names no entity): the
    # addresses behind the `kubernetes` Service. Empty: no ipBlock, and a warning.
    apiserver_cidrs: tuple[IPNetwork, ...] = ()
    # What a policy sees after the `kubernetes` Service's DNAT: the endpoints' port, 6443
    # on kubeadm and k3s, 443 on most managed clusters.
    apiserver_ports: tuple[PortSpec, ...] = (("TCP", 443), ("TCP", 6443))
    # Where the nodes' addresses are, for NetworkPolicy: a pod with hostNetwork listens on
    # its node's address, and no pod selector selects it. Empty: no ipBlock for the release's
    # Services whose pods are such, and a warning.
    node_cidrs: tuple[IPNetwork, ...] = ()


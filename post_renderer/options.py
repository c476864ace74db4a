"""The options every stream command takes, and their checks: argv in, a valid ``Settings`` out.

An option value is checked like the field it fills (a release name as Helm checks it,
labels as the API server does), so a bad value is a usage error (exit 2) naming the
option, before any input is read. ``settings.py`` holds the record and stays free of typer.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Optional

import typer

from post_renderer.addresses import PRIVATE_RANGES, IPNetwork, collapse, inside, network, overlaps_forbidden, strictly_inside
from post_renderer.names import dns_label_problem, dns_subdomain_problem, label_key_problem, label_value_problem
from post_renderer.settings import (
    APISERVER_ACCESS,
    ISTIO_API_VERSIONS,
    ApiserverAccess,
    MESHES,
    NETWORK_POLICY_FLAVOURS,
    Mesh,
    MeshService,
    NetworkPolicyFlavour,
    PeerSelector,
    PortSpec,
    Settings,
    Waypoint,
)

ENV = "HELM_EGRESS_"


def _labels(text: str, hint: str) -> dict[str, str]:
    """A pod selector, checked as the API server checks the policy it is copied into."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{part!r}: expected key=value[,key=value]", param_hint=hint)
        why = label_key_problem(key) or label_value_problem(value)
        if why:
            raise typer.BadParameter(why, param_hint=hint)
        labels[key] = value
    if not labels:
        raise typer.BadParameter("at least one key=value label is needed", param_hint=hint)
    return labels


def _cidr(text: str, hint: str) -> IPNetwork:
    try:
        return network(text.strip(), strict=True)
    except ValueError as e:
        raise typer.BadParameter(f"{text!r} is not a canonical CIDR ({e})", param_hint=hint) from e


def _dns_label(text: str | None, hint: str, what: str) -> str | None:
    why = dns_label_problem(text, what) if text is not None else None
    if why:
        raise typer.BadParameter(why, param_hint=hint)
    return text


def _ascii_int(value: Any) -> int:
    """An integer option: ASCII digits only (Python's int() also reads '٥٣' and '²'-free
    Unicode digits, which would silently become another number)."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[-+]?[0-9]+", text):
        raise typer.BadParameter(f"{value!r} is not a whole number (ASCII digits 0-9)")
    return int(text)


def _istio_minor(text: str | None) -> int | None:
    if text is None:
        return None
    found = re.fullmatch(r"v?1\.([0-9]{1,3})(?:\.[0-9]+)?(?:-[0-9A-Za-z.-]+)?", text.strip())
    if not found:
        raise typer.BadParameter(f"{text!r} is not an Istio version such as 1.30 or 1.29.2", param_hint="--istio-version")
    return int(found.group(1))


def _dns_peer(text: str, port: int) -> PeerSelector:
    namespace, sep, labels = text.partition("/")
    if not sep:
        raise typer.BadParameter(f"{text!r}: expected NAMESPACE/k=v[,k=v]", param_hint="--dns-peer")
    _dns_label(namespace.strip(), "--dns-peer", "namespace")
    return PeerSelector(namespace.strip(), _labels(labels, "--dns-peer"), (("UDP", port), ("TCP", port)))


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise typer.BadParameter(f"{value} is not a port number 1..65535")
    return value


# The options every stream command takes, declared once here; ``_shared_options`` names
# them, and typer reads them through ``with_shared``.
_Values = Annotated[
    Optional[list[Path]],
    typer.Option(
        "-f", "--values", help="Helm values file with an istio.egress list; repeat to merge (later wins).",
        exists=True, dir_okay=False, readable=True,
    ),
]

_Release = Annotated[
    Optional[str],
    typer.Option(help="Release name for ServiceEntry names [default: the stream's app.kubernetes.io/instance].",
                 envvar=ENV + "RELEASE"),
]

_Namespace = Annotated[
    Optional[str],
    typer.Option(help="Namespace for generated documents whose workload names none [default: Helm's].",
                 envvar=ENV + "NAMESPACE"),
]

_NetworkPolicy = Annotated[
    str,
    typer.Option(help="Egress policy flavour: kubernetes (NetworkPolicy; hostnames as CIDRs), cilium "
                      "(CiliumNetworkPolicy; hostnames by name, toFQDNs), or none.",
                 envvar=ENV + "NETWORK_POLICY"),
]

_CiliumWildcardDepth = Annotated[
    Optional[int],
    typer.Option(help="cilium: 0 writes **.example.com for *.example.com (Cilium >= 1.19); N writes the "
                      "ladder *.example.com ... N labels deep, for older Cilium [default: 0, and check warns "
                      "that Cilium < 1.19 reads ** as one label].",
                 envvar=ENV + "CILIUM_WILDCARD_DEPTH", parser=_ascii_int, metavar="<depth>"),
]

_Sidecar = Annotated[
    bool,
    typer.Option("--sidecar/--no-sidecar", help="Also write one Istio Sidecar per workload, importing only "
                                                "what it declared and the release's Services.",
                 envvar=ENV + "SIDECAR"),
]

_Mesh = Annotated[
    str,
    typer.Option(help="Istio data plane: sidecar (ServiceEntries, REGISTRY_ONLY, optional Sidecars) or ambient "
                      "(hostnames through an egress waypoint, AuthorizationPolicy per ServiceEntry).",
                 envvar=ENV + "MESH"),
]

_Waypoint = Annotated[
    Optional[str],
    typer.Option(help="ambient: the egress waypoint Gateway, [NAMESPACE/]NAME (NAME alone: the workload's "
                      "namespace), e.g. istio-egress/egress-waypoint.", envvar=ENV + "WAYPOINT"),
]

_TrustDomain = Annotated[
    str, typer.Option(help="ambient: the mesh trust domain of the service-account principals admitted.",
                      envvar=ENV + "TRUST_DOMAIN"),
]

_SidecarHost = Annotated[
    Optional[list[str]],
    typer.Option(help="In-mesh host every Sidecar imports, NAMESPACE/FQDN (e.g. "
                      "payments/api.payments.svc.cluster.local); repeatable.", envvar=ENV + "SIDECAR_HOST"),
]

_ClusterDomain = Annotated[
    str, typer.Option(help="The cluster's DNS domain, for the release's Services in Sidecars.",
                      envvar=ENV + "CLUSTER_DOMAIN"),
]

_DnsNamespace = Annotated[str, typer.Option(help="Namespace of the cluster DNS pods.", envvar=ENV + "DNS_NAMESPACE")]

_DnsSelector = Annotated[str, typer.Option(help="Labels of the cluster DNS pods, k=v[,k=v].", envvar=ENV + "DNS_SELECTOR")]

_DnsPeer = Annotated[
    Optional[list[str]],
    typer.Option(help="More DNS pods every policy reaches on --dns-port, NAMESPACE/k=v[,k=v] (e.g. "
                      "kube-system/k8s-app=node-local-dns for NodeLocal DNSCache); repeatable.",
                 envvar=ENV + "DNS_PEER"),
]

_DnsPort = Annotated[int, typer.Option(help="DNS pod port, allowed over UDP and TCP (OpenShift: 5353).", envvar=ENV + "DNS_PORT",
                                            parser=_ascii_int, metavar="<port>")]

_IstiodNamespace = Annotated[str, typer.Option(help="Namespace of istiod.", envvar=ENV + "ISTIOD_NAMESPACE")]

_IstiodSelector = Annotated[str, typer.Option(help="Labels of the istiod pods, k=v[,k=v].", envvar=ENV + "ISTIOD_SELECTOR")]

_IstiodPort = Annotated[int, typer.Option(help="istiod xDS and CA port (TCP).", envvar=ENV + "ISTIOD_PORT",
                                            parser=_ascii_int, metavar="<port>")]

_SameNamespace = Annotated[
    bool, typer.Option("--same-namespace/--no-same-namespace",
                       help="Allow egress to every pod of the workload's own namespace, on every port (earlier versions: "
                            "the default); without it, only the release's Services and declared in-cluster "
                            "destinations.", envvar=ENV + "SAME_NAMESPACE"),
]

_DnsService = Annotated[
    str, typer.Option(help="The cluster DNS Service every Sidecar imports (DNS over TCP goes through the proxy), "
                           "NAMESPACE/NAME; '' for none.", envvar=ENV + "DNS_SERVICE"),
]

_MeshService = Annotated[
    Optional[list[str]],
    typer.Option(help="A mesh Service every workload calls (telemetry, a CA): every Sidecar imports it and every "
                      "policy reaches its pods, NAMESPACE/NAME:PORT[/UDP][,PORT...][:k=v[,k=v]] (pod ports; the "
                      "labels narrow to its pods); repeatable.", envvar=ENV + "MESH_SERVICE"),
]

_ExcludePrivate = Annotated[
    bool, typer.Option("--exclude-private/--include-private",
                       help="Leave private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) out of the "
                            "hostname CIDRs: pods, Services and nodes are never a public hostname.",
                       envvar=ENV + "EXCLUDE_PRIVATE"),
]

_HostnameCidr = Annotated[
    Optional[list[str]],
    typer.Option(help="CIDR that stands in for hostname destinations (NetworkPolicy cannot name hosts); "
                      "repeatable [default: 0.0.0.0/0 and ::/0, cloud metadata and link-local excepted].",
                 envvar=ENV + "HOSTNAME_CIDR"),
]

_HostnameExcept = Annotated[
    Optional[list[str]],
    typer.Option(help="CIDR to carve out of the hostname CIDRs too (e.g. 10.0.0.0/8); repeatable.",
                 envvar=ENV + "HOSTNAME_EXCEPT"),
]

_ApiserverAccess = Annotated[
    str,
    typer.Option(help="Which workloads reach the Kubernetes API server: rbac (those whose ServiceAccount a "
                      "RoleBinding or ClusterRoleBinding of the stream binds, and whose pods get a token), all, "
                      "or none; the <prefix>/apiserver annotation overrides it per workload.",
                 envvar=ENV + "APISERVER_ACCESS"),
]

_ApiserverCidr = Annotated[
    Optional[list[str]],
    typer.Option(help="kubernetes flavour: the API server's endpoint addresses (kubectl get endpointslices -n "
                      "default -l kubernetes.io/service-name=kubernetes), opened on --apiserver-port to the "
                      "workloads that reach it; repeatable [default: none, and check warns].",
                 envvar=ENV + "APISERVER_CIDR"),
]

_NodeCidr = Annotated[
    Optional[list[str]],
    typer.Option(help="kubernetes flavour: the nodes' addresses (kubectl get nodes -o wide), opened on the target "
                      "ports of the release's Services whose pods run with hostNetwork (they listen on the node's "
                      "address, and no pod selector selects them); repeatable [default: none, and check warns].",
                 envvar=ENV + "NODE_CIDR"),
]

_ApiserverPort = Annotated[
    Optional[list[int]],
    typer.Option(help="The API server's endpoint port (TCP), as policies see it after the kubernetes Service's "
                      "DNAT; repeatable [default: 443 and 6443; minikube: 8443].",
                 envvar=ENV + "APISERVER_PORT", parser=_ascii_int, metavar="<port>"),
]

_AllowBroadCidrs = Annotated[
    bool, typer.Option(help="Allow addresses such as 0.0.0.0/0 (the metadata endpoints stay excepted).",
                       envvar=ENV + "ALLOW_BROAD_CIDRS"),
]

_IstioApiVersion = Annotated[
    str, typer.Option(help=f"apiVersion of generated ServiceEntries: {', '.join(ISTIO_API_VERSIONS)}.",
                      envvar=ENV + "ISTIO_API_VERSION"),
]

_IstioVersion = Annotated[
    Optional[str], typer.Option(help="Istio version of the cluster, 1.N[.P]: which ports DYNAMIC_DNS may carry "
                                     "[default: what every Istio with DYNAMIC_DNS accepts, 1.28's HTTP].",
                                envvar=ENV + "ISTIO_VERSION"),
]

_AnnotationPrefix = Annotated[
    str, typer.Option(help="Prefix of the workload annotations that declare egress (<prefix>/hosts, ...).",
                      envvar=ENV + "ANNOTATION_PREFIX"),
]

_GlobalAllowlist = Annotated[
    Optional[Path],
    typer.Option(help="File with an istio.egress list of cluster-wide ServiceEntries: covered entries get no "
                      "ServiceEntry, but policies still allow them.", exists=True, dir_okay=False,
                 envvar=ENV + "GLOBAL_ALLOWLIST"),
]

_Policy = Annotated[
    Optional[Path],
    typer.Option(help="The platform's destination policy: every host, address and port the output would open "
                      "must be approved by one of its rules, or nothing is written.", exists=True,
                 dir_okay=False, envvar=ENV + "POLICY"),
]

_Normalize = Annotated[
    bool, typer.Option("--normalize/--no-normalize",
                       help="Repair the ServiceEntry and egress NetworkPolicy documents the chart renders itself.",
                       envvar=ENV + "NORMALIZE"),
]

_Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print no notes; errors are always printed.",
                                    envvar=ENV + "QUIET")]

_ErrorFile = Annotated[
    Optional[Path],
    typer.Option(help="Also write errors to this file. Helm 4 hides a post-renderer's stderr; as a Helm 4 plugin "
                      "the default is $XDG_STATE_HOME/helm-egress/last-error.log.", envvar=ENV + "ERROR_FILE"),
]


def _shared_options(
    values: _Values = None,
    release: _Release = None,
    namespace: _Namespace = None,
    network_policy: _NetworkPolicy = "kubernetes",
    cilium_wildcard_depth: _CiliumWildcardDepth = None,
    sidecar: _Sidecar = False,
    mesh: _Mesh = "sidecar",
    waypoint: _Waypoint = None,
    trust_domain: _TrustDomain = "cluster.local",
    sidecar_host: _SidecarHost = None,
    cluster_domain: _ClusterDomain = "cluster.local",
    dns_namespace: _DnsNamespace = "kube-system",
    dns_selector: _DnsSelector = "k8s-app=kube-dns",
    dns_peer: _DnsPeer = None,
    dns_port: _DnsPort = 53,
    istiod_namespace: _IstiodNamespace = "istio-system",
    istiod_selector: _IstiodSelector = "app=istiod",
    istiod_port: _IstiodPort = 15012,
    same_namespace: _SameNamespace = False,
    dns_service: _DnsService = "kube-system/kube-dns",
    mesh_service: _MeshService = None,
    hostname_cidr: _HostnameCidr = None,
    hostname_except: _HostnameExcept = None,
    exclude_private: _ExcludePrivate = True,
    allow_broad_cidrs: _AllowBroadCidrs = False,
    apiserver_access: _ApiserverAccess = "rbac",
    apiserver_cidr: _ApiserverCidr = None,
    apiserver_port: _ApiserverPort = None,
    node_cidr: _NodeCidr = None,
    istio_api_version: _IstioApiVersion = ISTIO_API_VERSIONS[0],
    istio_version: _IstioVersion = None,
    annotation_prefix: _AnnotationPrefix = "helm-egress.io",
    global_allowlist: _GlobalAllowlist = None,
    policy: _Policy = None,
    normalize: _Normalize = True,
    quiet: _Quiet = False,
    error_file: _ErrorFile = None,
) -> Shared:
    """The options every stream command takes; typer sees them through ``with_shared``."""
    if network_policy not in NETWORK_POLICY_FLAVOURS:
        raise typer.BadParameter(f"{network_policy!r} is not kubernetes, cilium or none", param_hint="--network-policy")
    if cilium_wildcard_depth is not None and not 0 <= cilium_wildcard_depth <= 16:
        raise typer.BadParameter(f"{cilium_wildcard_depth} is not 0 (Cilium >= 1.19: any depth) or a depth 1..16",
                                 param_hint="--cilium-wildcard-depth")
    sidecar_hosts: list[str] = []
    for given in sidecar_host or ():
        from post_renderer.validate import canonical_sidecar_host, sidecar_host_problem

        host = canonical_sidecar_host(given)
        why = sidecar_host_problem(host)
        if why:
            raise typer.BadParameter(f"{given!r}: {why}", param_hint="--sidecar-host")
        sidecar_hosts.append(host)
    if dns_subdomain_problem(cluster_domain) is not None:
        raise typer.BadParameter(f"{cluster_domain!r} is not a DNS domain", param_hint="--cluster-domain")
    if istio_api_version not in ISTIO_API_VERSIONS:
        raise typer.BadParameter(f"{istio_api_version!r} is not one of {', '.join(ISTIO_API_VERSIONS)}",
                                 param_hint="--istio-api-version")
    cidrs, excepts = _hostname_ranges(hostname_cidr, hostname_except)
    if exclude_private:
        excepts = tuple(dict.fromkeys((*PRIVATE_RANGES, *excepts)))
    chosen_mesh, chosen_waypoint = _mesh(mesh, waypoint, sidecar)
    if dns_subdomain_problem(trust_domain) is not None:
        raise typer.BadParameter(f"{trust_domain!r} is not a trust domain (a DNS name, e.g. cluster.local)",
                                 param_hint="--trust-domain")
    if release is not None:
        # Helm's own rule for release names; the name lands in labels and object names.
        why = dns_subdomain_problem(release, "release name", limit=53)
        if why:
            raise typer.BadParameter(why, param_hint="--release")
    _dns_label(namespace, "--namespace", "namespace")
    _dns_label(dns_namespace, "--dns-namespace", "namespace")
    _dns_label(istiod_namespace, "--istiod-namespace", "namespace")
    if dns_subdomain_problem(annotation_prefix) is not None:
        raise typer.BadParameter(f"{annotation_prefix!r} is not a DNS subdomain (e.g. egress.example.com)",
                                 param_hint="--annotation-prefix")
    flavour: NetworkPolicyFlavour = next(f for f in NETWORK_POLICY_FLAVOURS if f == network_policy)
    access: ApiserverAccess | None = next((a for a in APISERVER_ACCESS if a == apiserver_access), None)
    if access is None:
        raise typer.BadParameter(f"{apiserver_access!r} is not rbac, all or none", param_hint="--apiserver-access")
    settings = Settings(
        release=release,
        namespace=namespace,
        network_policy=flavour,
        dns=PeerSelector(dns_namespace, _labels(dns_selector, "--dns-selector"),
                         (("UDP", _port(dns_port)), ("TCP", _port(dns_port)))),
        dns_peers=tuple(_dns_peer(text, _port(dns_port)) for text in dns_peer or ()),
        istiod=PeerSelector(istiod_namespace, _labels(istiod_selector, "--istiod-selector"),
                            (("TCP", _port(istiod_port)),)),
        allow_same_namespace=same_namespace,
        hostname_cidrs=cidrs,
        hostname_excepts=excepts,
        allow_broad_cidrs=allow_broad_cidrs,
        istio_api_version=istio_api_version,
        istio_minor=_istio_minor(istio_version),
        annotation_prefix=annotation_prefix,
        normalize=normalize,
        cilium_wildcard_depth=cilium_wildcard_depth,
        sidecar=sidecar,
        sidecar_hosts=tuple(dict.fromkeys(sidecar_hosts)),
        cluster_domain=cluster_domain,
        dns_service=_dns_service(dns_service),
        mesh_services=tuple(_mesh_service(text) for text in mesh_service or ()),
        mesh=chosen_mesh,
        waypoint=chosen_waypoint,
        trust_domain=trust_domain,
        apiserver_access=access,
        apiserver_cidrs=_infra_cidrs(apiserver_cidr, allow_broad_cidrs, "--apiserver-cidr", "the API server's"),
        apiserver_ports=_apiserver_ports(apiserver_port),
        node_cidrs=_infra_cidrs(node_cidr, allow_broad_cidrs, "--node-cidr", "the nodes'"),
    )
    return Shared(settings, list(values or ()), global_allowlist, quiet, error_file, policy)


def _mesh(mesh: str, waypoint: str | None, sidecar: bool) -> tuple[Mesh, Waypoint | None]:
    """``--mesh`` and ``--waypoint``: ambient needs its waypoint, and has no Sidecars."""
    chosen = next((m for m in MESHES if m == mesh), None)
    if chosen is None:
        raise typer.BadParameter(f"{mesh!r} is not sidecar or ambient", param_hint="--mesh")
    if chosen == "sidecar":
        if waypoint is not None:
            raise typer.BadParameter("a waypoint is for --mesh ambient", param_hint="--waypoint")
        return chosen, None
    if sidecar:
        # ztunnel and waypoints never read a Sidecar: one would look like enforcement and be none.
        raise typer.BadParameter("an Istio Sidecar has no effect in ambient mode; drop --sidecar (the waypoint's "
                                 "AuthorizationPolicies hold each workload to its hosts)", param_hint="--sidecar")
    if waypoint is None:
        raise typer.BadParameter("ambient mode sends hostnames through an egress waypoint: name it, "
                                 "e.g. --waypoint istio-egress/egress-waypoint", param_hint="--waypoint")
    namespace, _, name = waypoint.strip().rpartition("/")
    for part, what in ((namespace, "namespace"), (name, "waypoint name")):
        why = dns_label_problem(part, what) if part or what == "waypoint name" else None
        if why:
            raise typer.BadParameter(f"{waypoint!r}: {why}", param_hint="--waypoint")
    return chosen, Waypoint(namespace or None, name)


def _dns_service(text: str) -> tuple[str, str] | None:
    if not text.strip():
        return None
    namespace, sep, name = text.strip().partition("/")
    if not sep:
        raise typer.BadParameter(f"{text!r}: expected NAMESPACE/NAME", param_hint="--dns-service")
    for part, what in ((namespace, "namespace"), (name, "Service name")):
        why = dns_label_problem(part, what)
        if why:
            raise typer.BadParameter(f"{text!r}: {why}", param_hint="--dns-service")
    return namespace, name


def _mesh_service(text: str) -> MeshService:
    """NAMESPACE/NAME:PORT[/UDP][,PORT...][:k=v[,k=v]]."""
    namespace, sep, rest = text.strip().partition("/")
    name, _, rest = rest.partition(":")
    ports_text, _, labels_text = rest.partition(":")
    if not sep or not ports_text:
        raise typer.BadParameter(f"{text!r}: expected NAMESPACE/NAME:PORT[,PORT...][:k=v[,k=v]]",
                                 param_hint="--mesh-service")
    for part, what in ((namespace, "namespace"), (name, "Service name")):
        why = dns_label_problem(part, what)
        if why:
            raise typer.BadParameter(f"{text!r}: {why}", param_hint="--mesh-service")
    ports: list[PortSpec] = []
    for item in ports_text.split(","):
        number, slash, protocol = item.strip().partition("/")
        protocol = protocol.upper() if slash else "TCP"
        if protocol not in ("TCP", "UDP") or not (number.isascii() and number.isdigit()) \
                or not 1 <= int(number) <= 65535:
            raise typer.BadParameter(f"{text!r}: {item!r} is not a port (1-65535, optionally /UDP)",
                                     param_hint="--mesh-service")
        ports.append((protocol, int(number)))
    labels = _labels(labels_text, "--mesh-service") if labels_text else {}
    return MeshService(namespace, name, tuple(dict.fromkeys(ports)), labels)


def _hostname_ranges(
    hostname_cidr: list[str] | None, hostname_except: list[str] | None
) -> tuple[tuple[IPNetwork, ...], tuple[IPNetwork, ...]]:
    """``--hostname-cidr`` and ``--hostname-except``, checked as NetworkPolicy ipBlocks."""
    cidrs = tuple(_cidr(c, "--hostname-cidr") for c in hostname_cidr) if hostname_cidr else Settings().hostname_cidrs
    for net in cidrs:
        if overlaps_forbidden(net)[0]:
            raise typer.BadParameter(f"{net} is link-local or a metadata endpoint", param_hint="--hostname-cidr")
    excepts = tuple(_cidr(c, "--hostname-except") for c in hostname_except or ())
    for net in excepts:
        # A NetworkPolicy except must lie strictly inside its cidr; one that does not would
        # be dropped, and the range the user meant to close would stay open.
        if not any(strictly_inside(net, c) for c in cidrs):
            raise typer.BadParameter(
                f"{net} is not strictly inside any hostname CIDR ({', '.join(map(str, cidrs))}); a NetworkPolicy "
                "except must be, so it could not be excluded", param_hint="--hostname-except")
    for cidr in cidrs:
        # Excepts that together cover a whole hostname CIDR merge into one equal to it,
        # which the API server rejects: the user asked for that CIDR not to be opened.
        covered = [n for n in excepts if inside(n, cidr)]
        if covered and collapse(covered) == [cidr]:
            raise typer.BadParameter(
                f"{', '.join(map(str, covered))} together cover the whole hostname CIDR {cidr}; drop that "
                "--hostname-cidr instead", param_hint="--hostname-except")
    return cidrs, excepts


def _infra_cidrs(given: list[str] | None, allow_broad: bool, flag: str, whose: str) -> tuple[IPNetwork, ...]:
    """``--apiserver-cidr``, ``--node-cidr``: ranges an ipBlock opens on the ports of what
    lives there (the API server, host-network pods), held to the guardrails of declared
    addresses."""
    out: list[IPNetwork] = []
    for text in given or ():
        net = _cidr(text, flag)
        inside_one, contains = overlaps_forbidden(net)
        if inside_one:
            raise typer.BadParameter(f"{net} is link-local or a cloud metadata endpoint", param_hint=flag)
        if (contains or net.prefixlen == 0) and not allow_broad:
            raise typer.BadParameter(
                f"{net} is too broad: it covers the cloud metadata endpoint or the whole address space; name "
                f"{whose} addresses, or pass --allow-broad-cidrs (the metadata endpoints stay excepted)",
                param_hint=flag)
        if net not in out:
            out.append(net)
    return tuple(out)


def _apiserver_ports(given: list[int] | None) -> tuple[PortSpec, ...]:
    for number in given or ():
        if not 1 <= number <= 65535:
            raise typer.BadParameter(f"{number} is not a port number 1..65535", param_hint="--apiserver-port")
    ports: tuple[PortSpec, ...] = tuple(dict.fromkeys(("TCP", n) for n in given)) if given else ()
    if len(ports) > 40:
        # They share one Cilium toPorts item, which takes at most 40 (the CRD's maxItems).
        raise typer.BadParameter(f"{len(ports)} ports; the API server listens on one or two, name at most 40",
                                 param_hint="--apiserver-port")
    return ports or Settings().apiserver_ports


def error_file_argument(args: list[str]) -> Path | None:
    """``--error-file`` as the command line gives it (else from the environment), read
    without parsing the rest: a usage error, a signal or a crash may leave no parsed
    options, and is reported there all the same."""
    found: str | None = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--error-file" and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith("--error-file="):
            found = arg.partition("=")[2]
    found = found or os.environ.get(ENV + "ERROR_FILE")
    return Path(found) if found else None


class Shared(NamedTuple):
    """The shared options, checked: the pipeline's settings and what the command reads and prints."""

    settings: Settings
    values: list[Path]
    allowlist: Path | None
    quiet: bool
    error_file: Path | None
    policy: Path | None = None
    stdin_is_stream: bool = True  # False for `check --no-stream`, where -f /dev/stdin is fine


@functools.lru_cache(maxsize=None)
def _resolved(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    # Annotations are strings here (postponed evaluation); typer needs the objects.
    hints = typing.get_type_hints(fn, include_extras=True)
    return [p.replace(annotation=hints[p.name], kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(fn).parameters.values() if p.name != "shared"]


def with_shared(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the shared options: typer reads the combined signature, the
    command receives them built into one ``Shared`` as ``shared``."""
    own, common = _resolved(command), _resolved(_shared_options)

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        shared = _shared_options(**{p.name: kwargs.pop(p.name) for p in common})
        command(shared=shared, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *common])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *common]}
    return wrapper

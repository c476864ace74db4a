"""Real-cluster needs: what a workload of a real chart needs is reachable, and nothing else.

Real charts from the corpus (ingress-nginx in both stream shapes and as a chart that names
no namespace; prometheus, also with egress annotations on its pods; kube-prometheus-stack:
RBAC-bound controllers, Services in two namespaces, hook Jobs with their own RBAC) and the
project's shop chart (egress declared in one pod's annotations) are rendered under every
flavour a user picks — NetworkPolicy, CiliumNetworkPolicy or none; Istio sidecars with and
without ``--sidecar``; ambient with an egress waypoint — with and without a ``--policy``
approving exactly what was declared.

What each workload needs is derived here from the input stream alone (its namespace and
template labels, the stream's Services and their target ports, the RoleBindings and
ClusterRoleBindings naming its ServiceAccount, whether its pods get a token) and from the
values and annotations the test declares; never from helm-egress's code. A Service whose
pods are a hostNetwork workload's (a node exporter) is reached on the nodes: no policy
selects such pods by their labels; Cilium sees them as the host and remote-node entities,
a NetworkPolicy as the nodes' addresses (--node-cidr), which ``check`` warns of lacking. The generated
objects are judged by the independent ``oracle``: NetworkPolicy and Cilium semantics for
the network layer, Istio's registry and Sidecar imports for the proxy, AuthorizationPolicy
admission at the waypoint.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

import oracle
from helmstream import helm4_stream, render_chart, split_documents
from post_renderer.cli import app

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "corpus"
SHOP = ROOT / "fixtures" / "charts" / "shop"
RELEASE, NAMESPACE = "demo", "prod"  # what the corpus streams were rendered with
GENERATED = re.compile(r"(?m)^[ \t]+helm-egress\.io/generated-by:[ \t]*['\"]?helm-egress['\"]?[ \t]*\r?$")
HOOK = "helm.sh/hook"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob",
                  "Pod", "Rollout")
READ_KINDS = re.compile(r"(?m)^kind:[ \t]*(?:%s)[ \t]*\r?$" % "|".join((
    *WORKLOAD_KINDS, "Service", "ServiceAccount", "RoleBinding", "ClusterRoleBinding", "ServiceEntry", "Sidecar",
    "AuthorizationPolicy", "NetworkPolicy", "CiliumNetworkPolicy")))

APISERVER_CIDR, APISERVER_IP = "172.18.0.0/30", "172.18.0.2"  # a kind cluster's control plane
APISERVER_PORTS = (443, 6443)
NODE_CIDR, NODE_IP = "172.19.0.0/24", "172.19.0.3"  # the kind cluster's nodes
NODE_ENTITIES = ("host", "remote-node")  # Cilium: this node, the others
KUBELET_PORT = 10250
API_HOST = "kubernetes.default.svc.cluster.local"
WAYPOINT_NS, WAYPOINT = "istio-egress", "egress-waypoint"
WAYPOINT_POD = {"gateway.networking.k8s.io/gateway-name": WAYPOINT}
KUBE_DNS = ({"k8s-app": "kube-dns"}, "kube-system")
ISTIOD = ({"app": "istiod"}, "istio-system")
PUBLIC_IPS = ("203.0.113.7", "2001:db8:ffff::7")  # documentation ranges: "somewhere on the internet"
PRIVATE_IPS = ("10.96.0.10", "172.20.1.1", "192.168.1.1", "100.64.0.1", "fd00::1")
METADATA_IPS = ("169.254.169.254", "fd00:ec2::254")
UNDECLARED_PORT = 2222
INTRUDER = "cluster.local/ns/prod/sa/intruder"  # a service account nobody declared for

# What the release declares for every workload: external hosts (one a wildcard, which
# ambient refuses, so its values leave it out), an address, in-cluster Services (one
# declared as a host of the cluster's domain, which is read as one).
VALUES = """\
istio:
  egress:
    - name: slack
      hosts: [hooks.slack.com]
      ports: [{number: 443, protocol: TLS}]
    - name: s3
      hosts: ["*.s3.amazonaws.com"]
      ports: [{number: 443, protocol: HTTPS}]
    - name: reporting-db
      addresses: [10.40.0.15]
      ports: [{number: 3306, protocol: TCP}]
    - name: reports
      hosts: [reports.analytics.svc.cluster.local]
      ports: [{number: 9000, protocol: HTTP}]
  inCluster:
    - namespace: billing
      service: invoices
      ports: [8080]
      selector: {app: invoices}
"""
AMBIENT_VALUES = VALUES.replace(VALUES[VALUES.index("    - name: s3"):VALUES.index("    - name: reporting-db")], "")

# What one workload of the shop declares for itself, through the chart's podAnnotations.
# Its bare Pod and its Argo Rollout are on too.
SHOP_VALUES = {"web": {"podAnnotations": {"helm-egress.io/hosts": "api.stripe.com",
                                          "helm-egress.io/ports": "443/TLS",
                                          "helm-egress.io/in-cluster": "payments/ledger:80"}},
               "debug": {"enabled": True}, "canary": {"enabled": True}}
# ... and what prometheus's workloads declare, as `podAnnotations` put it in their pod
# templates: the server, bound by a ClusterRoleBinding, opts out of the API server; the
# pushgateway, bound by nothing, opts in and calls a host of its own; kube-state-metrics
# calls a Service of another namespace.
PROMETHEUS_ANNOTATIONS = {
    "prometheus-server": {"helm-egress.io/apiserver": "false"},
    "prometheus-pushgateway": {"helm-egress.io/apiserver": "true", "helm-egress.io/hosts": "push.example.org",
                               "helm-egress.io/ports": "443/TLS"},
    "kube-state-metrics": {"helm-egress.io/in-cluster": "monitoring/thanos-receive:10901"},
}


@dataclass(frozen=True)
class Host:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Pod:
    labels: Mapping[str, str]
    namespace: str
    port: int | str  # a name is the destination pod's container port name
    protocol: str = "TCP"


@dataclass(frozen=True)
class Address:
    ip: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class ApiServer:
    """The Kubernetes API server on one endpoint port (after the `kubernetes` Service's DNAT)."""

    port: int


@dataclass(frozen=True)
class Node:
    """A port on a node, where a hostNetwork pod listens: Cilium's entity (the caller's own
    node, or another), a NetworkPolicy's node address."""

    entity: str
    port: int
    protocol: str = "TCP"


Dest = Pod | Address | Host | ApiServer | Node


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    selector: Mapping[str, str]
    ports: tuple[tuple[int, int | str, str], ...]  # (port, targetPort else port, protocol)

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"


@dataclass(frozen=True)
class Declared:
    hosts: tuple[Host, ...]
    addresses: tuple[Address, ...]
    in_cluster: tuple[Service, ...]  # selector {} means any pod of its namespace


RELEASE_WIDE = Declared(
    hosts=(Host("hooks.slack.com", 443), Host("*.s3.amazonaws.com", 443)),
    addresses=(Address("10.40.0.15", 3306),),
    in_cluster=(Service("invoices", "billing", {"app": "invoices"}, ((8080, 8080, "TCP"),)),
                Service("reports", "analytics", {}, ((9000, 9000, "TCP"),))),
)


def by_annotation(annotations: Mapping[str, str]) -> Declared:
    """What the README's annotations declare: hosts on `NUMBER/PROTOCOL` ports (a bare
    number is TCP), and `NS/SERVICE:PORT[/PROTOCOL][,PORT...]` in-cluster Services."""
    ports = [item.partition("/") for item in annotations.get("helm-egress.io/ports", "").replace(",", " ").split()]
    hosts = tuple(Host(name, int(number), "UDP" if protocol.upper() == "UDP" else "TCP")
                  for name in annotations.get("helm-egress.io/hosts", "").replace(",", " ").split()
                  for number, _, protocol in ports)
    in_cluster = []
    for item in annotations.get("helm-egress.io/in-cluster", "").split():
        namespace, _, rest = item.partition("/")
        name, _, port_list = rest.partition(":")
        numbers = [(int(n), proto or "TCP") for n, _, proto in (p.partition("/") for p in port_list.split(","))]
        in_cluster.append(Service(name, namespace, {}, tuple((n, n, proto) for n, proto in numbers)))
    return Declared(hosts, (), tuple(in_cluster))

# The Services of the cluster a proxy's registry has besides the stream's: the API
# server's, the DNS Service, the declared in-cluster ones, and one nobody declared.
CLUSTER = (
    *oracle.EVERY_CLUSTER,
    *({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
       "spec": {"ports": [{"port": port}]}}
      for name, namespace, port in (("kube-dns", "kube-system", 53), ("invoices", "billing", 8080),
                                    ("ledger", "payments", 80), ("reports", "analytics", 9000),
                                    ("thanos-receive", "monitoring", 10901),
                                    ("secrets", "vault", 8200))),
)


def samples(host: str) -> tuple[str, ...]:
    """Names a host stands for: a wildcard matches names one and two labels below it."""
    return (f"bucket{host[1:]}", f"a.b{host[1:]}") if host.startswith("*.") else (host,)


# --------------------------------------------------------------------------- the streams

_YAML = YAML(typ="safe", pure=False)


@cache
def load(text: str) -> Any:
    return _YAML.load(text)


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str
    namespace: str
    labels: Mapping[str, str]
    account: str
    token: bool
    hook: bool
    host_network: bool
    annotations: Mapping[str, str]  # the workload's and its pods', merged
    named_ports: tuple[tuple[str, str, int], ...] = ()  # (name, protocol, containerPort)

    @property
    def principal(self) -> str:
        return f"cluster.local/ns/{self.namespace}/sa/{self.account}"


def _pod(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    if doc["kind"] == "Pod":
        return doc
    spec = doc["spec"]
    return spec["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else spec["template"]


def _projects_api_token(pod_spec: Mapping[str, Any]) -> bool:
    """A projected serviceAccountToken without an audience is a token for the API server."""
    return any("audience" not in (source.get("serviceAccountToken") or {"audience": None})
               for volume in pod_spec.get("volumes") or []
               for source in (volume.get("projected") or {}).get("sources") or [])


@dataclass
class Chart:
    """One input stream, read the way a cluster would take it."""

    stream: str
    documents: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.documents = split_documents(self.stream)

    @cached_property
    def parsed(self) -> list[Mapping[str, Any]]:
        """The documents a cluster's network or mesh reads (only those: a CRD's schema may
        carry YAML tags a safe loader refuses)."""
        return [doc for text in self.documents if READ_KINDS.search(text)
                and isinstance(doc := load(text), Mapping)]

    def _of(self, *kinds: str) -> Iterator[Mapping[str, Any]]:
        return (doc for doc in self.parsed if doc.get("kind") in kinds)

    @cached_property
    def services(self) -> tuple[Service, ...]:
        out = []
        for doc in self._of("Service"):
            spec = doc.get("spec") or {}
            if not spec.get("selector") or spec.get("type") == "ExternalName":
                continue
            ports = tuple((p["port"], p.get("targetPort") or p["port"], p.get("protocol") or "TCP")
                          for p in spec.get("ports") or [])
            out.append(Service(doc["metadata"]["name"], doc["metadata"].get("namespace") or NAMESPACE,
                               spec["selector"], ports))
        return tuple(out)

    @cached_property
    def bound(self) -> set[tuple[str, str]]:
        """(namespace, account) pairs a binding names; ("*", "*") or (ns, "*") for groups."""
        out = set()
        for doc in self._of("RoleBinding", "ClusterRoleBinding"):
            home = doc["metadata"].get("namespace") or NAMESPACE
            for subject in doc.get("subjects") or []:
                kind, name = subject.get("kind"), str(subject.get("name"))
                if kind == "ServiceAccount":
                    out.add((subject.get("namespace") or home, name))
                elif kind == "User" and name.startswith("system:serviceaccount:"):
                    namespace, _, account = name.removeprefix("system:serviceaccount:").partition(":")
                    out.add((namespace, account))
                elif kind == "Group" and name == "system:serviceaccounts":
                    out.add(("*", "*"))
                elif kind == "Group" and name.startswith("system:serviceaccounts:"):
                    out.add((name.removeprefix("system:serviceaccounts:"), "*"))
        return out

    @cached_property
    def workloads(self) -> tuple[Workload, ...]:
        accounts = {(d["metadata"].get("namespace") or NAMESPACE, d["metadata"]["name"]): d
                    for d in self._of("ServiceAccount")}
        out = []
        for doc in self._of(*WORKLOAD_KINDS):
            meta, pod = doc["metadata"], _pod(doc)
            spec = pod.get("spec") or {}
            namespace = meta.get("namespace") or NAMESPACE
            account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
            automount = spec.get("automountServiceAccountToken")
            if automount is None:
                automount = accounts.get((namespace, account), {}).get("automountServiceAccountToken", True)
            out.append(Workload(
                kind=doc["kind"], name=meta["name"], namespace=namespace,
                labels={str(k): str(v) for k, v in ((pod.get("metadata") or {}).get("labels") or {}).items()},
                account=account, token=bool(automount) or _projects_api_token(spec),
                hook=HOOK in (meta.get("annotations") or {}), host_network=bool(spec.get("hostNetwork")),
                annotations={**(meta.get("annotations") or {}),
                             **((pod.get("metadata") or {}).get("annotations") or {})},
                named_ports=tuple((p["name"], p.get("protocol") or "TCP", p["containerPort"])
                                  for c in spec.get("containers") or [] for p in c.get("ports") or []
                                  if p.get("name"))))
        return tuple(out)

    def selected(self, service: Service) -> list[Workload]:
        """The workloads whose pods the Service's selector selects (its namespace, its labels)."""
        return [w for w in self.workloads if w.namespace == service.namespace and service.selector
                and all(w.labels.get(k) == v for k, v in service.selector.items())]

    def node_ports(self, service: Service) -> list[tuple[int, str]]:
        """Where the Service's hostNetwork pods listen on their nodes: its target ports, a
        name resolved to the container port of that name and protocol (only pods have port
        names); none when no hostNetwork workload's pods are selected."""
        hosted = [w for w in self.selected(service) if w.host_network]
        out = []
        for _, target, protocol in service.ports:
            if isinstance(target, int):
                out += [(target, protocol)] if hosted else []
            else:
                out += [(n, protocol) for w in hosted for name, proto, n in w.named_ports
                        if (name, proto) == (target, protocol)]
        return list(dict.fromkeys(out))

    def by_labels(self, service: Service) -> bool:
        """Whether its pods are reached by their labels: some have a network of their own,
        or the stream runs none of them (a Service of another release, any pod there)."""
        selected = self.selected(service)
        return not selected or any(not w.host_network for w in selected)

    @cached_property
    def node_services(self) -> list[Service]:
        """Services whose pods are a hostNetwork workload's (prometheus-server scraping
        node-exporter): reached on the nodes, since no policy selects such pods by label."""
        return [s for s in self.services if self.node_ports(s)]

    def calls_apiserver(self, workload: Workload) -> bool:
        explicit = workload.annotations.get("helm-egress.io/apiserver")
        if explicit is not None:
            return explicit == "true"
        bound = {(workload.namespace, workload.account), (workload.namespace, "*"), ("*", "*")} & self.bound
        return bool(bound) and workload.token

    def declared(self, workload: Workload) -> Declared:
        own = by_annotation(workload.annotations)
        return Declared(*(a + b for a, b in zip(
            (RELEASE_WIDE.hosts, RELEASE_WIDE.addresses, RELEASE_WIDE.in_cluster),
            (own.hosts, own.addresses, own.in_cluster), strict=True)))


# The last is the same chart as a chart that leaves every namespace to `helm -n` (most
# charts outside the big projects): no document names the release's namespace.
NO_NAMESPACE = "ingress-nginx.helm3-no-namespace"
ANNOTATED = "prometheus.helm4-annotated"  # with PROMETHEUS_ANNOTATIONS
CHARTS = ("ingress-nginx.helm3", "ingress-nginx.helm4", "prometheus.helm4", "kube-prometheus-stack.helm3", "shop.helm4",
          NO_NAMESPACE, ANNOTATED)


@cache
def chart(chart_id: str) -> Chart:
    if chart_id == "shop.helm4":
        return Chart(helm4_stream(render_chart(SHOP, SHOP_VALUES, release=RELEASE, namespace=NAMESPACE)))
    if chart_id == NO_NAMESPACE:  # objects' own namespace only: a binding's subject still names one
        stream = (CORPUS / "ingress-nginx.helm3.yaml").read_text(encoding="utf-8")
        return Chart(re.sub(rf"(?m)^  namespace: {NAMESPACE}\n", "", stream))
    if chart_id == ANNOTATED:
        stream = (CORPUS / "prometheus.helm4.yaml").read_text(encoding="utf-8")
        for document in split_documents(stream):
            match = re.search(rf"(?m)^kind: Deployment\n(?:.*\n)*?  name: {RELEASE}-(\S+)\n", document)
            if match and match.group(1) in PROMETHEUS_ANNOTATIONS:
                annotations = PROMETHEUS_ANNOTATIONS[match.group(1)]
                block = "".join(f"        {key}: {value!r}\n" for key, value in annotations.items())
                annotated = document.replace("  template:\n    metadata:\n", f"  template:\n    metadata:\n"
                                                                          f"      annotations:\n{block}", 1)
                stream = stream.replace(document, annotated)
        return Chart(stream)
    return Chart((CORPUS / f"{chart_id}.yaml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the flavours

@dataclass(frozen=True)
class Flavour:
    network: str  # kubernetes | cilium | none
    mesh: str  # sidecar | ambient
    sidecar: bool = False

    @property
    def id(self) -> str:
        return f"{self.network}{'+Sidecar' if self.sidecar else ''}{'-ambient' if self.mesh == 'ambient' else ''}"

    @property
    def args(self) -> tuple[str, ...]:
        args = ["--network-policy", self.network, "--mesh", self.mesh]
        if self.network == "kubernetes":
            args += ["--apiserver-cidr", APISERVER_CIDR, "--node-cidr", NODE_CIDR]
        if self.network == "cilium":
            args += ["--cilium-wildcard-depth", "0"]  # Cilium >= 1.19: **. at any depth
        if self.mesh == "ambient":
            args += ["--waypoint", f"{WAYPOINT_NS}/{WAYPOINT}"]
        if self.sidecar:
            args.append("--sidecar")
        return tuple(args)


FLAVOURS = (
    *(Flavour(network, "sidecar", sidecar) for network in ("kubernetes", "cilium", "none")
      for sidecar in (False, True)),
    *(Flavour(network, "ambient") for network in ("kubernetes", "cilium", "none")),
)


def policy_text(chart_: Chart, ambient: bool) -> str:
    """A platform policy approving exactly what the chart's workloads declared, and those
    of its workloads that run past the proxy by design (hostNetwork: the node exporter)."""
    hosts = {(h.name, h.port) for w in chart_.workloads if not w.hook for h in chart_.declared(w).hosts
             if not (ambient and h.name.startswith("*"))}  # the ambient values leave the wildcard out
    allow = [f"  - {{hosts: ['{name}'], ports: [{port}]}}" for name, port in sorted(hosts)]
    allow += [f"  - {{addresses: [{a.ip}], ports: [{a.port}]}}" for a in RELEASE_WIDE.addresses]
    bypass = [f"  - {{workload: {w.kind}/{w.name}}}" for w in chart_.workloads if w.host_network]
    return "allow:\n" + "\n".join(allow) + ("\nbypass:\n" + "\n".join(bypass) if bypass else "") + "\n"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def invoke(command: str, stream: str, args: Sequence[str]) -> Run:
    result = CliRunner().invoke(app, [command, *args], input=stream.encode("utf-8"))
    return Run(result.exit_code, result.stdout_bytes.decode("utf-8"), result.stderr)


@dataclass
class Rendered:
    chart: Chart
    flavour: Flavour
    args: tuple[str, ...]
    output: str

    @cached_property
    def output_documents(self) -> list[str]:
        return split_documents(self.output)

    @cached_property
    def generated(self) -> list[Mapping[str, Any]]:
        return [load(text) for text in self.output_documents if GENERATED.search(text)]

    @cached_property
    def everything(self) -> list[Mapping[str, Any]]:
        return [*self.generated, *self.chart.parsed]

    def of(self, kind: str) -> list[Mapping[str, Any]]:
        """Generated and the chart's own: a pod gets the union of the policies selecting it."""
        return [doc for doc in self.everything if doc["kind"] == kind]

    def declared(self, workload: Workload) -> Declared:
        """Under ambient the values leave the wildcard out (ambient cannot enforce one)."""
        declared = self.chart.declared(workload)
        if self.flavour.mesh != "ambient":
            return declared
        return Declared(tuple(h for h in declared.hosts if not h.name.startswith("*")), declared.addresses,
                        declared.in_cluster)


class Lab:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs: dict[tuple[str, Flavour, bool], Rendered] = {}

    def file(self, name: str, text: str) -> Path:
        path = self.folder / name
        if not path.exists():
            path.write_text(text, encoding="utf-8")
        return path

    def args(self, chart_id: str, flavour: Flavour, policy: bool) -> tuple[str, ...]:
        ambient = flavour.mesh == "ambient"
        values = self.file("ambient-values.yaml", AMBIENT_VALUES) if ambient else self.file("values.yaml", VALUES)
        args = ("-f", str(values), *flavour.args)
        if not policy:
            return args
        return (*args, "--policy", str(self.file(f"{chart_id}{'-ambient' if ambient else ''}-policy.yaml",
                                                 policy_text(chart(chart_id), ambient))))

    def render(self, chart_id: str, flavour: Flavour, policy: bool) -> Rendered:
        key = (chart_id, flavour, policy)
        if key not in self.runs:
            args = self.args(chart_id, flavour, policy)
            if chart_id == NO_NAMESPACE and flavour.mesh == "ambient":
                # A principal names the namespace: ambient asks for it (a located error otherwise).
                args = (*args, "--namespace", NAMESPACE)
            run = invoke("render", chart(chart_id).stream, args)
            assert run.code == 0, run.stderr
            self.runs[key] = Rendered(chart(chart_id), flavour, args, run.stdout)
        return self.runs[key]


@pytest.fixture(scope="module")
def lab(one_command: None, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab(tmp_path_factory.mktemp("needs"))


every_case = pytest.mark.parametrize("chart_id", CHARTS)
with_and_without_policy = pytest.mark.parametrize("policy", (False, True), ids=("declared", "policy"))


def every_run(test: Callable[..., None]) -> Callable[..., None]:
    """Every chart, under every flavour, with and without the policy."""
    return every_case(pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda f: f.id)(with_and_without_policy(test)))


# --------------------------------------------------------------------------- the layers

def network_allows(run: Rendered, workload: Workload, dest: Dest) -> bool:
    """May the workload's pods open this connection at the network layer? A Host is a
    public address the name resolved to (Cilium: the name, learnt through its DNS proxy);
    the API server is Cilium's kube-apiserver entity, else an address of --apiserver-cidr; a
    node is Cilium's host or remote-node entity, else an address of --node-cidr."""
    if run.flavour.network == "cilium":
        policies = run.of("CiliumNetworkPolicy")
        common = {"policies": policies, "pod_labels": workload.labels, "pod_namespace": workload.namespace}
        if isinstance(dest, ApiServer):
            return oracle.cilium_allows(**common, port=dest.port, entity="kube-apiserver")
        if isinstance(dest, Node):
            return oracle.cilium_allows(**common, port=dest.port, protocol=dest.protocol, entity=dest.entity)
        if isinstance(dest, Pod):
            named = isinstance(dest.port, str)
            return oracle.cilium_allows(**common, port=1 if named else int(dest.port), protocol=dest.protocol,
                                        peer=(dest.labels, dest.namespace),
                                        port_name=str(dest.port) if named else None)
        if isinstance(dest, Address):
            return oracle.cilium_allows(**common, port=dest.port, protocol=dest.protocol, ip=dest.ip)
        return all(oracle.cilium_dns_query_allowed(policies, workload.labels, workload.namespace, KUBE_DNS, 53, name)
                   and oracle.cilium_allows(**common, port=dest.port, protocol=dest.protocol, host=name)
                   for name in samples(dest.name))
    policies = run.of("NetworkPolicy")

    def allows(target: Mapping[str, Any]) -> bool:
        return oracle.egress_allows(policies, workload.labels, dest=target, pod_namespace=workload.namespace)

    if isinstance(dest, ApiServer):
        return allows({"ip": APISERVER_IP, "port": dest.port})
    if isinstance(dest, Node):
        return allows({"ip": NODE_IP, "port": dest.port, "protocol": dest.protocol})
    if isinstance(dest, Pod):
        named = isinstance(dest.port, str)
        return allows({"pod_labels": dest.labels, "namespace": dest.namespace, "protocol": dest.protocol,
                       **({"port": 1, "port_name": dest.port} if named else {"port": dest.port})})
    if isinstance(dest, Address):
        return allows({"ip": dest.ip, "port": dest.port, "protocol": dest.protocol})
    return all(allows({"ip": ip, "port": dest.port, "protocol": dest.protocol}) for ip in PUBLIC_IPS)


def mesh_routes(run: Rendered, workload: Workload, host: str | None = None, ip: str | None = None,
                port: int = 443) -> bool:
    # A document that names no namespace is in the release's (helm -n), wherever the pod runs.
    return oracle.mesh_allows(run.everything, workload.labels, workload.namespace, host=host, ip=ip, port=port,
                              home=NAMESPACE, cluster=CLUSTER)


def any_pod(namespace: str, port: int | str, protocol: str = "TCP") -> Pod:
    return Pod({"app": "anything-else"}, namespace, port, protocol)


def service_pods(service: Service, ambient: bool) -> Iterator[tuple[str, Pod]]:
    """A caller's packet reaches the pod's port after the Service's DNAT; in ambient, ztunnel
    carries an in-mesh call to the pod over HBONE (15008). No selector: any pod there."""
    labels = service.selector or {"app": "anything-else"}
    for _, target, protocol in service.ports:
        yield f"Service {service.namespace}/{service.name} pods on {target}/{protocol}", \
            Pod(labels, service.namespace, target, protocol)
    if ambient:
        yield f"Service {service.namespace}/{service.name} pods on 15008 (HBONE)", Pod(labels, service.namespace, 15008)


def network_needs(run: Rendered, workload: Workload) -> Iterator[tuple[str, Dest]]:
    ambient = run.flavour.mesh == "ambient"
    declared = run.declared(workload)
    yield "kube-dns over UDP", Pod(*KUBE_DNS, 53, "UDP")
    yield "kube-dns over TCP", Pod(*KUBE_DNS, 53, "TCP")
    if not ambient:
        yield "istiod (xDS, CA)", Pod(*ISTIOD, 15012)
    for service in (*run.chart.services, *declared.in_cluster):
        if run.chart.by_labels(service):
            yield from service_pods(service, ambient)
        # Its hostNetwork pods, on their node's address: the caller's own node and the
        # others. Not in the mesh, so no HBONE port in ambient.
        for port, protocol in run.chart.node_ports(service):
            for entity in NODE_ENTITIES:
                yield f"Service {service.namespace}/{service.name}'s hostNetwork pods on {entity} " \
                      f"{port}/{protocol}", Node(entity, port, protocol)
    if run.chart.calls_apiserver(workload):
        for port in APISERVER_PORTS:
            yield f"the API server on {port} (RBAC-bound, with a token)", ApiServer(port)
    for address in declared.addresses:
        yield f"declared address {address.ip}:{address.port}", address
    for host in declared.hosts:
        if ambient:
            yield f"the waypoint, for {host.name}", Pod(WAYPOINT_POD, WAYPOINT_NS, 15008)
        else:
            yield f"declared host {host.name}:{host.port}", host


def network_refusals(run: Rendered, workload: Workload) -> Iterator[tuple[str, Dest]]:
    ambient, cilium = run.flavour.mesh == "ambient", run.flavour.network == "cilium"
    declared = run.declared(workload)
    host_ports = sorted({h.port for h in declared.hosts})
    yield "another pod of its namespace", any_pod(workload.namespace, 8443)
    yield "a pod of another namespace", any_pod("elsewhere", 8080)
    for service in (*run.chart.services, *declared.in_cluster):
        if service.selector:  # the namespace and the labels together pick the pods
            for _, target, protocol in service.ports:
                yield f"{service.name}'s look-alikes in another namespace", \
                    Pod(service.selector, "elsewhere", target, protocol)
            yield f"{service.name}'s pods on an undeclared port", Pod(service.selector, service.namespace,
                                                                       UNDECLARED_PORT)
    node_ports = {port for s in run.chart.services for port, _ in run.chart.node_ports(s)}
    udp = {port for s in run.chart.services for port, protocol in run.chart.node_ports(s) if protocol == "UDP"}
    for entity in NODE_ENTITIES:
        for port in (UNDECLARED_PORT, KUBELET_PORT, *({9100} - node_ports)):
            yield f"the {entity} node on {port}, where no Service's pods listen", Node(entity, port)
        for port in sorted(node_ports - udp):
            yield f"the {entity} node on {port} over UDP", Node(entity, port, "UDP")
    yield "kube-dns on another port", Pod(*KUBE_DNS, 80)
    yield "a kube-dns look-alike in another namespace", Pod(KUBE_DNS[0], "elsewhere", 53, "UDP")
    yield "istiod on another port", Pod(*ISTIOD, 15010)
    yield "another pod of istiod's namespace", Pod({"app": "kiali"}, ISTIOD[1], 15012)
    for ip in PRIVATE_IPS:
        for port in host_ports:
            yield f"private {ip}:{port} (a hostname port)", Address(ip, port)
    for ip in METADATA_IPS:
        for port in (80, *host_ports):
            yield f"metadata endpoint {ip}:{port}", Address(ip, port)
    for address in declared.addresses:
        yield f"{address.ip} on another port", Address(address.ip, UNDECLARED_PORT)
        yield f"{address.ip} over UDP", Address(address.ip, address.port, "UDP")
        yield f"the address next to {address.ip}", Address(f"{address.ip.rpartition('.')[0]}.16", address.port)
    for ip in PUBLIC_IPS:
        for port in (UNDECLARED_PORT, 80):
            yield f"undeclared port {port} on {ip}", Address(ip, port)
        for port in host_ports:
            yield f"UDP {port} on {ip} (declared TCP)", Address(ip, port, "UDP")
            if ambient or cilium:  # no hostname CIDR: a name is reached by name or through the waypoint
                yield f"{ip}:{port} by address", Address(ip, port)
    if run.chart.calls_apiserver(workload):
        yield "the API server host on the kubelet's port", ApiServer(10250)
    else:
        for port in APISERVER_PORTS:
            yield f"the API server on {port} (no binding or no token)", ApiServer(port)
    if ambient:
        yield "istiod (ztunnel talks to it, not the pod)", Pod(*ISTIOD, 15012)
        yield "the waypoint on another port", Pod(WAYPOINT_POD, WAYPOINT_NS, 15001)
    if cilium and not ambient:
        yield "an undeclared host on a declared port", Host("evil.example.com", 443)
        yield "the apex of a wildcard", Host("s3.amazonaws.com", 443)
        for host in declared.hosts:
            yield f"{host.name} on an undeclared port", Host(host.name, 80)
            yield f"{host.name} over UDP", Host(host.name, host.port, "UDP")
        for host in others_hosts(run, workload):
            yield f"{host.name}, which only another workload declared", host


def others_hosts(run: Rendered, workload: Workload) -> set[Host]:
    """Hosts other workloads declared in their annotations and this one did not."""
    own = set(run.declared(workload).hosts)
    return {h for other in run.chart.workloads if not other.hook for h in by_annotation(other.annotations).hosts} - own


def release_workloads(chart_: Chart) -> list[Workload]:
    """Hooks get no policy; hostNetwork pods are the node's traffic, which no NetworkPolicy,
    CiliumNetworkPolicy or Sidecar governs (check warns): neither has needs to judge here.

    Each workload comes twice: as this release renders its pods, and as a pod of the
    previous release still running during the rollout (another chart version and app
    version, the ReplicaSet's hash label), which must stay selected and keep its needs."""
    out = []
    for workload in chart_.workloads:
        if workload.hook or workload.host_network:
            continue
        previous = {k: f"{v}-previous" if k in ("app.kubernetes.io/version", "helm.sh/chart") else v
                    for k, v in workload.labels.items()}
        out += [workload, replace(workload, labels={**previous, "pod-template-hash": "6f9c7d5b48"})]
    return out


# =========================================================================== the judgements


def network_failures(run: Rendered) -> list[str]:
    failures = []
    for workload in release_workloads(run.chart):
        for what, dest in network_needs(run, workload):
            if not network_allows(run, workload, dest):
                failures.append(f"{workload.kind}/{workload.name} cannot reach {what}")
        for what, dest in network_refusals(run, workload):
            if network_allows(run, workload, dest):
                failures.append(f"{workload.kind}/{workload.name} may reach {what}")
    return failures


def proxy_failures(run: Rendered) -> list[str]:
    failures = []
    for workload in release_workloads(run.chart):
        declared = run.declared(workload)
        if run.flavour.mesh == "ambient":
            # The waypoint admits the workload's own service account to each declared host
            # on its port, and nobody else.
            for host in declared.hosts:
                if not oracle.ambient_admits(run.everything, workload.principal, host.name, host.port):
                    failures.append(f"{workload.name}: the waypoint refuses {host.name}:{host.port}")
                if oracle.ambient_admits(run.everything, INTRUDER, host.name, host.port) is not False:
                    failures.append(f"{workload.name}: the waypoint admits anyone to {host.name}:{host.port}")
                if oracle.ambient_admits(run.everything, workload.principal, host.name, UNDECLARED_PORT):
                    failures.append(f"{workload.name}: the waypoint admits {host.name}:{UNDECLARED_PORT}")
            # What another workload declared, unless it runs as the same service account (the
            # principal is all the waypoint sees; check warns of the shared account).
            sharing = [w for w in run.chart.workloads
                       if (w.account, w.namespace) == (workload.account, workload.namespace)]
            for host in others_hosts(run, workload) - {h for w in sharing for h in run.declared(w).hosts}:
                if oracle.ambient_admits(run.everything, workload.principal, host.name, host.port):
                    failures.append(f"{workload.name}: the waypoint admits it to {host.name}, another's host")
            continue
        needs = [(name, h.port) for h in declared.hosts for name in samples(h.name)]
        if run.flavour.sidecar:  # in-cluster names are the Sidecar's imports (without one, every Service)
            needs += [(s.host, port) for s in (*run.chart.services, *declared.in_cluster) for port, _, _ in s.ports]
            needs += [("kube-dns.kube-system.svc.cluster.local", 53)]
            needs += [(API_HOST, 443)] if run.chart.calls_apiserver(workload) else []
        for host, port in needs:
            if not mesh_routes(run, workload, host=host, port=port):
                failures.append(f"{workload.name}: its proxy does not route {host}:{port}")
        for address in declared.addresses:
            if not mesh_routes(run, workload, ip=address.ip, port=address.port):
                failures.append(f"{workload.name}: its proxy does not route {address.ip}:{address.port}")
        refused = [("evil.example.com", 443), ("s3.amazonaws.com", 443)]
        refused += [(name, UNDECLARED_PORT) for h in declared.hosts for name in samples(h.name)]
        if run.flavour.sidecar:
            refused += [("secrets.vault.svc.cluster.local", 8200)]
            refused += [] if run.chart.calls_apiserver(workload) else [(API_HOST, 443)]
            refused += [(h.name, h.port) for h in others_hosts(run, workload)]
        for host, port in refused:
            if mesh_routes(run, workload, host=host, port=port):
                failures.append(f"{workload.name}: its proxy routes {host}:{port}")
    return failures


@every_case
@pytest.mark.parametrize("flavour", [f for f in FLAVOURS if f.network != "none"], ids=lambda f: f.id)
@with_and_without_policy
def test_each_workload_reaches_what_it_needs_and_nothing_else(
        lab: Lab, chart_id: str, flavour: Flavour, policy: bool) -> None:
    failures = network_failures(lab.render(chart_id, flavour, policy))
    assert not failures, "\n".join(failures)


@every_run
def test_each_proxy_routes_what_its_workload_needs_and_nothing_else(
        lab: Lab, chart_id: str, flavour: Flavour, policy: bool) -> None:
    failures = proxy_failures(lab.render(chart_id, flavour, policy))
    assert not failures, "\n".join(failures)


@every_run
def test_hooks_get_nothing(lab: Lab, chart_id: str, flavour: Flavour, policy: bool) -> None:
    """A hook's pods are not the release's: no policy or Sidecar written for another
    workload may take them in (they would lose the API server the admission Jobs call)."""
    run = lab.render(chart_id, flavour, policy)
    for workload in (w for w in run.chart.workloads if w.hook):
        probe = Address("192.0.2.1", 9, "SCTP")  # no rule opens SCTP: only an unselected pod gets it
        if flavour.network != "none":
            assert network_allows(run, workload, probe), f"{workload.name} is selected by a policy"
        assert oracle.sidecar_for(run.generated, workload.labels, workload.namespace, NAMESPACE) is None


@every_run
def test_every_generated_document_is_valid(lab: Lab, chart_id: str, flavour: Flavour, policy: bool) -> None:
    run = lab.render(chart_id, flavour, policy)
    assert run.generated
    wanted = {"ServiceEntry", {"kubernetes": "NetworkPolicy", "cilium": "CiliumNetworkPolicy"}.get(flavour.network),
              "Sidecar" if flavour.sidecar else None, "AuthorizationPolicy" if flavour.mesh == "ambient" else None}
    wanted.discard(None)
    assert {doc["kind"] for doc in run.generated} == wanted
    # A ServiceEntry for a Service of the cluster (MESH_EXTERNAL, plaintext) would take that
    # Service over for every proxy of the namespace.
    assert not [h for se in run.of("ServiceEntry") for h in se["spec"].get("hosts") or [] if ".svc." in h]
    for doc in run.generated:
        assert oracle.problems(doc) == [], doc["metadata"]["name"]


@every_run
def test_every_input_document_comes_out_byte_for_byte(lab: Lab, chart_id: str, flavour: Flavour, policy: bool) -> None:
    run = lab.render(chart_id, flavour, policy)
    assert [text for text in run.output_documents if not GENERATED.search(text)] == run.chart.documents


@every_run
def test_the_output_renders_to_itself_and_checks_clean(lab: Lab, chart_id: str, flavour: Flavour, policy: bool) -> None:
    run = lab.render(chart_id, flavour, policy)
    again = invoke("render", run.output, run.args)
    assert (again.code, again.stdout) == (0, run.output), again.stderr
    checked = invoke("check", run.output, run.args)
    assert checked.code == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("chart_id", ("prometheus.helm4", "kube-prometheus-stack.helm3"))
def test_without_node_cidr_check_warns_for_each_caller_of_a_host_network_service(lab: Lab, chart_id: str) -> None:
    """A NetworkPolicy names the nodes only by address: without --node-cidr nothing opens a
    hostNetwork Service's pods, and ``check`` names each caller and Service (``render`` notes
    it once)."""
    chart_ = chart(chart_id)
    assert chart_.node_services
    args = list(lab.args(chart_id, FLAVOURS[0], policy=False))
    del args[args.index("--node-cidr"):args.index("--node-cidr") + 2]
    checked = invoke("check", chart_.stream, args)
    assert checked.code == 0, checked.stdout + checked.stderr
    warned = [line for line in checked.stdout.splitlines() if line.startswith("warning:") and "--node-cidr" in line]
    callers = {(w.kind, w.name) for w in release_workloads(chart_)}
    expected = {(kind, name, s.namespace, s.name) for kind, name in callers for s in chart_.node_services}
    found = {(kind, name, s.namespace, s.name) for kind, name in callers for s in chart_.node_services
             for line in warned if f"({kind}/{name})" in line and f"Service {s.namespace}/{s.name} for it" in line}
    assert found == expected and len(warned) == len(expected), "\n".join(warned)
    rendered = invoke("render", chart_.stream, args)
    assert rendered.code == 0, rendered.stderr
    notes = [line for line in rendered.stderr.splitlines() if "--node-cidr" in line]
    assert len(notes) == 1 and all(f"{kind}/{name}" in notes[0] for kind, name in callers), notes
    # Nothing opens the nodes: the callers' NetworkPolicies hold no node address.
    run = Rendered(chart_, FLAVOURS[0], tuple(args), rendered.stdout)
    for workload in release_workloads(chart_):
        for service in chart_.node_services:
            for port, protocol in chart_.node_ports(service):
                assert not network_allows(run, workload, Node("remote-node", port, protocol)), workload.name


@pytest.mark.parametrize("flavour", [FLAVOURS[0], FLAVOURS[-1]], ids=lambda f: f.id)
def test_the_policy_refuses_a_declared_host_it_does_not_approve(lab: Lab, flavour: Flavour, tmp_path: Path) -> None:
    """The policy the matrix passes is exact: without the Slack rule, nothing is written."""
    args = list(lab.args("ingress-nginx.helm4", flavour, policy=True))
    narrowed = tmp_path / "policy.yaml"
    narrowed.write_text(Path(args[-1]).read_text().replace("  - {hosts: ['hooks.slack.com'], ports: [443]}\n", ""))
    args[-1] = str(narrowed)
    run = invoke("render", chart("ingress-nginx.helm4").stream, args)
    assert run.code == 1 and run.stdout == ""
    assert "hooks.slack.com on port 443" in run.stderr

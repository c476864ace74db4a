"""What a workload reaches inside the cluster besides its external hosts, end to end.

A small release (a web Deployment, an api Deployment behind a Service with a named and a
numbered target port, a worker in another namespace) goes through the real CLI; the
generated NetworkPolicies, CiliumNetworkPolicies and Sidecars are judged by the independent
``oracle``: the release's Services' pods on their target ports, in-cluster Sidecar imports,
mesh Services and cluster DNS are reachable; every other pod of the namespace, other ports
and private addresses for a hostname are not.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

import oracle
from helmstream import split_documents
from post_renderer.cli import app

WEB = {"app": "web"}
API = {"app": "api"}
WORKER = {"app": "worker"}


def _deployment(name: str, namespace: str, labels: dict[str, str], annotations: str = "") -> str:
    label_text = ", ".join(f"{k}: {v}" for k, v in labels.items())
    return f"""\
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{app.kubernetes.io/instance: demo}}
spec:
  selector:
    matchLabels: {{{label_text}}}
  template:
    metadata:
      labels: {{{label_text}, app.kubernetes.io/version: "1.0"}}
      annotations: {{{annotations}}}
    spec:
      containers:
        - name: main
          image: example/{name}
"""


SERVICE = """\
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: prod
spec:
  selector: {app: api}
  ports:
    - {name: http, port: 80, targetPort: http}
    - {name: metrics, port: 9100, targetPort: 9090}
    - {name: dns, port: 5353, protocol: UDP}
"""

STREAM = (_deployment("web", "prod", WEB, 'helm-egress.io/hosts: api.stripe.com, helm-egress.io/ports: "443/TLS"')
          + _deployment("api", "prod", API, 'helm-egress.io/hosts: api.stripe.com, helm-egress.io/ports: "443/TLS"')
          + _deployment("worker", "jobs", WORKER,
                        'helm-egress.io/hosts: api.stripe.com, helm-egress.io/ports: "443/TLS"')
          + SERVICE)


def invoke(args: Sequence[str], stream: str) -> Result:
    env = {k: None for k in os.environ if k.startswith("HELM_EGRESS_") or k.startswith("HELM_PLUGIN")}
    return CliRunner().invoke(app, args, input=stream, env=env, catch_exceptions=False)


def run(args: Sequence[str], stream: str = STREAM) -> Result:
    return invoke(["render", *args], stream)


def rendered(*args: str, stream: str = STREAM) -> list[dict[str, Any]]:
    result = run(args, stream)
    assert result.exit_code == 0, result.stderr
    loader = YAML(typ="safe")
    docs = [loader.load(text) for text in split_documents(result.stdout)]
    generated = [d for d in docs if isinstance(d, dict)
                 and "helm-egress.io/generated-by" in (d["metadata"].get("annotations") or {})]
    for doc in generated:
        assert oracle.problems(doc) == [], doc
    return generated


def of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def opens_api_pods(docs: list[dict[str, Any]]) -> bool:
    """Whether a generated NetworkPolicy names the api Service's pods."""
    rules = [rule for d in of(docs, "NetworkPolicy") for rule in d["spec"]["egress"]]
    return any(peer.get("podSelector", {}).get("matchLabels", {}).get("app") == "api"
               for rule in rules for peer in rule.get("to", []))


def np_allows(docs: list[dict[str, Any]], labels: dict[str, str], source: str, **dest: Any) -> bool:
    """May a pod with ``labels`` in namespace ``source`` open a connection to ``dest``?"""
    return oracle.egress_allows(of(docs, "NetworkPolicy"), labels, dest=dest, pod_namespace=source)


def cilium_allows(docs: list[dict[str, Any]], labels: dict[str, str], namespace: str, **kw: Any) -> bool:
    return oracle.cilium_allows(of(docs, "CiliumNetworkPolicy"), labels, namespace, **kw)


CALLERS = [(WEB, "prod"), (API, "prod"), (WORKER, "jobs")]


def test_the_releases_service_pods_on_their_target_ports_and_nothing_else_of_the_namespace() -> None:
    docs = rendered()
    for labels, source in CALLERS:
        reach = lambda **d: np_allows(docs, labels, source, **d)  # noqa: E731
        assert reach(pod_labels=API, namespace="prod", port=1, port_name="http")
        assert reach(pod_labels=API, namespace="prod", port=9090)
        assert reach(pod_labels=API, namespace="prod", port=5353, protocol="UDP")
        # The Service's own port is not what the packet carries after DNAT.
        assert not reach(pod_labels=API, namespace="prod", port=9100)
        assert not reach(pod_labels=API, namespace="prod", port=8080)
        assert not reach(pod_labels={"app": "other"}, namespace="prod", port=9090)
        assert not reach(pod_labels=API, namespace="jobs", port=9090)
        assert not reach(pod_labels=WEB, namespace="prod", port=8080)
        for ip in ("10.96.0.1", "172.20.0.5", "192.168.3.4", "100.64.1.1", "fd00::5"):
            assert not reach(ip=ip, port=443), ip
        assert reach(ip="203.0.113.7", port=443)


def test_same_namespace_and_include_private_widen_on_request() -> None:
    docs = rendered("--same-namespace", "--include-private")
    assert np_allows(docs, WEB, "prod", pod_labels={"app": "other"}, namespace="prod", port=8080)
    assert not np_allows(docs, WORKER, "jobs", pod_labels={"app": "other"}, namespace="prod", port=8080)
    assert np_allows(docs, WORKER, "jobs", pod_labels=API, namespace="prod", port=9090)
    assert np_allows(docs, WEB, "prod", ip="10.96.0.1", port=443)
    assert not np_allows(docs, WEB, "prod", ip="169.254.169.254", port=443)


def test_cilium_reaches_the_same_pods() -> None:
    docs = rendered("--network-policy", "cilium")
    for labels, source in CALLERS:
        assert cilium_allows(docs, labels, source, peer=(API, "prod"), port=1, port_name="http")
        assert cilium_allows(docs, labels, source, peer=(API, "prod"), port=9090)
        assert cilium_allows(docs, labels, source, peer=(API, "prod"), port=5353, protocol="UDP")
        assert not cilium_allows(docs, labels, source, peer=(API, "prod"), port=9100)
        assert not cilium_allows(docs, labels, source, peer=({"app": "other"}, "prod"), port=9090)


def test_ambient_reaches_the_service_pods_over_hbone_too() -> None:
    docs = rendered("--mesh", "ambient", "--waypoint", "istio-egress/waypoint")
    for labels, source in CALLERS:
        assert np_allows(docs, labels, source, pod_labels=API, namespace="prod", port=15008)
        assert np_allows(docs, labels, source, pod_labels=API, namespace="prod", port=9090)
        assert not np_allows(docs, labels, source, pod_labels={"app": "other"}, namespace="prod", port=15008)


MESH_SERVICE = "observability/otel-collector:4317,4318,6831/UDP:app.kubernetes.io/name=otel"


def test_a_mesh_service_is_imported_by_every_sidecar_and_reached_by_every_policy() -> None:
    otel = {"app.kubernetes.io/name": "otel"}
    for flavour in ("kubernetes", "cilium"):
        docs = rendered("--sidecar", "--network-policy", flavour, "--mesh-service", MESH_SERVICE)
        for labels, source in CALLERS:
            if flavour == "kubernetes":
                reach = lambda **d: np_allows(docs, labels, source, **d)  # noqa: E731
                assert reach(pod_labels=otel, namespace="observability", port=4317)
                assert reach(pod_labels=otel, namespace="observability", port=6831, protocol="UDP")
                assert not reach(pod_labels=otel, namespace="observability", port=6831)
                assert not reach(pod_labels={"app": "x"}, namespace="observability", port=4317)
                assert not reach(pod_labels=otel, namespace="observability", port=9999)
            else:
                assert cilium_allows(docs, labels, source, peer=(otel, "observability"), port=4318)
                assert not cilium_allows(docs, labels, source, peer=({"app": "x"}, "observability"), port=4318)
        for sidecar in of(docs, "Sidecar"):
            hosts = sidecar["spec"]["egress"][0]["hosts"]
            assert "observability/otel-collector.observability.svc.cluster.local" in hosts
            assert "kube-system/kube-dns.kube-system.svc.cluster.local" in hosts
            assert "prod/api.prod.svc.cluster.local" in hosts


def test_the_dns_service_import_is_configurable() -> None:
    hosts = [h for s in of(rendered("--sidecar", "--dns-service", "openshift-dns/dns-default"), "Sidecar")
             for h in s["spec"]["egress"][0]["hosts"]]
    assert "openshift-dns/dns-default.openshift-dns.svc.cluster.local" in hosts
    assert not any("kube-dns" in h for h in hosts)
    hosts = [h for s in of(rendered("--sidecar", "--dns-service", ""), "Sidecar") for h in s["spec"]["egress"][0]["hosts"]]
    assert not any("dns" in h for h in hosts)


def test_a_sidecar_host_gets_its_network_peer() -> None:
    extra = SERVICE.replace("name: api\n  namespace: prod", "name: invoices\n  namespace: billing").replace(
        "app: api", "app: invoices")
    docs = rendered("--sidecar", "--sidecar-host", "billing/invoices.billing.svc.cluster.local",
                    "--sidecar-host", "payments/gateway.payments.svc.cluster.local", stream=STREAM + extra)
    for labels, source in CALLERS:
        reach = lambda **d: np_allows(docs, labels, source, **d)  # noqa: E731
        # In the stream: its pods on their target ports.
        assert reach(pod_labels={"app": "invoices"}, namespace="billing", port=9090)
        assert not reach(pod_labels={"app": "other"}, namespace="billing", port=9090)
        # Not in the stream: its namespace.
        assert reach(pod_labels={"app": "anything"}, namespace="payments", port=8443)
        assert not reach(pod_labels={"app": "anything"}, namespace="elsewhere", port=8443)


@pytest.mark.parametrize("value", ["observability", "observability/otel", "observability/otel:0", "observability/otel:70000",
                                   "observability/otel:80/SCTP", "Bad_NS/otel:80", "observability/otel:80:=x",
                                   "observability/otel:٤٤٣"])
def test_a_bad_mesh_service_is_a_usage_error(value: str) -> None:
    result = run(["--mesh-service", value])
    assert result.exit_code == 2 and result.stdout == ""
    assert "--mesh-service" in result.stderr


@pytest.mark.parametrize("value", ["kube-dns", "kube-system/", "/kube-dns", "Kube-System/kube-dns"])
def test_a_bad_dns_service_is_a_usage_error(value: str) -> None:
    result = run(["--dns-service", value])
    assert result.exit_code == 2 and result.stdout == ""
    assert "--dns-service" in result.stderr


@pytest.mark.parametrize("selector", ["{':app': api}", "{app: [x]}", "{app: 'bad value!'}", "[app]", "null"])
def test_a_service_the_api_server_would_refuse_opens_nothing(selector: str) -> None:
    stream = STREAM.replace("selector: {app: api}", f"selector: {selector}")
    assert not opens_api_pods(rendered(stream=stream))


# --------------------------------------------------------------------- declared destinations

IN_CLUSTER_VALUES = """\
istio:
  egress:
    - name: stripe
      hosts: [api.stripe.com]
      ports: [{number: 443, protocol: TLS}]
    - name: invoices
      hosts: [invoices.billing.svc.cluster.local]
      ports: [{number: 8080, protocol: HTTP}]
  inCluster:
    - namespace: payments
      service: ledger
      ports: [{port: 80, targetPort: 8080}, 9090]
      selector: {app: ledger}
    - namespace: prod
      service: api
      ports: [9100]
"""


def _values(tmp_path: Any, text: str) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    return str(path)


def test_values_declare_in_cluster_destinations(tmp_path: Any) -> None:
    values = _values(tmp_path, IN_CLUSTER_VALUES)
    docs = rendered("-f", values, "--sidecar")
    # A cluster name is never a ServiceEntry: it would take the Service over as MESH_EXTERNAL.
    assert {h for se in of(docs, "ServiceEntry") for h in se["spec"]["hosts"]} == {"api.stripe.com"}
    for labels, source in CALLERS:
        reach = lambda **d: np_allows(docs, labels, source, **d)  # noqa: E731
        # Declared with its selector and a target port: those pods on the pods' ports.
        assert reach(pod_labels={"app": "ledger"}, namespace="payments", port=8080)
        assert reach(pod_labels={"app": "ledger"}, namespace="payments", port=9090)
        assert not reach(pod_labels={"app": "ledger"}, namespace="payments", port=80)
        assert not reach(pod_labels={"app": "other"}, namespace="payments", port=8080)
        # Not in the stream, no selector: its namespace, on the port dialled.
        assert reach(pod_labels={"app": "any"}, namespace="billing", port=8080)
        assert not reach(pod_labels={"app": "any"}, namespace="billing", port=8081)
    for sidecar in of(docs, "Sidecar"):
        hosts = sidecar["spec"]["egress"][0]["hosts"]
        assert {"payments/ledger.payments.svc.cluster.local", "billing/invoices.billing.svc.cluster.local",
                "prod/api.prod.svc.cluster.local"} <= set(hosts)


def test_a_declared_port_of_a_service_in_the_stream_opens_its_target_port_only(tmp_path: Any) -> None:
    values = _values(tmp_path, "istio:\n  egress: []\n  inCluster:\n    - {namespace: prod, service: api, ports: [9100]}\n")
    docs = rendered("-f", values, "--network-policy", "cilium")
    cnp = next(d for d in of(docs, "CiliumNetworkPolicy") if d["metadata"]["name"] == "worker-egress")
    opened = [r for r in cnp["spec"]["egress"] if r.get("toEndpoints", [{}])[0].get("matchLabels", {}).get("k8s:app") == "api"]
    # The release's Service rule (every target port) and the declared one (9100 -> 9090).
    assert {tuple(p["port"] for p in r["toPorts"][0]["ports"]) for r in opened} == {("http", "9090", "5353"), ("9090",)}


def test_the_in_cluster_annotation_declares_them_for_one_workload() -> None:
    stream = STREAM.replace('example/worker"', 'example/worker"').replace(
        'helm-egress.io/hosts: api.stripe.com, helm-egress.io/ports: "443/TLS"}\n    spec:\n      containers:\n        - name: main\n          image: example/worker',
        'helm-egress.io/in-cluster: "billing/invoices:8080 prod/api:80"}\n    spec:\n      containers:\n        - name: main\n          image: example/worker')
    assert "in-cluster" in stream
    docs = rendered("--sidecar", stream=stream)
    assert np_allows(docs, WORKER, "jobs", pod_labels={"app": "x"}, namespace="billing", port=8080)
    assert np_allows(docs, WORKER, "jobs", pod_labels=API, namespace="prod", port=1, port_name="http")
    # Only the worker declared it; and the worker declared no hostname: no hostname CIDR.
    assert not np_allows(docs, WEB, "prod", pod_labels={"app": "x"}, namespace="billing", port=8080)
    assert not np_allows(docs, WORKER, "jobs", ip="203.0.113.7", port=443)
    (worker,) = [s for s in of(docs, "Sidecar") if s["metadata"]["name"] == "worker-egress"]
    assert "billing/invoices.billing.svc.cluster.local" in worker["spec"]["egress"][0]["hosts"]


@pytest.mark.parametrize(("values", "message"), [
    ("  inCluster:\n    - {namespace: billing, service: invoices}\n",
     "billing/invoices: the Service is not in the stream, so its ports are not known"),
    ("  inCluster:\n    - {namespace: prod, service: api, ports: [8080]}\n",
     "prod/api: the Service has no port 8080/TCP (it has 80/TCP, 9100/TCP, 5353/UDP)"),
    ("  inCluster:\n    - {namespace: prod, service: api, ports: ['80']}\n", "'80' is not a port"),
    ("  inCluster:\n    - {namespace: prod, service: api, selector: {app: [x]}}\n", "label values must be strings"),
    ("  inCluster: {namespace: prod}\n", "must be a list"),
    ("  egress:\n    - {name: a, hosts: [api.stripe.com, x.billing.svc.cluster.local], ports: [{number: 1, protocol: TCP}]}\n",
     "x.billing.svc.cluster.local is a cluster name"),
    ("  egress:\n    - {name: a, hosts: [billing.svc.cluster.local], ports: [{number: 1, protocol: TCP}]}\n",
     "names no Service"),
])
def test_bad_in_cluster_declarations_are_located_errors(tmp_path: Any, values: str, message: str) -> None:
    text = "istio:\n" + values
    if "egress" not in values:
        text += "  egress: []\n"
    result = run(["-f", _values(tmp_path, text)])
    assert result.exit_code == 1 and result.stdout == ""
    assert message in result.stderr and "values.yaml:" in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["billing", "billing/Invoices", "billing/invoices:0", "billing/invoices:80/HTTP",
                                   "/invoices", "billing/invoices:x"])
def test_a_bad_in_cluster_annotation_is_a_located_error(value: str) -> None:
    stream = STREAM.replace('helm-egress.io/hosts: api.stripe.com, helm-egress.io/ports: "443/TLS"}',
                            f'helm-egress.io/in-cluster: "{value}"}}', 1)
    result = run([], stream)
    assert result.exit_code == 1 and result.stdout == ""
    assert 'annotations["helm-egress.io/in-cluster"]' in result.stderr, result.stderr


# --------------------------------------------------------------------------------- explain

# web calls the API server: its ServiceAccount is bound.
CONTROLLER = STREAM.replace("    spec:\n      containers:\n        - name: main\n          image: example/web\n",
                            "    spec:\n      serviceAccountName: web\n      containers:\n        - name: main\n"
                            "          image: example/web\n") + """\
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: prod}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web-watch, namespace: prod}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: watch}
subjects: [{kind: ServiceAccount, name: web, namespace: prod}]
"""
LEDGER_VALUES = """\
istio:
  egress:
    - {name: stripe, hosts: [api.stripe.com], ports: [{number: 443, protocol: TLS}]}
  inCluster:
    - {namespace: payments, service: ledger, ports: [{port: 80, targetPort: 8080}], selector: {app: ledger}}
"""
EXPLAINED = ["--apiserver-cidr", "172.18.0.2/32", "--mesh-service", MESH_SERVICE]
OTEL = "app.kubernetes.io/name=otel"
APISERVER = "ServiceAccount web bound by RoleBinding web-watch"
LEDGER = ("Service payments/ledger", "values.yaml:5 istio.inCluster[0]")
# What the NetworkPolicy, the CiliumNetworkPolicy and the Sidecar open for web, by row.
NP = {
    ("cluster DNS", "every policy"): "pods k8s-app=kube-dns in namespace kube-system on ports UDP/53, TCP/53",
    ("istiod", "every policy"): "pods app=istiod in namespace istio-system on port TCP/15012",
    ("Service prod/api", "the release"): "pods app=api in namespace prod on ports TCP/http, TCP/9090, UDP/5353",
    LEDGER: "pods app=ledger in namespace payments on port TCP/8080",
    ("mesh Service observability/otel-collector", "--mesh-service"):
        f"pods {OTEL} in namespace observability on ports TCP/4317, TCP/4318, UDP/6831",
    ("Kubernetes API server", APISERVER): "ipBlock 172.18.0.2/32 on ports TCP/443, TCP/6443",
}
CNP = {row: "toEndpoints " + text for row, text in NP.items() if row[0] != "Kubernetes API server"}
CNP[("cluster DNS", "every policy")] += " with rules.dns (toFQDNs learns from the answers)"
CNP[("Kubernetes API server", APISERVER)] = "toEntities kube-apiserver on ports TCP/443, TCP/6443"
SIDECAR = {
    ("Service prod/api", "the release"): "imports prod/api.prod.svc.cluster.local",
    LEDGER: "imports payments/ledger.payments.svc.cluster.local",
    ("cluster DNS Service kube-system/kube-dns", "--dns-service"):
        "imports kube-system/kube-dns.kube-system.svc.cluster.local",
    ("mesh Service observability/otel-collector", "--mesh-service"):
        "imports observability/otel-collector.observability.svc.cluster.local",
    ("Kubernetes API server", APISERVER): "imports default/kubernetes.default.svc.cluster.local",
}


def explain(tmp_path: Any, *args: str, stream: str = CONTROLLER) -> dict[str, dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)  # the values file is named as given: values.yaml
        (tmp_path / "values.yaml").write_text(LEDGER_VALUES)
        result = invoke(["explain", "-o", "json", "-f", "values.yaml", *EXPLAINED, *args], stream)
    assert result.exit_code == 0, result.stderr
    return {w["workload"]: w for w in json.loads(result.stdout)["workloads"]}


def in_cluster(report: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {(r["what"], r["declared_by"]): r["layers"] for r in report["in_cluster"]}


@pytest.mark.parametrize(("args", "layers"), [
    (["--network-policy", "kubernetes"], [("NetworkPolicy", NP)]),
    (["--network-policy", "cilium"], [("CiliumNetworkPolicy", CNP)]),
    (["--network-policy", "kubernetes", "--sidecar"], [("Sidecar", SIDECAR), ("NetworkPolicy", NP)]),
    (["--network-policy", "cilium", "--sidecar"], [("Sidecar", SIDECAR), ("CiliumNetworkPolicy", CNP)]),
], ids=["kubernetes", "cilium", "kubernetes-sidecar", "cilium-sidecar"])
def test_explain_says_what_each_layer_opens_in_the_cluster(tmp_path: Any, args: list[str],
                                                            layers: list[tuple[str, dict[Any, str]]]) -> None:
    reports = explain(tmp_path, *args)
    rows = {row for _, texts in layers for row in texts}
    # Mesh layers first, as traffic meets them; each row as the kinds say it.
    want = {row: [f"{kind} web-egress: {texts[row]}" for kind, texts in layers if row in texts] for row in rows}
    assert in_cluster(reports["Deployment/web"]) == want
    # Only web's RBAC binds it: api reaches the rest, not the API server.
    assert in_cluster(reports["Deployment/api"]) == {
        row: [text.replace("web-egress", "api-egress") for text in texts]
        for row, texts in want.items() if row[0] != "Kubernetes API server"}


def test_explain_in_the_cluster_is_what_the_networkpolicy_opens(tmp_path: Any) -> None:
    """Each NetworkPolicy row names pods the rendered policy lets web reach, on those ports."""
    report = explain(tmp_path)["Deployment/web"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        docs = rendered("-f", "values.yaml", *EXPLAINED, stream=CONTROLLER)
    checked = 0
    for row in report["in_cluster"]:
        (text,) = row["layers"]
        m = re.fullmatch(r"NetworkPolicy web-egress: (?:pods (.+) in namespace (\S+)|ipBlock (\S+)) on ports? (.+)",
                         text)
        assert m, text
        labels = dict(pair.split("=") for pair in m.group(1).split(", ")) if m.group(1) else {}
        for port in m.group(4).split(", "):
            protocol, _, number = port.partition("/")
            where = {"pod_labels": labels, "namespace": m.group(2)} if m.group(1) else {"ip": m.group(3).split("/")[0]}
            named = {"port": 1, "port_name": number} if not number.isdigit() else {"port": int(number)}
            assert np_allows(docs, WEB, "prod", protocol=protocol, **where, **named), (text, port)
            checked += 1
    assert checked == 12  # every port of every row


def test_explain_says_a_networkpolicy_opens_no_api_server_without_its_cidr(tmp_path: Any) -> None:
    result = invoke(["explain", "-o", "json"], CONTROLLER)
    assert result.exit_code == 0, result.stderr
    (web,) = [w for w in json.loads(result.stdout)["workloads"] if w["workload"] == "Deployment/web"]
    assert in_cluster(web)[("Kubernetes API server", APISERVER)] == [
        "NetworkPolicy web-egress: nothing: no --apiserver-cidr (a NetworkPolicy names the API server only by address)"]


def test_explain_shows_a_host_network_workloads_reach_with_no_layer(tmp_path: Any) -> None:
    stream = CONTROLLER.replace("serviceAccountName: web\n", "serviceAccountName: web\n      hostNetwork: true\n")
    reports = explain(tmp_path, "--network-policy", "cilium", "--sidecar")
    host = explain(tmp_path, "--network-policy", "cilium", "--sidecar", stream=stream)
    # The same rows, and nothing enforcing them: no proxy, no pod policy sees those pods.
    assert set(in_cluster(host["Deployment/web"])) == set(in_cluster(reports["Deployment/web"]))
    assert all(layers == [] for layers in in_cluster(host["Deployment/web"]).values())
    assert all(in_cluster(host["Deployment/api"]).values())


def test_explain_table_lists_the_cluster_below_the_destinations(tmp_path: Any) -> None:
    result = invoke(["explain", *EXPLAINED], CONTROLLER)
    assert result.exit_code == 0, result.stderr
    destinations, cluster = result.stdout.split("\n\n")
    assert "Kubernetes API server" not in destinations and "api.stripe.com" in destinations
    assert re.search(r"^Deployment/web +prod +Kubernetes API server +ServiceAccount web bound by RoleBinding "
                     r"web-watch +NetworkPolicy web-egress: ipBlock 172\.18\.0\.2/32 on ports TCP/443, TCP/6443$",
                     cluster, re.M), cluster


def test_explain_in_ambient_mode_names_the_waypoint_and_no_istiod(tmp_path: Any) -> None:
    reports = explain(tmp_path, "--mesh", "ambient", "--waypoint", "istio-egress/egress-waypoint")
    web = in_cluster(reports["Deployment/web"])
    assert web[("waypoint istio-egress/egress-waypoint", "--waypoint")] == [
        "NetworkPolicy web-egress: pods gateway.networking.k8s.io/gateway-name=egress-waypoint in namespace "
        "istio-egress on port TCP/15008"]
    assert ("istiod", "every policy") not in web
    # ztunnel reaches in-mesh pods over HBONE.
    assert web[LEDGER] == [
        "NetworkPolicy web-egress: pods app=ledger in namespace payments on ports TCP/8080, TCP/15008"]


def test_explain_names_each_workloads_own_declaration_of_the_same_destination(tmp_path: Any) -> None:
    # web and api each declare billing/invoices in their own annotation: the same rule,
    # two declarations.
    stream = CONTROLLER.replace('helm-egress.io/hosts: api.stripe.com, helm-egress.io/ports: "443/TLS"}',
                                'helm-egress.io/in-cluster: "billing/invoices:8080"}', 2)
    reports = explain(tmp_path, stream=stream)
    lines = [i + 1 for i, line in enumerate(stream.splitlines()) if "helm-egress.io/in-cluster" in line]
    assert len(lines) == 2
    for workload, line in zip(("Deployment/web", "Deployment/api"), lines):
        (by,) = [by for what, by in in_cluster(reports[workload]) if what == "Service billing/invoices"]
        assert by == f'annotation helm-egress.io/in-cluster (stdin:{line})', workload


@pytest.mark.parametrize(("field", "value"), [("namespace", '" "'), ("namespace", "Prod"), ("name", "Api_1")])
def test_a_service_named_as_the_api_server_refuses_opens_nothing(field: str, value: str) -> None:
    # Found by the property suite: its namespace went into a namespace selector as written.
    stream = STREAM.replace("  name: api\n  namespace: prod\nspec:\n  selector", f"  name: api\n  namespace: prod\n  {field}: {value}\nspec:\n  selector")
    stream = stream.replace(f"  name: api\n  namespace: prod\n  {field}: {value}\n", f"  {'namespace: prod' if field == 'name' else 'name: api'}\n  {field}: {value}\n")
    assert value in stream
    assert not opens_api_pods(rendered(stream=stream))

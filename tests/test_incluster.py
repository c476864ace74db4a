"""What a workload reaches inside the cluster besides its external hosts, end to end.

A small release (a web Deployment, an api Deployment behind a Service with a named and a
numbered target port, a worker in another namespace) goes through the real CLI; the
generated NetworkPolicies, CiliumNetworkPolicies and Sidecars are judged by the independent
``oracle``: the release's Services' pods on their target ports, in-cluster Sidecar imports,
mesh Services and cluster DNS are reachable; every other pod of the namespace, other ports
and private addresses for a hostname are not.
"""

from __future__ import annotations

import os
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


def run(args: Sequence[str], stream: str = STREAM) -> Result:
    env = {k: None for k in os.environ if k.startswith("HELM_EGRESS_") or k.startswith("HELM_PLUGIN")}
    return CliRunner().invoke(app, ["render", *args], input=stream, env=env, catch_exceptions=False)


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
    docs = rendered(stream=stream)
    rules = [rule for d in of(docs, "NetworkPolicy") for rule in d["spec"]["egress"]]
    assert not any(peer.get("podSelector", {}).get("matchLabels", {}).get("app") == "api"
                   for rule in rules for peer in rule.get("to", []))


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

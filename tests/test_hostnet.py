"""Services whose pods run with hostNetwork: reached on the nodes, judged by the oracle.

A hostNetwork pod listens on its node's address and no policy selects it by its labels:
Cilium sees it as the ``host`` entity (the caller's own node) and ``remote-node`` (any
other), a NetworkPolicy as the nodes' addresses (``--node-cidr``). The stream is written
here by hand; which Service is reached where is the test's own expectation, answered by
the independent evaluators in ``oracle``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

import oracle
from helmstream import split_documents
from post_renderer.cli import app

NAMESPACE = "prod"
NODE_CIDR, NODE_IP = "10.0.0.0/24", "10.0.0.7"
ENTITIES = ("host", "remote-node")
VALUES = "istio:\n  egress:\n    - {name: github, hosts: [api.github.com], ports: [{number: 443, protocol: TLS}]}\n"


def labels(name: str, **more: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": "mon", "app.kubernetes.io/name": name, **more}


def workload(kind: str, name: str, *, host: bool = False, ports: Sequence[dict[str, Any]] = (),
             init: Sequence[dict[str, Any]] = (), namespace: str = NAMESPACE, **more: str) -> dict[str, Any]:
    spec: dict[str, Any] = {**({"hostNetwork": True} if host else {}),
                            "containers": [{"name": name, "image": f"example/{name}:1", "ports": list(ports)}]}
    if init:
        spec["initContainers"] = list(init)
    return {"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
            "spec": {"selector": {"matchLabels": labels(name)},
                     "template": {"metadata": {"labels": labels(name, **more)}, "spec": spec}}}


def service(name: str, selector: dict[str, str], ports: Sequence[dict[str, Any]],
            namespace: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector, "ports": list(ports)}}


CHART: list[dict[str, Any]] = [
    # The node exporter: a named port on its container, another on a sidecar init container.
    workload("DaemonSet", "exporter", host=True, ports=[{"name": "metrics", "containerPort": 9100}],
             init=[{"name": "tls", "image": "example/tls:1", "restartPolicy": "Always",
                    "ports": [{"name": "tls-metrics", "containerPort": 9200}]}], tier="agents"),
    workload("Deployment", "agent", ports=[{"name": "http", "containerPort": 8080}], tier="agents"),
    workload("Deployment", "web"),
    # Host-network pods of another namespace: a Service of prod selecting their labels has none.
    workload("DaemonSet", "foreign", host=True, namespace="kube-system"),
    service("exporter", labels("exporter"), [{"port": 9100, "targetPort": "metrics"}]),
    service("exporter-tls", labels("exporter"), [{"port": 443, "targetPort": "tls-metrics"}]),
    service("broken", labels("exporter"), [{"port": 80, "targetPort": "nope"}]),
    # Host-network pods and pods of their own network behind one Service.
    service("agents", {"tier": "agents"}, [{"port": 80, "targetPort": 8080}]),
    service("lookalike", labels("foreign"), [{"port": 9300, "targetPort": 9300}]),
    service("node-agent", labels("foreign"), [{"port": 9400, "targetPort": 9400}], namespace="kube-system"),
]
WEB = labels("web")


def stream(docs: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    for doc in docs:
        out.write("---\n")
        YAML().dump(doc, out)
    return out.getvalue()


def run(args: Sequence[str], tmp_path: Any, values: str = VALUES) -> Result:
    (tmp_path / "values.yaml").write_text(values)
    env = {k: None for k in os.environ if k.startswith("HELM_EGRESS_")}
    return CliRunner().invoke(app, [args[0], "-f", str(tmp_path / "values.yaml"), *args[1:]], input=stream(CHART),
                              env=env, catch_exceptions=False)


def generated(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.stderr
    docs = [d for d in (YAML(typ="safe").load(t) for t in split_documents(result.stdout)) if isinstance(d, dict)]
    out = [d for d in docs if "helm-egress.io/generated-by" in ((d.get("metadata") or {}).get("annotations") or {})]
    for doc in out:
        assert oracle.problems(doc) == [], doc["metadata"]["name"]
    return out


def node(docs: list[dict[str, Any]], port: int, protocol: str = "TCP") -> bool:
    """Does web reach ``port`` on the nodes: an address of --node-cidr, or under Cilium both
    its own node and the others (either alone would fail half the scrapes)?"""
    if any(d["kind"] == "CiliumNetworkPolicy" for d in docs):
        reached = {oracle.cilium_allows(docs, WEB, NAMESPACE, entity=e, port=port, protocol=protocol)
                   for e in ENTITIES}
        assert len(reached) == 1, (port, reached)  # never one node without the others
        return reached.pop()
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    return oracle.egress_allows(policies, WEB, dest={"ip": NODE_IP, "port": port, "protocol": protocol},
                                pod_namespace=NAMESPACE)


def pods(docs: list[dict[str, Any]], pod_labels: dict[str, str], port: int, namespace: str = NAMESPACE) -> bool:
    if any(d["kind"] == "CiliumNetworkPolicy" for d in docs):
        return oracle.cilium_allows(docs, WEB, NAMESPACE, peer=(pod_labels, namespace), port=port)
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    return oracle.egress_allows(policies, WEB, dest={"pod_labels": pod_labels, "namespace": namespace, "port": port},
                                pod_namespace=NAMESPACE)


FLAVOURS = {
    "kubernetes": ["--node-cidr", NODE_CIDR],
    "cilium": ["--network-policy", "cilium", "--cilium-wildcard-depth", "0"],
}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_host_network_services_target_ports_are_opened_on_the_nodes_and_nothing_else(
        flavour: str, tmp_path: Any) -> None:
    docs = generated(run(["render", *FLAVOURS[flavour]], tmp_path))
    # Named target ports resolved through the container ports (a sidecar init container's too);
    # the mixed Service's port on the nodes as well as on its pods; a Service of another
    # namespace whose host-network pods live there.
    for port in (9100, 9200, 8080, 9400):
        assert node(docs, port), port
    for port in (2222, 10250, 9300, 9500, 80, 443):
        assert not node(docs, port), port
    assert not node(docs, 9100, "UDP")
    # Its pods by their labels: only where some run with their own network.
    assert pods(docs, labels("agent", tier="agents"), 8080)
    assert not pods(docs, labels("exporter", tier="agents"), 9100)
    # No host-network pod of prod carries those labels: the Service's pods stay a label peer.
    assert pods(docs, labels("foreign"), 9300)
    # The nodes are no way out: not an address outside them, not a pod elsewhere.
    if flavour == "cilium":
        assert not oracle.cilium_allows(docs, WEB, NAMESPACE, ip=NODE_IP, port=9100)
        rules = [r for d in docs if d["kind"] == "CiliumNetworkPolicy" for r in d["spec"]["egress"]]
        assert all(r.get("toPorts") for r in rules if set(r.get("toEntities") or ()) & set(ENTITIES))
    else:
        assert not oracle.egress_allows([d for d in docs if d["kind"] == "NetworkPolicy"], WEB,
                                        dest={"ip": "10.0.1.7", "port": 9100}, pod_namespace=NAMESPACE)


def test_without_node_cidr_check_names_each_caller_and_service_and_opens_nothing(tmp_path: Any) -> None:
    result = run(["check"], tmp_path)
    assert result.exit_code == 0, result.stdout
    warned = [line for line in result.stdout.splitlines() if line.startswith("warning:") and "--node-cidr" in line]
    services = ("prod/exporter", "prod/exporter-tls", "prod/agents", "kube-system/node-agent")
    for caller in ("Deployment/web", "Deployment/agent"):
        for name in services:
            assert sum(f"({caller})" in line and f"Service {name} for it" in line for line in warned) == 1
    # The host-network workload's own policy never applies: no such warning for it.
    assert len(warned) == 2 * len(services)
    # The name no container port carries: the Service has no endpoint there.
    assert sum("'nope'" in line and "no container port" in line for line in result.stdout.splitlines()) == 1
    rendered = run(["render"], tmp_path)
    notes = [line for line in rendered.stderr.splitlines() if "--node-cidr" in line]
    assert len(notes) == 1 and "Deployment/web" in notes[0], rendered.stderr
    docs = generated(rendered)
    assert not any(node(docs, port) for port in (9100, 9200, 8080))


def test_under_cilium_or_with_node_cidr_nothing_is_asked_for(tmp_path: Any) -> None:
    for args in (["check", *FLAVOURS["kubernetes"]], ["check", *FLAVOURS["cilium"]]):
        result = run(args, tmp_path)
        assert result.exit_code == 0 and "--node-cidr is given" not in result.stdout, result.stdout


def test_ambient_opens_no_hbone_port_on_the_nodes(tmp_path: Any) -> None:
    """ztunnel reaches in-mesh pods over HBONE (15008); host-network pods are not in the mesh."""
    docs = generated(run(["render", "--mesh", "ambient", "--waypoint", "istio-egress/waypoint", *FLAVOURS["kubernetes"]],
                         tmp_path))
    assert node(docs, 9100) and not node(docs, 15008)
    assert pods(docs, labels("agent", tier="agents"), 15008)


def test_same_namespace_leaves_host_network_pods_to_the_nodes_rule(tmp_path: Any) -> None:
    docs = generated(run(["render", "--same-namespace", *FLAVOURS["kubernetes"]], tmp_path))
    assert node(docs, 9100) and node(docs, 8080) and not node(docs, 2222)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_declared_in_cluster_service_of_host_network_pods_is_reached_on_the_nodes(
        flavour: str, tmp_path: Any) -> None:
    """A Service of another release (not in the stream) whose declared selector selects the
    stream's host-network pods: reached on the nodes, on the target port dialled."""
    values = VALUES + ("  inCluster:\n    - {namespace: kube-system, service: scraper, ports: [{port: 80, targetPort: 9500}],"
                       " selector: {app.kubernetes.io/instance: mon, app.kubernetes.io/name: foreign}}\n")
    docs = generated(run(["render", "--sidecar", *FLAVOURS[flavour]], tmp_path, values))
    assert node(docs, 9500) and not node(docs, 80) and not node(docs, 9300)
    assert not pods(docs, labels("foreign"), 9500, "kube-system")
    # The Sidecar imports the Service's name as before.
    assert oracle.mesh_allows(docs, WEB, NAMESPACE, host="scraper.kube-system.svc.cluster.local", port=80,
                              cluster=[service("scraper", labels("foreign"), [{"port": 80}], "kube-system")])


@pytest.mark.parametrize(("flavour", "text"), [
    ("kubernetes", f"NetworkPolicy web-egress: ipBlock {NODE_CIDR} on port TCP/9100"),
    ("cilium", "CiliumNetworkPolicy web-egress: toEntities host, remote-node on port TCP/9100"),
])
def test_explain_says_where_the_nodes_are_opened(flavour: str, text: str, tmp_path: Any) -> None:
    result = run(["explain", "-o", "json", *FLAVOURS[flavour]], tmp_path)
    assert result.exit_code == 0, result.stderr
    (web,) = [w for w in json.loads(result.stdout)["workloads"] if w["workload"] == "Deployment/web"]
    rows = {r["what"]: r["layers"] for r in web["in_cluster"]}
    assert rows["Service prod/exporter"] == [text]


def test_explain_says_a_networkpolicy_opens_no_node_without_its_cidr(tmp_path: Any) -> None:
    result = run(["explain", "-o", "json"], tmp_path)
    (web,) = [w for w in json.loads(result.stdout)["workloads"] if w["workload"] == "Deployment/web"]
    rows = {r["what"]: r["layers"] for r in web["in_cluster"]}
    assert rows["Service prod/exporter"] == ["NetworkPolicy web-egress: nothing: no --node-cidr (a NetworkPolicy "
                                             "names the nodes (where host-network pods listen) only by address)"]

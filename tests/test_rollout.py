"""What a rollout, hostNetwork pods and version-dependent upstream rules do to the policies.

Hand-written streams through the real CLI; what a pod may reach is answered by the
independent evaluators in ``oracle``, never by helm-egress's own model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

import oracle
from helmstream import split_documents
from post_renderer.cli import app

NAMESPACE = "prod"
P = "helm-egress.io"


def run(args: Sequence[str], stream: str) -> Result:
    env = {k: None for k in os.environ if k.startswith("HELM_EGRESS_") or k.startswith("HELM_PLUGIN")}
    return CliRunner().invoke(app, list(args), input=stream, env=env, catch_exceptions=False)


def parse(stream: str) -> list[dict[str, Any]]:
    loader = YAML(typ="safe")
    return [d for d in (loader.load(t) for t in split_documents(stream)) if isinstance(d, dict)]


def generated(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind
            and "helm-egress.io/generated-by" in (d["metadata"].get("annotations") or {})]


def release_labels(name: str, version: str, **more: str) -> dict[str, str]:
    """A chart's usual pod labels: stable name and instance, per-release version and chart."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": "demo",
            "app.kubernetes.io/version": version, "helm.sh/chart": f"{name}-{version}", **more}


def workload(kind: str, name: str, labels: dict[str, str], *, selector: dict[str, str] | None = None,
             hosts: str = "api.stripe.com", pod_spec: str = "") -> str:
    """One workload document declaring ``hosts`` on 443/TLS in its pod annotations."""
    flow = "{" + ", ".join(f"{k}: {v!r}" for k, v in labels.items()) + "}"
    template = (f"metadata:\n  labels: {flow}\n  annotations:\n    {P}/hosts: '{hosts}'\n    {P}/ports: 443/TLS\n"
                f"spec:\n  containers: [{{name: c, image: x}}]\n{_indent(pod_spec, 2)}")
    spec = ""
    if selector is not None:
        spec += "selector:\n  matchLabels: {" + ", ".join(f"{k}: {v!r}" for k, v in selector.items()) + "}\n"
    if kind == "CronJob":
        spec += "schedule: '@daily'\njobTemplate:\n  spec:\n    template:\n" + _indent(template, 6)
    else:
        spec += "template:\n" + _indent(template, 2)
    api = "batch/v1" if kind in ("Job", "CronJob") else "apps/v1"
    return (f"---\n# Source: demo/templates/{name}.yaml\napiVersion: {api}\nkind: {kind}\nmetadata:\n"
            f"  name: {name}\n  namespace: {NAMESPACE}\n  labels: {{app.kubernetes.io/instance: demo}}\n"
            f"spec:\n{_indent(spec, 2)}")


def _indent(text: str, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in text.splitlines())


# ============================================================ point 9: stable selectors

ROLLOUT = "".join([
    workload("Deployment", "web", release_labels("web", "2.0"),
             selector={"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "demo"}),
    workload("StatefulSet", "db", release_labels("db", "2.0"),
             selector={"app.kubernetes.io/name": "db", "app.kubernetes.io/instance": "demo"},
             hosts="backup.example.net"),
    workload("CronJob", "report", release_labels("report", "2.0"), hosts="reports.example.com"),
])
# Each workload's pods of the release before (the rollout's old pods, a CronJob's Job still
# running) and after, and what each declared.
OLD_AND_NEW = {
    "web": ([release_labels("web", "1.0"), release_labels("web", "2.0", **{"pod-template-hash": "5d9c"})],
            "api.stripe.com"),
    "db": ([release_labels("db", "1.0"), release_labels("db", "2.0", **{"controller-revision-hash": "db-7f"})],
           "backup.example.net"),
    "report": ([release_labels("report", "1.0", **{"batch.kubernetes.io/job-name": "report-1"}),
                release_labels("report", "2.0", **{"controller-uid": "u2", "job-name": "report-2"})],
               "reports.example.com"),
}


def test_cilium_policies_select_the_old_pods_of_a_rollout_too() -> None:
    result = run(["render", "--network-policy", "cilium"], ROLLOUT)
    assert result.exit_code == 0, result.stderr
    policies = generated(parse(result.stdout), "CiliumNetworkPolicy")
    assert len(policies) == 3
    for name, (pods, host) in OLD_AND_NEW.items():
        for labels in pods:
            # Selected (isolated): its own host open, any other host closed.
            assert oracle.cilium_allows(policies, labels, NAMESPACE, host=host, port=443), (name, labels)
            assert not oracle.cilium_allows(policies, labels, NAMESPACE, host="evil.example", port=443), (name, labels)
    for doc in policies:
        keys = set(doc["spec"]["endpointSelector"].get("matchLabels", {}))
        assert not keys & {"app.kubernetes.io/version", "helm.sh/chart"}, doc["spec"]["endpointSelector"]


def test_sidecars_select_the_old_pods_of_a_rollout_too() -> None:
    result = run(["render", "--network-policy", "none", "--sidecar"], ROLLOUT)
    assert result.exit_code == 0, result.stderr
    docs = parse(result.stdout)
    sidecars = generated(docs, "Sidecar")
    assert len(sidecars) == 3
    for name, (pods, host) in OLD_AND_NEW.items():
        for labels in pods:
            chosen = oracle.sidecar_for(sidecars, labels, NAMESPACE, NAMESPACE)
            assert chosen is not None and chosen["metadata"]["name"] == f"{name}-egress", (name, labels)
            assert oracle.mesh_allows(docs, labels, NAMESPACE, host=host, port=443)
            assert not oracle.mesh_allows(docs, labels, NAMESPACE, host="api.other.example", port=443)


def test_a_broader_selector_still_leaves_out_the_other_workloads_pods() -> None:
    # web's spec.selector also matches worker's pods (worker's carry one more label): the
    # Cilium selector leaves them out; the Sidecars cannot, and say so.
    stream = ROLLOUT + workload(
        "Deployment", "worker", release_labels("web", "2.0", **{"app.kubernetes.io/component": "worker"}),
        selector={"app.kubernetes.io/name": "web", "app.kubernetes.io/component": "worker"}, hosts="queue.example.com")
    result = run(["render", "--network-policy", "cilium"], stream)
    assert result.exit_code == 0, result.stderr
    policies = generated(parse(result.stdout), "CiliumNetworkPolicy")
    worker_old = release_labels("web", "1.0", **{"app.kubernetes.io/component": "worker"})
    assert oracle.cilium_allows(policies, worker_old, NAMESPACE, host="queue.example.com", port=443)
    assert not oracle.cilium_allows(policies, worker_old, NAMESPACE, host="api.stripe.com", port=443)
    web_old = release_labels("web", "1.0")
    assert oracle.cilium_allows(policies, web_old, NAMESPACE, host="api.stripe.com", port=443)
    assert not oracle.cilium_allows(policies, web_old, NAMESPACE, host="queue.example.com", port=443)
    refused = run(["render", "--network-policy", "none", "--sidecar"], stream)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert "Deployment/worker" in refused.stderr and "both Sidecars" in refused.stderr


def test_a_job_whose_only_labels_change_with_each_release_is_refused_a_label_selector() -> None:
    stream = workload("Job", "once", {"app.kubernetes.io/version": "2.0", "helm.sh/chart": "once-2.0"})
    result = run(["render", "--network-policy", "cilium"], stream)
    assert result.exit_code == 1, result.stdout
    assert "Job/once" in result.stderr and "app.kubernetes.io/version" in result.stderr


# ============================================================ point 11: DYNAMIC_DNS per Istio version

def dynamic_dns_values(tmp_path: Any, protocol: str) -> str:
    values = tmp_path / "values.yaml"
    values.write_text("istio:\n  egress:\n    - name: apis\n      hosts: ['*.example.com']\n"
                      f"      ports: [{{number: 443, protocol: {protocol}}}]\n      resolution: DYNAMIC_DNS\n")
    return str(values)


# What istio/istio pkg/config/validation/validation.go ValidateServiceEntry accepts on a
# DYNAMIC_DNS port, by minor version (1.28.0-1.28.10, 1.29.0-1.29.6, 1.30.0-1.30.3, master).
DYNAMIC_DNS_ACCEPTS = {27: set(), 28: {"HTTP"}, 29: {"HTTP", "TLS"}, 30: {"HTTP", "TLS", "GRPC", "HTTP2"},
                       31: {"HTTP", "TLS", "GRPC", "HTTP2"}}


def test_dynamic_dns_is_written_only_with_a_protocol_the_istio_version_accepts(tmp_path: Any) -> None:
    stream = workload("Deployment", "web", {"app": "web"}, selector={"app": "web"})
    for minor, accepted in DYNAMIC_DNS_ACCEPTS.items():
        for protocol in ("HTTP", "TLS", "HTTPS", "GRPC", "HTTP2", "TCP"):
            args = ["render", "-f", dynamic_dns_values(tmp_path, protocol), "--istio-version", f"1.{minor}"]
            result = run(args, stream)
            if protocol in accepted:
                assert result.exit_code == 0, (minor, protocol, result.stderr)
                entries = generated(parse(result.stdout), "ServiceEntry")
                assert {e["spec"]["resolution"] for e in entries if e["spec"]["hosts"] == ["*.example.com"]} \
                    == {"DYNAMIC_DNS"}
                assert all(oracle.serviceentry_problems(e, istio_minor=minor) == [] for e in entries)
            else:
                assert result.exit_code == 1 and result.stdout == "", (minor, protocol)
                assert "values.yaml" in result.stderr and "DYNAMIC_DNS" in result.stderr, result.stderr


def test_dynamic_dns_defaults_to_what_every_istio_with_it_accepts(tmp_path: Any) -> None:
    stream = workload("Deployment", "web", {"app": "web"}, selector={"app": "web"})
    assert run(["render", "-f", dynamic_dns_values(tmp_path, "HTTP")], stream).exit_code == 0
    refused = run(["render", "-f", dynamic_dns_values(tmp_path, "HTTPS")], stream)
    assert refused.exit_code == 1 and "--istio-version" in refused.stderr
    refused = run(["render", "-f", dynamic_dns_values(tmp_path, "TLS")], stream)
    assert refused.exit_code == 1 and "--istio-version" in refused.stderr
    bad = run(["render", "--istio-version", "two"], stream)
    assert bad.exit_code == 2 and "--istio-version" in bad.stderr


# ============================================================ point 8: hostNetwork

HOST_NETWORK = "".join([
    workload("DaemonSet", "agent", {"app": "agent"}, selector={"app": "agent"}, pod_spec="hostNetwork: true\n"),
    workload("CronJob", "sync", {"app": "sync"}, hosts="sync.example.com", pod_spec="hostNetwork: true\n"),
    workload("Deployment", "web", {"app": "web"}, selector={"app": "web"}, pod_spec="hostNetwork: false\n"),
])


def test_check_warns_that_nothing_applies_to_host_network_pods() -> None:
    for flags in (["--network-policy", "kubernetes"], ["--network-policy", "cilium", "--sidecar"]):
        result = run(["check", *flags], HOST_NETWORK)
        assert result.exit_code == 0, result.stdout
        warned = [line for line in result.stdout.splitlines() if "hostNetwork" in line]
        assert len(warned) == 2, result.stdout
        assert any("DaemonSet/agent" in line for line in warned) and any("CronJob/sync" in line for line in warned)
        assert all("NetworkPolicy" in line and "Sidecar" in line for line in warned), warned
        strict = run(["check", "--strict", *flags], HOST_NETWORK)
        assert strict.exit_code == 1


def test_explain_shows_no_enforcing_layer_for_host_network_pods() -> None:
    for flags in (["--network-policy", "kubernetes"], ["--network-policy", "cilium", "--sidecar"]):
        result = run(["explain", "-o", "json", *flags], HOST_NETWORK)
        assert result.exit_code == 0, result.stderr
        import json

        reports = {r["workload"]: r for r in json.loads(result.stdout)["workloads"]}
        for name in ("DaemonSet/agent", "CronJob/sync"):
            assert reports[name]["destinations"], name
            for dest in reports[name]["destinations"]:
                assert dest["layers"] == [] and dest["allowed_by"] is None, (name, dest)
            assert "hostNetwork" in reports[name]["status"]
        for dest in reports["Deployment/web"]["destinations"]:
            assert dest["layers"] and dest["allowed_by"] == "web-egress"


# ============================================================ point 5: Cilium's `**.` before 1.19

CHART_CNP = """---
# Source: demo/templates/cnp.yaml
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: chart-own
  namespace: prod
spec:
  endpointSelector: {matchLabels: {app: other}}
  egress:
    - toFQDNs:
        - matchName: exact.example.org
        - matchPattern: "**.corp.example.org"
      toPorts: [{ports: [{port: "443", protocol: TCP}]}]
"""


def double_star_warnings(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("warning:") and "**." in line and "1.19" in line]


def test_check_warns_where_a_double_star_pattern_is_written_for_cilium() -> None:
    stream = workload("Deployment", "web", {"app": "web"}, selector={"app": "web"}, hosts="*.example.com") + CHART_CNP
    result = run(["check", "--network-policy", "cilium"], stream)
    assert result.exit_code == 0, result.stdout
    warned = double_star_warnings(result.stdout)
    assert len(warned) == 2, result.stdout
    ours = next(line for line in warned if "Deployment/web" in line)
    assert "**.example.com" in ours and "one label" in ours and "--cilium-wildcard-depth" in ours
    chart = next(line for line in warned if "CiliumNetworkPolicy/chart-own" in line)
    assert "**.corp.example.org" in chart and "toFQDNs[1].matchPattern" in chart
    # Saying which Cilium it is settles it: 0 (>= 1.19, any depth) or a ladder for older.
    assert double_star_warnings(run(["check", "--network-policy", "cilium", "--cilium-wildcard-depth", "0"],
                                    stream).stdout) == []
    older = run(["check", "--network-policy", "cilium", "--cilium-wildcard-depth", "2"], stream)
    assert [line for line in double_star_warnings(older.stdout) if "Deployment/web" in line] == []
    assert any("chart-own" in line for line in double_star_warnings(older.stdout))
    # Nothing is written with `**.` under NetworkPolicy, and nothing is warned.
    kube = run(["check", "--network-policy", "kubernetes"],
               workload("Deployment", "web", {"app": "web"}, selector={"app": "web"}, hosts="*.example.com"))
    assert double_star_warnings(kube.stdout) == []


# ============================================================ point 12: NONE on Mongo, MySQL, Redis

def test_check_warns_that_every_opaque_tcp_protocol_matches_every_address(tmp_path: Any) -> None:
    # Istio gives TCP, Mongo, MySQL and Redis ports one listener kind (pilot/pkg/networking
    # networking.go ModelProtocolToListenerProtocol: ListenerProtocolTCP), bound to the
    # entry's address, 0.0.0.0 without one: any destination on the port, whatever the host.
    values = tmp_path / "values.yaml"
    values.write_text("istio:\n  egress:\n" + "".join(
        f"    - name: {proto.lower()}\n      hosts: [{proto.lower()}.example.com]\n"
        f"      ports: [{{number: {port}, protocol: {proto}}}]\n      resolution: NONE\n"
        for proto, port in (("MONGO", 27017), ("MySQL", 3306), ("redis", 6379), ("TCP", 5432), ("TLS", 443))))
    chart_se = ("---\n# Source: demo/templates/se.yaml\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
                "metadata:\n  name: chart-cache\n  namespace: prod\nspec:\n  hosts: [cache.example.net]\n"
                "  exportTo: ['.']\n  resolution: NONE\n  ports: [{number: 6380, name: redis, protocol: Redis}]\n")
    stream = workload("Deployment", "web", {"app": "web"}, selector={"app": "web"}) + chart_se
    result = run(["check", "-f", str(values), "--network-policy", "cilium", "--cilium-wildcard-depth", "0"], stream)
    assert result.exit_code == 0, result.stdout
    warned = [line for line in result.stdout.splitlines() if "matches all traffic on that port" in line]
    for port in (27017, 3306, 6379, 5432, 6380):
        assert any(f" port {port} " in line for line in warned), (port, result.stdout)
    assert not any(" port 443 " in line for line in warned)
    assert any("chart-cache" in line and "redis port 6380" in line.lower() for line in warned)
    no_stream = run(["check", "--no-stream", str(values)], "")
    assert sum("matches all traffic on that port" in line for line in no_stream.stdout.splitlines()) == 4


# ============================================================ point 12: flow-style metadata in locations

def test_errors_name_a_document_whose_metadata_is_in_flow_style() -> None:
    broken = "spec:\n  selector: {}\n  selector: {}\n"  # a duplicate key: the document does not parse
    for metadata in ("{name: web, namespace: prod}", "{namespace: prod, labels: {name: other}, name: web}",
                     "{'namespace': prod,\n  \"name\": \"web\" }", "{annotations: {a: 'x, name: no'}, name: web}"):
        stream = f"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {metadata}\n{broken}"
        result = run(["render"], stream)
        assert result.exit_code == 1
        assert "(Deployment/web): invalid YAML" in result.stderr, (metadata, result.stderr)
    # A name inside another mapping of metadata is not the object's.
    result = run(["render"], f"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{labels: {{name: web}}}}\n{broken}")
    assert "(Deployment): invalid YAML" in result.stderr, result.stderr


# ============================================================ point 12: several DNS peers

KUBE_DNS = ({"k8s-app": "kube-dns"}, "kube-system")
NODE_LOCAL = ({"k8s-app": "node-local-dns"}, "kube-system")


def test_every_dns_peer_is_reached_by_every_policy_kind() -> None:
    stream = workload("Deployment", "web", {"app": "web"}, selector={"app": "web"})
    peer = ["--dns-peer", "kube-system/k8s-app=node-local-dns"]
    out = run(["render", "--network-policy", "kubernetes", *peer], stream)
    assert out.exit_code == 0, out.stderr
    policies = generated(parse(out.stdout), "NetworkPolicy")
    for labels, namespace in (KUBE_DNS, NODE_LOCAL):
        for proto in ("UDP", "TCP"):
            dest = {"pod_labels": labels, "namespace": namespace, "port": 53, "protocol": proto}
            assert oracle.egress_allows(policies, {"app": "web"}, dest=dest, pod_namespace=NAMESPACE)
    assert not oracle.egress_allows(policies, {"app": "web"}, pod_namespace=NAMESPACE, dest={
        "pod_labels": {"k8s-app": "other"}, "namespace": "kube-system", "port": 53, "protocol": "UDP"})
    out = run(["render", "--network-policy", "cilium", *peer], stream)
    assert out.exit_code == 0, out.stderr
    policies = generated(parse(out.stdout), "CiliumNetworkPolicy")
    for dns_pod in (KUBE_DNS, NODE_LOCAL):
        for proto in ("UDP", "TCP"):
            assert oracle.cilium_allows(policies, {"app": "web"}, NAMESPACE, peer=dns_pod, port=53, protocol=proto)
        # Queries to either go through Cilium's DNS proxy, which learns the names' IPs.
        assert oracle.cilium_dns_query_allowed(policies, {"app": "web"}, NAMESPACE, dns_pod, 53, "api.stripe.com")
    assert not oracle.cilium_allows(policies, {"app": "web"}, NAMESPACE, peer=({"k8s-app": "other"}, "kube-system"),
                                    port=53, protocol="UDP")
    assert all(oracle.problems(d) == [] for d in policies)


def test_a_bad_dns_peer_is_a_usage_error() -> None:
    stream = workload("Deployment", "web", {"app": "web"}, selector={"app": "web"})
    for bad in ("k8s-app=node-local-dns", "Kube_System/k8s-app=x", "kube-system/", "kube-system/k8s-app=a b"):
        result = run(["render", "--dns-peer", bad], stream)
        assert result.exit_code == 2 and "--dns-peer" in result.stderr, (bad, result.stderr)

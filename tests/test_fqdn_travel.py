"""Per-workload hostname policy on the `travel` chart, as a new user would try it.

The chart (fixtures/charts/travel) names no namespace anywhere, declares egress on a
Deployment, a StatefulSet (addresses only, IPv6 too), a CronJob and a hook Job, with
wildcards, a host two workloads share, a UDP port, an ignored workload and a worker whose
pods carry the booking pods' labels plus one. It is rendered with Helm's engine, sent
through the CLI in both stream shapes, and the result is judged by the independent
evaluators in ``oracle`` against what the chart's values declare (written out below).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

import oracle
from helmstream import helm3_stream, helm4_stream, render_chart, split_documents
from post_renderer.cli import app

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / "fixtures" / "charts"
NS = "prod"
SHAPES = ("helm3", "helm4")
BASE = {"app.kubernetes.io/name": "travel", "app.kubernetes.io/instance": "trip"}


def pod(component: str, **more: str) -> dict[str, str]:
    return {**BASE, "app.kubernetes.io/component": component, **more}


PODS = {
    "booking": pod("booking"),
    "worker": pod("booking", role="worker"),
    "search": pod("search", tier="backend"),
    "cache": pod("cache"),
    "report": pod("report"),
    "migrate": pod("migrate"),  # a hook: no policy
    "legacy": pod("legacy"),  # helm-egress.io/ignore
}
# What fixtures/charts/travel/values.yaml declares: (host or address, port, transport).
DECLARED: dict[str, set[tuple[str, int, str]]] = {
    "booking": {("api.stripe.com", 443, "TCP"), ("*.partners.example.com", 443, "TCP")},
    "search": {("*.maps.example.org", 443, "TCP"), ("api.stripe.com", 443, "TCP"),
               ("192.0.2.10", 123, "UDP"), ("2001:db8::123", 123, "UDP")},
    "cache": {("10.20.0.0/16", 6379, "TCP"), ("2001:db8:20::/48", 6379, "TCP")},
    "report": {(h, p, "TCP") for h in ("reports.partners.example.com", "sftp.bank.example") for p in (443, 22)},
}
UNRELATED = ("evil.example", "legacy.example.com", "schema-registry.example.io", "api.stripe.com.evil.example",
             "xpartners.example.com", "example.com")
SERVICES = (("trip-travel-booking", 80), ("trip-travel-cache", 6379))


def run(args: Sequence[str], stream: str) -> Result:
    env = {k: None for k in os.environ if k.startswith(("HELM_EGRESS_", "HELM_PLUGIN"))}
    return CliRunner().invoke(app, list(args), input=stream, env=env, catch_exceptions=False)


@cache
def stream_of(shape: str, chart: str = "travel", values: str = "{}") -> str:
    rendered = render_chart(CHARTS / chart, json.loads(values), release="trip", namespace=NS)
    return helm4_stream(rendered) if shape == "helm4" else helm3_stream(rendered)


def parse(text: str) -> list[dict[str, Any]]:
    loader = YAML(typ="safe")
    return [d for d in (loader.load(t) for t in split_documents(text)) if isinstance(d, dict)]


def generated(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind
            and "helm-egress.io/generated-by" in (d["metadata"].get("annotations") or {})]


def names_for(dest: str) -> list[tuple[str, bool]]:
    """Names to try and whether each is inside ``dest``: a wildcard at depth 1 and 2 (any
    case, trailing dot), never its apex."""
    if dest.startswith("*."):
        return [(f"a{dest[1:]}", True), (f"B.c{dest[1:].upper()}.", True), (dest[2:], False)]
    return [(dest, True), (dest.upper() + ".", True)]


def matches(declared: str, name: str) -> bool:
    """Istio's reading of a declared host: `*.x` is every name below x, never x."""
    declared, name = declared.lower(), name.lower().rstrip(".")
    if declared.startswith("*."):
        return name.endswith(declared[1:])
    return not is_address(declared) and declared == name


def is_address(dest: str) -> bool:
    return dest[0].isdigit() or ":" in dest


def inside(dest: str) -> str:
    """An address inside a declared address or range."""
    net = ipaddress.ip_network(dest)
    return str(net.network_address + (9 if net.num_addresses > 9 else 0))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("named", [False, True], ids=["no-namespace", "with-namespace"])
def test_each_workload_reaches_exactly_its_declared_hosts_ports_and_addresses(shape: str, named: bool) -> None:
    stream = stream_of(shape)
    assert "namespace:" not in stream
    args = ["render", "--network-policy", "cilium", "--sidecar", *(["--namespace", NS] if named else [])]
    result = run(args, stream)
    assert result.exit_code == 0, result.stderr
    docs = parse(result.stdout)
    policies = generated(docs, "CiliumNetworkPolicy")
    assert len(policies) == len(generated(docs, "Sidecar")) == len(DECLARED)
    every = {d for reach in DECLARED.values() for d in reach}
    checked = 0
    for name, labels in PODS.items():
        mine = DECLARED.get(name)
        if mine is None:
            # No policy of its own, and no other workload's policy takes it in; a Sidecar
            # selects by labels only, so booking's takes in the worker (check warns).
            assert oracle.cilium_allows(policies, labels, NS, host="evil.example", port=443)
            assert (oracle.sidecar_for(docs, labels, NS, NS) is None) == (name != "worker"), name
            continue
        for dest, port, proto in every:
            for other_port, other_proto in ((port, proto), (port + 1, proto), (port, "UDP" if proto == "TCP" else "TCP")):
                want = (dest, other_port, other_proto) in mine
                if is_address(dest):
                    ip = inside(dest)
                    got = oracle.cilium_allows(policies, labels, NS, ip=ip, port=other_port, protocol=other_proto)
                    assert got == want, (name, ip, other_port, other_proto)
                    checked += 1
                    continue
                for host, _ in names_for(dest):
                    want = any(matches(d, host) and (p, pr) == (other_port, other_proto) for d, p, pr in mine)
                    got = oracle.cilium_allows(policies, labels, NS, host=host, port=other_port, protocol=other_proto)
                    assert got == want, (name, host, other_port, other_proto)
                    checked += 1
            # Through the mesh: its own hosts and addresses route, another workload's do not
            # (a Sidecar restricts hosts, not ports, so only the declared port is asked).
            for host, _ in ([] if is_address(dest) else names_for(dest)):
                routed = oracle.mesh_allows(docs, labels, NS, host=host, port=port)
                assert routed == any(matches(d, host) for d, _, _ in mine), (name, host, port)
            if is_address(dest):
                assert oracle.mesh_allows(docs, labels, NS, ip=inside(dest), port=port) == ((dest, port, proto) in mine)
        for host in UNRELATED:
            assert not oracle.cilium_allows(policies, labels, NS, host=host, port=443), (name, host)
            assert not oracle.mesh_allows(docs, labels, NS, host=host, port=443), (name, host)
        assert oracle.cilium_dns_query_allowed(policies, labels, NS, ({"k8s-app": "kube-dns"}, "kube-system"), 53,
                                               "api.stripe.com")
        assert oracle.cilium_allows(policies, labels, NS, peer=({"app": "istiod"}, "istio-system"), port=15012)
        for service, port in SERVICES:  # the release's own Services stay reachable in the mesh
            assert oracle.mesh_allows(docs, labels, NS, host=f"{service}.{NS}.svc.cluster.local", port=port), name
    assert checked > 200


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("flags", [("--network-policy", "cilium"), ("--sidecar",),
                                   ("--network-policy", "cilium", "--sidecar")])
def test_valid_never_the_world_idempotent_and_input_kept(shape: str, flags: tuple[str, ...]) -> None:
    stream = stream_of(shape)
    result = run(["render", *flags], stream)
    assert result.exit_code == 0, result.stderr
    for doc in split_documents(stream):
        assert doc in result.stdout
    assert run(["render", *flags], result.stdout).stdout == result.stdout
    docs = parse(result.stdout)
    for doc in generated(docs, "CiliumNetworkPolicy"):
        assert oracle.ciliumnetworkpolicy_problems(doc) == []
        text = json.dumps(doc)
        assert "/0\"" not in text and "world" not in text and '"all"' not in text
    for doc in generated(docs, "Sidecar"):
        assert oracle.sidecar_problems(doc) == []
        for host in doc["spec"]["egress"][0]["hosts"]:
            assert host not in ("*/*", "./*") and not host.endswith("/*"), host
    for doc in generated(docs, "ServiceEntry"):
        assert oracle.serviceentry_problems(doc) == []


@pytest.mark.parametrize("shape", SHAPES)
def test_policies_leave_out_pods_that_carry_more_labels(shape: str) -> None:
    """The worker's pods carry every booking label and one more; the hook and the ignored
    workload have no policy. No policy written for booking may take the worker in."""
    stream = stream_of(shape)
    worker = PODS["worker"]
    for flags in (["--network-policy", "cilium"], []):
        docs = parse(run(["render", *flags], stream).stdout)
        cilium = generated(docs, "CiliumNetworkPolicy")
        if cilium:
            assert oracle.cilium_allows(cilium, worker, NS, host="evil.example", port=443)
            assert not oracle.cilium_allows(cilium, PODS["booking"], NS, host="evil.example", port=443)
        else:
            policies = generated(docs, "NetworkPolicy")
            assert oracle.egress_allows(policies, worker, dest={"ip": "192.0.2.99", "port": 25}, pod_namespace=NS)
            assert not oracle.egress_allows(policies, PODS["booking"], dest={"ip": "192.0.2.99", "port": 25},
                                            pod_namespace=NS)
    # A Sidecar selects by labels only: it cannot leave the worker out, and check says so.
    check = run(["check", "--sidecar"], stream)
    (line,) = [x for x in check.stdout.splitlines() if "configures their proxy too" in x]
    assert "Deployment/trip-travel-booking-worker" in line and "Deployment/trip-travel-booking's" in line


def test_pods_with_the_same_labels_as_a_workload_we_write_for_are_warned_about() -> None:
    stream = stream_of("helm4", values=json.dumps({"bookingWorker": {"enabled": False}}))
    twin = stream.replace("app.kubernetes.io/component: migrate", "app.kubernetes.io/component: booking")
    for flags, kind in ((["--network-policy", "cilium"], "CiliumNetworkPolicy"), ([], "NetworkPolicy")):
        check = run(["check", *flags], twin)
        lines = [x for x in check.stdout.splitlines() if "selects them too" in x]
        assert len(lines) == 1 and "Job/trip-travel-migrate" in lines[0] and f"{kind} trip-travel-booking-egress" in lines[0]


@pytest.mark.parametrize("shape", SHAPES)
def test_check_warns_once_per_workload_when_hostnames_rest_on_registry_only(shape: str) -> None:
    stream = stream_of(shape)
    for flags in ([], ["--sidecar"], ["--network-policy", "none", "--sidecar"]):
        lines = [x for x in run(["check", *flags], stream).stdout.splitlines() if "REGISTRY_ONLY alone" in x]
        # booking, search and report name hosts; cache declares addresses only.
        assert sorted(x.split("(")[1].split(")")[0] for x in lines) == [
            "CronJob/trip-travel-report", "Deployment/trip-travel-booking", "Deployment/trip-travel-search"]
    assert not any("REGISTRY_ONLY alone" in x for x in run(["check", "--network-policy", "cilium"], stream).stdout
                   .splitlines())


def test_explain_names_the_serviceentry_istio_routes_a_name_to() -> None:
    """reports.partners.example.com is inside booking's `*.partners.example.com`, but the
    report's own ServiceEntry names it exactly, and that is the one Istio uses."""
    report = json.loads(run(["explain", "-o", "json", "--network-policy", "cilium", "--sidecar"],
                            stream_of("helm3")).stdout)
    (row,) = [d for w in report["workloads"] if w["workload"] == "CronJob/trip-travel-report"
              for d in w["destinations"] if d["destination"] == "reports.partners.example.com" and d["port"] == 443]
    assert row["layers"][0] == "ServiceEntry trip-travel-report", row
    assert row["layers"][1:] == ["Sidecar trip-travel-report-egress",
                                 "CiliumNetworkPolicy trip-travel-report-egress: toFQDNs reports.partners.example.com "
                                 "on port 443"]


@pytest.mark.parametrize("shape", SHAPES)
def test_sidecar_with_a_seed_chart_whose_address_entries_have_short_hosts(shape: str) -> None:
    """The seed chart names an address-only ServiceEntry by a short host, which no Sidecar
    can import: helm-egress writes one with an FQDN host for the address, and the chart's
    document passes through untouched."""
    values_file = CHARTS / "seed-se" / "ci-values.yaml"
    values = YAML(typ="safe").load(values_file.read_text())
    stream = stream_of(shape, "seed-se", json.dumps(values))
    result = run(["render", "--sidecar", "--network-policy", "cilium", "-f", str(values_file), "--quiet"], stream)
    assert result.exit_code == 0, result.stderr
    docs = parse(result.stdout)
    (sidecar,) = generated(docs, "Sidecar")
    assert oracle.sidecar_problems(sidecar) == []
    labels = sidecar["spec"]["workloadSelector"]["labels"]
    for entry in values["istio"]["egress"]:
        for address in entry.get("addresses", []):
            ip = address.split("/")[0]
            port = entry["ports"][0]["number"]
            assert oracle.mesh_allows(docs, labels, NS, ip=ip, port=port), (address, port)
    assert not oracle.mesh_allows(docs, labels, NS, ip="10.99.0.1", port=3306)
    noted = run(["render", "--sidecar", "-f", str(values_file)], stream).stderr
    assert "which a Sidecar cannot import" in noted


WORKER_SIDECAR = """\
---
# Source: travel/templates/worker-sidecar.yaml
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: worker-mesh
spec:
  workloadSelector:
    labels:
      role: worker
  egress:
    - hosts: ["./*"]
"""


def test_a_chart_sidecar_on_pods_our_sidecar_also_takes_in_is_a_located_error() -> None:
    stream = stream_of("helm3") + WORKER_SIDECAR
    result = run(["render", "--sidecar"], stream)
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "(Sidecar/worker-mesh)" in line and "Deployment/trip-travel-booking-worker" in line
    assert "trip-travel-booking-egress" in line and "undefined" in line
    # Opting booking out leaves the worker's pods to the chart's Sidecar alone.
    values = {"booking": {"podAnnotations": {"helm-egress.io/sidecar": "false"}}}
    opted = stream_of("helm3", values=json.dumps(values)) + WORKER_SIDECAR
    result = run(["render", "--sidecar"], opted)
    assert result.exit_code == 0, result.stderr
    assert WORKER_SIDECAR in result.stdout


UNLABELLED = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bare
  labels: {app.kubernetes.io/instance: x}
  annotations: {helm-egress.io/hosts: a.example.com, helm-egress.io/ports: "443/TLS"}
spec:
  selector: {matchExpressions: [{key: app, operator: Exists}]}
  template:
    metadata: {labels: {}}
    spec: {containers: [{name: c, image: i}]}
"""


@pytest.mark.parametrize("flags", [("--network-policy", "cilium"), ("--sidecar",)])
def test_pods_without_labels_say_how_to_leave_the_workload_out(flags: tuple[str, ...]) -> None:
    result = run(["render", *flags], UNLABELLED)
    assert result.exit_code == 1 and result.stdout == ""
    assert "(Deployment/bare)" in result.stderr and 'helm-egress.io/ignore: "true"' in result.stderr

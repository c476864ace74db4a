"""Least privilege for hostnames: `--network-policy cilium` and `--sidecar`, end to end.

The shop chart is rendered with Helm's engine, with egress declared on several workloads
through their annotations (exact hosts, wildcards, addresses, several ports), and sent
through the real CLI in both Helm stream shapes. What each workload may reach is then
answered by the independent evaluators in ``oracle`` (Cilium's name matching and policy
union, Istio's Sidecar import and ServiceEntry export rules) and compared with what the
test itself declared — never with helm-egress's own model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
SHOP = ROOT / "fixtures" / "charts" / "shop"
NAMESPACE = "prod"
P = "helm-egress.io"
DNS_POD = ({"k8s-app": "kube-dns"}, "kube-system")
ISTIOD_POD = ({"app": "istiod"}, "istio-system")
UNRELATED = ("evil.example", "api.stripe.com.evil.example", "stripe.com", "example.com")
PUBLIC_IPS = ("203.0.113.7", "2001:db8:ffff::7", "169.254.169.254")

# What each workload declares (the test's input; every expectation derives from this).
DECLARED: dict[str, dict[str, str]] = {
    "web": {f"{P}/hosts": "api.stripe.com, *.googleapis.com", f"{P}/ports": "443/TLS"},
    "api": {f"{P}/egress": (
        "- name: orders-db\n  addresses: [10.20.0.0/16]\n  ports: [{number: 5432, protocol: TCP}]\n"
        "- name: maps\n  hosts: [maps.example.org]\n  ports: [{number: 443, protocol: HTTPS}, {number: 8443, protocol: HTTPS}]\n"
    ), f"{P}/sidecar-hosts": "payments/api.payments.svc.cluster.local"},
    "db": {f"{P}/hosts": "backup.example.net", f"{P}/ports": "443/TLS", f"{P}/sidecar": "false"},
    "report": {f"{P}/hosts": "*.reports.example.com", f"{P}/ports": "443/TLS"},
    "migrate": {f"{P}/addresses": "10.50.0.7", f"{P}/ports": "5432"},
}
# Per workload: (host or address, port) it may reach, written out by hand from DECLARED.
REACH: dict[str, set[tuple[str, int]]] = {
    "web": {("api.stripe.com", 443), ("*.googleapis.com", 443)},
    "api": {("10.20.0.0/16", 5432), ("maps.example.org", 443), ("maps.example.org", 8443)},
    "db": {("backup.example.net", 443)},
    "report": {("*.reports.example.com", 443)},
    "migrate": {("10.50.0.7", 5432)},
}
SHAPES = ("helm3", "helm4")


def clean_env() -> dict[str, str | None]:
    return {k: None for k in os.environ if k.startswith("HELM_EGRESS_") or k.startswith("HELM_PLUGIN")}


def run(args: Sequence[str], stream: str) -> Result:
    return CliRunner().invoke(app, list(args), input=stream, env=clean_env(), catch_exceptions=False)


@cache
def chart_stream(shape: str, extra: tuple[tuple[str, str], ...] = ()) -> str:
    values: dict[str, Any] = {w: {"podAnnotations": dict(a)} for w, a in DECLARED.items()}
    for key, text in extra:
        for field, more in YAML(typ="safe").load(text).items():
            values.setdefault(key, {}).setdefault(field, {}).update(more)
    rendered = render_chart(SHOP, values, release="demo", namespace=NAMESPACE)
    return helm4_stream(rendered) if shape == "helm4" else helm3_stream(rendered)


def parse(stream: str) -> list[dict[str, Any]]:
    loader = YAML(typ="safe")
    docs = [loader.load(text) for text in split_documents(stream)]
    return [d for d in docs if isinstance(d, dict)]


@dataclass(frozen=True)
class Pod:
    workload: str  # the DECLARED key
    ref: str
    labels: dict[str, str]


def pods(stream: str) -> dict[str, Pod]:
    """The template labels of the chart's non-hook workloads, read from the input."""
    out = {}
    for doc in parse(stream):
        if doc.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
            continue
        if "helm.sh/hook" in (doc["metadata"].get("annotations") or {}):
            continue
        spec = doc["spec"]
        template = spec["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else spec["template"]
        component = template["metadata"]["labels"]["app.kubernetes.io/component"]
        out[component] = Pod(component, f"{doc['kind']}/{doc['metadata']['name']}", template["metadata"]["labels"])
    return out


@dataclass(frozen=True)
class Rendered:
    shape: str
    args: tuple[str, ...]
    stream: str
    output: str
    docs: list[dict[str, Any]]

    def generated(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind
                and "helm-egress.io/generated-by" in (d["metadata"].get("annotations") or {})]


@cache
def rendered(shape: str, *args: str) -> Rendered:
    stream = chart_stream(shape)
    result = run(["render", *args], stream)
    assert result.exit_code == 0, result.stderr
    return Rendered(shape, args, stream, result.stdout, parse(result.stdout))


def names_for(dest: str) -> list[tuple[str, bool]]:
    """Concrete names to try for a declared host, and whether each must be reachable:
    a wildcard at depth 1 and 2 (upper case, trailing dot) but never its apex."""
    if dest.startswith("*."):
        domain = dest[2:]
        return [(f"a.{domain}", True), (f"A.b.{domain.upper()}.", True), (domain, False)]
    return [(dest, True), (dest.upper() + ".", True)]


def is_address(dest: str) -> bool:
    return dest[0].isdigit() or ":" in dest


def sample_ip(dest: str) -> str:
    return dest.split("/")[0].rsplit(".", 1)[0] + ".9" if "/" in dest else dest


# ============================================================ --network-policy cilium

CILIUM = ("--network-policy", "cilium")


@pytest.mark.parametrize("shape", SHAPES)
def test_cilium_each_workload_reaches_exactly_what_it_declared(shape: str) -> None:
    out = rendered(shape, *CILIUM)
    policies = out.generated("CiliumNetworkPolicy")
    assert policies and not out.generated("NetworkPolicy")
    checked = 0
    for name, pod in pods(out.stream).items():
        if name not in DECLARED:  # nothing declared, no values: no policy at all
            assert not any(oracle.cilium_allows(policies, pod.labels, NAMESPACE, ip=ip, port=1) is False
                           for ip in PUBLIC_IPS)
            continue
        mine = REACH[name]
        for owner, reach in REACH.items():
            for dest, port in reach:
                if is_address(dest):
                    allowed = oracle.cilium_allows(policies, pod.labels, NAMESPACE, ip=sample_ip(dest), port=port)
                    assert allowed == ((dest, port) in mine), (name, dest, port)
                    continue
                for host, expect in names_for(dest):
                    allowed = oracle.cilium_allows(policies, pod.labels, NAMESPACE, host=host, port=port)
                    assert allowed == (expect and (dest, port) in mine), (name, host, port)
                    if expect and (dest, port) in mine:
                        # Its own hosts on a port it did not declare stay closed.
                        assert not oracle.cilium_allows(policies, pod.labels, NAMESPACE, host=host, port=port + 1)
                        # DNS goes through the proxy, which admits the query and learns the IPs.
                        assert oracle.cilium_dns_query_allowed(policies, pod.labels, NAMESPACE, DNS_POD, 53, host)
                    checked += 1
        for host in UNRELATED:
            assert not oracle.cilium_allows(policies, pod.labels, NAMESPACE, host=host, port=443), (name, host)
        for ip in PUBLIC_IPS:
            for port in (443, 5432, 80):
                assert not oracle.cilium_allows(policies, pod.labels, NAMESPACE, ip=ip, port=port), (name, ip)
        # What every workload needs: DNS (UDP and TCP), istiod, the release's Services' pods
        # on their target ports (a named one is the pod's container port of that name).
        for proto in ("UDP", "TCP"):
            assert oracle.cilium_allows(policies, pod.labels, NAMESPACE, peer=DNS_POD, port=53, protocol=proto)
        assert not oracle.cilium_allows(policies, pod.labels, NAMESPACE, peer=({"k8s-app": "other"}, "kube-system"),
                                        port=53, protocol="UDP")
        assert oracle.cilium_allows(policies, pod.labels, NAMESPACE, peer=ISTIOD_POD, port=15012)
        assert not oracle.cilium_allows(policies, pod.labels, NAMESPACE, peer=ISTIOD_POD, port=15010)
        for svc in (d for d in out.docs if d.get("kind") == "Service"):
            selector = svc["spec"]["selector"]
            for service_port in svc["spec"]["ports"]:
                target = service_port.get("targetPort", service_port["port"])
                by_name = {"port": 1, "port_name": target} if isinstance(target, str) else {"port": target}
                assert oracle.cilium_allows(policies, pod.labels, NAMESPACE, peer=(selector, NAMESPACE), **by_name)
                assert not oracle.cilium_allows(policies, pod.labels, NAMESPACE, peer=(selector, "other"), **by_name)
        # Not every pod of its namespace (--same-namespace is opt-in).
        assert not oracle.cilium_allows(policies, pod.labels, NAMESPACE, peer=({"app": "x"}, NAMESPACE), port=8080)
    assert checked > 20


@pytest.mark.parametrize("shape", SHAPES)
def test_cilium_policies_are_valid_and_never_open_the_world(shape: str) -> None:
    out = rendered(shape, *CILIUM)
    for doc in out.generated("CiliumNetworkPolicy"):
        assert oracle.ciliumnetworkpolicy_problems(doc) == [], doc["metadata"]["name"]
        for rule in doc["spec"]["egress"]:
            assert "toEntities" not in rule
            for block in rule.get("toCIDRSet", []):
                assert not block["cidr"].endswith("/0")
            if "toFQDNs" in rule:
                assert rule["toPorts"], "a name never opens every port"
    for doc in out.generated("ServiceEntry"):
        assert oracle.serviceentry_problems(doc) == []
    # One policy per served workload, selecting it by its controller's selector (the shop
    # chart's template labels are exactly its selector's).
    selectors = {d["metadata"]["annotations"]["helm-egress.io/workload"]: d["spec"]["endpointSelector"]
                 for d in out.generated("CiliumNetworkPolicy")}
    assert selectors == {p.ref: {"matchLabels": p.labels} for n, p in pods(out.stream).items() if n in DECLARED}


@pytest.mark.parametrize("shape", SHAPES)
def test_cilium_dns_rule_goes_to_the_configured_dns_pods(shape: str) -> None:
    out = rendered(shape, *CILIUM, "--dns-namespace", "openshift-dns", "--dns-selector", "dns.operator.openshift.io/daemonset-dns=default",
                   "--dns-port", "5353")
    dns = ({"dns.operator.openshift.io/daemonset-dns": "default"}, "openshift-dns")
    for doc in out.generated("CiliumNetworkPolicy"):
        labels = doc["spec"]["endpointSelector"]["matchLabels"]
        for proto in ("UDP", "TCP"):
            assert oracle.cilium_allows([doc], labels, NAMESPACE, peer=dns, port=5353, protocol=proto)
        assert not oracle.cilium_allows([doc], labels, NAMESPACE, peer=DNS_POD, port=53, protocol="UDP")
        assert oracle.cilium_dns_query_allowed([doc], labels, NAMESPACE, dns, 5353, "anything.svc.cluster.local")


@pytest.mark.parametrize("shape", SHAPES)
def test_cilium_wildcard_ladder_for_older_cilium(shape: str) -> None:
    """--cilium-wildcard-depth 2: depth 1 and 2 match, depth 3 does not, and check says so."""
    out = rendered(shape, *CILIUM, "--cilium-wildcard-depth", "2")
    policies = out.generated("CiliumNetworkPolicy")
    assert all("**" not in str(d) for d in policies)
    web = pods(out.stream)["web"]
    for host, expect in [("a.googleapis.com", True), ("a.b.googleapis.com", True), ("a.b.c.googleapis.com", False),
                         ("googleapis.com", False)]:
        assert oracle.cilium_allows(policies, web.labels, NAMESPACE, host=host, port=443) == expect, host
    check = run(["check", *CILIUM, "--cilium-wildcard-depth", "2"], out.stream)
    assert check.exit_code == 0
    warned = [line for line in check.stdout.splitlines() if "--cilium-wildcard-depth 2" in line]
    assert {line.split("(")[1].split(")")[0] for line in warned} == {pods(out.stream)[w].ref for w in ("web", "report")}
    assert all("x.x.x.googleapis.com" in line or "x.x.x.reports.example.com" in line for line in warned)


def test_cilium_rejects_a_bad_depth_as_usage() -> None:
    result = run(["render", *CILIUM, "--cilium-wildcard-depth", "-1"], chart_stream("helm3"))
    assert result.exit_code == 2 and result.stdout == ""


@pytest.mark.parametrize("shape", SHAPES)
def test_check_warns_when_hostnames_rest_on_registry_only(shape: str) -> None:
    stream = chart_stream(shape)
    warned = [line for line in run(["check"], stream).stdout.splitlines() if "REGISTRY_ONLY alone" in line]
    hostnamed = {pods(stream)[w].ref for w, reach in REACH.items() if any(not is_address(d) for d, _ in reach)}
    assert sorted(line.split("(")[1].split(")")[0] for line in warned) == sorted(hostnamed)
    assert all("--network-policy cilium" in line for line in warned)
    assert not [line for line in run(["check", *CILIUM], stream).stdout.splitlines() if "REGISTRY_ONLY" in line]


# =================================================================== --sidecar


@pytest.mark.parametrize("shape", SHAPES)
def test_sidecar_imports_only_what_each_workload_declared(shape: str) -> None:
    out = rendered(shape, "--sidecar")
    docs = out.docs
    services = [d for d in docs if d.get("kind") == "Service"]
    assert services
    for name, pod in pods(out.stream).items():
        sidecar = oracle.sidecar_for(docs, pod.labels, NAMESPACE, NAMESPACE)
        if name not in DECLARED or DECLARED[name].get(f"{P}/sidecar") == "false":
            assert sidecar is None, name
            continue
        assert sidecar is not None and sidecar["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
        assert sidecar["spec"]["workloadSelector"] == {"labels": pod.labels}
        assert sidecar["apiVersion"] == "networking.istio.io/v1"
        hosts = sidecar["spec"]["egress"][0]["hosts"]
        assert not {"*/*", "./*"} & set(hosts) and not any(h.endswith("/*") for h in hosts)
        mine = REACH[name]
        for owner, reach in REACH.items():
            for dest, port in reach:
                if is_address(dest):
                    allowed = oracle.mesh_allows(docs, pod.labels, NAMESPACE, ip=sample_ip(dest), port=port)
                    assert allowed == (dest in {d for d, _ in mine}), (name, dest)
                    continue
                for host, expect in names_for(dest):
                    allowed = oracle.mesh_allows(docs, pod.labels, NAMESPACE, host=host, port=port)
                    assert allowed == (expect and dest in {d for d, _ in mine}), (name, host, port)
        for host in UNRELATED:
            assert not oracle.mesh_allows(docs, pod.labels, NAMESPACE, host=host, port=443)
        # The release's own Services stay reachable through the mesh.
        for svc in services:
            fqdn = f"{svc['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
            for port in svc["spec"]["ports"]:
                assert oracle.mesh_allows(docs, pod.labels, NAMESPACE, host=fqdn, port=port["port"]), (name, fqdn)
    (api,) = [d for d in out.generated("Sidecar") if d["metadata"]["name"].endswith("-api-egress")]
    assert "payments/api.payments.svc.cluster.local" in api["spec"]["egress"][0]["hosts"]


@pytest.mark.parametrize("shape", SHAPES)
def test_sidecars_are_valid(shape: str) -> None:
    out = rendered(shape, "--sidecar", "--network-policy", "cilium", "--istio-api-version", "networking.istio.io/v1beta1",
                   "--sidecar-host", "monitoring/otel-collector.monitoring.svc.cluster.local")
    sidecars = out.generated("Sidecar")
    assert sidecars
    for doc in sidecars:
        assert doc["apiVersion"] == "networking.istio.io/v1beta1"
        assert oracle.sidecar_problems(doc) == [], doc["metadata"]["name"]
        assert "monitoring/otel-collector.monitoring.svc.cluster.local" in doc["spec"]["egress"][0]["hosts"]
    for doc in out.generated("ServiceEntry"):
        assert oracle.serviceentry_problems(doc) == []
    for doc in out.generated("CiliumNetworkPolicy"):
        assert oracle.ciliumnetworkpolicy_problems(doc) == []


@pytest.mark.parametrize("shape", SHAPES)
def test_both_layers_each_workload_reaches_exactly_its_hosts_and_ports(shape: str) -> None:
    out = rendered(shape, "--sidecar", *CILIUM)
    policies = out.generated("CiliumNetworkPolicy")
    for name, pod in pods(out.stream).items():
        if name not in DECLARED:
            continue
        for owner, reach in REACH.items():
            for dest, port in reach:
                if is_address(dest):
                    continue
                for host, expect in names_for(dest):
                    for p in (port, 8443, 443):
                        network = oracle.cilium_allows(policies, pod.labels, NAMESPACE, host=host, port=p)
                        mesh = oracle.mesh_allows(out.docs, pod.labels, NAMESPACE, host=host, port=p)
                        # The opted-out db keeps the namespace's mesh view; the network still holds.
                        both = network and (mesh or name == "db")
                        assert both == (expect and (dest, p) in REACH[name]), (name, host, p)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("args", [CILIUM, ("--sidecar",), ("--sidecar", *CILIUM)], ids=["cilium", "sidecar", "both"])
def test_input_documents_pass_through_and_output_is_idempotent(shape: str, args: tuple[str, ...]) -> None:
    out = rendered(shape, *args)
    produced = iter(split_documents(out.output))
    assert all(any(doc == o for o in produced) for doc in split_documents(out.stream))
    again = run(["render", *args], out.output)
    assert again.exit_code == 0 and again.stdout == out.output
    kinds = {d["kind"] for d in out.docs if "helm-egress.io/generated-by" in (d["metadata"].get("annotations") or {})}
    assert ("CiliumNetworkPolicy" in kinds) == ("cilium" in args) and ("Sidecar" in kinds) == ("--sidecar" in args)


def test_sidecar_and_flavour_from_the_environment() -> None:
    stream = chart_stream("helm3")
    env = {**clean_env(), "HELM_EGRESS_SIDECAR": "true", "HELM_EGRESS_NETWORK_POLICY": "cilium"}
    result = CliRunner().invoke(app, ["render"], input=stream, env=env, catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout == rendered("helm3", "--sidecar", *CILIUM).output


# ========================================================= the chart's own objects

CHART_SIDECAR = """\
---
# Source: shop/templates/sidecar.yaml
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: web-mesh
  namespace: prod
spec:
  workloadSelector:
    labels:
      app.kubernetes.io/component: web
  egress:
    - hosts: ["./*"]
"""
CHART_CNP = """\
---
# Source: shop/templates/cnp.yaml
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: web-extra
  namespace: prod
spec:
  endpointSelector:
    matchLabels:
      k8s:app.kubernetes.io/component: web
  egress:
    - toEndpoints: [{}]
"""


def test_a_chart_sidecar_selecting_a_workload_is_a_located_error() -> None:
    stream = chart_stream("helm3") + CHART_SIDECAR
    result = run(["render", "--sidecar"], stream)
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "(Sidecar/web-mesh)" in line and "Deployment/demo-shop-web" in line and "undefined" in line
    assert line.startswith(f"error: stdin:{stream[: stream.index(CHART_SIDECAR)].count(chr(10)) + 1}: document")
    # Opting the workload out resolves it; the chart's Sidecar passes through untouched.
    opted = chart_stream("helm3", (("web", '{"podAnnotations": {"helm-egress.io/sidecar": "false"}}'),)) + CHART_SIDECAR
    result = run(["render", "--sidecar"], opted)
    assert result.exit_code == 0 and CHART_SIDECAR in result.stdout


def test_a_chart_ciliumnetworkpolicy_passes_through_and_check_notes_it() -> None:
    stream = chart_stream("helm4") + CHART_CNP
    result = run(["render", *CILIUM], stream)
    assert result.exit_code == 0 and CHART_CNP in result.stdout
    check = run(["check", *CILIUM], stream)
    notes = [line for line in check.stdout.splitlines() if line.startswith("note:") and "web-extra" in line]
    assert len(notes) == 1 and "Deployment/demo-shop-web" in notes[0] and "union" in notes[0]


@pytest.mark.parametrize("value, message", [
    ("payments/*", "imports every host"), ("*/*", "imports every host"), ("payments/api", "short names"),
    ("api.payments.svc.cluster.local", "namespace/dnsName"), ("payments/*api.example.com", "partial wildcard"),
])
def test_bad_sidecar_hosts(value: str, message: str) -> None:
    usage = run(["render", "--sidecar", "--sidecar-host", value], chart_stream("helm3"))
    assert usage.exit_code == 2 and message in usage.output
    stream = chart_stream("helm3", (("agent", f'{{"podAnnotations": {{"{P}/sidecar-hosts": "{value}"}}}}'),))
    bad = run(["render", "--sidecar"], stream)
    assert bad.exit_code == 1 and f'["{P}/sidecar-hosts"]' in bad.stderr and message in bad.stderr


@pytest.mark.parametrize("host", ["prod/api.stripe.com", "prod/API.Stripe.com", "prod/api.stripe.com.",
                                  "prod/*.STRIPE.com"])
def test_a_sidecar_host_never_imports_another_workloads_destination(host: str) -> None:
    stream = chart_stream("helm4", (("report", f'{{"podAnnotations": {{"{P}/sidecar-hosts": "{host}"}}}}'),))
    result = run(["render", "--sidecar"], stream)
    assert result.exit_code == 1 and "api.stripe.com" in result.stderr and "Deployment/demo-shop-web" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("shape", SHAPES)
def test_explain_names_every_layer(shape: str) -> None:
    import json

    stream = chart_stream(shape)
    layered = json.loads(run(["explain", "-o", "json", "--sidecar", *CILIUM], stream).stdout)
    plain = json.loads(run(["explain", "-o", "json"], stream).stdout)
    by_ref = {p.ref: n for n, p in pods(stream).items()}
    for report, before in zip(layered["workloads"], plain["workloads"]):
        name = by_ref.get(report["workload"])
        if name not in DECLARED:
            continue
        assert (report["sidecar"] is None) == (name == "db")
        for row, old in zip(report["destinations"], before["destinations"]):
            kinds = [layer.split()[0] for layer in row["layers"]]
            assert kinds == ["ServiceEntry", *(["Sidecar"] if name != "db" else []), "CiliumNetworkPolicy"], row
            assert "any host" not in " ".join(row["layers"])
            if not is_address(row["destination"]):
                assert "toFQDNs" in row["layers"][-1]
                assert [layer.split()[0] for layer in old["layers"]] == ["ServiceEntry", "NetworkPolicy"]
                assert f"any host on port {row['port']}" in old["layers"][-1]
    table = run(["explain", "--sidecar", *CILIUM], stream).stdout
    assert "LAYERS" in table.splitlines()[0] and "toFQDNs" in table


def test_an_allowlisted_address_a_sidecar_cannot_import_is_a_warning(tmp_path: Path) -> None:
    allowlist = tmp_path / "allowlist.yaml"
    allowlist.write_text("istio:\n  egress:\n    - name: nat\n      addresses: [10.50.0.7]\n"
                         "      ports: [{number: 5432, protocol: TCP}]\n")
    result = run(["check", "--sidecar", "--global-allowlist", str(allowlist), *CILIUM], chart_stream("helm3"))
    assert result.exit_code == 0
    (line,) = [x for x in result.stdout.splitlines() if "cannot import" in x]
    assert "10.50.0.7" in line and "Job/demo-shop-migrate" in line and "--sidecar-host" in line


@pytest.mark.parametrize("shape", SHAPES)
def test_sidecar_without_namespaces_in_the_stream(shape: str) -> None:
    """Charts that leave metadata.namespace to Helm's -n (e.g. `helm create`'s scaffold):
    the release's Services stay reachable, other workloads' hosts stay out."""
    import re

    stream = re.sub(r"(?m)^  namespace: prod\r?\n", "", chart_stream(shape))
    assert "namespace: prod" not in stream
    result = run(["render", "--sidecar", *CILIUM], stream)
    assert result.exit_code == 0, result.stderr
    assert "pass --namespace" in result.stderr
    docs = parse(result.stdout)
    for doc in (d for d in docs if d["kind"] in ("Sidecar", "CiliumNetworkPolicy")):
        assert "namespace" not in doc["metadata"]
        check = oracle.sidecar_problems if doc["kind"] == "Sidecar" else oracle.ciliumnetworkpolicy_problems
        assert check(doc) == []
    services = [d for d in docs if d.get("kind") == "Service"]
    web = pods(stream)["web"]
    for svc in services:
        fqdn = f"{svc['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
        assert oracle.mesh_allows(docs, web.labels, NAMESPACE, host=fqdn, port=svc["spec"]["ports"][0]["port"])
    assert oracle.mesh_allows(docs, web.labels, NAMESPACE, host="api.stripe.com", port=443)
    assert not oracle.mesh_allows(docs, web.labels, NAMESPACE, host="maps.example.org", port=443)
    assert run(["render", "--sidecar", *CILIUM], result.stdout).stdout == result.stdout


HOSTILE = """\
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: odd, namespace: prod}
spec: {endpointSelector: {matchLabels: [1, 2], matchExpressions: 5}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: odd2}
spec: {endpointSelector: {matchExpressions: [{key: "k8s:app.kubernetes.io/component", operator: In, values: 7}]}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: odd3, namespace: prod}
spec: {workloadSelector: {labels: "web"}}
---
apiVersion: v1
kind: Service
metadata: {name: [x], namespace: prod}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: [not, a, mapping]
"""


def test_odd_shapes_in_chart_documents() -> None:
    """Selectors of the wrong type count as selecting every pod (the safe reading for a
    conflict check); nothing crashes, the odd documents pass through."""
    extra = (("agent", f'{{"podAnnotations": {{"{P}/ports": "443", "{P}/hosts": "a.example.com"}}}}'),)
    stream = chart_stream("helm3", extra) + HOSTILE
    cilium = run(["render", *CILIUM], stream)
    assert cilium.exit_code == 0 and cilium.stdout.endswith(HOSTILE)
    assert sum("CiliumNetworkPolicy odd (kept as it is)" in line for line in cilium.stderr.splitlines()) == 6
    assert "odd2" not in cilium.stderr  # `values: 7` selects nothing
    sidecar = run(["render", "--sidecar"], stream)
    assert sidecar.exit_code == 1 and sidecar.stdout == ""
    errors = sidecar.stderr.splitlines()
    assert len(errors) == 5 and all("Sidecar odd3 selects the pods of" in line for line in errors)

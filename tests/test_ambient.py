"""Istio ambient mode: hostnames held at the egress waypoint, per service account.

The shop chart (tests/cases/ambient-*) has a Deployment with its own service account and
host, a second with another account, a host and a database address, a CronJob on the
default account that declares the first one's host, a hook Job, and release-wide values.
What each workload may reach is written down here from the input, and checked against
the output with the test oracle: who each ServiceEntry's AuthorizationPolicy admits at
the waypoint (``oracle.ambient_admits``), and what the pods' network policies let out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import oracle
from helmstream import split_documents
from post_renderer.cli import app
from post_renderer.yamlio import load, safe_loader
from post_renderer.errors import Location

CASE = Path(__file__).parent / "cases" / "ambient-kubernetes-helm3"
WAYPOINT = ("istio-egress", {"gateway.networking.k8s.io/gateway-name": "egress-waypoint"})
SENTRY = "o123.ingest.sentry.io"  # the values' entry: every served workload
STRIPE, S3 = "api.stripe.com", "s3.eu-west-1.amazonaws.com"
# workload pod labels -> (service account, hosts it declared, addresses:ports it declared)
DECLARED: dict[str, tuple[str, set[str], set[tuple[str, int]]]] = {
    "web": ("web", {SENTRY, STRIPE}, set()),
    "worker": ("worker", {SENTRY, S3}, {("10.40.0.15", 5432)}),
    "report": ("default", {SENTRY, STRIPE}, set()),
}
ARGS = ["render", "-f", str(CASE / "values.yaml"), "--mesh", "ambient", "--waypoint", "istio-egress/egress-waypoint"]


def _render(*extra: str, stdin: bytes | None = None) -> Any:
    return CliRunner().invoke(app, [*ARGS, *extra], input=stdin or (CASE / "input.yaml").read_bytes())


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in (load(safe_loader(), t, Location()) for t in split_documents(text)) if isinstance(d, dict)]


def _principal(account: str) -> str:
    return f"cluster.local/ns/shop/sa/{account}"


@pytest.fixture(scope="module", params=["kubernetes", "cilium"])
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]], str]:
    result = _render("--network-policy", request.param)
    assert result.exit_code == 0, result.stderr
    return request.param, _docs(result.stdout), result.stdout


def test_each_host_admits_exactly_the_accounts_that_declared_it(rendered: tuple[str, list[Any], str]) -> None:
    _, docs, _ = rendered
    accounts = {account for account, _, _ in DECLARED.values()} | {"intruder"}
    for host in (SENTRY, STRIPE, S3):
        for account in accounts:
            wanted = any(a == account and host in hosts for a, hosts, _ in DECLARED.values())
            assert oracle.ambient_admits(docs, _principal(account), host, 443) is wanted, (host, account)
        # Declared on 443 only.
        assert oracle.ambient_admits(docs, _principal("web"), host, 80) is None
    # The same account from another namespace is another principal.
    assert oracle.ambient_admits(docs, "cluster.local/ns/other/sa/web", STRIPE, 443) is False


def test_no_pod_reaches_a_hostname_but_through_the_waypoint(rendered: tuple[str, list[Any], str]) -> None:
    flavour, docs, _ = rendered
    for labels, (_, _, addresses) in DECLARED.items():
        pod = {"app": labels}
        if flavour == "kubernetes":
            policies = [d for d in docs if d["kind"] == "NetworkPolicy"]

            def allows(dest: dict[str, Any]) -> bool:
                return oracle.egress_allows(policies, pod, dest=dest, pod_namespace="shop")

            # A public address on the declared port: the hostnames' IPs are not opened.
            assert not allows({"ip": "52.1.2.3", "port": 443})
            assert allows({"pod_labels": WAYPOINT[1], "namespace": WAYPOINT[0], "port": 15008})
            assert not allows({"pod_labels": WAYPOINT[1], "namespace": WAYPOINT[0], "port": 443})
            assert allows({"pod_labels": {"k8s-app": "kube-dns"}, "namespace": "kube-system", "port": 53,
                           "protocol": "UDP"})
            # ztunnel, not the pod, talks to istiod in ambient mode.
            assert not allows({"pod_labels": {"app": "istiod"}, "namespace": "istio-system", "port": 15012})
            assert allows({"ip": "10.40.0.15", "port": 5432}) is (("10.40.0.15", 5432) in addresses)
        else:
            policies = [d for d in docs if d["kind"] == "CiliumNetworkPolicy"]
            for host in (SENTRY, STRIPE, S3):
                assert not oracle.cilium_allows(policies, pod, "shop", port=443, host=host)
            assert not oracle.cilium_allows(policies, pod, "shop", port=443, ip="52.1.2.3")
            assert oracle.cilium_allows(policies, pod, "shop", port=15008, peer=(WAYPOINT[1], WAYPOINT[0]))
            assert oracle.cilium_allows(policies, pod, "shop", port=5432, ip="10.40.0.15") is bool(addresses)


def test_hostname_serviceentries_are_bound_to_the_waypoint_and_addresses_stay_direct(
        rendered: tuple[str, list[Any], str]) -> None:
    _, docs, _ = rendered
    entries = [d for d in docs if d["kind"] == "ServiceEntry"]
    assert entries
    for se in entries:
        labels = se["metadata"]["labels"]
        if se["spec"].get("addresses") and not any("." in h for h in se["spec"]["hosts"]):
            assert "istio.io/use-waypoint" not in labels  # the database: direct
        else:
            assert labels["istio.io/use-waypoint"] == "egress-waypoint"
            assert labels["istio.io/use-waypoint-namespace"] == "istio-egress"
    assert not [d for d in docs if d["kind"] == "Sidecar"]


def test_every_document_is_valid_and_a_second_render_changes_nothing(rendered: tuple[str, list[Any], str]) -> None:
    flavour, docs, out = rendered
    for doc in docs:
        if "helm-egress.io/generated-by" in (doc["metadata"].get("annotations") or {}):
            assert oracle.problems(doc) == [], doc["metadata"]["name"]
    again = _render("--network-policy", flavour, stdin=out.encode())
    assert again.exit_code == 0 and again.stdout == out
    for original in split_documents((CASE / "input.yaml").read_text()):
        assert original in split_documents(out)


@pytest.mark.parametrize("extra, message", [
    (["--sidecar"], "an Istio Sidecar has no effect in ambient mode"),
    (["--mesh", "mesh-of-their-own"], "is not sidecar or ambient"),
    (["--waypoint", "Istio_Egress/w"], "is not a valid namespace"),
])
def test_what_ambient_cannot_do_is_a_usage_error(extra: list[str], message: str) -> None:
    result = _render(*extra)
    assert result.exit_code == 2 and result.stdout == ""
    assert message in result.stderr


def test_ambient_needs_its_waypoint_and_a_waypoint_needs_ambient() -> None:
    stdin = (CASE / "input.yaml").read_bytes()
    without = CliRunner().invoke(app, ["render", "--mesh", "ambient"], input=stdin)
    assert without.exit_code == 2 and "--waypoint" in without.stderr
    stray = CliRunner().invoke(app, ["render", "--waypoint", "egress-waypoint"], input=stdin)
    assert stray.exit_code == 2 and "--mesh ambient" in stray.stderr


def test_check_names_a_shared_service_account_and_the_mesh_wide_export() -> None:
    text = (CASE / "input.yaml").read_text().replace("serviceAccountName: worker", "serviceAccountName: web")
    result = CliRunner().invoke(app, ["check", *ARGS[1:]], input=text)
    assert result.exit_code == 0, result.stdout
    assert "it shares service account web with Deployment/shop-web" in result.stdout
    assert "read every ServiceEntry's exportTo as '*'" in result.stdout


def test_a_workload_without_a_namespace_is_refused_with_the_way_out() -> None:
    text = (CASE / "input.yaml").read_text().replace("  namespace: shop\n", "")
    result = CliRunner().invoke(app, ARGS, input=text)
    assert result.exit_code == 1 and result.stdout == ""
    assert "pass --namespace NS" in result.stderr
    named = CliRunner().invoke(app, [*ARGS, "--namespace", "shop"], input=text)
    assert named.exit_code == 0, named.stderr
    docs = _docs(named.stdout)
    assert oracle.ambient_admits(docs, _principal("web"), STRIPE, 443) is True
    # The waypoint in another namespace keeps its namespace selector.
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    assert {"kubernetes.io/metadata.name": "istio-egress"} in [
        peer.get("namespaceSelector", {}).get("matchLabels") for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])]


CHART_OWN = '''---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: everyone-to-stripe
  namespace: shop
spec:
  targetRefs: [{group: networking.istio.io, kind: ServiceEntry, name: shop-web}]
  action: ALLOW
  rules: [{}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: chart-s3
  namespace: shop
spec:
  hosts: [s3.eu-west-1.amazonaws.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  location: MESH_EXTERNAL
  resolution: DNS
  exportTo: ["."]
'''


def test_the_charts_own_policies_and_serviceentries_are_read_and_kept() -> None:
    """A chart ALLOW policy on one of our ServiceEntries widens who may reach it; a chart
    ServiceEntry that serves a host but is not bound to the waypoint makes it unreachable.
    Both are said by check, and neither document is touched."""
    stdin = (CASE / "input.yaml").read_text() + CHART_OWN
    checked = CliRunner().invoke(app, ["check", *ARGS[1:]], input=stdin)
    assert "AuthorizationPolicy everyone-to-stripe (kept as it is) is attached to ServiceEntry shop-web" \
        in checked.stdout
    assert "the chart's ServiceEntry chart-s3 serves it but is not bound to a waypoint" in checked.stdout
    rendered = _render(stdin=stdin.encode())
    assert rendered.exit_code == 0, rendered.stderr
    for original in split_documents(stdin):
        assert original in split_documents(rendered.stdout)
    # The chart's ServiceEntry serves s3, so the worker's grant is attached to it.
    docs = _docs(rendered.stdout)
    assert any(d["kind"] == "AuthorizationPolicy" and d["spec"]["targetRefs"][0]["name"] == "chart-s3" for d in docs)

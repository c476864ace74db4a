"""Policies open what the serving ServiceEntry dials, not what was declared.

The golden cases ``dialled-kubernetes`` and ``dialled-cilium`` render one chart whose own
ServiceEntries send the proxy elsewhere: TLS origination (port 80 -> targetPort 443, by
DNS and by NONE), a corporate proxy as an FQDN endpoint, a STATIC VIP with IP endpoints
(one with its own port map, one a metadata address). Each connection a pod's proxy makes
is judged by the independent evaluators in ``oracle``, against the Istio semantics
written out here by hand (istio/istio pilot/pkg/serviceregistry/serviceentry/conversion.go).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

import oracle
from helmstream import split_documents
from post_renderer.cli import app
from post_renderer.dialled import Upstream, endpoints, passthrough_target_port, port_dials
from post_renderer.dialled import dials as dials_of
from post_renderer.settings import Settings

CASES = Path(__file__).parent / "cases"
NS = "news"
PUBLIC = "203.0.113.7"


def _documents(text: str) -> list[dict[str, Any]]:
    loader = YAML(typ="safe")
    return [d for d in (loader.load(t) for t in split_documents(text)) if isinstance(d, dict)]


def _output(case: str) -> list[dict[str, Any]]:
    return _documents((CASES / case / "expected.yaml").read_text())


def _pod(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


# (workload, address, port, allowed): what its proxy connects to, and what it must not.
NETWORK = [
    ("news-reader", PUBLIC, 443, True),  # targetPort: TLS to 443
    ("news-reader", PUBLIC, 80, False),  # the declared port is never dialled
    ("wiki-reader", PUBLIC, 443, True),  # NONE honours targetPort from Istio 1.22
    ("wiki-reader", PUBLIC, 80, False),
    ("partner-client", PUBLIC, 3128, True),  # the proxy, resolved by the sidecar
    ("partner-client", PUBLIC, 443, False),
    ("ledger-sync", "198.51.100.7", 15432, True),  # its own port map wins over targetPort
    ("ledger-sync", "198.51.100.7", 6432, False),
    ("ledger-sync", "198.51.100.8", 6432, True),  # targetPort
    ("ledger-sync", "198.51.100.8", 15432, False),  # another endpoint's port
    ("ledger-sync", "198.51.100.8", 5432, False),
    ("ledger-sync", "192.0.2.50", 5432, False),  # the VIP is never dialled
    ("ledger-sync", "192.0.2.50", 6432, False),
    ("ledger-sync", "169.254.169.254", 6432, False),  # a metadata endpoint stays closed
    ("ledger-sync", PUBLIC, 6432, False),
]


@pytest.mark.parametrize(("workload", "ip", "port", "allowed"), NETWORK)
def test_networkpolicy_opens_what_the_proxy_dials(workload: str, ip: str, port: int, allowed: bool) -> None:
    policies = [d for d in _output("dialled-kubernetes") if d["kind"] == "NetworkPolicy"]
    dest = {"ip": ip, "port": port, "protocol": "TCP"}
    assert oracle.egress_allows(policies, _pod(workload), dest=dest, pod_namespace=NS) is allowed


# (workload, host or None, address or None, port, allowed)
CILIUM = [
    ("news-reader", "edition.cnn.com", None, 443, True),
    ("news-reader", "edition.cnn.com", None, 80, False),
    ("wiki-reader", "en.wikipedia.org", None, 443, True),
    ("wiki-reader", "en.wikipedia.org", None, 80, False),
    ("partner-client", "proxy.corp.example", None, 3128, True),
    ("partner-client", "api.partner.example", None, 443, False),  # the declared host is not dialled
    ("partner-client", "api.partner.example", None, 3128, False),
    ("ledger-sync", None, "198.51.100.7", 15432, True),
    ("ledger-sync", None, "198.51.100.7", 6432, False),
    ("ledger-sync", None, "198.51.100.8", 6432, True),
    ("ledger-sync", None, "192.0.2.50", 5432, False),
    ("ledger-sync", None, "169.254.169.254", 6432, False),
    ("ledger-sync", "ledger.example.net", None, 5432, False),
]


@pytest.mark.parametrize(("workload", "host", "ip", "port", "allowed"), CILIUM)
def test_cilium_opens_what_the_proxy_dials(workload: str, host: str | None, ip: str | None, port: int,
                                           allowed: bool) -> None:
    policies = [d for d in _output("dialled-cilium") if d["kind"] == "CiliumNetworkPolicy"]
    assert oracle.cilium_allows(policies, _pod(workload), NS, port=port, host=host, ip=ip) is allowed


CHART = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: edition-cnn, namespace: news}
spec:
  hosts: [edition.cnn.com]
  ports: [{number: 80, name: http-port, protocol: HTTP, targetPort: 443}]
  resolution: DNS
  exportTo: ["."]
"""
DEPLOYMENT = """\
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reader, namespace: %s}
spec:
  selector: {matchLabels: {app: reader}}
  template:
    metadata: {labels: {app: reader}}
    spec: {containers: [{name: app, image: "example/reader:1"}]}
"""
VALUES = "istio:\n  egress:\n    - {name: cnn, hosts: [edition.cnn.com], ports: [{number: 80, protocol: HTTP}]}\n"


def test_only_the_namespaces_the_serving_serviceentry_reaches_are_redirected(tmp_path: Path) -> None:
    """The same release-wide entry in two namespaces: where the chart's ServiceEntry is
    exported, its targetPort is dialled; elsewhere helm-egress writes its own ServiceEntry
    and the declared port is."""
    values = tmp_path / "values.yaml"
    values.write_text(VALUES)
    stream = CHART + DEPLOYMENT % "news" + DEPLOYMENT % "feeds"
    result = CliRunner().invoke(app, ["render", "-f", str(values), "--release", "reader"], input=stream)
    assert result.exit_code == 0, result.stderr
    policies = [d for d in _documents(result.stdout) if d["kind"] == "NetworkPolicy"]
    for namespace, port, other in (("news", 443, 80), ("feeds", 80, 443)):
        mine = [p for p in policies if p["metadata"]["namespace"] == namespace]
        for number, allowed in ((port, True), (other, False)):
            dest = {"ip": PUBLIC, "port": number, "protocol": "TCP"}
            assert oracle.egress_allows(mine, {"app": "reader"}, dest=dest, pod_namespace=namespace) is allowed


# --- what a ServiceEntry dials, from any shape a chart may write --------------------

PORT = {"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 443}


def dials(spec: dict[str, Any], port: dict[str, Any], dest_is_address: bool,
          passthrough: bool | None) -> tuple[Upstream, ...] | None:
    return dials_of(spec, endpoints(spec), port, dest_is_address, passthrough)


def test_a_port_map_that_is_no_port_falls_back_to_the_target_port() -> None:
    for bad in ("x", True, 0, 70000, None, [443]):
        spec = {"resolution": "STATIC", "endpoints": [{"address": "198.51.100.7", "ports": {"http": bad}}]}
        assert dials(spec, PORT, False, True) == (Upstream("198.51.100.7", 443),), bad


def test_endpoints_that_leave_no_pod_or_that_istio_refuses_are_not_dialled() -> None:
    endpoints: list[Any] = [
        {"address": "unix:///var/run/sock"}, {"address": "not a host!"}, {"address": 42}, "198.51.100.9", None,
        {"address": "10.0.0.0/8"}, {"address": "169.254.169.254"}, {"address": "2001:DB8::1"},
        {"address": "Proxy.Corp.Example."},
    ]
    spec = {"resolution": "DNS", "endpoints": endpoints}
    assert dials(spec, PORT, False, True) == (Upstream("2001:db8::1", 443), Upstream("proxy.corp.example", 443))


def test_endpoints_that_are_not_a_list_leave_a_static_entry_nothing_to_dial() -> None:
    assert dials({"resolution": "STATIC", "endpoints": {"address": "198.51.100.7"}}, PORT, False, True) == ()
    assert dials({"resolution": "STATIC"}, PORT, True, True) == ()


def test_what_istio_sends_elsewhere_and_what_it_does_not() -> None:
    plain = {"number": 443, "name": "tls", "protocol": "TLS"}
    assert dials({"resolution": "DNS", "hosts": ["a.example"]}, plain, False, True) is None
    assert dials({"resolution": "NONE"}, plain, True, True) is None
    # A workloadSelector's pods and DYNAMIC_DNS's names are not in the stream: left alone.
    assert dials({"resolution": "STATIC", "workloadSelector": {"labels": {"a": "b"}}}, PORT, False, True) is None
    assert dials({"resolution": "DYNAMIC_DNS", "hosts": ["*.a.example"]}, PORT, False, True) is None
    # An address of a DNS entry: the application connects to it, the proxy resolves the hosts.
    spec = {"resolution": "DNS", "hosts": ["db.example", "*.bad", 7], "addresses": ["192.0.2.5"]}
    assert dials(spec, plain, True, True) == (Upstream("db.example", 443),)
    assert dials(spec, plain, False, True) is None


def test_a_host_and_an_address_of_one_entry_differ_only_where_the_proxy_resolves_the_hosts() -> None:
    resolved = {"resolution": "DNS", "hosts": ["db.example"], "addresses": ["192.0.2.5"]}
    assert port_dials(resolved, (), PORT, True) == ((Upstream(None, 443),), (Upstream("db.example", 443),))
    static = {"resolution": "STATIC", "hosts": ["db.example"], "endpoints": [{"address": "198.51.100.7"}]}
    both = (Upstream("198.51.100.7", 443),)
    assert port_dials(static, endpoints(static), PORT, True) == (both, both)


@pytest.mark.parametrize(("passthrough", "expected"), [
    (True, (Upstream(None, 443),)),
    (False, None),  # before Istio 1.22 the number is dialled
    (None, (Upstream(None, 80), Upstream(None, 443))),  # unknown: neither is cut off
])
def test_none_follows_its_target_port_from_istio_1_22(passthrough: bool | None,
                                                      expected: tuple[Upstream, ...] | None) -> None:
    assert dials({"resolution": "NONE", "hosts": ["*.wikipedia.org"]}, PORT, False, passthrough) == expected


def test_which_istio_sends_none_to_its_target_port() -> None:
    assert passthrough_target_port(Settings()) is True  # networking.istio.io/v1: Istio >= 1.22
    assert passthrough_target_port(Settings(istio_minor=21)) is False
    assert passthrough_target_port(Settings(istio_minor=22, istio_api_version="networking.istio.io/v1beta1")) is True
    assert passthrough_target_port(Settings(istio_api_version="networking.istio.io/v1beta1")) is None

"""Tests of the test oracle itself.

An oracle that accepts everything makes every other test pass vacuously. Here each rule
is shown to reject a known-bad document (from the research oracle's check_oracles.py and
from the rules document) and to accept the matching known-good one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from oracle import (
    SCHEMA_DIR,
    egress_allows,
    networkpolicy_problems,
    parse_istio_protocol,
    serviceentry_problems,
    serviceentry_warnings,
    validate_fqdn,
    validate_wildcard_domain,
)

# ---------------------------------------------------------------- vendored schemas

VENDORED = [
    "serviceentry.crd.json",
    "serviceentry.crd.strict.json",
    "networkpolicy.json",
    "ciliumnetworkpolicy.crd.json",
    "ciliumnetworkpolicy.crd.relaxed.json",
    "calico.networkpolicy.v3.json",
    "calico.globalnetworkpolicy.v3.json",
    "sidecar.v1.subset.json",
    "istio.authorizationpolicy_v1.json",
]


def _validator(name: str) -> Draft7Validator | Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    cls = Draft202012Validator if "2020-12" in schema.get("$schema", "") else Draft7Validator
    cls.check_schema(schema)
    return cls(schema)


def test_vendored_schemas_match_recorded_hashes() -> None:
    sources = (SCHEMA_DIR / "SOURCES.md").read_text(encoding="utf-8")
    recorded = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", sources, re.M)
    )
    assert sorted(recorded) == sorted(VENDORED)
    for name in VENDORED:
        actual = hashlib.sha256((SCHEMA_DIR / name).read_bytes()).hexdigest()
        assert actual == recorded[name], f"{name} changed; update fixtures/schemas/SOURCES.md"


def test_licence_notice_names_every_vendored_file() -> None:
    notice = (SCHEMA_DIR / "LICENSE-NOTICE.md").read_text(encoding="utf-8")
    for name in VENDORED:
        assert name in notice
    assert "Apache License" in notice and "MIT License" in notice


@pytest.mark.parametrize("name", VENDORED)
def test_vendored_file_is_a_valid_schema(name: str) -> None:
    _validator(name)


# -------------------------------------------------- ServiceEntry: samples and builders

SE_OK: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "ServiceEntry",
    "metadata": {"name": "stripe", "namespace": "payments"},
    "spec": {
        "hosts": ["api.stripe.com"],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "exportTo": ["."],
    },
}


def se(**spec: Any) -> dict[str, Any]:
    """SE_OK with top-level spec keys replaced; a value of None deletes the key."""
    doc = copy.deepcopy(SE_OK)
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


def port(number: int, name: str, protocol: str | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"number": number, "name": name, **extra}
    if protocol is not None:
        spec["protocol"] = protocol
    return spec


def assert_problem(doc: dict[str, Any], fragment: str) -> None:
    problems = serviceentry_problems(doc)
    assert any(fragment in p for p in problems), f"expected {fragment!r} in {problems}"


def test_known_good_serviceentry_has_no_problems_or_warnings() -> None:
    assert serviceentry_problems(SE_OK) == []
    assert serviceentry_warnings(SE_OK) == []


@pytest.mark.parametrize(
    "api_version", ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"]
)
def test_every_served_serviceentry_version_is_accepted(api_version: str) -> None:
    doc = copy.deepcopy(SE_OK)
    doc["apiVersion"] = api_version
    assert serviceentry_problems(doc) == []


# The invalid samples of check_oracles.py, each of which must fail here too.
def test_check_oracles_serviceentry_samples() -> None:
    bad_resolution = se(resolution="dns")
    assert any(p.startswith("schema: spec.resolution") for p in serviceentry_problems(bad_resolution))

    no_name = se()
    del no_name["spec"]["ports"][0]["name"]
    assert_problem(no_name, "'name' is a required property")
    assert_problem(se(hosts=["*"]), "invalid host *")
    assert_problem(se(addresses=["10.0.0.0/8"]), "CIDR addresses are allowed only for NONE/STATIC")
    assert_problem(se(resolution="NONE", endpoints=[{"address": "1.2.3.4"}]), "no endpoints should be provided")
    assert_problem(se(ports=[{"number": 70000, "name": "tls", "protocol": "TLS"}]), "range 1..65535")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        # A wildcard host with DNS and no endpoints is rejected at admission (istio#13241).
        ({"hosts": ["*.stripe.com"]}, "hosts must be FQDN if no endpoints"),
        ({"hosts": ["*.stripe.com"], "resolution": "DNS_ROUND_ROBIN"}, "hosts must be FQDN"),
        ({"hosts": []}, "at least one host"),
        ({"hosts": ["api.stripe.com", "*"]}, "invalid host *"),
        (
            {"ports": [port(443, "tls", "TLS"), port(8443, "tls", "TLS")]},
            "port name 'tls' already defined",
        ),
        (
            {"ports": [port(443, "tls", "TLS"), port(443, "https", "HTTPS")]},
            "port 443 already defined",
        ),
        ({"ports": [{"number": 443, "name": "", "protocol": "TLS"}]}, "invalid port name"),
        ({"ports": [{"number": 443, "name": "tls_443", "protocol": "TLS"}]}, "invalid port name"),
        ({"ports": [{"number": 0, "name": "tls", "protocol": "TLS"}]}, "range 1..65535"),
        ({"ports": [{"number": 443, "name": "tls", "protocol": "SMTP"}]}, "unsupported protocol: SMTP"),
        ({"ports": [{"number": 443, "name": "tls", "protocol": "HBONE"}]}, "unsupported protocol"),
        ({"ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 70000}]}, "targetPort"),
        ({"addresses": ["10.0.0.0/8"], "resolution": "DNS"}, "CIDR addresses are allowed only"),
        ({"addresses": ["not-an-ip"], "resolution": "NONE"}, "not-an-ip is not a valid IP"),
        ({"addresses": ["10.0.0.0/33"], "resolution": "NONE"}, "not a valid CIDR block"),
        # Plain TCP cannot tell several hosts apart, so only NONE may combine them.
        (
            {"hosts": ["a.example.com", "b.example.com"], "ports": [{"number": 5432, "name": "tcp", "protocol": "TCP"}]},
            "multiple hosts provided with non-HTTP, non-TLS ports",
        ),
        (
            {"hosts": ["a.example.com", "b.example.com"], "ports": [{"number": 5432, "name": "pg"}]},
            "multiple hosts provided with non-HTTP, non-TLS ports",
        ),
        ({"resolution": "NONE", "endpoints": [{"address": "1.2.3.4"}]}, "no endpoints should be provided"),
        ({"resolution": "STATIC", "endpoints": [{"address": "db.example.com"}]}, "is not a valid IP address"),
        (
            {"resolution": "STATIC", "endpoints": [{"address": "10.0.0.5", "ports": {"postgres": 5432}}]},
            "'postgres' is not defined by the service entry",
        ),
        (
            {"resolution": "DNS_ROUND_ROBIN", "endpoints": [{"address": "a.example.com"}, {"address": "b.example.com"}]},
            "there must only be 0 or 1 endpoint",
        ),
        ({"resolution": "DNS", "endpoints": [{"address": "not_a_host"}]}, "not a valid FQDN or an IP"),
        (
            {"workloadSelector": {"labels": {"app": "db"}}, "endpoints": [{"address": "10.0.0.5"}], "resolution": "STATIC"},
            "only one of WorkloadSelector or Endpoints",
        ),
        ({"workloadSelector": {"labels": {"app": "*"}}, "resolution": "STATIC"}, "wildcard is not supported"),
        ({"resolution": "DYNAMIC_DNS"}, "DYNAMIC_DNS requires wildcard hosts"),
        (
            {"resolution": "DYNAMIC_DNS", "hosts": ["*.stripe.com"], "addresses": ["10.0.0.1"]},
            "not allowed with DYNAMIC_DNS",
        ),
        (
            {"resolution": "DYNAMIC_DNS", "hosts": ["*.stripe.com"], "ports": [port(5432, "tcp", "TCP")]},
            "DYNAMIC_DNS supports only",
        ),
        ({"exportTo": ["*", "."]}, "cannot have both public (*)"),
        ({"exportTo": ["~", "."]}, "cannot export service entry to no one (~) and someone"),
        ({"exportTo": ["payments", "."]}, "duplicate entries in exportTo: . and current namespace payments"),
        ({"exportTo": [".", "payments"]}, "duplicate entries in exportTo for entry payments"),
        ({"exportTo": ["team_a"]}, "only ., *, ~ or a valid DNS 1123 label"),
        ({"resolutions": "DNS"}, "unknown field 'resolutions'"),
        ({"ports": [{"number": 443, "name": "tls", "protocol": "TLS", "protocl": "TLS"}]}, "unknown field 'protocl'"),
        ({"location": "EXTERNAL"}, "schema: spec.location"),
    ],
)
def test_serviceentry_rule_rejects_known_bad(spec: dict[str, Any], fragment: str) -> None:
    assert_problem(se(**spec), fragment)


@pytest.mark.parametrize(
    "spec",
    [
        {"hosts": ["*.stripe.com"], "resolution": "NONE"},
        {"hosts": ["api.stripe.com", "files.stripe.com"], "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]},
        {"hosts": ["a.example.com", "b.example.com"], "resolution": "NONE", "ports": [port(5432, "tcp", "TCP")]},
        {"ports": [{"number": 443, "name": "tls", "protocol": "tls"}]},  # Parse is case-insensitive
        {"ports": [{"number": 80, "name": "grpc-web", "protocol": "grpc-web"}]},
        {"ports": [{"number": 80, "name": "http", "protocol": "HTTP", "targetPort": 443}]},
        {"addresses": ["10.0.0.0/8", "10.1.2.3", "2001:db8::/32"], "resolution": "NONE"},
        {"addresses": ["10.0.0.1/8"], "resolution": "NONE"},  # Istio does not require zero host bits
        {"addresses": ["10.40.0.15"], "resolution": "STATIC", "endpoints": [{"address": "10.40.0.15"}]},
        {"resolution": "STATIC"},  # "discovery type static, missing endpoints" is valid upstream
        {"resolution": "DNS", "hosts": ["*.internal.example"], "endpoints": [{"address": "proxy.example.com"}]},
        {"resolution": "DNS_ROUND_ROBIN", "endpoints": [{"address": "10.0.0.9", "ports": {"tls": 8443}}]},
        {"resolution": "DYNAMIC_DNS", "hosts": ["*.stripe.com"], "ports": [port(80, "http", "http")]},
        {"exportTo": ["~"]},
        {"exportTo": ["*"]},
        {"exportTo": [".", "istio-system"]},
        {"exportTo": None},
    ],
)
def test_serviceentry_accepts_known_good(spec: dict[str, Any]) -> None:
    assert serviceentry_problems(se(**spec)) == []


@pytest.mark.parametrize(("minor", "accepted"), [
    (27, ""), (28, "HTTP"), (29, "HTTP TLS"), (30, "HTTP TLS GRPC HTTP2"), (31, "HTTP TLS GRPC HTTP2")])
def test_dynamic_dns_protocols_follow_the_istio_version(minor: int, accepted: str) -> None:
    # HTTPS parses to its own instance, which no version's `proto != ...` chain lets through.
    for protocol in ("HTTP", "http", "TLS", "HTTPS", "GRPC", "HTTP2", "GRPC-Web", "HTTP_PROXY", "TCP"):
        doc = se(resolution="DYNAMIC_DNS", hosts=["*.stripe.com"], ports=[port(443, "p", protocol)])
        assert (serviceentry_problems(doc, istio_minor=minor) == []) == (protocol.upper() in accepted.split()), protocol


def test_serviceentry_document_level_problems() -> None:
    doc = copy.deepcopy(SE_OK)
    doc["apiVersion"] = "networking.istio.io/v2"
    assert any("not a served ServiceEntry version" in p for p in serviceentry_problems(doc))
    doc = copy.deepcopy(SE_OK)
    doc["metadata"]["name"] = "Stripe_API"
    assert any(p.startswith("metadata.name") for p in serviceentry_problems(doc))
    doc = copy.deepcopy(SE_OK)
    del doc["spec"]
    assert any("'spec' is a required property" in p for p in serviceentry_problems(doc))
    assert serviceentry_problems([]) == ["document is not a mapping"]  # type: ignore[arg-type]


def test_serviceentry_without_namespace_is_judged_without_false_exportto_errors() -> None:
    doc = copy.deepcopy(SE_OK)
    del doc["metadata"]["namespace"]
    assert serviceentry_problems(doc) == []


def test_serviceentry_warnings() -> None:
    partial = serviceentry_warnings(se(hosts=["*stripe.com"], resolution="NONE"))
    assert any("partial wildcard" in w for w in partial)
    assert serviceentry_problems(se(hosts=["*stripe.com"], resolution="NONE")) == []

    tcp = se(hosts=["db.example.com"], ports=[{"number": 5432, "name": "tcp", "protocol": "TCP"}])
    assert any("IST0134" in w for w in serviceentry_warnings(tcp))
    unset = se(ports=[{"number": 5432, "name": "pg"}])
    assert any("IST0134" in w for w in serviceentry_warnings(unset))
    with_address = se(addresses=["10.40.0.15"], resolution="STATIC", ports=[port(3306, "tcp", "TCP")])
    assert not any("IST0134" in w for w in serviceentry_warnings(with_address))

    dyn = se(hosts=["*stripe.com"], resolution="DYNAMIC_DNS", ports=[{"number": 443, "name": "tls", "protocol": "TLS"}])
    assert not any("partial wildcard" in w for w in serviceentry_warnings(dyn))

    selector = se(workloadSelector={}, resolution="NONE")
    assert any("without labels" in w for w in serviceentry_warnings(selector))


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("api.stripe.com", True),
        ("API.Stripe.com", True),  # Istio's DNS-1123 labels allow upper case
        ("api.stripe.com.", True),  # a trailing dot is allowed
        ("localhost", True),  # short names are valid
        ("*.stripe.com", True),
        ("*stripe.com", True),  # partial wildcard: a warning, not an error
        ("*-api.stripe.com", True),
        ("*", True),  # ValidateWildcardDomain accepts it; ServiceEntry rejects it separately
        ("1.2.3.4", False),  # all-numeric TLD
        ("2001:db8::1", False),
        ("db.example.com:5432", False),
        ("api.*.com", False),
        ("*.*.stripe.com", False),
        ("a..b.com", False),
        ("-a.example.com", False),
        ("", False),
        ("a" * 64 + ".com", False),
        (".".join(["abcdefghi"] * 26), False),  # 259 bytes > 255
        ("api.stripe.com\n", False),
    ],
)
def test_validate_wildcard_domain(host: str, valid: bool) -> None:
    assert (validate_wildcard_domain(host) is None) is valid


def test_validate_fqdn_rejects_wildcards() -> None:
    assert validate_fqdn("api.stripe.com") is None
    assert validate_fqdn("*.stripe.com") is not None
    assert validate_fqdn("10.0.0.1") is not None


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("tls", "TLS"),
        ("HTTPS", "HTTPS"),
        ("grpc-web", "GRPC-Web"),
        ("MONGO", "Mongo"),
        ("http_proxy", "HTTP_PROXY"),
        ("", None),
        ("SMTP", None),
        ("HBONE", None),
    ],
)
def test_parse_istio_protocol(raw: str, parsed: str | None) -> None:
    assert parse_istio_protocol(raw) == parsed


# ------------------------------------------------------------------ NetworkPolicy

NP_OK: dict[str, Any] = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "egress-stripe", "namespace": "payments"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "api"}},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    }
                ],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            },
            {
                "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 8000, "endPort": 8080}],
            },
        ],
    },
}


def np_with(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(NP_OK)
    mutate(doc["spec"])
    return doc


def _set_port(port: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        spec["egress"][1]["ports"] = [port]

    return mutate


def _set_peer(peer: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        spec["egress"][1]["to"] = [peer]

    return mutate


def _set_selector(selector: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        spec["podSelector"] = selector

    return mutate


def _expression(expr: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return _set_selector({"matchExpressions": [expr]})


def test_known_good_networkpolicy_has_no_problems() -> None:
    assert networkpolicy_problems(NP_OK) == []


@pytest.mark.parametrize(
    "mutate",
    [
        _set_port({"protocol": "TCP", "port": "https"}),  # named port (check_oracles np_named)
        _set_port({"protocol": "SCTP", "port": 9}),
        _set_port({"port": 443}),  # protocol defaults to TCP
        _set_port({"protocol": "UDP"}),  # all UDP ports
        _set_peer({"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}),
        _set_peer({"ipBlock": {"cidr": "10.40.0.15/32"}}),
        _set_peer({"namespaceSelector": {}}),
        _set_peer({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}}),
        _set_selector({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
        lambda spec: spec.update(egress=[{}]),
        lambda spec: spec.pop("egress"),  # deny all egress
        lambda spec: spec.update(policyTypes=["Ingress", "Egress"]),
    ],
)
def test_networkpolicy_accepts_known_good(mutate: Callable[[dict[str, Any]], None]) -> None:
    assert networkpolicy_problems(np_with(mutate)) == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (_set_peer({"ipBlock": {"cidr": "0.0.0.0/0"}, "fqdn": "api.stripe.com"}), "schema:"),  # strict schema
        (_set_peer({"ipBlock": {"except": []}}), "'cidr' is a required property"),
        (_set_port({"protocol": "ICMP", "port": 443}), "unsupported value 'ICMP'"),
        (_set_port({"protocol": "tcp", "port": 443}), "unsupported value 'tcp'"),
        (_set_port({"protocol": "TCP", "port": 0}), "between 1 and 65535"),
        (_set_port({"protocol": "TCP", "port": 70000}), "between 1 and 65535"),
        (_set_port({"protocol": "TCP", "port": "HTTPS"}), "IANA_SVC_NAME"),
        (_set_port({"protocol": "TCP", "port": "web--tls"}), "IANA_SVC_NAME"),
        (_set_port({"protocol": "TCP", "port": "a-very-long-port-name"}), "IANA_SVC_NAME"),
        (_set_port({"protocol": "TCP", "port": "8443"}), "IANA_SVC_NAME"),
        (_set_port({"protocol": "TCP", "port": "https", "endPort": 8443}), "non-numeric or not specified"),
        (_set_port({"protocol": "TCP", "endPort": 8443}), "non-numeric or not specified"),
        (_set_port({"protocol": "TCP", "port": 9000, "endPort": 8000}), "greater than or equal to `port`"),
        (_set_port({"protocol": "TCP", "port": 9000, "endPort": 70000}), "endPort: 70000 must be between"),
        (_set_peer({}), "must specify a peer"),
        (_set_peer({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}), "both ipBlock and another peer"),
        (_set_peer({"ipBlock": {"cidr": "not-a-cidr"}}), "is not a valid CIDR"),
        (_set_peer({"ipBlock": {"cidr": "10.40.0.15"}}), "is not a valid CIDR"),
        (_set_peer({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["192.168.0.0/16"]}}), "strict subset"),
        (_set_peer({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}), "strict subset"),
        (_set_peer({"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/8"]}}), "strict subset"),
        (_set_peer({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["2001:db8::/32"]}}), "strict subset"),
        (_set_peer({"ipBlock": {"cidr": "10.1.2.3/8"}}), "not canonical (expected '10.0.0.0/8'"),
        (_set_peer({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.2.3/16"]}}), "not canonical"),
        (_set_peer({"ipBlock": {"cidr": "2001:DB8::/32"}}), "not canonical"),
        (_expression({"key": "app", "operator": "In"}), "must be specified when `operator` is 'In'"),
        (_expression({"key": "app", "operator": "Exists", "values": ["x"]}), "may not be specified"),
        (_expression({"key": "app", "operator": "Equals", "values": ["x"]}), "not a valid selector operator"),
        (_set_selector({"matchLabels": {"bad key!": "x"}}), "invalid label key"),
        (_set_selector({"matchLabels": {"app": "-x"}}), "invalid label value"),
        (lambda spec: spec.update(policyTypes=["Egress", "Ingress", "Egress"]), "more than two policyTypes"),
        (lambda spec: spec.update(policyTypes=["egress"]), "unsupported value 'egress'"),
    ],
)
def test_networkpolicy_rule_rejects_known_bad(mutate: Callable[[dict[str, Any]], None], fragment: str) -> None:
    problems = networkpolicy_problems(np_with(mutate))
    assert any(fragment in p for p in problems), f"expected {fragment!r} in {problems}"


def test_networkpolicy_document_level_problems() -> None:
    doc = copy.deepcopy(NP_OK)
    del doc["metadata"]["name"]
    assert "metadata.name: required" in networkpolicy_problems(doc)
    doc = copy.deepcopy(NP_OK)
    doc["kind"] = "NetworkPolicies"
    assert any(p.startswith("schema: kind") for p in networkpolicy_problems(doc))


# ------------------------------------------- the other vendored schemas (smoke tests)

CNP_OK: dict[str, Any] = {
    "apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy",
    "metadata": {"name": "egress-stripe", "namespace": "payments"},
    "spec": {
        "endpointSelector": {"matchLabels": {"app": "api"}},
        "egress": [
            {
                "toEndpoints": [
                    {"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns"}}
                ],
                "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}],
            },
            {
                "toFQDNs": [{"matchName": "api.stripe.com"}, {"matchPattern": "*.stripe.com"}],
                "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
            },
        ],
    },
}


@pytest.mark.parametrize("name", ["ciliumnetworkpolicy.crd.json", "ciliumnetworkpolicy.crd.relaxed.json"])
def test_cilium_schemas_accept_good_and_reject_bad(name: str) -> None:
    validator = _validator(name)
    assert list(validator.iter_errors(CNP_OK)) == []
    both = copy.deepcopy(CNP_OK)
    both["spec"]["egress"][1]["toFQDNs"][0]["matchPattern"] = "x.com"
    no_selector = copy.deepcopy(CNP_OK)
    del no_selector["spec"]["endpointSelector"]
    int_port = copy.deepcopy(CNP_OK)
    int_port["spec"]["egress"][1]["toPorts"][0]["ports"][0]["port"] = 443
    for bad in (both, no_selector, int_port):
        assert list(validator.iter_errors(bad)) != []


def test_calico_oss_schema_rejects_enterprise_domains() -> None:
    validator = _validator("calico.networkpolicy.v3.json")
    ok = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "NetworkPolicy",
        "metadata": {"name": "x", "namespace": "y"},
        "spec": {
            "selector": "app == 'api'",
            "types": ["Egress"],
            "egress": [{"action": "Allow", "protocol": "TCP", "destination": {"nets": ["203.0.113.0/24"], "ports": [443]}}],
        },
    }
    assert list(validator.iter_errors(ok)) == []
    with_domains = copy.deepcopy(ok)
    with_domains["spec"]["egress"][0]["destination"]["domains"] = ["api.stripe.com"]
    assert list(validator.iter_errors(with_domains)) != []
    _validator("calico.globalnetworkpolicy.v3.json")


# ---------------------------------------------------------------- egress semantics

APP = {"app": "checkout"}
KUBE_DNS = {"pod_labels": {"k8s-app": "kube-dns"}, "namespace": "kube-system"}
ISTIOD = {"pod_labels": {"app": "istiod"}, "namespace": "istio-system"}


def policy(spec: dict[str, Any], name: str = "p", namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def dns_rule(port: int = 53) -> dict[str, Any]:
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": [{"protocol": "UDP", "port": port}, {"protocol": "TCP", "port": port}],
    }


# What helm-egress should produce for a pod that talks to a MySQL VIP and to istiod.
LOCKDOWN = policy(
    {
        "podSelector": {"matchLabels": APP},
        "policyTypes": ["Egress"],
        "egress": [
            dns_rule(),
            {
                "to": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
                        "podSelector": {"matchLabels": {"app": "istiod"}},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 15012}],
            },
            {"to": [{"ipBlock": {"cidr": "10.40.0.15/32"}}], "ports": [{"protocol": "TCP", "port": 3306}]},
        ],
    }
)


def allows(policies: list[dict[str, Any]], dest: dict[str, Any], labels: dict[str, str] = APP, **kw: Any) -> bool:
    return egress_allows(policies, labels, dest=dest, **kw)


def test_lockdown_policy_is_itself_valid() -> None:
    assert networkpolicy_problems(LOCKDOWN) == []


@pytest.mark.parametrize(
    ("dest", "allowed"),
    [
        ({"ip": "10.40.0.15", "port": 3306, "protocol": "TCP"}, True),
        ({"ip": "10.40.0.15", "port": 3306}, True),  # TCP is the default
        ({"ip": "10.40.0.15", "port": 3307, "protocol": "TCP"}, False),
        ({"ip": "10.40.0.15", "port": 3306, "protocol": "UDP"}, False),
        ({"ip": "10.40.0.16", "port": 3306, "protocol": "TCP"}, False),
        ({"ip": "169.254.169.254", "port": 80, "protocol": "TCP"}, False),
        ({**KUBE_DNS, "port": 53, "protocol": "UDP"}, True),
        ({**KUBE_DNS, "port": 53, "protocol": "TCP"}, True),
        ({**KUBE_DNS, "port": 5353, "protocol": "UDP"}, False),
        ({"pod_labels": {"k8s-app": "metrics-server"}, "namespace": "kube-system", "port": 53, "protocol": "UDP"}, False),
        ({"pod_labels": {"k8s-app": "kube-dns"}, "namespace": "shop", "port": 53, "protocol": "UDP"}, False),
        ({**ISTIOD, "port": 15012, "protocol": "TCP"}, True),
        ({**ISTIOD, "port": 15010, "protocol": "TCP"}, False),
        ({"ip": "8.8.8.8", "port": 53, "protocol": "UDP"}, False),  # DNS only to the cluster resolver
    ],
)
def test_lockdown_semantics(dest: dict[str, Any], allowed: bool) -> None:
    assert allows([LOCKDOWN], dest) is allowed


def test_unselected_pod_is_not_isolated() -> None:
    assert allows([LOCKDOWN], {"ip": "169.254.169.254", "port": 80}, labels={"app": "other"})
    assert allows([], {"ip": "169.254.169.254", "port": 80})


def test_policy_types_defaulting() -> None:
    ingress_only = policy({"podSelector": {}, "ingress": [{}]})
    assert allows([ingress_only], {"ip": "1.1.1.1", "port": 443})
    empty_egress = policy({"podSelector": {}, "egress": []})  # empty list: still Ingress only
    assert allows([empty_egress], {"ip": "1.1.1.1", "port": 443})
    implied_egress = policy({"podSelector": {}, "egress": [{"ports": [{"port": 443}]}]})
    assert allows([implied_egress], {"ip": "1.1.1.1", "port": 443})
    assert not allows([implied_egress], {"ip": "1.1.1.1", "port": 80})


def test_deny_all_and_allow_all() -> None:
    deny_all = policy({"podSelector": {}, "policyTypes": ["Egress"]})
    assert not allows([deny_all], {"ip": "1.1.1.1", "port": 443})
    allow_all = policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})
    assert allows([deny_all, allow_all], {"ip": "1.1.1.1", "port": 443})  # union


def test_union_of_policies() -> None:
    only_dns = policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns_rule()]}, name="dns")
    only_db = policy(
        {
            "podSelector": {"matchLabels": APP},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.40.0.0/24"}}]}],
        },
        name="db",
    )
    assert allows([only_dns, only_db], {"ip": "10.40.0.15", "port": 3306})
    assert allows([only_dns, only_db], {**KUBE_DNS, "port": 53, "protocol": "UDP"})
    assert not allows([only_dns, only_db], {"ip": "10.41.0.1", "port": 3306})


def test_peer_and_versus_or() -> None:
    anded = LOCKDOWN
    ored = copy.deepcopy(LOCKDOWN)
    ored["spec"]["egress"][1]["to"] = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}}},
        {"podSelector": {"matchLabels": {"app": "istiod"}}},
    ]
    any_istio_system_pod = {"pod_labels": {"app": "prometheus"}, "namespace": "istio-system", "port": 15012}
    fake_istiod_in_shop = {"pod_labels": {"app": "istiod"}, "namespace": "shop", "port": 15012}
    assert not allows([anded], any_istio_system_pod)
    assert not allows([anded], fake_istiod_in_shop)
    assert allows([ored], any_istio_system_pod)
    assert allows([ored], fake_istiod_in_shop)  # a podSelector alone means the policy's namespace


def test_pod_selector_alone_stays_in_the_policy_namespace() -> None:
    same_ns_cache = policy(
        {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "cache"}}}]}]}
    )
    assert allows([same_ns_cache], {"pod_labels": {"app": "cache"}, "namespace": "shop", "port": 6379})
    assert not allows([same_ns_cache], {"pod_labels": {"app": "cache"}, "namespace": "other", "port": 6379})
    assert not allows([same_ns_cache], {"ip": "10.0.0.7", "port": 6379})  # an address is not a pod
    every_pod = policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {}}]}]})
    assert allows([every_pod], {"pod_labels": {"app": "x"}, "namespace": "anywhere", "port": 443})
    assert not allows([every_pod], {"ip": "8.8.8.8", "port": 443})  # all pods is not the internet


def test_rule_without_to_opens_port_everywhere() -> None:
    # The istio#27548 pitfall: a `ports`-only rule allows that port to every destination.
    broad = policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 15012}]}]})
    assert allows([broad], {"ip": "203.0.113.7", "port": 15012})


def test_ip_block_except_and_families() -> None:
    internet = policy(
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.169.254/32"]}}]}],
        }
    )
    assert allows([internet], {"ip": "8.8.8.8", "port": 443})
    assert not allows([internet], {"ip": "10.1.2.3", "port": 443})
    assert not allows([internet], {"ip": "169.254.169.254", "port": 80})
    assert not allows([internet], {"ip": "2001:db8::1", "port": 443})
    # Pods match ipBlock only when the caller says which IP they have.
    assert not allows([internet], {"pod_labels": {}, "namespace": "shop", "port": 443})
    assert allows([internet], {"pod_labels": {}, "namespace": "shop", "ip": "192.168.3.4", "port": 443})


def test_port_ranges_named_ports_and_protocols() -> None:
    rules = policy(
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {"ports": [{"protocol": "TCP", "port": 8000, "endPort": 8080}]},
                {"ports": [{"protocol": "TCP", "port": "https"}]},
                {"ports": [{"protocol": "SCTP", "port": 9}]},
                {"ports": [{"protocol": "UDP"}]},
            ],
        }
    )
    assert allows([rules], {"ip": "1.1.1.1", "port": 8080})
    assert not allows([rules], {"ip": "1.1.1.1", "port": 8081})
    assert not allows([rules], {"ip": "1.1.1.1", "port": 443})
    assert allows([rules], {"ip": "1.1.1.1", "port": 8443, "port_name": "https"})
    assert allows([rules], {"ip": "1.1.1.1", "port": 9, "protocol": "sctp"})
    assert allows([rules], {"ip": "1.1.1.1", "port": 12345, "protocol": "UDP"})


@pytest.mark.parametrize(
    ("expressions", "labels", "selected"),
    [
        ([{"key": "tier", "operator": "In", "values": ["web", "api"]}], {"tier": "api"}, True),
        ([{"key": "tier", "operator": "In", "values": ["web"]}], {"tier": "api"}, False),
        ([{"key": "tier", "operator": "In", "values": ["web"]}], {}, False),
        ([{"key": "tier", "operator": "NotIn", "values": ["web"]}], {}, True),
        ([{"key": "tier", "operator": "NotIn", "values": ["web"]}], {"tier": "web"}, False),
        ([{"key": "tier", "operator": "Exists"}], {"tier": ""}, True),
        ([{"key": "tier", "operator": "Exists"}], {}, False),
        ([{"key": "tier", "operator": "DoesNotExist"}], {}, True),
        ([{"key": "tier", "operator": "DoesNotExist"}], {"tier": "x"}, False),
    ],
)
def test_match_expressions_select_pods(expressions: list[dict[str, Any]], labels: dict[str, str], selected: bool) -> None:
    deny_selected = policy({"podSelector": {"matchExpressions": expressions}, "policyTypes": ["Egress"]})
    # A selected pod is isolated with no rules, so "selected" means "denied".
    assert allows([deny_selected], {"ip": "1.1.1.1", "port": 443}, labels=labels) is not selected


def test_namespace_labels_sources() -> None:
    by_team = policy(
        {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "data"}}}]}],
        }
    )
    dest = {"pod_labels": {"app": "pg"}, "namespace": "db", "port": 5432}
    assert not allows([by_team], dest)
    assert allows([by_team], dest, namespace_labels_of={"db": {"team": "data"}})
    assert allows([by_team], dest, namespace_labels_of=lambda ns: {"team": "data"} if ns == "db" else {})
    assert allows([by_team], {**dest, "namespace_labels": {"team": "data"}})


def test_policies_in_other_namespaces_are_ignored() -> None:
    elsewhere = policy({"podSelector": {}, "policyTypes": ["Egress"]}, namespace="billing")
    assert allows([elsewhere], {"ip": "1.1.1.1", "port": 443}, pod_namespace="shop")
    assert not allows([elsewhere], {"ip": "1.1.1.1", "port": 443}, pod_namespace="billing")
    with pytest.raises(ValueError, match="span namespaces"):
        allows([elsewhere, LOCKDOWN], {"ip": "1.1.1.1", "port": 443})


@pytest.mark.parametrize(
    "dest",
    [
        {"port": 443},
        {"ip": "1.1.1.1"},
        {"ip": "1.1.1.1", "port": 0},
        {"ip": "1.1.1.1", "port": 443, "protocol": "ICMP"},
        {"ip": "example.com", "port": 443},
        {"pod_labels": {}, "port": 443},
    ],
)
def test_malformed_destination_raises(dest: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        allows([LOCKDOWN], dest)


def test_invalid_policy_raises_instead_of_guessing() -> None:
    empty_peer = policy({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{}]}]})
    with pytest.raises(ValueError, match="invalid peer"):
        allows([empty_peer], {"ip": "1.1.1.1", "port": 443})


# ------------------------------------------------- Cilium and Sidecar: the evaluators

from oracle import (  # noqa: E402
    cilium_allows,
    cilium_name_matches,
    ciliumnetworkpolicy_problems,
    mesh_allows,
    sidecar_problems,
)


@pytest.mark.parametrize("selector, name, expected", [
    ({"matchName": "api.stripe.com"}, "api.stripe.com", True),
    ({"matchName": "api.stripe.com"}, "API.Stripe.COM.", True),  # case-insensitive, trailing dot
    ({"matchName": "api.stripe.com."}, "api.stripe.com", True),
    ({"matchName": "api.stripe.com"}, "x.api.stripe.com", False),
    ({"matchPattern": "*.example.com"}, "a.example.com", True),  # `*` is one label
    ({"matchPattern": "*.example.com"}, "a.b.example.com", False),
    ({"matchPattern": "*.example.com"}, "example.com", False),
    ({"matchPattern": "**.example.com"}, "a.example.com", True),  # `**.`: any depth (1.19)
    ({"matchPattern": "**.example.com"}, "A.b.C.example.com.", True),
    ({"matchPattern": "**.example.com"}, "example.com", False),  # never the apex
    ({"matchPattern": "**.example.com"}, "badexample.com", False),
    ({"matchPattern": "*.*.example.com"}, "a.b.example.com", True),
    ({"matchPattern": "*"}, "anything.at.all", True),
    ({"matchPattern": "sub*.example.com"}, "subway.example.com", True),
])
def test_cilium_name_matching(selector: dict[str, str], name: str, expected: bool) -> None:
    assert cilium_name_matches(selector, name) is expected


def _cnp(egress: list[dict[str, Any]], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "p", "namespace": "prod"},
            "spec": {"endpointSelector": {"matchLabels": labels or {"app": "web"}}, "egress": egress}}


def test_cilium_policy_samples() -> None:
    fqdn = {"toFQDNs": [{"matchName": "api.stripe.com"}], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}
    assert ciliumnetworkpolicy_problems(_cnp([fqdn])) == []
    mixed = {**fqdn, "toEndpoints": [{}]}
    assert any("toFQDNs cannot be combined" in p for p in ciliumnetworkpolicy_problems(_cnp([mixed])))
    assert any("toEntities" in p for p in ciliumnetworkpolicy_problems(_cnp([{"toEntities": ["world"]}])))
    assert any("toEntities" in p for p in ciliumnetworkpolicy_problems(_cnp([{"toEntities": ["kube-apiserver", "host"]}])))
    apiserver = {"toEntities": ["kube-apiserver"], "toPorts": [{"ports": [{"port": "6443", "protocol": "TCP"}]}]}
    assert ciliumnetworkpolicy_problems(_cnp([apiserver])) == []
    # The nodes (host-network pods): only on ports.
    nodes = {"toEntities": ["host", "remote-node"], "toPorts": [{"ports": [{"port": "9100", "protocol": "TCP"}]}]}
    assert ciliumnetworkpolicy_problems(_cnp([nodes])) == []
    assert any("every port" in p for p in ciliumnetworkpolicy_problems(_cnp([{"toEntities": ["remote-node"]}])))
    for broad in ("cluster", "all", "world", "health", "ingress"):
        assert any("toEntities" in p for p in ciliumnetworkpolicy_problems(_cnp([{**nodes, "toEntities": [broad]}])))
    assert any("schema" in p for p in ciliumnetworkpolicy_problems(_cnp([{**fqdn, "toPorts": [{"ports": [{"port": 443}]}]}])))
    assert any("every name" in p for p in ciliumnetworkpolicy_problems(_cnp([{"toFQDNs": [{"matchPattern": "*"}]}])))


def test_cilium_allows_semantics() -> None:
    fqdn = {"toFQDNs": [{"matchPattern": "**.example.com"}], "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}]}
    cidr = {"toCIDRSet": [{"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}]}
    policy = _cnp([fqdn, cidr])
    web = {"app": "web"}
    assert cilium_allows([policy], web, "prod", host="a.b.example.com", port=443)
    assert not cilium_allows([policy], web, "prod", host="a.b.example.com", port=80)
    assert not cilium_allows([policy], web, "prod", host="example.com", port=443)
    assert cilium_allows([policy], web, "prod", ip="10.2.0.1", port=9)
    assert not cilium_allows([policy], web, "prod", ip="10.1.0.1", port=9)
    assert cilium_allows([policy], {"app": "other"}, "prod", ip="1.1.1.1", port=9)  # not selected: not isolated
    assert cilium_allows([policy], web, "staging", ip="1.1.1.1", port=9)  # another namespace's policy
    world = _cnp([{"toEntities": ["world"]}])
    assert cilium_allows([world], web, "prod", ip="1.1.1.1", port=9)
    same_ns = _cnp([{"toEndpoints": [{}]}])
    assert cilium_allows([same_ns], web, "prod", peer=({"x": "y"}, "prod"), port=1)
    assert not cilium_allows([same_ns], web, "prod", peer=({"x": "y"}, "other"), port=1)


def test_cilium_allows_the_api_server_by_entity_only() -> None:
    web = {"app": "web"}
    entity = _cnp([{"toEntities": ["kube-apiserver"], "toPorts": [{"ports": [{"port": "6443", "protocol": "TCP"}]}]}])
    assert cilium_allows([entity], web, "prod", entity="kube-apiserver", port=6443)
    assert not cilium_allows([entity], web, "prod", entity="kube-apiserver", port=443)
    assert not cilium_allows([entity], web, "prod", ip="203.0.113.7", port=6443)  # not a way out to addresses
    assert not cilium_allows([entity], web, "prod", peer=({"x": "y"}, "prod"), port=6443)
    # Whatever its address, a CIDR rule never selects the API server's identity; world is outside the cluster.
    for other in ({"toCIDRSet": [{"cidr": "0.0.0.0/0"}]}, {"toEntities": ["world"]}, {"toEndpoints": [{}]}):
        assert not cilium_allows([_cnp([other])], web, "prod", entity="kube-apiserver", port=6443), other
    assert cilium_allows([_cnp([{"toEntities": ["all"]}])], web, "prod", entity="kube-apiserver", port=6443)
    assert cilium_allows([entity], {"app": "other"}, "prod", entity="kube-apiserver", port=1)  # not isolated


def test_cilium_allows_the_nodes_by_entity_only() -> None:
    """host (the pod's own node) and remote-node (the others) carry the nodes' host-network
    pods: only toEntities naming each (or all) reaches it; no CIDR, world, cluster peer or
    pod selector does, whatever labels those pods carry."""
    web = {"app": "web"}
    ports = [{"ports": [{"port": "9100", "protocol": "TCP"}]}]
    both = _cnp([{"toEntities": ["host", "remote-node"], "toPorts": ports}])
    for entity in ("host", "remote-node"):
        assert cilium_allows([both], web, "prod", entity=entity, port=9100)
        assert not cilium_allows([both], web, "prod", entity=entity, port=9101)
        assert not cilium_allows([both], web, "prod", entity=entity, port=9100, protocol="UDP")
        for other in ({"toCIDRSet": [{"cidr": "10.0.0.0/8"}]}, {"toEntities": ["world"]}, {"toEndpoints": [{}]},
                      {"toEntities": ["kube-apiserver"]}):
            assert not cilium_allows([_cnp([other])], web, "prod", entity=entity, port=9100), (entity, other)
        assert cilium_allows([_cnp([{"toEntities": ["all"]}])], web, "prod", entity=entity, port=9100)
    only_host = _cnp([{"toEntities": ["host"], "toPorts": ports}])
    assert cilium_allows([only_host], web, "prod", entity="host", port=9100)
    assert not cilium_allows([only_host], web, "prod", entity="remote-node", port=9100)
    assert not cilium_allows([both], web, "prod", ip="10.0.0.7", port=9100)  # not a way out to addresses
    assert not cilium_allows([both], web, "prod", entity="kube-apiserver", port=9100)


def _sidecar(hosts: list[str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {"name": "s", "namespace": "prod"},
            "spec": {"workloadSelector": {"labels": labels or {"app": "web"}}, "egress": [{"hosts": hosts}],
                     "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}


@pytest.mark.parametrize("host, problem", [
    ("prod/api.stripe.com", None), ("*/api.stripe.com", None), ("./*.example.com", None), ("~/*", None),
    ("*/*", None), ("prod/api", "short names"), ("api.stripe.com", "namespace/dnsName"),
    ("prod/*api.example.com", "partial wildcard"), ("Prod_x/api.example.com", "invalid namespace"), ("/a.b", "cannot be empty"),
])
def test_sidecar_webhook_hosts(host: str, problem: str | None) -> None:
    found = sidecar_problems(_sidecar([host]))
    assert (found == []) if problem is None else any(problem in p for p in found), found


def test_sidecar_webhook_listeners_and_schema() -> None:
    doc = _sidecar(["prod/a.example.com"])
    doc["spec"]["egress"].insert(0, {"hosts": ["prod/b.example.com"]})
    assert any("last listener" in p for p in sidecar_problems(doc))
    assert any("at least one host" in p for p in sidecar_problems(_sidecar([])))
    assert any("schema" in p for p in sidecar_problems(_sidecar(["prod/a.example.com"], {"app": "*"})))


def test_mesh_allows_semantics() -> None:
    se = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "w", "namespace": "prod"},
          "spec": {"hosts": ["*.example.com"], "ports": [{"number": 443, "name": "tls-443", "protocol": "TLS"}],
                   "resolution": "NONE", "exportTo": ["."]}}
    web = {"app": "web"}
    assert mesh_allows([se], web, "prod", host="a.b.example.com", port=443)  # no Sidecar: the namespace's view
    assert not mesh_allows([se], web, "prod", host="example.com", port=443)
    assert not mesh_allows([se], web, "other", host="a.example.com", port=443)  # not exported there
    narrowed = [se, _sidecar(["prod/api.example.com"])]
    assert mesh_allows(narrowed, web, "prod", host="api.example.com", port=443)
    assert not mesh_allows(narrowed, web, "prod", host="other.example.com", port=443)
    assert not mesh_allows([se, _sidecar(["other/api.example.com"])], web, "prod", host="api.example.com", port=443)
    assert mesh_allows([se, _sidecar(["*/*.example.com"])], web, "prod", host="x.y.example.com", port=443)
    with pytest.raises(ValueError):
        mesh_allows([se, _sidecar(["prod/a.example.com"]), _sidecar(["prod/b.example.com"])], web, "prod",
                    host="a.example.com", port=443)


def test_mesh_allows_knows_the_api_servers_service() -> None:
    api = "kubernetes.default.svc.cluster.local"
    web = {"app": "web"}
    assert mesh_allows([], web, "prod", host=api, port=443)  # no Sidecar: every Service
    assert not mesh_allows([], web, "prod", host=api, port=6443)  # the Service's port, not its endpoints'
    assert mesh_allows([_sidecar([f"default/{api}"])], web, "prod", host=api, port=443)
    assert not mesh_allows([_sidecar(["prod/a.example.com"])], web, "prod", host=api, port=443)
    assert not mesh_allows([_sidecar([f"prod/{api}"])], web, "prod", host=api, port=443)  # not in prod
    assert not mesh_allows([_sidecar([f"default/{api}"])], web, "prod", host=api, port=443, cluster=())


# ------------------------------------------------- AuthorizationPolicy: rules and admission

AP_OK: dict[str, Any] = {
    "apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy",
    "metadata": {"name": "stripe", "namespace": "shop"},
    "spec": {
        "targetRefs": [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": "stripe"}],
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": ["cluster.local/ns/shop/sa/web"]}}],
                   "to": [{"operation": {"ports": ["443"]}}]}],
    },
}
SE_BOUND: dict[str, Any] = {**SE_OK, "metadata": {"name": "stripe", "namespace": "shop",
                                                 "labels": {"istio.io/use-waypoint": "waypoint"}}}


def _ap(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(AP_OK)
    doc["spec"].update(spec)
    return doc


@pytest.mark.parametrize("doc, problem", [
    (AP_OK, None),
    (_ap(selector={"matchLabels": {"app": "x"}}), "only one of targetRefs or selector"),
    (_ap(targetRefs=[{"group": "networking.istio.io", "kind": "ServiceEntry", "name": "x", "namespace": "o"}]),
     "cross namespace"),
    (_ap(rules=[{"from": [{"source": {}}]}]), "`source` must not be empty"),
    (_ap(rules=[{"from": [{"source": {"principals": [""]}}]}]), "empty value"),
    (_ap(rules=[{"to": [{"operation": {"ports": ["http"]}}]}]), "is not a port"),
    (_ap(action="PERMIT"), "spec.action"),
])
def test_authorizationpolicy_rules(doc: dict[str, Any], problem: str | None) -> None:
    from oracle import authorizationpolicy_problems

    found = authorizationpolicy_problems(doc)
    assert (not found) if problem is None else any(problem in p for p in found), found


def test_ambient_admission_follows_the_allow_rules() -> None:
    from oracle import ambient_admits

    web, worker = "cluster.local/ns/shop/sa/web", "cluster.local/ns/shop/sa/worker"
    assert ambient_admits([SE_BOUND], worker, "api.stripe.com", 443) is True  # no policy: everyone
    assert ambient_admits([SE_BOUND, AP_OK], web, "api.stripe.com", 443) is True
    assert ambient_admits([SE_BOUND, AP_OK], worker, "api.stripe.com", 443) is False
    assert ambient_admits([SE_OK, AP_OK], web, "api.stripe.com", 443) is None  # not bound to a waypoint
    elsewhere = copy.deepcopy(AP_OK)
    elsewhere["metadata"]["namespace"] = "other"  # a policy attaches in its own namespace only
    assert ambient_admits([SE_BOUND, elsewhere], worker, "api.stripe.com", 443) is True

"""Regenerate the golden cases' ``input.yaml`` from the fixture charts (Helm's own engine).

    python tests/cases/build_inputs.py          # rewrite every input built from a chart
    python tests/cases/build_inputs.py policy-  # only the cases whose names start so
    UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py   # then re-record outputs, and review the diff

Each case below names a chart, its values and the Helm generation whose stdin to build.
Cases not listed here keep a hand-written input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from helmstream import helm3_stream, helm4_stream, render_chart, with_bom, with_crlf  # noqa: E402
from ruamel.yaml import YAML  # noqa: E402

CHARTS = HERE.parent.parent / "fixtures" / "charts"

COMPACT_WEB: dict[str, Any] = {
    "web": {"podAnnotations": {
        "helm-egress.io/hosts": "api.stripe.com, *.googleapis.com",
        "helm-egress.io/ports": "443/TLS 8443",
    }},
}
FULL_API: dict[str, Any] = {
    "api": {"annotations": {"helm-egress.io/egress": (
        "- name: orders-db\n  addresses: [10.20.0.0/16]\n  ports: [{number: 5432, protocol: TCP}]\n"
        "- name: stripe\n  hosts: [api.stripe.com]\n  ports: [{number: 443, protocol: tls}]\n"
    )}},
}
IGNORE_AGENT: dict[str, Any] = {"agent": {"podAnnotations": {"helm-egress.io/ignore": "true"}}}
ALL_KINDS: dict[str, Any] = {"debug": {"enabled": True}, "canary": {"enabled": True}}

# The seed-se chart templates its own ServiceEntries from istio.egress (see
# fixtures/charts/README.md): these values feed the chart, not helm-egress.
SEED_CI: dict[str, Any] = YAML(typ="safe").load((CHARTS / "seed-se" / "ci-values.yaml").read_text())
SEED_VARIANTS: dict[str, Any] = {"istio": {"egress": [
    # upper-case, trailing-dot and repeated hosts; the same port listed twice
    {"name": "stripe", "hosts": ["API.Stripe.com", "api.stripe.com.", "api.stripe.com"],
     "ports": [{"number": 443, "protocol": "tls"}, {"number": 443, "protocol": "TLS"}]},
    # lower/mixed-case protocols; HTTP_PROXY gives the invalid port name "http_proxy-3128"
    {"name": "proxy", "hosts": ["proxy.corp.example.com"],
     "ports": [{"number": 3128, "protocol": "http_proxy"}, {"number": 8080, "protocol": "Http"}]},
    # no protocol: the seed renders the port name "%!s(<nil>)-8443" and `protocol:` (null)
    {"name": "legacy", "hosts": ["legacy.example.com"], "ports": [{"number": 8443}]},
    # address only, with the one resolution Istio gives it a meaning with
    {"name": "ledger-db", "addresses": ["10.40.0.15"], "ports": [{"number": 5432, "protocol": "tcp"}],
     "resolution": "NONE"},
]}}
# A real host with CIDR addresses and DNS: Istio rejects it, and no repair keeps both.
SEED_CIDR_DNS: dict[str, Any] = {"istio": {"egress": [
    {"name": "slack", "hosts": ["hooks.slack.com"], "ports": [{"number": 443, "protocol": "TLS"}]},
    {"name": "vpc", "hosts": ["vpc.internal.example.com"], "addresses": ["10.0.0.0/8"],
     "ports": [{"number": 443, "protocol": "TLS"}], "resolution": "DNS"},
]}}
# Address-only entries get the ServiceEntry's own name as host and DNS resolution: the
# name resolves nowhere. Repaired to NONE (CIDR and single address alike), and values
# asking for the same address are served by the repaired entry.
SEED_ADDRESS_ONLY: dict[str, Any] = {"istio": {"egress": [
    {"name": "vpc", "addresses": ["10.0.0.0/8"], "ports": [{"number": 443, "protocol": "TLS"}], "resolution": "DNS"},
    {"name": "ledger", "addresses": ["10.40.0.15", "10.40.0.16"], "ports": [{"number": 5432, "protocol": "TCP"}]},
]}}
SEED_SLACK: dict[str, Any] = {"istio": {"egress": [
    {"name": "slack", "hosts": ["hooks.slack.com"], "ports": [{"number": 443, "protocol": "TLS"}]},
]}}

# Destination policy cases: the shop chart with both annotation styles (values.yaml,
# allowlist.yaml and policy.yaml in each folder say what is declared and approved).
POLICY_SHOP: dict[str, Any] = {**COMPACT_WEB, **FULL_API}

# Egress declared on several workloads: exact and wildcard hosts, addresses, opt-out, in-mesh hosts.
FQDN: dict[str, Any] = {
    "web": {"podAnnotations": {"helm-egress.io/hosts": "api.stripe.com, *.googleapis.com",
                               "helm-egress.io/ports": "443/TLS"}},
    "api": {"podAnnotations": {
        "helm-egress.io/egress": "- name: orders-db\n  addresses: [10.20.0.0/16]\n  ports: [{number: 5432, protocol: TCP}]\n"
                                 "- name: maps\n  hosts: [maps.example.org]\n  ports: [{number: 443, protocol: HTTPS}]\n",
        "helm-egress.io/sidecar-hosts": "payments/api.payments.svc.cluster.local"}},
    "db": {"podAnnotations": {"helm-egress.io/hosts": "backup.example.net", "helm-egress.io/ports": "443/TLS",
                              "helm-egress.io/sidecar": "false"}},
}

CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "values-minimal-helm3": ("minimal", {}, "helm3"),
    "values-minimal-helm4": ("minimal", {}, "helm4"),
    "values-minimal-crlf-bom": ("minimal", {}, "helm3-crlf-bom"),
    "values-shop-all-kinds-helm4": ("shop", ALL_KINDS, "helm4"),
    "annotations-compact-helm4": ("shop", COMPACT_WEB, "helm4"),
    "annotations-full-helm3": ("shop", FULL_API, "helm3"),
    "annotations-and-values-helm4": ("shop", {**COMPACT_WEB, **FULL_API, **IGNORE_AGENT}, "helm4"),
    "annotations-ignore-helm3": ("shop", IGNORE_AGENT, "helm3"),
    "annotations-prefix-override": ("shop", {"web": {"annotations": {
        "egress.acme.io/hosts": "hooks.slack.com", "egress.acme.io/ports": "443/TLS",
        "helm-egress.io/hosts": "left.alone.example.com"}}}, "helm3"),
    "error-annotation-unknown-key": ("shop", {"web": {"podAnnotations": {"helm-egress.io/host": "a.example.com"}}}, "helm4"),
    "error-annotation-bad-ports": ("shop", {
        "web": {"podAnnotations": {"helm-egress.io/hosts": "a.example.com", "helm-egress.io/ports": "443/HTTPX"}},
        "api": {"podAnnotations": {"helm-egress.io/hosts": "b.example.com", "helm-egress.io/ports": "https"}},
        "db": {"podAnnotations": {"helm-egress.io/hosts": "c.example.com", "helm-egress.io/ports": ""}},
        "agent": {"podAnnotations": {"helm-egress.io/ports": "443"}},
    }, "helm3"),
    "error-annotation-bad-yaml": ("shop", {"api": {"annotations": {"helm-egress.io/egress": "- name: x\n  hosts: [a\n"}}}, "helm3"),
    "error-annotation-guardrails": ("shop", {
        "web": {"podAnnotations": {"helm-egress.io/hosts": "*", "helm-egress.io/addresses": "169.254.169.254",
                                   "helm-egress.io/ports": "80/HTTP"}},
        "api": {"annotations": {"helm-egress.io/egress": '[{"name": "x", "hosts": ["10.0.0.1"], "ports": [{"number": 443}]}]'}},
        "db": {"podAnnotations": {"helm-egress.io/ignore": "yes"}},
    }, "helm4"),
    "error-annotation-conflicting-protocols": ("shop", {
        "web": {"podAnnotations": {"helm-egress.io/hosts": "api.stripe.com", "helm-egress.io/ports": "443/TLS"}},
        "api": {"podAnnotations": {"helm-egress.io/hosts": "api.stripe.com", "helm-egress.io/ports": "443/HTTPS"}},
    }, "helm3"),
    # Per-workload FQDN policy and Sidecars.
    "fqdn-cilium-helm3": ("shop", FQDN, "helm3"),
    "fqdn-cilium-sidecar-helm4": ("shop", FQDN, "helm4"),
    "fqdn-sidecar-values-helm3": ("shop", FQDN, "helm3"),
    "fqdn-cilium-ladder-helm4": ("shop", FQDN, "helm4"),
    # A chart without namespaces; a worker whose pods carry the booking pods' labels plus one.
    "fqdn-travel-cilium-sidecar-helm3": ("travel", {}, "helm3"),
    "fqdn-travel-networkpolicy-helm4": ("travel", {}, "helm4"),
    # The chart's own ServiceEntries and NetworkPolicies, normalized.
    "normalize-seed-ci-helm3": ("seed-se", SEED_CI, "helm3"),
    "normalize-seed-ci-helm4": ("seed-se", SEED_CI, "helm4"),
    "normalize-seed-variants-helm4": ("seed-se", SEED_VARIANTS, "helm4"),
    "normalize-seed-variants-crlf-bom": ("seed-se", SEED_VARIANTS, "helm3-crlf-bom"),
    "normalize-seed-quiet-helm4": ("seed-se", SEED_VARIANTS, "helm4"),
    "normalize-seed-api-v1beta1": ("seed-se", SEED_CI, "helm3"),
    "normalize-seed-no-normalize": ("seed-se", SEED_CI, "helm3"),
    "normalize-seed-allowlist-helm3": ("seed-se", SEED_SLACK, "helm3"),
    "normalize-error-seed-cidr-dns": ("seed-se", SEED_CIDR_DNS, "helm3"),
    "normalize-seed-address-only-helm3": ("seed-se", SEED_ADDRESS_ONLY, "helm3"),
    "normalize-seed-check-helm4": ("seed-se", SEED_CI, "helm4"),
    "normalize-seed-address-only-no-normalize": ("seed-se", SEED_ADDRESS_ONLY, "helm3"),
    "normalize-error-seed-ist0177-annotation": ("seed-se", {**SEED_SLACK, "podAnnotations": {
        "helm-egress.io/hosts": "hooks.slack.com", "helm-egress.io/ports": "443/HTTPS"}}, "helm4"),
    "policy-approved-helm3": ("shop", POLICY_SHOP, "helm3"),
    "policy-approved-helm4": ("shop", POLICY_SHOP, "helm4"),
    "policy-error-host-helm3": ("shop", POLICY_SHOP, "helm3"),
    "policy-error-port-helm4": ("shop", POLICY_SHOP, "helm4"),
    "policy-error-wildcard-narrowed-helm3": ("shop", POLICY_SHOP, "helm3"),
    "policy-error-address-range-helm4": ("shop", POLICY_SHOP, "helm4"),
    "policy-error-namespace-helm3": ("shop", POLICY_SHOP, "helm3"),
    "policy-error-annotations-helm4": ("shop", POLICY_SHOP, "helm4"),
    "policy-error-allowlist-helm3": ("shop", POLICY_SHOP, "helm3"),
    "policy-chart-serviceentries-approved-helm4": ("seed-se", SEED_CI, "helm4"),
    "policy-error-chart-serviceentry-helm3": ("seed-se", SEED_CI, "helm3"),
    "policy-error-bad-file": ("minimal", {}, "helm3"),
    "policy-error-approves-everything": ("minimal", {}, "helm4"),
}


def build(chart: str, values: dict[str, Any], shape: str) -> str:
    rendered = render_chart(CHARTS / chart, values, release="demo", namespace="prod")
    if shape == "helm4":
        return helm4_stream(rendered)
    text = helm3_stream(rendered)
    return with_bom(with_crlf(text)) if shape == "helm3-crlf-bom" else text


def main() -> None:
    # Optional arguments: build only the cases whose names start with one of them.
    wanted = sys.argv[1:]
    for name, (chart, values, shape) in CASES.items():
        if wanted and not any(name.startswith(w) for w in wanted):
            continue
        folder = HERE / name
        folder.mkdir(exist_ok=True)
        (folder / "input.yaml").write_bytes(build(chart, values, shape).encode("utf-8"))
        print(f"wrote {folder.name}/input.yaml")


if __name__ == "__main__":
    main()

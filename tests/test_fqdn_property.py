"""Property: under `--network-policy cilium --sidecar`, no workload reaches a host (or a
port) it did not declare, and every workload reaches what it did.

Hypothesis draws a few workloads, each declaring exact and wildcard hosts on some ports
through annotations; the stream goes through the real CLI, and the oracle's independent
Cilium and Istio evaluators answer "may W reach H on P" for the names every workload
declared (wildcards tried one and two labels deep, and at their apex) and for unrelated
names. Host names stay short: Cilium's name pattern backtracks exponentially in Python.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from typer.testing import CliRunner

import oracle
from helmstream import split_documents
from post_renderer.cli import app

PORTS = {443: "TLS", 8443: "HTTPS", 5432: "TCP"}  # one protocol per port: no IST0177 conflicts
LABELS = ("a", "api", "b2")
DOMAINS = ("example.com", "example.org", "a.example.com")
UNRELATED = ("zzz.example.net", "example.net")

host = st.builds(
    lambda wild, label, domain: f"*.{domain}" if wild else f"{label}.{domain}",
    st.booleans(), st.sampled_from(LABELS), st.sampled_from(DOMAINS),
)
declaration = st.tuples(st.lists(host, min_size=1, max_size=3, unique=True),
                        st.lists(st.sampled_from(sorted(PORTS)), min_size=1, max_size=2, unique=True))
workloads = st.lists(declaration, min_size=1, max_size=4)


def stream_of(declared: list[tuple[list[str], list[int]]]) -> str:
    docs = []
    for i, (hosts, ports) in enumerate(declared):
        docs.append(f"""---
# Source: prop/templates/w{i}.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: w{i}
  namespace: prod
  labels:
    app.kubernetes.io/instance: prop
spec:
  selector:
    matchLabels:
      app: w{i}
  template:
    metadata:
      labels:
        app: w{i}
      annotations:
        helm-egress.io/hosts: "{', '.join(hosts)}"
        helm-egress.io/ports: "{' '.join(f'{p}/{PORTS[p]}' for p in ports)}"
    spec:
      containers:
        - name: app
          image: registry.example.com/app:1
""")
    return "".join(docs)


def istio_matches(pattern: str, name: str) -> bool:
    return name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:]))


def candidates(declared: list[tuple[list[str], list[int]]]) -> set[str]:
    names = set(UNRELATED)
    for hosts, _ in declared:
        for h in hosts:
            names |= {f"q.{h[2:]}", f"q.r.{h[2:]}", h[2:]} if h.startswith("*.") else {h}
    return names


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads)
def test_no_workload_reaches_what_it_did_not_declare(declared: list[tuple[list[str], list[int]]]) -> None:
    stream = stream_of(declared)
    env = {k: None for k in os.environ if k.startswith("HELM_EGRESS_")}
    result = CliRunner().invoke(app, ["render", "--network-policy", "cilium", "--sidecar"], input=stream, env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    loader = YAML(typ="safe")
    docs = [d for d in (loader.load(t) for t in split_documents(result.stdout)) if isinstance(d, dict)]
    policies = [d for d in docs if d["kind"] == "CiliumNetworkPolicy"]
    for d in docs:
        assert d["kind"] not in oracle.PROBLEMS or oracle.problems(d) == [], d
    names = candidates(declared)
    for i, (hosts, ports) in enumerate(declared):
        labels = {"app": f"w{i}"}
        for name in names:
            for port in PORTS:
                expected = port in ports and any(istio_matches(h, name) for h in hosts)
                network = oracle.cilium_allows(policies, labels, "prod", host=name, port=port)
                mesh = oracle.mesh_allows(docs, labels, "prod", host=name, port=port)
                assert (network and mesh) == expected, (i, name, port, network, mesh)
                # Neither layer alone opens a host the workload did not declare.
                if not any(istio_matches(h, name) for h in hosts):
                    assert not network and not mesh, (i, name, port)

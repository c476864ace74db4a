"""Every kind helm-egress reads is recognised in every spelling YAML allows (issue 20, item 1).

The text pass reads ``kind:`` off a block-style line; when it cannot be sure it must say
so, and the reading stage parses. These properties write each kind we read in block,
flow, JSON, tagged, indented and quote-tricky spellings, and check the document is read
with the kind a YAML parser gives it, and picked by the stage that needs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from post_renderer import asked, inmesh, kinds
from post_renderer.cli import app
from post_renderer.errors import Location, Problems
from post_renderer.read import POLICY_KINDS, WORKLOAD_KINDS, read
from post_renderer.stream import split, split_bytes
from post_renderer.yamlio import load, safe_loader

EXAMPLES = int(os.environ.get("HELM_EGRESS_FUZZ_EXAMPLES", "100"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    derandomize=os.environ.get("HELM_EGRESS_FUZZ_RANDOM") != "1",
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

POD = {"selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}}}}
# kind -> (apiVersion, spec, extra top-level fields)
OBJECTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "Deployment": ("apps/v1", POD, {}),
    "StatefulSet": ("apps/v1", POD, {}),
    "DaemonSet": ("apps/v1", POD, {}),
    "Job": ("batch/v1", {"template": POD["template"]}, {}),
    "Pod": ("v1", {"containers": []}, {}),
    "ServiceEntry": ("networking.istio.io/v1", {"hosts": ["a.example.com"], "ports": [
        {"number": 443, "name": "tls", "protocol": "TLS"}], "resolution": "DNS"}, {}),
    "NetworkPolicy": ("networking.k8s.io/v1", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}, {}),
    "CiliumNetworkPolicy": ("cilium.io/v2", {"endpointSelector": {"matchLabels": {"app": "w"}}, "egress": [
        {"toFQDNs": [{"matchName": "evil.example.com"}]}]}, {}),
    "CiliumClusterwideNetworkPolicy": ("cilium.io/v2", {"endpointSelector": {}, "egress": [
        {"toFQDNs": [{"matchName": "evil.example.com"}]}]}, {}),
    "Sidecar": ("networking.istio.io/v1", {"workloadSelector": {"labels": {"app": "w"}},
                                           "outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}, {}),
    "Service": ("v1", {"type": "ExternalName", "externalName": "evil.example.com"}, {}),
    "Endpoints": ("v1", {}, {"subsets": [{"addresses": [{"ip": "203.0.113.9"}], "ports": [{"port": 443}]}]}),
    "EndpointSlice": ("discovery.k8s.io/v1", {}, {"addressType": "IPv4", "endpoints": [
        {"addresses": ["203.0.113.9"]}], "ports": [{"port": 443}]}),
    "WorkloadEntry": ("networking.istio.io/v1", {"address": "203.0.113.9", "labels": {"app": "x"}}, {}),
}


def _obj(kind: str) -> dict[str, Any]:
    api, spec, extra = OBJECTS[kind]
    body: dict[str, Any] = {"apiVersion": api, "kind": kind, "metadata": {"name": "x", "labels": {"app": "w"}}}
    if spec:
        body["spec"] = spec
    return {**body, **extra}


def _block(value: Any, indent: int) -> str:
    """Block style, nested collections in flow style (JSON is YAML)."""
    pad = " " * indent
    return "".join(f"{pad}{k}: {json.dumps(v)}\n" for k, v in value.items())


def _spell(kind: str, how: str, noise: str) -> str:
    obj = _obj(kind)
    if how == "json":
        return json.dumps(obj) + "\n"
    if how == "json-pretty":
        return json.dumps(obj, indent=2) + "\n"
    if how == "flow":
        return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in obj.items()) + "}\n"
    if how == "flow-multiline":
        return "{\n" + ",\n".join(f"{k}: {json.dumps(v)}" for k, v in obj.items()) + "\n}\n"
    rest = {k: v for k, v in obj.items() if k != "kind"}
    kind_line = {"block": f"kind: {kind}\n", "tagged": f"kind: !!str {kind}\n", "quoted-key": f'"kind": {kind}\n',
                 "escaped": f'"\\u006bind": {kind}\n', "anchored": f"kind: &k {kind}\n",
                 "continued": f"kind: {kind[:2]}\n  {kind[2:]}\n".replace(f"{kind[:2]}\n  {kind[2:]}", kind)
                 }.get(how)
    if how == "indented":
        return _block({"kind": kind, **rest}, 2)
    if how == "quote-tricky":
        return _block({"apiVersion": obj["apiVersion"]}, 0) + f"{noise}\nkind: {kind}\n" + _block(
            {k: v for k, v in rest.items() if k != "apiVersion"}, 0)
    assert kind_line is not None, how
    return _block({"apiVersion": obj["apiVersion"]}, 0) + kind_line + _block(
        {k: v for k, v in rest.items() if k != "apiVersion"}, 0)


SPELLINGS = ["block", "json", "json-pretty", "flow", "flow-multiline", "tagged", "quoted-key", "escaped",
             "anchored", "indented", "quote-tricky"]
NOISE = st.sampled_from(["note: it's ours", 'note: say "hi', "note: a [b", "note: a {x", "note: a }", "note: 'it''s'",
                         '# "unclosed', "note: >\n  it's\n  ours"])


def _picked(stream_text: str, as_bytes: bool) -> tuple[Any, Any]:
    stream = split_bytes(stream_text.encode()) if as_bytes else split(stream_text)
    documents = read(stream, kinds.NAMES, [inmesh.NEED, asked.NEED])
    return stream, documents


@PROPERTY
@given(kind=st.sampled_from(sorted(OBJECTS)), how=st.sampled_from(SPELLINGS), noise=NOISE,
       as_bytes=st.booleans(), marker=st.sampled_from(["---\n", "--- # c\n", "---\r\n"]))
def test_every_kind_we_read_is_recognised_in_every_spelling(kind: str, how: str, noise: str, as_bytes: bool,
                                                            marker: str) -> None:
    doc_text = _spell(kind, how, noise)
    if marker.endswith("\r\n"):
        doc_text = doc_text.replace("\n", "\r\n")
    # The parser is the reference: the spelling is what we claim it is.
    assert load(safe_loader(), doc_text, Location(file="t"))["kind"] == kind
    stream, documents = _picked("---\nkind: ConfigMap\napiVersion: v1\n" + marker + doc_text, as_bytes)
    doc = stream.documents[1]
    assert doc.kind == kind, (how, doc_text)
    if kind in WORKLOAD_KINDS or kind in POLICY_KINDS:
        assert any(p.doc is doc and p.data["kind"] == kind for p in documents.sources)
    if inmesh.wants(doc) or kind in ("Sidecar", "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy"):
        assert [p.doc for p in documents.wanted(inmesh.wants)] == [doc]
    if kind in asked.CILIUM_KINDS or kind in ("Sidecar", "Service", "Endpoints", "EndpointSlice", "WorkloadEntry"):
        picked = documents.wanted(asked.wants)
        assert [p.doc for p in picked] == [doc]
        # ... and judged: what it opens is asked of the policy.
        requests = asked.from_chart(documents, [], "ns", Problems(), "cluster.local")
        assert requests, (kind, how)


@PROPERTY
@given(kind=st.sampled_from(sorted(OBJECTS)), how=st.sampled_from(SPELLINGS), noise=NOISE)
def test_a_chart_sidecar_is_seen_in_every_spelling(kind: str, how: str, noise: str) -> None:
    stream, documents = _picked("---\n" + _spell("Sidecar", how, noise), as_bytes=False)
    found = inmesh.scan(documents, Problems())
    assert [s.name for s in found.sidecars] == ["x"]


def test_a_kind_continued_on_the_next_line_is_not_read_off_its_first_line() -> None:
    """``kind: Side`` then ``  car`` is the plain scalar "Side car", not Side."""
    for text in ("---\napiVersion: v1\nkind: Side\n  car\n", "---\napiVersion: v1\nkind: Side\n\n  car\n"):
        assert split(text).documents[0].kind is None
        assert split_bytes(text.encode()).documents[0].kind is None
    assert split("---\nkind: Sidecar\n  # a comment\nspec: {}\n").documents[0].kind == "Sidecar"


WORKLOAD = ("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\n  labels: {app.kubernetes.io/instance: r}\n"
            "spec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n")


@pytest.mark.parametrize("how", SPELLINGS)
@pytest.mark.parametrize("kind", ["CiliumNetworkPolicy", "Sidecar", "Service", "WorkloadEntry"])
def test_the_policy_judges_a_chart_document_in_every_spelling(tmp_path: Path, kind: str, how: str) -> None:
    (tmp_path / "v.yaml").write_text("istio:\n  egress: []\n")
    (tmp_path / "p.yaml").write_text("allow:\n  - hosts: [api.example.com]\n    ports: [443]\n")
    result = CliRunner().invoke(app, ["render", "-f", str(tmp_path / "v.yaml"), "--policy", str(tmp_path / "p.yaml")],
                                input=WORKLOAD + "---\n" + _spell(kind, how, "note: it's ours"))
    assert (result.exit_code, result.stdout) == (1, ""), result.stderr
    assert f"document 1 ({kind}" in result.stderr

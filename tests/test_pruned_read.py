"""Workloads are read pruned (only the fields helm-egress uses), with the answers of a whole read.

``yamlio.load_pruned`` builds only ``read.WORKLOAD_FIELDS`` of a workload and checks
the rest; anything it cannot vouch for goes through the whole read. Each test compares
the two on the same input: real charts must give the same inventory, and broken or
hostile documents the same located errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from post_renderer import inmesh, kinds, read, workloads, yamlio
from post_renderer import stream as streams
from post_renderer.cli import app
from post_renderer.errors import Location, Problems

REPO = Path(__file__).resolve().parent.parent
STREAMS = sorted((REPO / "fixtures/corpus").glob("*.yaml")) + sorted((REPO / "tests/cases").glob("*/input.yaml"))


GENERATED_KINDS = kinds.NAMES


def whole_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def whole(yaml: Any, text: str, where: Location, keep: Any, *, line_offset: int = 0) -> Any:
        return yamlio.load_with_key_lines(yaml, text, where, keep, line_offset=line_offset)

    monkeypatch.setattr(yamlio, "load_pruned", whole)


def scan(stream: streams.Stream, problems: Problems) -> workloads.Inventory:
    return workloads.scan(read.read(stream, GENERATED_KINDS), problems)


def pruned(data: Any, keep: Any) -> Any:
    if isinstance(keep, dict) and isinstance(data, list):  # each item pruned alike (containers)
        return [pruned(item, keep) for item in data]
    if not isinstance(keep, dict) or not isinstance(data, dict):
        return data
    return {k: pruned(v, keep[k]) for k, v in data.items() if k in keep}


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_streams_give_the_same_inventory(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = streams.split(path.read_bytes().decode("utf-8", "surrogateescape"))
    fast_problems, slow_problems = Problems(), Problems()
    fast = scan(stream, fast_problems)
    with monkeypatch.context() as m:
        whole_reads(m)
        slow = scan(stream, slow_problems)
    assert vars(fast) == vars(slow)
    assert fast_problems.items == slow_problems.items


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_streams_give_the_same_mesh_objects(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = streams.split(path.read_bytes().decode("utf-8", "surrogateescape"))
    fast_problems, slow_problems = Problems(), Problems()
    fast = inmesh.scan(read.read(stream, GENERATED_KINDS, [inmesh.NEED]), fast_problems)
    with monkeypatch.context() as m:
        whole_reads(m)
        slow = inmesh.scan(read.read(stream, GENERATED_KINDS, [inmesh.NEED]), slow_problems)
    assert vars(fast) == vars(slow)
    assert fast_problems.items == slow_problems.items


@pytest.mark.parametrize("path", sorted((REPO / "fixtures/corpus").glob("*.yaml")), ids=lambda p: p.name)
def test_a_pruned_workload_is_the_whole_one_cut_down(path: Path) -> None:
    loader = yamlio.safe_loader()
    docs = [d for d in streams.split(path.read_text()).documents if d.kind in read.WORKLOAD_KINDS]
    assert docs
    for doc in docs:
        whole, lines = yamlio.load_with_key_lines(loader, doc.parse_text, Location(), read.WORKLOAD_FIELDS)
        pruner = yamlio._Pruner(loader, doc.parse_text)
        fast = pruner.document(read.WORKLOAD_FIELDS)  # no fallback
        assert fast == pruned(whole, read.WORKLOAD_FIELDS)
        assert pruner.key_lines == lines
        for key in ("name", "namespace", "labels", "annotations"):
            assert fast["metadata"].get(key) == whole["metadata"].get(key)
        for key in ("labels", "annotations"):
            assert fast["spec"]["template"]["metadata"].get(key) == whole["spec"]["template"]["metadata"].get(key)


HEAD = "---\n# Source: c/templates/w.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\n  labels: {app.kubernetes.io/instance: r}\n"
SPEC = (
    "spec:\n  selector:\n    matchLabels: {app: w}\n  template:\n    metadata:\n      labels: {app: w}\n"
    "    spec:\n      containers:\n        - name: c\n          image: x\n          env:\n"
    "            - {name: A, value: '1'}\n"
)
VARIANTS = {
    "plain": HEAD + SPEC,
    "duplicate-key-in-pod-spec": HEAD + SPEC + "          image: y\n",
    "duplicate-key-quoted": HEAD + SPEC + '          "image": y\n',
    "duplicate-top-level": HEAD + SPEC + "spec: {}\n",
    "python-tag-in-pod-spec": HEAD + SPEC + "          x: !!python/object/apply:os.system ['true']\n",
    "custom-tag-in-pod-spec": HEAD + SPEC + "          x: !Ref y\n",
    "str-tag": HEAD + SPEC + "          x: !!str 1\n",
    "anchor-and-alias": HEAD + SPEC + "          a: &x [1]\n          b: *x\n",
    "merge-key": HEAD + SPEC + "          base: &b {k: v}\n          m: {<<: *b}\n",
    "bare-merge-key": HEAD + SPEC + "          <<: {k: v}\n",
    "int-keys-that-collide": HEAD + SPEC + "          ports: {1: a, 01: b}\n",
    "bool-key": HEAD + SPEC + "          nodeSelector: {true: a}\n",
    "null-key": HEAD + SPEC + "          ~: a\n",
    "complex-key": HEAD + SPEC + "          ? [a, b]\n          : c\n",
    "syntax-error-in-pod-spec": HEAD + SPEC + "          x: [a, b\n",
    "label-not-a-string": HEAD.replace("labels: {", "labels: {on: true, ") + SPEC,
    "selector-label-bool": HEAD + SPEC.replace("matchLabels: {app: w}", "matchLabels: {app: yes, n: 1}"),
    "labels-numbers-and-dates": HEAD + SPEC.replace("labels: {app: w}", "labels: {app: w, v: 1.5, d: 2024-01-01}"),
    "value-tag-equals": HEAD + SPEC.replace("image: x", "image: =") + "      x: =\n",
    "pod-annotations-that-differ": HEAD.replace("  labels:", "  annotations: {a: '1'}\n  labels:")
    + SPEC.replace("labels: {app: w}", "labels: {app: w}\n      annotations: {a: '2'}"),
    "deep-in-pod-spec": HEAD + SPEC + "          deep: " + "[" * 300 + "]" * 300 + "\n",
    "document-end-marker": HEAD + SPEC + "...\n",
    "flow-style-document": '---\n{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"}, "spec": '
    '{"selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}}}}}\n',
    "template-not-a-mapping": HEAD + "spec:\n  selector: {matchLabels: {app: w}}\n  template: [1, 2]\n",
    "spec-a-scalar": HEAD + "spec: 5\n",
    "cronjob": HEAD.replace("apps/v1", "batch/v1").replace("Deployment", "CronJob")
    + "spec:\n  schedule: '* * * * *'\n  jobTemplate:\n    spec:\n      template:\n        metadata:\n"
    "          labels: {app: w}\n          annotations: {helm-egress.io/hosts: api.example.com, helm-egress.io/ports: '443'}\n"
    "        spec: {containers: [{name: c, image: x}]}\n",
}


def assert_answers_as_a_whole_read(args: list[str], text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> tuple[int, bytes, str]:
        result = CliRunner().invoke(app, ["render", *args], input=text)
        return result.exit_code, result.stdout_bytes, result.stderr

    fast = run()
    with monkeypatch.context() as m:
        whole_reads(m)
        slow = run()
    assert fast == slow
    assert "Traceback" not in fast[2]


@pytest.mark.parametrize("text", VARIANTS.values(), ids=VARIANTS.keys())
def test_odd_workloads_answer_as_a_whole_read_does(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_answers_as_a_whole_read([], text, monkeypatch)


WORKLOAD = HEAD + SPEC.replace("labels: {app: w}", "labels: {app: w}\n      annotations: {helm-egress.io/hosts: "
                                                    "api.example.com, helm-egress.io/ports: '443'}")
SERVICE = "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  labels: {a: b}\nspec:\n  ports: [{port: 80}]\n"
MESH_VARIANTS = {
    "plain": SERVICE,
    "duplicate-key-in-spec": SERVICE + "  ports: []\n",
    "python-tag-in-spec": SERVICE + "  x: !!python/object/apply:os.system ['true']\n",
    "anchor-and-alias": SERVICE + "  a: &x [1]\n  b: *x\n",
    "syntax-error-in-spec": SERVICE + "  x: [a\n",
    "name-not-a-string": SERVICE.replace("name: s", "name: 5"),
    "spec-a-scalar": SERVICE.split("spec:")[0] + "spec: 5\n",
    "sidecar": "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: c}\n"
               "spec: {workloadSelector: {labels: {app: w}}, egress: [{hosts: ['./*']}]}\n",
    "cilium-flow": '---\n{"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "c"}, '
                   '"spec": {"endpointSelector": {"matchLabels": {"app": "w"}}}}\n',
    "document-end-marker": "---\napiVersion: v1\nmetadata: {name: s}\nkind: Service\n...\n",
}


@pytest.mark.parametrize("text", MESH_VARIANTS.values(), ids=MESH_VARIANTS.keys())
@pytest.mark.parametrize("flavour", [["--sidecar"], ["--network-policy", "cilium"]], ids=["sidecar", "cilium"])
def test_odd_mesh_objects_answer_as_a_whole_read_does(text: str, flavour: list[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert_answers_as_a_whole_read(["--release", "r", *flavour], text + WORKLOAD, monkeypatch)


@pytest.mark.parametrize("name", ["duplicate-key-in-pod-spec", "python-tag-in-pod-spec", "syntax-error-in-pod-spec"])
def test_what_is_not_read_is_still_checked(name: str) -> None:
    result = CliRunner().invoke(app, ["render"], input=VARIANTS[name])
    assert (result.exit_code, result.stdout_bytes) == (1, b"")
    assert result.stderr.startswith("error: stdin:") and "document 0 (Deployment/w)" in result.stderr


def test_without_libyaml_every_document_is_read_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = streams.split((REPO / "fixtures/corpus/prometheus.helm3.yaml").read_text())
    expected = scan(stream, Problems())
    monkeypatch.setattr(yamlio, "CParser", None)
    assert vars(scan(stream, Problems())) == vars(expected)

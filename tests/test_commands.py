"""The operator commands — ``schema``, ``diff``, ``explain``, ``check`` — and the two ways
helm-egress is wired into other tools: the pre-commit hook and the helmfile example.

Every stream command runs on both shapes Helm hands a post-renderer (Helm 3 and Helm 4),
built from the fixture charts with Helm's own engine (``tests/helmstream.py``). Expectations
are derived from the inputs — the values files, the chart's rendered templates, the stream —
and, where a command names objects, from what ``render`` writes for the same input.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

from helmstream import HOOK_ANNOTATION, helm3_stream, helm4_stream, render_chart, split_manifests
from post_renderer.cli import app

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / "fixtures" / "charts"
CORPUS = ROOT / "fixtures" / "corpus"
EXAMPLES = ROOT / "examples"
EXAMPLE_VALUES = ROOT / "fixtures" / "values" / "egress-values.yaml"
SEED_VALUES = CHARTS / "seed-se" / "ci-values.yaml"
SCHEMA_FILE = ROOT / "post_renderer" / "schemas" / "istio-egress.schema.json"
HOOKS_FILE = ROOT / ".pre-commit-hooks.yaml"
HELMFILE = EXAMPLES / "helmfile.yaml"
EXECUTABLE = Path(sys.executable).parent / "helm-egress"

RELEASE = "demo"  # every chart stream here is rendered as release demo in namespace prod
NAMESPACE = "prod"
PREFIX = "helm-egress.io"
GENERATED_BY = f"{PREFIX}/generated-by"
WORKLOAD_ANNOTATION = f"{PREFIX}/workload"
DEFAULT_ISTIO_API = "networking.istio.io/v1"
WORKLOAD_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob", "Pod", "Rollout"}
)
SHAPES: dict[str, Callable[[Mapping[str, str]], str]] = {"helm3": helm3_stream, "helm4": helm4_stream}

_YAML = YAML(typ="safe")
_SEPARATOR = re.compile(r"---[ \t]*(#.*)?\r?\n?")
_SUMMARY = re.compile(r"^helm-egress check: (ok|failed): (\d+) error\(s\), (\d+) warning\(s\)$")
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_ANSI = "\x1b["

# Egress declared on the shop chart's workloads through its annotation values: one
# hosts/ports pair on a pod template, an `egress` list on a workload's own metadata, an
# opted-out workload, and a Helm hook that declares egress it must not get.
ANNOTATED = f"""\
web:
  podAnnotations:
    {PREFIX}/hosts: "api.stripe.com"
    {PREFIX}/ports: "443/TLS"
api:
  annotations:
    {PREFIX}/egress: |
      - name: search
        hosts: [search.example.com]
        ports: [{{number: 9200, protocol: HTTPS}}]
      - name: cache
        addresses: [10.1.2.3]
        ports: [{{number: 6379, protocol: Redis}}]
db:
  podAnnotations:
    {PREFIX}/ignore: "true"
preUpgrade:
  podAnnotations:
    {PREFIX}/hosts: "hook.example.com"
    {PREFIX}/ports: "443/TLS"
"""
# A hostname with a bare port: TCP, so the ServiceEntry would match every connection to
# that port (Istio's IST0134).
BARE_TCP_PORT = f"""\
api:
  annotations:
    {PREFIX}/hosts: "legacy.example.com"
    {PREFIX}/ports: "443"
"""
IGNORED_WEB = f"""\
web:
  podAnnotations:
    {PREFIX}/ignore: "true"
"""
TCP_HOSTNAME_VALUES = """\
istio:
  egress:
    - name: ok
      hosts: [ok.example.com]
      ports:
        - {number: 443, protocol: TLS}
    - name: legacy
      hosts: [legacy.example.com]
      ports:
        - {number: 5432, protocol: TCP}
"""
BAD_VALUES = """\
istio:
  egress:
    - name: fine
      hosts: [fine.example.com]
      ports:
        - {number: 443, protocol: TLS}
    - name: typo
      hosts: [typo.example.com]
      ports:
        - {number: 443, protocol: HTTPX}
"""
BAD_PATH = "istio.egress[1].ports[0].protocol"
ALLOWLIST = """\
istio:
  egress:
    - name: slack-everywhere
      hosts: [hooks.slack.com]
      ports:
        - {number: 443, protocol: TLS}
"""


# --------------------------------------------------------------------------- helpers


def line_of(text: str, pattern: str, *, after: int = 0) -> int:
    """1-based number of the first line after line ``after`` that matches ``pattern``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if number > after and re.search(pattern, line):
            return number
    raise AssertionError(f"no line matches {pattern!r}")


def load_yaml(text: str) -> Any:
    return _YAML.load(text)


@cache
def rendered(chart: str, values: str = "") -> Mapping[str, str]:
    """The chart's templates rendered by Helm's engine, as release demo in namespace prod."""
    return render_chart(CHARTS / chart, load_yaml(values) if values else {}, release=RELEASE, namespace=NAMESPACE)


@cache
def chart_stream(chart: str, shape: str, values: str = "") -> str:
    """What Helm 3 or Helm 4 pipes into a post-renderer for this chart and these values."""
    return SHAPES[shape](rendered(chart, values))


def corpus_stream(name: str, shape: str) -> str:
    return (CORPUS / f"{name}.{shape}.yaml").read_text(encoding="utf-8")


def clean_env() -> dict[str, str | None]:
    """No HELM_EGRESS_* option nor Helm 4 plugin context leaks in from the caller's shell."""
    return {k: None for k in os.environ if k.startswith("HELM_EGRESS_") or k.startswith("HELM_PLUGIN")}


def invoke(args: Sequence[str], stream: str | None = None) -> Result:
    """The command as typer runs it; an unexpected exception fails the test with its traceback."""
    return CliRunner().invoke(app, list(args), input=stream, env=clean_env(), catch_exceptions=False)


def run_executable(args: Sequence[str], stream: str | None = None, *, cwd: Path | None = None,
                   command: Sequence[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if v is not None and k not in clean_env()}
    return subprocess.run(
        [*(command or [str(EXECUTABLE)]), *args], input=stream, capture_output=True, text=True,
        cwd=cwd, env=env, timeout=60, check=False,
    )


@dataclass(frozen=True)
class Doc:
    """One document of a stream: where it starts, its exact text, and its data."""

    first_line: int
    text: str
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data.get("kind"))

    @property
    def name(self) -> str:
        return str((self.data.get("metadata") or {}).get("name"))

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def annotations(self) -> dict[str, str]:
        return dict((self.data.get("metadata") or {}).get("annotations") or {})

    @property
    def is_workload(self) -> bool:
        return self.kind in WORKLOAD_KINDS

    @property
    def is_hook(self) -> bool:
        return HOOK_ANNOTATION in self.annotations

    @property
    def is_generated(self) -> bool:
        return GENERATED_BY in self.annotations

    @property
    def egress_annotations(self) -> dict[str, str]:
        """The workload's and its pod template's annotations under the prefix, merged."""
        spec = self.data.get("spec") or {}
        template = (spec.get("jobTemplate") or {}).get("spec", {}).get("template") if self.kind == "CronJob" \
            else spec.get("template")
        pod = ((template or {}).get("metadata") or {}).get("annotations") or {}
        merged = {**self.annotations, **pod}
        return {k: str(v) for k, v in merged.items() if k.startswith(f"{PREFIX}/")}

    def stream_line(self, pattern: str) -> int:
        """The stream line of the first line of this document that matches ``pattern``."""
        return self.first_line + line_of(self.text, pattern) - 1


def documents(stream: str) -> list[Doc]:
    """The stream's documents with the line each starts on (comment-only ones skipped)."""
    out: list[Doc] = []
    lines = stream.splitlines(keepends=True)
    start, chunk = 1, list[str]()
    for number, line in enumerate([*lines, "---\n"], start=1):
        if _SEPARATOR.fullmatch(line):
            data = load_yaml("".join(chunk)) if chunk else None
            if isinstance(data, dict):
                out.append(Doc(start, "".join(chunk), data))
            start, chunk = number + 1, []
        else:
            chunk.append(line)
    return out


def workloads(stream: str) -> list[Doc]:
    return [d for d in documents(stream) if d.is_workload]


def chart_workloads(chart: str, values: str = "") -> dict[str, bool]:
    """Every workload the chart renders, hooks included: ``Kind/name`` -> is a hook."""
    out: dict[str, bool] = {}
    for path, content in rendered(chart, values).items():
        if path.endswith("NOTES.txt") or Path(path).name.startswith("_"):
            continue
        for text in split_manifests(content):
            data = load_yaml(text)
            if isinstance(data, dict) and data.get("kind") in WORKLOAD_KINDS:
                doc = Doc(1, text, data)
                out[doc.ref] = doc.is_hook
    return out


def objects(stream: str) -> dict[tuple[str, str], Doc]:
    """(kind, name) -> document, for a stream render wrote."""
    return {(d.kind, d.name): d for d in documents(stream)}


def render_output(args: Sequence[str], stream: str) -> str:
    result = invoke(["render", *args], stream)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@dataclass(frozen=True)
class Entry:
    """One ``istio.egress`` entry as written, and the line its ``- name:`` sits on."""

    index: int
    name: str
    hosts: tuple[str, ...]
    addresses: tuple[str, ...]
    ports: tuple[tuple[int, str], ...]  # (number, protocol upper-cased)
    line: int


def entries(path: Path) -> list[Entry]:
    text = path.read_text(encoding="utf-8")
    out = []
    for index, raw in enumerate(load_yaml(text)["istio"]["egress"]):
        out.append(Entry(
            index, raw["name"], tuple(raw.get("hosts") or ()), tuple(str(a) for a in raw.get("addresses") or ()),
            tuple((int(p["number"]), str(p["protocol"]).upper()) for p in raw["ports"]),
            line_of(text, rf"^\s*- name: {re.escape(raw['name'])}\s*$"),
        ))
    return out


@dataclass(frozen=True, order=True)
class Declared:
    """A destination as ``explain`` should report it."""

    destination: str
    port: int
    protocol: str
    declared_in: str


def declared_by_values(path: Path, given_as: str) -> set[Declared]:
    return {
        Declared(dest.lower(), number, protocol, f"{given_as}:{e.line} istio.egress[{e.index}]")
        for e in entries(path)
        for dest in (*e.hosts, *e.addresses)
        for number, protocol in e.ports
    }


def declared_by_annotations(doc: Doc) -> set[Declared]:
    """What a workload declares through the annotations, read the way the README describes."""
    found = doc.egress_annotations
    out: set[Declared] = set()
    if f"{PREFIX}/hosts" in found or f"{PREFIX}/addresses" in found:
        key = f"{PREFIX}/hosts" if f"{PREFIX}/hosts" in found else f"{PREFIX}/addresses"
        where = f"annotation {key} (stdin:{doc.stream_line(re.escape(key) + ':')})"
        ports = []
        for item in re.split(r"[,\s]+", found[f"{PREFIX}/ports"].strip()):
            number, _, protocol = item.partition("/")
            ports.append((int(number), (protocol or "TCP").upper()))
        for dest in re.split(r"[,\s]+", found[key].strip()):
            out |= {Declared(dest.lower(), n, p, where) for n, p in ports}
    if f"{PREFIX}/egress" in found:
        line = doc.stream_line(re.escape(f"{PREFIX}/egress") + ":")
        for index, raw in enumerate(load_yaml(found[f"{PREFIX}/egress"])):
            where = f"annotation {PREFIX}/egress[{index}] (stdin:{line})"
            for dest in raw.get("hosts") or raw.get("addresses"):
                out |= {Declared(str(dest).lower(), int(p["number"]), str(p["protocol"]).upper(), where)
                        for p in raw["ports"]}
    return out


def diff_body(patch: str) -> list[str]:
    """The lines of a unified diff after its two header lines."""
    lines = patch.splitlines()
    if not lines:
        return []
    assert lines[0] == "--- stdin" and lines[1].startswith("+++ "), lines[:2]
    return lines[2:]


def removed(patch: str) -> list[str]:
    return [line[1:] for line in diff_body(patch) if line.startswith("-")]


def added(patch: str) -> list[str]:
    return [line[1:] for line in diff_body(patch) if line.startswith("+")]


def apply_patch(before: str, patch: str) -> str:
    """Apply a unified diff of one file to ``before``; every context and removed line must match."""
    source = before.splitlines(keepends=True)
    out: list[str] = []
    position = 0
    for line in patch.splitlines(keepends=True)[2:]:
        if match := _HUNK.match(line):
            start, length = int(match.group(1)), int(match.group(2) or 1)
            index = start - 1 if length else start
            out += source[position:index]
            position = index
        elif line.startswith(("-", " ")):
            assert source[position] == line[1:], (position, source[position], line)
            if line.startswith(" "):
                out.append(line[1:])
            position += 1
        elif line.startswith("+"):
            out.append(line[1:])
        else:
            raise AssertionError(f"unexpected diff line {line!r}")
    return "".join(out + source[position:])


def summary(stdout: str) -> tuple[str, int, int]:
    match = _SUMMARY.match(stdout.splitlines()[-1])
    assert match, stdout
    return match.group(1), int(match.group(2)), int(match.group(3))


def warning_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("warning: ")]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=sorted(SHAPES))
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass(frozen=True)
class Files:
    bad: Path
    tcp_hostname: Path
    allowlist: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("values")
    out = Files(root / "bad-values.yaml", root / "tcp-values.yaml", root / "allowlist.yaml")
    out.bad.write_text(BAD_VALUES, encoding="utf-8")
    out.tcp_hostname.write_text(TCP_HOSTNAME_VALUES, encoding="utf-8")
    out.allowlist.write_text(ALLOWLIST, encoding="utf-8")
    return out


def bad_values_location(path: Path) -> str:
    """``file:line: path`` of the HTTPX protocol in BAD_VALUES, as every command must print it."""
    return f"{path}:{line_of(path.read_text(), r'protocol: HTTPX')}: {BAD_PATH}"


# =========================================================================== schema


@pytest.fixture(scope="module")
def printed_schema() -> dict[str, Any]:
    result = invoke(["schema"])
    assert result.exit_code == 0
    assert result.stderr == ""
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def test_schema_is_the_shipped_draft7_schema(printed_schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator.check_schema(printed_schema)
    assert printed_schema["$schema"].startswith("http://json-schema.org/draft-07/schema")
    assert printed_schema == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def test_schema_from_the_installed_executable() -> None:
    result = run_executable(["schema"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [EXAMPLE_VALUES, SEED_VALUES, *sorted((EXAMPLES / "egress").glob("*.yaml"))],
                         ids=lambda p: p.name)
def test_schema_accepts_the_example_values(printed_schema: dict[str, Any], path: Path) -> None:
    egress = load_yaml(path.read_text(encoding="utf-8"))["istio"]["egress"]
    jsonschema.Draft7Validator(printed_schema).validate(egress)


GOOD_ENTRY: dict[str, Any] = {"name": "stripe", "hosts": ["api.stripe.com"], "ports": [{"number": 443, "protocol": "TLS"}]}
BAD_ENTRIES: dict[str, dict[str, Any]] = {
    "missing ports": {"name": "stripe", "hosts": ["api.stripe.com"]},
    "protocol HTTPX": {**GOOD_ENTRY, "ports": [{"number": 443, "protocol": "HTTPX"}]},
    "unknown key": {**GOOD_ENTRY, "host": "api.stripe.com"},
    "neither hosts nor addresses": {"name": "stripe", "ports": [{"number": 443, "protocol": "TLS"}]},
    "port out of range": {**GOOD_ENTRY, "ports": [{"number": 65536, "protocol": "TLS"}]},
    "name not a DNS label": {**GOOD_ENTRY, "name": "Stripe_API"},
}


@pytest.mark.parametrize("problem", sorted(BAD_ENTRIES))
def test_schema_rejects_bad_entries_and_so_does_check(printed_schema: dict[str, Any], problem: str,
                                                      tmp_path: Path) -> None:
    validator = jsonschema.Draft7Validator(printed_schema)
    assert validator.is_valid([GOOD_ENTRY])
    assert not validator.is_valid([GOOD_ENTRY, BAD_ENTRIES[problem]])
    # The same file render validates with: check refuses the same entry, at entry 1.
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({"istio": {"egress": [GOOD_ENTRY, BAD_ENTRIES[problem]]}}), encoding="utf-8")
    result = invoke(["check", "--no-stream", str(values)])
    assert result.exit_code == 1, result.stdout
    assert "istio.egress[1]" in "\n".join(error_lines(result.stdout))


def test_schema_works_as_a_chart_values_schema(printed_schema: dict[str, Any]) -> None:
    """Embedded under properties.istio.properties.egress of a chart's values.schema.json,
    it validates whole values documents (its own $id keeps its internal $refs resolvable)."""
    wrapper = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"istio": {"type": "object", "properties": {"egress": printed_schema}}},
    }
    jsonschema.Draft7Validator.check_schema(wrapper)
    validator = jsonschema.Draft7Validator(wrapper)
    for path in (EXAMPLE_VALUES, EXAMPLES / "egress" / "shop-values.yaml", CHARTS / "shop" / "values.yaml"):
        validator.validate(load_yaml(path.read_text(encoding="utf-8")))

    bad = load_yaml(BAD_VALUES)
    errors = list(validator.iter_errors(bad))
    assert [list(e.absolute_path) for e in errors] == [["istio", "egress", 1, "ports", 0, "protocol"]]
    assert not validator.is_valid({"istio": {"egress": [BAD_ENTRIES["missing ports"]]}, "other": 1})


# =========================================================================== diff


def test_diff_adds_every_generated_document_and_removes_nothing(shape: str) -> None:
    stream = chart_stream("shop", shape)
    result = invoke(["diff", "-f", str(EXAMPLE_VALUES)], stream)
    assert result.exit_code == 1, result.stderr
    patch = result.stdout
    assert removed(patch) == []

    release_wide = entries(EXAMPLE_VALUES)
    served = [w for w in workloads(stream) if not w.is_hook]
    plus = added(patch)
    assert plus.count("kind: ServiceEntry") == len(release_wide)
    assert plus.count("kind: NetworkPolicy") == len(served)
    names = {line.strip() for line in plus if line.startswith("  name: ")}
    assert names == {f"name: {RELEASE}-{e.name}" for e in release_wide} | {f"name: {w.name}-egress" for w in served}
    # The patch is true: applied to the input it gives exactly what render writes.
    assert apply_patch(stream, patch) == render_output(["-f", str(EXAMPLE_VALUES)], stream)


@pytest.mark.parametrize("source", ["shop", "ingress-nginx", "prometheus", "kube-prometheus-stack"])
def test_diff_without_values_or_annotations_is_empty(shape: str, source: str) -> None:
    stream = chart_stream(source, shape) if source == "shop" else corpus_stream(source, shape)
    result = invoke(["diff"], stream)
    assert (result.exit_code, result.stdout) == (0, "")


def test_diff_colour(shape: str) -> None:
    stream, values = chart_stream("shop", shape), str(EXAMPLE_VALUES)
    coloured = invoke(["diff", "--color", "always", "-f", values], stream)
    assert coloured.exit_code == 1
    assert "\x1b[32m+kind: ServiceEntry\x1b[0m" in coloured.stdout.splitlines()
    plain = invoke(["diff", "--color", "never", "-f", values], stream)
    assert plain.exit_code == 1 and _ANSI not in plain.stdout
    assert re.sub(r"\x1b\[\d+m", "", coloured.stdout) == plain.stdout
    # auto: not a terminal here, nor through a pipe.
    assert invoke(["diff", "-f", values], stream).stdout == plain.stdout
    piped = run_executable(["diff", "-f", values], stream)
    assert (piped.returncode, piped.stdout) == (1, plain.stdout)


def test_diff_bad_values_is_trouble(shape: str, files: Files) -> None:
    result = invoke(["diff", "-f", str(files.bad)], chart_stream("shop", shape))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert error_lines(result.stderr) == result.stderr.splitlines()
    assert f"error: {bad_values_location(files.bad)}: 'HTTPX'" in result.stderr


@pytest.mark.parametrize("with_values", [False, True], ids=["no-values", "ci-values"])
def test_diff_shows_exactly_the_repaired_lines(shape: str, with_values: bool) -> None:
    """The seed chart writes ServiceEntries Istio rejects (resolution DNS on a wildcard host)
    or that send traffic nowhere (DNS for an address-only entry whose host is its own name);
    diff shows those lines, and only those, replaced. Its apiVersion, v1beta1, is served
    and stays."""
    stream = chart_stream("seed-se", shape, SEED_VALUES.read_text())
    chart_ses = [d for d in documents(stream) if d.kind == "ServiceEntry"]
    assert chart_ses, "the seed chart renders its ServiceEntries"
    want_removed, want_added = [], []
    for se in chart_ses:
        spec = se.data["spec"]
        invented = bool(spec.get("addresses")) and spec["hosts"] == [se.name]
        if (any(h.startswith("*") for h in spec["hosts"]) or invented) and spec["resolution"] == "DNS":
            line = se.text.splitlines()[line_of(se.text, r"^\s*resolution: DNS") - 1]
            want_removed.append(line)
            want_added.append(line.replace("DNS", "NONE"))
    assert any("resolution" in line for line in want_removed), "the fixture has a wildcard host with DNS"

    args = ["-f", str(SEED_VALUES)] if with_values else []
    result = invoke(["diff", *args], stream)
    assert result.exit_code == 1, result.stderr
    output = render_output(args, stream)
    assert apply_patch(stream, result.stdout) == output

    assert removed(result.stdout) == want_removed
    # Besides the repairs, only whole generated documents (and separators) are added.
    generated = [d for d in documents(output) if d.is_generated]
    assert bool(generated) == with_values
    separators = output.splitlines().count("---") - stream.splitlines().count("---")
    generated_lines = [line for d in generated for line in d.text.splitlines()] + ["---"] * separators
    assert Counter(added(result.stdout)) == Counter(want_added + generated_lines)


# =========================================================================== explain


@dataclass(frozen=True)
class Explained:
    stream: str
    args: tuple[str, ...]
    json: dict[str, Any]
    yaml: dict[str, Any]
    table: str
    output: dict[tuple[str, str], Doc]  # what render writes for the same input

    @property
    def by_workload(self) -> dict[str, dict[str, Any]]:
        return {w["workload"]: w for w in self.json["workloads"]}


def explained(stream: str, args: Sequence[str]) -> Explained:
    out: dict[str, Any] = {}
    for fmt in ("json", "yaml", "table"):
        result = invoke(["explain", "--output", fmt, *args], stream)
        assert result.exit_code == 0, result.stderr
        out[fmt] = result.stdout
    return Explained(stream, tuple(args), json.loads(out["json"]), load_yaml(out["yaml"]), out["table"],
                     objects(render_output(args, stream)))


@pytest.fixture(scope="module", params=sorted(SHAPES))
def annotated(request: pytest.FixtureRequest) -> Explained:
    """The shop chart with annotation declarations, and the example values on top."""
    return explained(chart_stream("shop", str(request.param), ANNOTATED), ["-f", str(EXAMPLE_VALUES)])


def test_explain_yaml_is_the_json(annotated: Explained) -> None:
    assert annotated.yaml == annotated.json


def test_explain_names_every_workload(annotated: Explained) -> None:
    in_stream = [w.ref for w in workloads(annotated.stream)]
    assert [w["workload"] for w in annotated.json["workloads"]] == in_stream
    chart = chart_workloads("shop", ANNOTATED)
    if annotated.stream.startswith("---"):  # Helm 3 drops hooks before the post-renderer
        assert set(in_stream) == {ref for ref, hook in chart.items() if not hook}
    else:  # Helm 4 sends them
        assert set(in_stream) == set(chart)
        assert any(chart.values()), "the chart has hooks"
    for w in annotated.json["workloads"]:
        assert w["namespace"] == NAMESPACE


def test_explain_destinations_and_where_they_were_declared(annotated: Explained) -> None:
    from_values = declared_by_values(EXAMPLE_VALUES, str(EXAMPLE_VALUES))
    for doc in workloads(annotated.stream):
        report = annotated.by_workload[doc.ref]
        got = {Declared(d["destination"], d["port"], d["protocol"], d["declared_in"]) for d in report["destinations"]}
        if doc.is_hook or doc.egress_annotations.get(f"{PREFIX}/ignore") == "true":
            assert got == set(), doc.ref
        else:
            assert got == from_values | declared_by_annotations(doc), doc.ref
            assert len(got) == len(report["destinations"])


def test_explain_names_objects_render_writes(annotated: Explained) -> None:
    checked = 0
    for ref, report in annotated.by_workload.items():
        if report["policy"] is None:
            continue
        policy = annotated.output[("NetworkPolicy", report["policy"])]
        assert policy.annotations[WORKLOAD_ANNOTATION] == ref
        for d in report["destinations"]:
            assert d["allowed_by"] == report["policy"]
            match = re.match(r"ServiceEntry (\S+) ", d["served_by"] or "")
            assert match, d
            se = annotated.output[("ServiceEntry", match.group(1))]
            spec = se.data["spec"]
            assert d["destination"] in [*spec.get("hosts", []), *spec.get("addresses", [])]
            assert d["port"] in [p["number"] for p in spec["ports"]]
            checked += 1
    assert checked


def test_explain_status_of_workloads_without_policy(annotated: Explained) -> None:
    for doc in workloads(annotated.stream):
        report = annotated.by_workload[doc.ref]
        ignored = doc.egress_annotations.get(f"{PREFIX}/ignore") == "true"
        if doc.is_hook:
            assert report["policy"] is None and "hook" in report["status"].lower(), report
        elif ignored:
            assert report["policy"] is None and f"{PREFIX}/ignore" in report["status"], report
        else:
            assert report["policy"] is not None, report
    policies = {name for kind, name in annotated.output if kind == "NetworkPolicy"}
    assert policies == {r["policy"] for r in annotated.json["workloads"] if r["policy"]}


def test_explain_table(annotated: Explained) -> None:
    destinations, in_cluster = annotated.table.split("\n\n")
    lines = destinations.splitlines()
    assert lines[0].split()[:4] == ["WORKLOAD", "NAMESPACE", "POLICY", "DESTINATION"]
    rows = [(w["workload"], d) for w in annotated.json["workloads"] for d in w["destinations"] or [None]]
    assert len(lines) == 1 + len(rows)
    for line, (workload, d) in zip(lines[1:], rows):
        cells = line.split()
        assert cells[0] == workload
        if d is not None:
            assert d["destination"] in cells and str(d["port"]) in cells and d["protocol"] in cells
            assert d["declared_in"] in line
    # What each workload reaches in the cluster: a table of its own, below.
    lines = in_cluster.splitlines()
    assert lines[0].split() == ["WORKLOAD", "NAMESPACE", "IN", "CLUSTER", "DECLARED", "BY", "LAYERS"]
    reached = [(w["workload"], r) for w in annotated.json["workloads"] for r in w["in_cluster"]]
    assert reached and len(lines) == 1 + len(reached)
    for line, (workload, r) in zip(lines[1:], reached):
        assert line.split()[0] == workload
        assert r["what"] in line and r["declared_by"] in line and "; ".join(r["layers"]) in line


def test_explain_without_values_names_only_annotated_policies(shape: str) -> None:
    stream = chart_stream("shop", shape, ANNOTATED)
    report = explained(stream, [])
    for doc in workloads(stream):
        got = report.by_workload[doc.ref]
        declared = declared_by_annotations(doc)
        if doc.is_hook or not declared:
            assert got["policy"] is None and got["destinations"] == [], got
        else:
            assert {d["declared_in"] for d in got["destinations"]} == {d.declared_in for d in declared}


def test_explain_names_the_chart_serviceentries_and_the_allowlist(shape: str, files: Files) -> None:
    # The seed chart serves every entry of its values with its own ServiceEntries.
    stream = chart_stream("seed-se", shape, SEED_VALUES.read_text())
    chart_ses = {d.name for d in documents(stream) if d.kind == "ServiceEntry"}
    report = explained(stream, ["-f", str(SEED_VALUES)])
    destinations = [d for w in report.json["workloads"] for d in w["destinations"]]
    assert destinations
    for d in destinations:
        match = re.match(r"ServiceEntry (\S+) ", d["served_by"])
        assert match and match.group(1) in chart_ses, d

    # An entry the global allowlist covers is served by the allowlist.
    report = explained(chart_stream("shop", shape), ["-f", str(EXAMPLE_VALUES), "--global-allowlist", str(files.allowlist)])
    allow_hosts = {h for e in entries(files.allowlist) for h in e.hosts}
    for d in (d for w in report.json["workloads"] for d in w["destinations"]):
        assert ("allowlist" in d["served_by"]) == (d["destination"] in allow_hosts), d


BOTH_HOSTS_AND_ADDRESSES = """\
istio:
  egress:
    - name: ledger
      hosts: [ledger.example.com]
      addresses: [10.0.0.5]
      ports:
        - {number: 5432, protocol: TCP}
"""


def test_explain_lists_the_addresses_of_an_entry_with_hosts(shape: str, tmp_path: Path) -> None:
    """An entry may have hosts and addresses; its ServiceEntry carries both and the policy
    opens the addresses, so explain lists both as destinations."""
    values = tmp_path / "values.yaml"
    values.write_text(BOTH_HOSTS_AND_ADDRESSES, encoding="utf-8")
    report = explained(chart_stream("shop", shape), ["-f", str(values)])
    (se,) = [d for (kind, _), d in report.output.items() if kind == "ServiceEntry"]
    assert se.data["spec"]["addresses"] == ["10.0.0.5"]
    expected = declared_by_values(values, str(values))
    assert {d.destination for d in expected} == {"ledger.example.com", "10.0.0.5"}
    served = [w for w in report.json["workloads"] if w["policy"]]
    assert served
    for w in served:  # hooks get no policy, so no destinations
        got = {Declared(d["destination"], d["port"], d["protocol"], d["declared_in"]) for d in w["destinations"]}
        assert got == expected, w["workload"]


# =========================================================================== check


# Hostnames enforced by name: nothing rests on Istio's REGISTRY_ONLY alone; on Cilium
# >= 1.19, where `**.` means any depth (else check warns that older Cilium reads one label).
BY_NAME = ["--network-policy", "cilium", "--cilium-wildcard-depth", "0"]


def test_check_clean_input(shape: str) -> None:
    result = invoke(["check", "-f", str(EXAMPLE_VALUES), *BY_NAME], chart_stream("shop", shape))
    assert result.exit_code == 0
    assert summary(result.stdout) == ("ok", 0, 0)
    assert "apiVersion:" not in result.stdout and "kind:" not in result.stdout
    assert result.stderr == ""


def test_check_bad_values(shape: str, files: Files) -> None:
    result = invoke(["check", "-f", str(files.bad)], chart_stream("shop", shape))
    assert result.exit_code == 1
    assert summary(result.stdout) == ("failed", 1, 0)
    assert error_lines(result.stdout) == [error_lines(result.stdout)[0]]
    assert error_lines(result.stdout)[0].startswith(f"error: {bad_values_location(files.bad)}: 'HTTPX'")


@dataclass(frozen=True)
class WarningCase:
    stream: str
    args: list[str]
    expected: list[tuple[str, ...]]  # per warning, in output order: substrings of its line


def warning_case(name: str, shape: str, files: Files) -> WarningCase:
    values = str(EXAMPLE_VALUES)
    if name == "IST0134 annotation":
        stream = chart_stream("shop", shape, BARE_TCP_PORT)
        (api,) = [w for w in workloads(stream) if f"{PREFIX}/hosts" in w.egress_annotations]
        line = api.stream_line(re.escape(f"{PREFIX}/hosts:"))
        return WarningCase(stream, BY_NAME, [(f"stdin:{line}: document", f"({api.ref})", "TCP port 443", "IST0134")])
    if name == "IST0134 values":
        (legacy,) = [e for e in entries(files.tcp_hostname) if e.name == "legacy"]
        return WarningCase(chart_stream("shop", shape), ["-f", str(files.tcp_hostname), *BY_NAME],
                           [(f"{files.tcp_hostname}:{legacy.line}: istio.egress[{legacy.index}]: TCP port 5432",
                             "IST0134")])
    if name == "chart ServiceEntry exported everywhere":
        stream = re.sub(r"(?m)^  exportTo:\n(?:[ \t]*- .*\n)+", "", chart_stream("seed-se", shape, SEED_VALUES.read_text()))
        ses = [d for d in documents(stream) if d.kind == "ServiceEntry"]
        assert all("exportTo" not in d.data["spec"] for d in ses)
        invented = [d for d in ses if d.data["spec"].get("addresses") and d.data["spec"]["hosts"] == [d.name]
                    and d.data["spec"]["resolution"] == "DNS"]
        # In document order; within one document the repair's warning comes first.
        return WarningCase(stream, [], [w for d in ses for w in (
            ([(f"(ServiceEntry/{d.name}): spec.resolution: ", "own name")] if d in invented else [])
            + [(f"(ServiceEntry/{d.name}): spec.exportTo: ", "every namespace")])])
    if name == "ignored while values apply":
        stream = chart_stream("shop", shape, IGNORED_WEB)
        ignored = [w for w in workloads(stream) if w.egress_annotations.get(f"{PREFIX}/ignore") == "true"]
        return WarningCase(stream, ["-f", values, *BY_NAME],
                           [(f"({w.ref}): values apply", f"{PREFIX}/ignore") for w in ignored])
    if name == "no policies while values apply":
        stream = chart_stream("shop", shape)
        served = [w for w in workloads(stream) if not w.is_hook]
        # Each workload: no policy selects it, and so its hostnames rest on REGISTRY_ONLY alone.
        return WarningCase(stream, ["-f", values, "--network-policy", "none"],
                           [w for s in served for w in [(f"({s.ref}): values apply", "--network-policy none"),
                                                         (f"({s.ref}): hostname egress", "REGISTRY_ONLY alone",
                                                          "--network-policy cilium")]])
    if name == "hostnames on REGISTRY_ONLY alone":
        stream = chart_stream("shop", shape)
        served = [w for w in workloads(stream) if not w.is_hook]
        return WarningCase(stream, ["-f", values],
                           [(f"({w.ref}): hostname egress (hooks.slack.com, *.s3.amazonaws.com, events.pagerduty.com, ...)",
                             "port(s) 443 to any host", "--network-policy cilium") for w in served])
    if name == "covered by the global allowlist":
        covered = [e for e in entries(EXAMPLE_VALUES) if set(e.hosts) & {h for a in entries(files.allowlist) for h in a.hosts}]
        return WarningCase(chart_stream("shop", shape), ["-f", values, "--global-allowlist", str(files.allowlist), *BY_NAME],
                           [(f"{EXAMPLE_VALUES}:{e.line}: istio.egress[{e.index}]: ", "global allowlist")
                            for e in covered])
    raise AssertionError(name)


WARNING_CASES = ["IST0134 annotation", "IST0134 values", "chart ServiceEntry exported everywhere",
                 "ignored while values apply", "no policies while values apply", "covered by the global allowlist",
                 "hostnames on REGISTRY_ONLY alone"]


@pytest.mark.parametrize("case_name", WARNING_CASES)
def test_check_warnings(shape: str, files: Files, case_name: str) -> None:
    case = warning_case(case_name, shape, files)
    assert case.expected

    result = invoke(["check", *case.args], case.stream)
    assert result.exit_code == 0, result.stdout
    found = warning_lines(result.stdout)
    assert len(found) == len(case.expected), found
    for line, expected in zip(found, case.expected):
        assert all(part in line for part in expected), (expected, line)
    assert summary(result.stdout) == ("ok", 0, len(case.expected))
    assert "apiVersion:" not in result.stdout

    strict = invoke(["check", "--strict", *case.args], case.stream)
    assert strict.exit_code == 1
    assert summary(strict.stdout) == ("failed", 0, len(case.expected))
    assert warning_lines(strict.stdout) == found

    as_json = invoke(["check", "--strict", "--format", "json", *case.args], case.stream)
    assert as_json.exit_code == 1
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is False and doc["errors"] == []
    assert len(doc["warnings"]) == len(found)
    for w in doc["warnings"]:
        assert f"warning: {w['where']}: {w['message']}" in found
        assert w["location"]["line"] >= 1


def test_check_json_errors(shape: str, files: Files) -> None:
    result = invoke(["check", "--format", "json", "-f", str(files.bad)], chart_stream("shop", shape))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["warnings"] == []
    (error,) = doc["errors"]
    location = bad_values_location(files.bad)
    assert error["where"] == location
    assert error["location"] == {"file": str(files.bad), "line": int(location.split(":")[1]), "path": BAD_PATH}
    clean = json.loads(invoke(["check", "--format", "json", "-f", str(EXAMPLE_VALUES), *BY_NAME],
                              chart_stream("shop", shape)).stdout)
    assert clean["ok"] is True and clean["errors"] == clean["warnings"] == []


def test_check_no_stream_checks_each_file_alone(files: Files, tmp_path: Path) -> None:
    # Alone, each file is fine or not on its own merits: the good one is not hidden behind
    # the bad one (a list in a later -f would replace it when merged).
    result = invoke(["check", "--no-stream", str(EXAMPLE_VALUES), str(files.bad)], "")
    assert result.exit_code == 1
    errors = error_lines(result.stdout)
    assert errors and all(str(files.bad) in e for e in errors)
    assert str(EXAMPLE_VALUES) not in result.stdout
    assert summary(result.stdout)[:2] == ("failed", len(errors))
    assert invoke(["check", "--no-stream", str(EXAMPLE_VALUES), str(SEED_VALUES)], "").exit_code == 0


def test_check_no_stream_reads_no_stdin(files: Files) -> None:
    """stdin is a pipe nobody ever closes: reading it would hang until the timeout."""
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run(
            [str(EXECUTABLE), "check", "--no-stream", str(EXAMPLE_VALUES), str(files.bad)],
            stdin=read_end, capture_output=True, text=True, timeout=30, check=False,
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 1
    assert str(files.bad) in result.stdout and str(EXAMPLE_VALUES) not in result.stdout


# =========================================================================== bad input


def broken_workload(stream: str) -> tuple[str, int, str]:
    """The stream with a YAML syntax error in its first Deployment: (stream, line, Kind/name)."""
    deployment = next(d for d in documents(stream) if d.kind == "Deployment")
    line = deployment.stream_line(r"^kind: Deployment")
    lines = stream.splitlines(keepends=True)
    lines.insert(line - 1, "metadata: [unclosed\n")
    return "".join(lines), line, deployment.ref


def assert_located_at(message: str, stream_line: int, ref: str) -> None:
    # The parser notices an unclosed flow sequence on the line after it opens.
    match = re.match(r"error: stdin:(\d+): document \d+ \(([^)]+)\): ", message)
    assert match, message
    assert int(match.group(1)) in (stream_line, stream_line + 1), message
    assert match.group(2) == ref, message


@pytest.mark.parametrize("command", ["check", "diff", "explain"])
def test_broken_yaml_in_a_workload(shape: str, command: str) -> None:
    stream, line, ref = broken_workload(chart_stream("shop", shape))
    result = invoke([command, "-f", str(EXAMPLE_VALUES)], stream)
    assert result.exit_code == {"check": 1, "diff": 2, "explain": 1}[command]
    findings, elsewhere = (result.stdout, result.stderr) if command == "check" else (result.stderr, result.stdout)
    assert elsewhere == ""
    (error,) = error_lines(findings)
    assert_located_at(error, line, ref)
    if command == "check":
        assert summary(findings) == ("failed", 1, 0)
    else:
        assert findings.splitlines() == [error]


@pytest.mark.parametrize("command", ["check", "diff", "explain"])
def test_bad_values(shape: str, files: Files, command: str) -> None:
    result = invoke([command, "-f", str(files.bad)], chart_stream("shop", shape))
    assert result.exit_code == {"check": 1, "diff": 2, "explain": 1}[command]
    findings, elsewhere = (result.stdout, result.stderr) if command == "check" else (result.stderr, result.stdout)
    assert elsewhere == ""
    (error,) = error_lines(findings)
    assert error.startswith(f"error: {bad_values_location(files.bad)}: ")


@pytest.mark.parametrize("command", ["check", "diff", "explain"])
def test_bad_input_through_the_executable(command: str, files: Files) -> None:
    stream, line, ref = broken_workload(chart_stream("shop", "helm4"))
    result = run_executable([command], stream)
    assert result.returncode == {"check": 1, "diff": 2, "explain": 1}[command]
    assert "Traceback" not in result.stdout + result.stderr
    (error,) = error_lines(result.stdout if command == "check" else result.stderr)
    assert_located_at(error, line, ref)


# =========================================================================== pre-commit


@pytest.fixture(scope="module")
def hooks() -> list[dict[str, Any]]:
    data = load_yaml(HOOKS_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, list) and data
    return data


def test_pre_commit_hooks_are_well_formed(hooks: list[dict[str, Any]]) -> None:
    for hook in hooks:
        assert {"id", "name", "entry", "language"} <= set(hook), hook
        assert all(isinstance(hook[k], str) and hook[k] for k in ("id", "name", "entry", "language"))
        assert shlex.split(hook["entry"])[0] == "helm-egress"


def test_pre_commit_hook_runs_as_pre_commit_would(hooks: list[dict[str, Any]], tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    good, bad, chart_defaults = deploy / "egress-values.yaml", deploy / "prod-values.yaml", deploy / "values.yaml"
    good.write_text(EXAMPLE_VALUES.read_text(), encoding="utf-8")
    bad.write_text(BAD_VALUES, encoding="utf-8")
    chart_defaults.write_text((CHARTS / "shop" / "values.yaml").read_text(), encoding="utf-8")  # no istio key
    staged = {path: path.relative_to(tmp_path).as_posix() for path in (good, bad, chart_defaults)}

    for hook in hooks:
        if "files" in hook:  # the hook is offered every one of these files
            assert all(re.search(hook["files"], name) for name in staged.values())
        command = [str(EXECUTABLE), *shlex.split(hook["entry"])[1:]]

        def run(*paths: Path) -> subprocess.CompletedProcess[str]:
            return run_executable([staged[p] for p in paths], cwd=tmp_path, command=command)

        assert run(good).returncode == 0
        assert run(good, chart_defaults).returncode == 0
        failed = run(good, bad, chart_defaults)
        assert failed.returncode == 1
        assert f"{staged[bad]}:{line_of(BAD_VALUES, 'HTTPX')}: {BAD_PATH}" in failed.stdout
        assert staged[good] not in failed.stdout and "Traceback" not in failed.stderr


# =========================================================================== helmfile


def option_values(args: Sequence[str], *names: str) -> list[str]:
    """Values of an option in an argument list, in the ``--opt=v``, ``--opt v`` and ``-f v`` forms."""
    out = []
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                out.append(args[i + 1])
            elif arg.startswith(name + "="):
                out.append(arg[len(name) + 1:])
    return out


def merged_values(paths: Sequence[Path]) -> dict[str, Any]:
    """Helm's merge of values files: maps key by key, anything else replaced, later wins."""

    def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in top.items():
            out[key] = merge(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
        return out

    result: dict[str, Any] = {}
    for path in paths:
        result = merge(result, load_yaml(path.read_text(encoding="utf-8")) or {})
    return result


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: Path
    values: tuple[Path, ...]
    renderer: str
    args: tuple[str, ...]


def helmfile_releases() -> Iterator[Release]:
    helmfile = load_yaml(HELMFILE.read_text(encoding="utf-8"))
    defaults = helmfile.get("helmDefaults") or {}
    for release in helmfile["releases"]:
        yield Release(
            name=release["name"],
            namespace=release.get("namespace", "default"),
            chart=(EXAMPLES / release["chart"]).resolve(),
            values=tuple(EXAMPLES / v for v in release.get("values") or ()),
            # helmfile: a release's settings replace helmDefaults', they are not merged.
            renderer=release.get("postRenderer", defaults.get("postRenderer")),
            args=tuple(release.get("postRendererArgs", defaults.get("postRendererArgs") or ())),
        )


@pytest.mark.parametrize("release", list(helmfile_releases()), ids=lambda r: r.name)
def test_helmfile_example(release: Release, shape: str) -> None:
    assert release.renderer == "helm-egress"
    values = merged_values(release.values)
    stream = SHAPES[shape](render_chart(release.chart, values, release=release.name, namespace=release.namespace))
    result = run_executable(release.args, stream, cwd=EXAMPLES)
    assert result.returncode == 0, result.stderr
    out = objects(result.stdout)

    name = (option_values(release.args, "--release") or [release.name])[-1]
    if not option_values(release.args, "--release"):  # render reads the chart's instance label
        labels = {(w.data["metadata"].get("labels") or {}).get("app.kubernetes.io/instance") for w in workloads(stream)}
        assert labels == {name}
    given = [EXAMPLES / v for v in option_values(release.args, "-f", "--values")]
    assert given, "every release passes a values file to the post-renderer"
    served = [w for w in workloads(stream) if not w.is_hook]
    expected_ses = {f"{name}-{e.name}" for e in entries(given[-1])}
    expected_ses |= {w.name for w in served if {f"{PREFIX}/hosts", f"{PREFIX}/addresses"} & set(w.egress_annotations)}
    assert {n for k, n in out if k == "ServiceEntry"} == expected_ses
    assert {n for k, n in out if k == "NetworkPolicy"} == {f"{w.name}-egress" for w in served}
    for doc in out.values():
        if doc.is_generated:
            assert doc.data["metadata"]["namespace"] == release.namespace

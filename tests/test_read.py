"""The reading stage: each document is parsed once, by one reader, and every later stage
takes its data from there; repairs are decided once and replayed on the round-trip copy;
annotation errors point at the line the parser saw the key on."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from post_renderer import kinds, normalize, read, workloads, yamlio
from post_renderer.edits import Edit, Edits
from post_renderer.cli import app
from post_renderer.errors import Location, Problems
from post_renderer.settings import Settings
from post_renderer.stream import split, split_bytes

REPO = Path(__file__).resolve().parent.parent
CASES = REPO / "tests" / "cases"
GENERATED_KINDS = kinds.NAMES
PREFIX = "helm-egress.io"


def render(stdin: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["render", *args], input=stdin.encode())
    return result.exit_code, result.stdout, result.stderr


def workload(annotations: str, *, before: str = "", pod: str = "") -> str:
    """A Deployment with ``annotations`` (block lines at four spaces) on its metadata."""
    return ("---\n# Source: c/templates/web.yaml\napiVersion: apps/v1\nkind: Deployment\n" + before
            + "metadata:\n  name: web\n  annotations:\n" + annotations
            + "spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata:\n      labels: {app: web}\n"
            + pod + "    spec: {containers: [{name: c, image: i}]}\n")


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the ``nth`` line containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[nth - 1]


# --------------------------------------------------------------------------- annotation lines


@pytest.mark.parametrize("flow", [False, True], ids=["pruned", "whole"])
def test_an_unknown_key_that_starts_a_known_one_written_earlier_points_at_itself(flow: bool) -> None:
    # Searching the text for the key found `helm-egress.io/host` inside `helm-egress.io/hosts`.
    text = workload(f"    {PREFIX}/hosts: api.example.com\n    {PREFIX}/ports: '443'\n    {PREFIX}/host: x\n")
    if flow:  # an anchor sends the workload through the whole read, which has no pruning to do
        text = text.replace("  name: web\n", "  name: &n web\n")
    code, _, err = render(text)
    assert code == 1
    assert err.startswith(f"error: stdin:{line_of(text, f'{PREFIX}/host: x')}: document 0 (Deployment/web): "
                          f'metadata.annotations["{PREFIX}/host"]: unknown annotation'), err


def test_a_key_named_earlier_in_a_comment_points_at_the_key() -> None:
    text = workload(f"    # {PREFIX}/ports: set below, once the port is known\n    {PREFIX}/hosts: api.example.com\n"
                    f"    {PREFIX}/ports: 'x'\n")
    code, _, err = render(text)
    assert code == 1
    assert err.startswith(f"error: stdin:{line_of(text, f'{PREFIX}/ports: ', 2)}: "), err


def test_a_pod_template_key_points_at_the_pod_template() -> None:
    # The same key in a label value above: the text search stopped there.
    text = workload("    owner: team\n", before=f"# moved from {PREFIX}/egres\n",
                    pod=f"      annotations:\n        {PREFIX}/egres: x\n")
    code, _, err = render(text)
    assert code == 1
    assert err.startswith(f"error: stdin:{line_of(text, f'{PREFIX}/egres: x')}: document 0 (Deployment/web): "
                          f'spec.template.metadata.annotations["{PREFIX}/egres"]'), err


def test_an_escaped_key_points_at_its_line() -> None:
    # The text never spells the key out, so the search found nothing and fell back to the document.
    text = workload(f'    "{PREFIX}/hos\\x74": x\n')
    code, _, err = render(text)
    assert code == 1
    assert err.startswith(f"error: stdin:{line_of(text, 'hos' + chr(92) + 'x74')}: "), err


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if (p / "input.yaml").exists()))
def test_pruned_and_whole_reads_give_the_same_key_lines(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = split_bytes((CASES / case / "input.yaml").read_bytes())
    fast = read.read(stream, GENERATED_KINDS)
    with monkeypatch.context() as m:
        m.setattr(yamlio, "CParser", None)
        slow = read.read(stream, GENERATED_KINDS)
    assert [p.key_lines for p in fast.sources] == [p.key_lines for p in slow.sources]
    for p in fast.sources:  # each line holds its key
        for path, line in p.key_lines.items():
            assert path[-1] in stream.documents[p.doc.index].raw.splitlines()[line - p.doc.start_line]


# --------------------------------------------------------------------------- one parse per document


class Parses:
    """Counts the reads of each document of the stream (by index), whole or pruned, and the
    round-trip reads of repaired documents."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.whole: Counter[int] = Counter()
        self.pruned: Counter[int] = Counter()
        self.roundtrip = 0
        parse = yamlio._parse

        def counted_parse(yaml: Any, text: str, where: Location, line_offset: int, **kw: Any) -> Any:
            if getattr(yaml, "typ", None) == ["rt"]:
                self.roundtrip += 1
            elif where.file == "stdin" and where.doc_index is not None:
                self.whole[where.doc_index] += 1
            return parse(yaml, text, where, line_offset, **kw)

        def counted_load_pruned(yaml: Any, text: str, where: Location, keep: Any, **kw: Any) -> Any:
            assert where.doc_index is not None
            self.pruned[where.doc_index] += 1
            return real_load_pruned(yaml, text, where, keep, **kw)

        # A pruned read that gives up reads the document whole: counted twice.
        real_load_pruned = yamlio.load_pruned
        monkeypatch.setattr(yamlio, "_parse", counted_parse)
        monkeypatch.setattr(yamlio, "load_pruned", counted_load_pruned)

    @property
    def reads(self) -> Counter[int]:
        return self.whole + self.pruned


MESH_AND_POLICY = """\
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: partner, namespace: prod}
spec: {type: ExternalName, externalName: api.partner.example}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: chart, namespace: prod}
spec: {workloadSelector: {labels: {app: other}}, outboundTrafficPolicy: {mode: REGISTRY_ONLY, x: allow_any}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: chart, namespace: prod}
spec: {endpointSelector: {matchLabels: {app: other}}, egress: [{toFQDNs: [{matchName: api.example.com}]}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: prod}
spec: {hosts: [DB.example.com], ports: [{number: 5432, protocol: tcp}], resolution: DNS, exportTo: ["."]}
"""


def _policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text("allow:\n  - hosts: ['*.example.com', '*.partner.example']\n")
    return str(path)


def test_every_document_any_stage_needs_is_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MESH_AND_POLICY + workload(f"    {PREFIX}/hosts: api.example.com\n    {PREFIX}/ports: 443/TLS\n")
    parses = Parses(monkeypatch)
    code, out, err = render(text, "--release", "r", "--sidecar", "--network-policy", "cilium",
                            "--policy", _policy(tmp_path))
    assert code == 0, err
    assert "repaired" in err
    # Every document is needed by some stage and read once: the workload pruned, the plain
    # Service pruned for the mesh stage, the others whole (the policy stage reads them too).
    assert parses.reads == Counter(range(6))
    assert parses.pruned == Counter({0: 1, 5: 1})
    assert parses.roundtrip == 1  # the repaired ServiceEntry, and it alone


def test_a_render_parses_only_workloads_the_charts_egress_documents_and_what_it_reaches(
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = MESH_AND_POLICY.replace("DB.example.com", "db.example.com").replace("protocol: tcp", "protocol: TCP, name: tcp") + workload(
        f"    {PREFIX}/hosts: api.example.com\n    {PREFIX}/ports: 443/TLS\n")
    parses = Parses(monkeypatch)
    code, _, err = render(text, "--release", "r", "--network-policy", "none")
    assert code == 0, err
    assert (parses.whole, parses.pruned, parses.roundtrip) == (Counter({4: 1}), Counter({5: 1}), 0)
    # A NetworkPolicy opens the release's Services: the in-mesh objects are read, pruned.
    parses = Parses(monkeypatch)
    code, _, err = render(text, "--release", "r")
    assert code == 0, err
    assert (parses.whole, parses.pruned, parses.roundtrip) == (Counter({4: 1}), Counter({0: 1, 1: 1, 2: 1, 3: 1, 5: 1}), 0)


def test_a_document_only_a_later_stage_needs_is_reported_by_it_once(tmp_path: Path) -> None:
    broken = "---\napiVersion: v1\nkind: Service\nmetadata: {name: partner}\nspec: {type: ExternalName, externalName: [\n"
    good = workload(f"    {PREFIX}/hosts: api.example.com\n    {PREFIX}/ports: 443/TLS\n")
    code, _, err = render(broken + good, "--release", "r", "--sidecar", "--policy", _policy(tmp_path))
    assert code == 1
    assert err.count("document 0 (Service/partner): invalid YAML") == 1, err
    # A render that writes no policy and no Sidecar does not need the Service: it passes through unread.
    code, out, err = render(broken + good, "--release", "r", "--network-policy", "none")
    assert code == 0, err
    assert out.startswith(broken)
    # An earlier stage's problems still stop the run before the Service is needed.
    bad_intent = good.replace("443/TLS", "x")
    code, _, err = render(broken + bad_intent, "--release", "r", "--sidecar")
    assert code == 1
    assert "(Service/partner)" not in err and "is not NUMBER" in err


# --------------------------------------------------------------------------- the generated kinds


SERVICEENTRY_OF_OURS = """\
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: old
  annotations: {helm-egress.io/generated-by: helm-egress}
spec: {hosts: [a.example.com], ports: [{number: 443, name: tls-443, protocol: TLS}], resolution: DNS,
       exportTo: ["."], location: MESH_EXTERNAL}
"""


def test_only_the_kinds_passed_as_generated_are_taken_for_earlier_output() -> None:
    stream = split(SERVICEENTRY_OF_OURS)
    assert read.read(stream, frozenset({"ServiceEntry"})).generated == {0}
    documents = read.read(stream, frozenset({"Sidecar"}))
    assert documents.generated == frozenset()
    inventory = workloads.scan(documents, Problems())
    assert [e.kind for e in inventory.existing] == ["ServiceEntry"]  # then it is the chart's own


def test_the_pipeline_passes_the_registry_kinds() -> None:
    docs = [SERVICEENTRY_OF_OURS.replace("ServiceEntry", kind) for kind in sorted(kinds.NAMES)]
    stream = split("".join(docs))
    assert read.read(stream, GENERATED_KINDS).generated == set(range(len(docs)))


def test_a_kind_that_is_not_a_name_is_never_earlier_output() -> None:
    # It was looked up in a set of names: exit 3, unhashable type.
    text = json.dumps({"apiVersion": "v1", "kind": ["ServiceEntry"],
                       "metadata": {"name": "a", "annotations": {f"{PREFIX}/generated-by": "x"}}}) + "\n"
    assert render(text) == (0, text, "")


# --------------------------------------------------------------------------- repairs as edits


def _repairable() -> Iterator[tuple[str, bytes]]:
    for case in sorted(CASES.iterdir()):
        if case.name.startswith(("normalize-", "policy-chart")) and (case / "input.yaml").exists():
            yield case.name, (case / "input.yaml").read_bytes()


@pytest.mark.parametrize(("name", "data"), list(_repairable()), ids=lambda x: x if isinstance(x, str) else "")
def test_a_repair_is_decided_once_and_the_roundtrip_copy_gets_the_same_edits(
        name: str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: Counter[int] = Counter()
    for repair in ("_repair_serviceentry", "_repair_networkpolicy"):
        real = getattr(normalize, repair)

        def counted(edits: Edits, *args: Any, _real: Any = real) -> list[str]:
            calls[args[-1].doc_index] += 1
            return list(_real(edits, *args))

        monkeypatch.setattr(normalize, repair, counted)
    decided: dict[int, Edits] = {}  # by the identity of its list of edits

    class Kept(Edits):
        def __init__(self, data: Any) -> None:
            super().__init__(data)
            decided[id(self.made)] = self

    monkeypatch.setattr(normalize, "Edits", Kept)
    rewritten = []
    real_rewrite = normalize._rewrite

    def rewrite(doc: Any, stream: Any, made: list[Edit], where: Location) -> str:
        text = real_rewrite(doc, stream, made, where)
        # The written text reads back as the plain copy the repairs were decided on.
        assert yamlio.load(yamlio.safe_loader(), text.lstrip("-\r\n"), where) == decided[id(made)].data, name
        rewritten.append(doc.index)
        return text

    monkeypatch.setattr(normalize, "_rewrite", rewrite)
    stream = split_bytes(data)
    problems = Problems()
    inventory = workloads.scan(read.read(stream, GENERATED_KINDS), problems)
    result = normalize.normalize(stream, inventory.existing, Settings(), problems, [])
    assert calls == Counter({e.doc_index: 1 for e in inventory.existing})
    assert sorted(rewritten) == sorted(result.replacements)

"""Hostile and broken input: located errors, exit 1, nothing on stdout, never code, never a hang."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from post_renderer.cli import app

HEAD = "---\n# Source: c/templates/w.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\n"
POD = "spec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n"
BOMB = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10))


def render(stdin: bytes | str, *args: str) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(app, ["render", *args], input=stdin)
    return result.exit_code, result.stdout_bytes, result.stderr


@pytest.fixture
def values(tmp_path: Path) -> str:
    path = tmp_path / "v.yaml"
    path.write_text("istio:\n  egress:\n    - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}\n")
    return str(path)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (HEAD + POD + "  x: !!python/object/apply:os.system ['touch /tmp/pwned']\n", "could not determine a constructor"),
        (HEAD + POD + "  x: !Ref y\n", "could not determine a constructor"),
        (HEAD + POD + "spec: {}\n", "duplicate key"),
        (HEAD + "  labels: [\n", "invalid YAML"),
        (HEAD + POD + "  l0: &l0 [x]\n" + "  " + BOMB.replace("\n", "\n  ").rstrip() + "\n", "too large"),
        (HEAD + POD + "  loop: &a [*a]\n", "too large"),
        (HEAD + POD + "  deep: " + "[" * 5000 + "]" * 5000 + "\n", ""),
    ],
    ids=["python-tag", "custom-tag", "duplicate-key", "syntax", "alias-bomb", "recursive-alias", "deep-nesting"],
)
def test_hostile_workload_is_a_located_error(document: str, message: str, values: str) -> None:
    code, out, err = render(document, "-f", values)
    assert (code, out) == (1, b"")
    assert err.startswith("error: stdin:"), err
    assert "document 0 (Deployment" in err and message in err
    assert "Traceback" not in err
    assert not Path("/tmp/pwned").exists()


def test_documents_not_read_pass_through_even_when_hostile(values: str) -> None:
    """helm-egress only parses what it needs; a ConfigMap's bytes are not its business."""
    odd = b"---\nkind: ConfigMap\napiVersion: v1\ndata:\n  a: !!python/object/apply:os.system ['x']\n  b: \xff\xfe\n"
    good = (HEAD + "  labels: {app.kubernetes.io/instance: r}\n" + POD).encode()
    code, out, err = render(odd + good, "-f", values)
    assert code == 0, err
    assert out.startswith(odd)
    assert out.endswith(good)


def test_invalid_utf8_in_a_workload_is_located(values: str) -> None:
    code, out, err = render(HEAD.encode() + b"  labels: {a: \xff}\n" + POD.encode(), "-f", values)
    assert (code, out) == (1, b"")
    assert err == "error: stdin:7: document 0 (Deployment/w): invalid UTF-8 in a document helm-egress must read\n"


def test_values_alias_bomb_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("l0: &l0 [x]\n" + BOMB + "istio:\n  egress: *l9\n")
    code, out, err = render(HEAD + POD, "-f", str(bomb))
    assert (code, out) == (1, b"")
    assert "too large or too deeply nested" in err


def test_every_problem_is_reported_at_once(values: str) -> None:
    two = HEAD + POD + "spec: {}\n" + HEAD.replace("name: w", "name: v") + "  labels: [\n"
    code, out, err = render(two, "-f", values)
    assert (code, out) == (1, b"")
    assert [line.split(": ")[2] for line in err.splitlines()] == ["document 0 (Deployment/w)", "document 1 (Deployment/v)"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("spec:\n  template:\n    metadata: {}\n", "no labels"),
        ("spec:\n  selector: {}\n  template: {metadata: {labels: {a: b}}}\n", "empty selector"),
        ("spec:\n  selector: {matchLabels: {a: 1}}\n", "matchLabels.a: expected a string, found an integer (1)"),
    ],
)
def test_workloads_a_policy_cannot_select_are_refused(body: str, message: str, values: str) -> None:
    code, out, err = render(HEAD + "  labels: {app.kubernetes.io/instance: r}\n" + body, "-f", values)
    assert (code, out) == (1, b"")
    assert message in err and "document 0 (Deployment/w)" in err

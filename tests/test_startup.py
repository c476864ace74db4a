"""Start-up: each call imports only what it needs.

Helm runs the post-renderer once per release, so import time is paid on every deploy,
and on small charts it is most of the run: jsonschema alone costs more than kustomize's
whole build. These tests pin what each kind of call may import, so a change elsewhere
cannot quietly bring the cost back. Timings live in benchmarks/, not here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import startup_probe
from post_renderer.cli import app

REPO = Path(__file__).resolve().parent.parent
CHART = (REPO / "fixtures/corpus/ingress-nginx.helm3.yaml").read_bytes()
VALUES = REPO / "fixtures/values/egress-values.yaml"
REPAIR_CASE = REPO / "tests/cases/normalize-crlf-helm4"
ANNOTATED_CASE = REPO / "tests/cases/annotations-full-helm3"
OTHER_COMMANDS = ("post_renderer.report",)


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["render", "--help"], ["check", "--help"]],
                         ids=["version", "help", "render-help", "check-help"])
def test_version_and_help_read_no_yaml_and_no_schema(args: list[str], tmp_path: Path) -> None:
    probe = startup_probe.run(args, tmp_path)
    assert probe.code == 0, probe.stderr
    assert probe.stdout
    for heavy in ("jsonschema", "ruamel", "post_renderer.pipeline", *OTHER_COMMANDS):
        assert not probe.imported(heavy), f"{args} imported {heavy}"


def test_render_without_values_imports_no_schema_and_builds_no_roundtrip_reader(tmp_path: Path) -> None:
    probe = startup_probe.run(["render"], tmp_path, stdin=CHART, watch_roundtrip=True)
    assert probe.code == 0, probe.stderr
    assert probe.stdout.startswith(CHART[:200])
    assert not probe.imported("jsonschema")
    assert not probe.roundtrip_built
    for module in OTHER_COMMANDS:
        assert not probe.imported(module)


def test_the_roundtrip_watch_sees_a_rewrite(tmp_path: Path) -> None:
    """The control for the test above: a chart ServiceEntry that needs repair is re-read
    comment-preserving, and the probe notices."""
    args = (REPAIR_CASE / "args").read_text().splitlines()
    probe = startup_probe.run(args, tmp_path, stdin=(REPAIR_CASE / "input.yaml").read_bytes(),
                              watch_roundtrip=True, cwd=REPAIR_CASE)
    assert probe.code == 0, probe.stderr
    assert "repaired" in probe.stderr
    assert probe.roundtrip_built


def test_values_are_validated_once_then_the_cached_verdict_skips_jsonschema(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["render", "-f", str(VALUES), "--release", "demo"]
    cold = startup_probe.run(args, tmp_path, stdin=CHART, env=env, watch_roundtrip=True)
    warm = startup_probe.run(args, tmp_path, stdin=CHART, env=env, watch_roundtrip=True)
    assert cold.code == warm.code == 0, cold.stderr
    assert cold.imported("jsonschema"), "the first run must validate"
    assert not warm.imported("jsonschema")
    assert (warm.stdout, warm.stderr) == (cold.stdout, cold.stderr)
    assert b"kind: ServiceEntry" in warm.stdout
    assert not warm.roundtrip_built and not warm.imported("post_renderer.report")


def test_annotation_entries_are_cached_too(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = (ANNOTATED_CASE / "args").read_text().splitlines()
    stdin = (ANNOTATED_CASE / "input.yaml").read_bytes()
    cold = startup_probe.run(args, tmp_path, stdin=stdin, env=env, cwd=ANNOTATED_CASE)
    warm = startup_probe.run(args, tmp_path, stdin=stdin, env=env, cwd=ANNOTATED_CASE)
    assert cold.code == warm.code == 0, cold.stderr
    assert cold.imported("jsonschema")
    assert not warm.imported("jsonschema")
    assert warm.stdout == cold.stdout == (ANNOTATED_CASE / "expected.yaml").read_bytes()


def test_the_console_entry_flushes_everything_before_it_ends_the_process(tmp_path: Path) -> None:
    """main() skips the interpreter's teardown (os._exit): output must be complete and the
    exit status kept, for output far larger than a pipe's buffer."""
    big = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n" + "".join(
        f"  k{i}: {'x' * 100}\n" for i in range(30_000))
    stdin = big.encode() + CHART
    env_args = ["render", "-f", str(VALUES), "--release", "demo"]
    expected = CliRunner().invoke(app, env_args, input=stdin)
    proc = subprocess.run([sys.executable, "-m", "post_renderer", *env_args], input=stdin, capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == expected.exit_code == 0, proc.stderr
    assert len(proc.stdout) > 3_000_000
    assert proc.stdout == expected.stdout_bytes
    assert proc.stderr.decode() == expected.stderr


def test_a_destination_policy_file_is_cached_too(tmp_path: Path) -> None:
    case = REPO / "tests/cases/policy-approved-helm3"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = (case / "args").read_text().splitlines()
    assert "--policy" in args
    stdin = (case / "input.yaml").read_bytes()
    cold = startup_probe.run(args, tmp_path, stdin=stdin, env=env, cwd=case)
    warm = startup_probe.run(args, tmp_path, stdin=stdin, env=env, cwd=case)
    assert cold.code == warm.code == 0, cold.stderr
    assert cold.imported("jsonschema") and not warm.imported("jsonschema")
    assert warm.stdout == cold.stdout == (case / "expected.yaml").read_bytes()

"""The command line as users meet it: through typer's runner and as the installed executable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from post_renderer import __version__
from post_renderer.cli import app

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "corpus"
VALUES = ROOT / "fixtures" / "values" / "egress-values.yaml"
EXE = shutil.which("helm-egress", path=str(Path(sys.executable).parent)) or shutil.which("helm-egress")

DEPLOYMENT = """\
---
# Source: web/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app.kubernetes.io/instance: shop}
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers: [{name: web, image: nginx}]
"""


def run(*args: str, stdin: str = DEPLOYMENT, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"helm-egress {__version__}"
    result = run("render", "--help")
    assert result.exit_code == 0
    for option in ("--values", "--release", "--network-policy", "--dns-port", "--istiod-port",
                   "--hostname-cidr", "--allow-broad-cidrs", "--istio-api-version", "--error-file"):
        assert option in result.stdout


def test_render_adds_documents_and_keeps_input(tmp_path: Path) -> None:
    result = run("render", "-f", str(VALUES))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.endswith(DEPLOYMENT[4:])  # the input, after the generated documents
    assert result.stdout.count("kind: ServiceEntry") == 4
    assert result.stdout.count("kind: NetworkPolicy") == 1
    assert "name: shop-slack" in result.stdout  # release from the instance label


def test_without_values_nothing_is_added() -> None:
    result = run("render")
    assert result.exit_code == 0 and result.stdout == DEPLOYMENT


@pytest.mark.parametrize(
    "args",
    [
        ["render", "--network-policy", "calico"],
        ["render", "--dns-port", "0"],
        ["render", "--dns-selector", "nolabel"],
        ["render", "--hostname-cidr", "10.0.0.1/8"],
        ["render", "--hostname-cidr", "169.254.0.0/16"],
        ["render", "--istio-api-version", "networking.istio.io/v2"],
        ["render", "-f", "/nonexistent/values.yaml"],
        ["render", "--no-such-option"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""


def test_bad_values_exit_1_with_nothing_on_stdout(tmp_path: Path) -> None:
    bad = tmp_path / "values.yaml"
    bad.write_text("istio:\n  egress:\n    - name: x\n      hosts: ['*']\n      ports: [{number: 443, protocol: TLS}]\n")
    result = run("render", "-f", str(bad))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {bad}:4: istio.egress[0].hosts[0]: '*': a bare '*' host would match every destination; "
        "list the hosts you call\n"
    )


def test_release_is_required_when_it_cannot_be_inferred(tmp_path: Path) -> None:
    stream = DEPLOYMENT.replace("  labels: {app.kubernetes.io/instance: shop}\n", "")
    result = run("render", "-f", str(VALUES), stdin=stream)
    assert result.exit_code == 1 and "pass --release NAME" in result.stderr
    assert run("render", "-f", str(VALUES), "--release", "r1", stdin=stream).stdout.count("name: r1-") == 4


def test_options_reach_the_output() -> None:
    result = run("render", "-f", str(VALUES), "--dns-port", "5353", "--istiod-namespace", "mesh",
                 "--no-same-namespace", "--istio-api-version", "networking.istio.io/v1beta1",
                 "--namespace", "payments")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "port: 5353" in out and "port: 53\n" not in out
    assert "kubernetes.io/metadata.name: mesh" in out
    assert "podSelector: {}" not in out
    assert out.count("apiVersion: networking.istio.io/v1beta1") == 4
    assert out.count("namespace: payments") == 5


def test_environment_variables_set_options() -> None:
    result = run("render", "-f", str(VALUES), env={"HELM_EGRESS_DNS_PORT": "5353", "HELM_EGRESS_NETWORK_POLICY": "none"})
    assert result.exit_code == 0
    assert "kind: NetworkPolicy" not in result.stdout


def test_error_file_for_helm4(tmp_path: Path) -> None:
    """Helm 4 hides stderr: as a plugin, errors also land in a file the user can read."""
    bad = tmp_path / "values.yaml"
    bad.write_text("istio:\n  egress:\n    - name: x\n")
    env = {"HELM_PLUGIN_NAME": "helm-egress", "XDG_STATE_HOME": str(tmp_path / "state")}
    result = run("render", "-f", str(bad), env=env)
    assert result.exit_code == 1
    log = tmp_path / "state" / "helm-egress" / "last-error.log"
    assert "istio.egress[0]: 'ports' is a required property" in log.read_text()
    assert f"errors written to {log}" in result.stderr
    assert run("render", env=env).exit_code == 0
    assert not log.exists()  # a stale error must not mislead the next reader


@pytest.mark.skipif(EXE is None, reason="the package is not installed as an executable")
def test_installed_executable_on_a_real_stream() -> None:
    src = (CORPUS / "ingress-nginx.helm4.yaml").read_bytes()
    proc = subprocess.run([EXE, "render", "-f", str(VALUES)], input=src, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(src[: src.index(b"\n---\n")])  # first document untouched
    assert proc.stdout.count(b"postrenderer.helm.sh/postrender-filename: ingress-nginx/templates/helm-egress-") == 5
    again = subprocess.run([EXE, "render", "-f", str(VALUES)], input=proc.stdout, capture_output=True, timeout=60)
    assert again.stdout == proc.stdout


@pytest.mark.skipif(EXE is None, reason="the package is not installed as an executable")
def test_installed_executable_exit_codes() -> None:
    env = {**os.environ, "HELM_EGRESS_ERROR_FILE": ""}
    usage = subprocess.run([EXE, "render", "--bogus"], input=b"", capture_output=True, timeout=60, env=env)
    assert usage.returncode == 2 and usage.stdout == b""
    bad = subprocess.run([EXE, "render"], input=b"---\nkind: Deployment\napiVersion: apps/v1\nmetadata: [\n",
                         capture_output=True, timeout=60, env=env)
    assert bad.returncode == 1 and bad.stdout == b""
    assert b"Traceback" not in bad.stderr
    assert bad.stderr.startswith(b"error: stdin:5: document 0 (Deployment): invalid YAML")
    module = subprocess.run([sys.executable, "-m", "post_renderer", "--version"], capture_output=True, timeout=60)
    assert module.stdout.decode().strip() == f"helm-egress {__version__}"

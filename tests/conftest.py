"""Make `tests/` importable, so test modules can `import oracle` under any pytest import mode."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import typer.main  # noqa: E402
import typer.testing  # noqa: E402


@pytest.fixture(autouse=True)
def _private_verdict_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the schema-verdict cache (post_renderer/verdicts.py) out of the user's home:
    one folder for the whole session, so tests also run with a warm cache, as Helm does."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    monkeypatch.delenv("HELM_EGRESS_NO_CACHE", raising=False)


@pytest.fixture(scope="module")
def one_command() -> Iterator[None]:
    """Let typer's runner build the click command from `app` once per module.

    ``CliRunner.invoke`` rebuilds it on every call, which costs more (~25 ms) than rendering
    most streams; what the command does is unchanged.
    """
    from post_renderer.cli import app  # imported here: most test modules never need it

    command = typer.main.get_command(app)

    def get_command(typer_app: typer.Typer) -> Any:
        return command if typer_app is app else typer.main.get_command(typer_app)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(typer.testing, "_get_command", get_command)  # the name typer's runner calls
        yield

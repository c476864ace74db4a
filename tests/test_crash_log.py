"""Exit 3, a bug in helm-egress: one line on stderr that names the file holding the
traceback, so the bug can be reported; never a traceback on stderr.

The bug is injected by replacing ``pipeline.analyse``, the one path every stream command
takes. ``invoke`` is called in-process (CliRunner bypasses it and catches the exception
itself), and the console entry once in a real process.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from post_renderer import cli, pipeline

SECRET = "c3VwZXItc2VjcmV0"
STREAM = f"""\
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
data:
  token: {SECRET}
""".encode()
LINE = re.compile(r"helm-egress: unexpected error: TypeError: boom \(traceback in (?P<path>.+)\)")


def _buggy_stage(data: bytes, *args: Any, **kwargs: Any) -> Any:
    held = data.decode()  # a local holding Secret data: it must not reach the log
    raise TypeError("boom" if held else "empty")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("HELM_PLUGIN_NAME", raising=False)
    monkeypatch.delenv("HELM_EGRESS_ERROR_FILE", raising=False)
    return tmp_path / "state" / "helm-egress"


def crash(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str,
          error: Exception | None = None) -> tuple[int, str, str]:
    """Run ``helm-egress ARGS`` in-process with a stage that raises."""
    if error is None:
        monkeypatch.setattr(pipeline, "analyse", _buggy_stage)
    else:
        def raising(*_: Any, **__: Any) -> Any:
            raise error

        monkeypatch.setattr(pipeline, "analyse", raising)
    monkeypatch.setattr(sys, "argv", ["helm-egress", *args])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(STREAM)))
    code = cli.invoke()
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [["render"], ["check"], ["diff"], ["explain", "-o", "json"]])
def test_exit_3_names_the_file_that_holds_the_traceback(
    command: list[str], state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = crash(monkeypatch, capsys, *command, "--release", "demo")
    assert (code, out) == (3, "")
    assert err.count("\n") == 1, err
    found = LINE.fullmatch(err.rstrip("\n"))
    assert found, err
    log = Path(found["path"])
    assert log.parent == state and re.fullmatch(r"crash-\d{8}T\d{6}\.\d{6}Z-\d+\.log", log.name)
    text = log.read_text()
    assert text.startswith("# helm-egress ")
    assert f"# helm-egress {' '.join(command)} --release demo\n" in text
    assert "Traceback (most recent call last):" in text and "in _buggy_stage" in text
    assert text.endswith("TypeError: boom\n")
    assert SECRET not in text  # frames only: no local variables


def test_each_failure_keeps_its_own_file(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Renders run side by side (helmfile): one failure must not overwrite another's log."""
    first = crash(monkeypatch, capsys, "render")[2]
    second = crash(monkeypatch, capsys, "render")[2]
    paths = {LINE.fullmatch(e.rstrip("\n"))["path"] for e in (first, second)}  # type: ignore[index]
    assert len(paths) == 2 and all(Path(p).is_file() for p in paths)


def test_a_message_with_a_line_break_stays_one_line(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = crash(monkeypatch, capsys, "render", error=TypeError("two\nlines"))
    assert code == 3 and err.count("\n") == 1
    assert err.startswith("helm-egress: unexpected error: TypeError: two\\nlines (traceback in ")


def test_an_unwritable_state_directory_is_said_in_the_same_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "state"
    blocked.write_text("a file where the state directory would be\n")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocked))
    code, out, err = crash(monkeypatch, capsys, "render")
    assert (code, out) == (3, "")
    assert err == (f"helm-egress: unexpected error: TypeError: boom (the traceback could not be saved: "
                   f"{blocked / 'helm-egress'}: Not a directory)\n")


def test_a_relative_xdg_state_home_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The XDG spec: a relative path is invalid and ignored; ~/.local/state is used."""
    home = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", "relative")
    code, _, err = crash(monkeypatch, capsys, "render")
    assert code == 3
    path = Path(LINE.fullmatch(err.rstrip("\n"))["path"])  # type: ignore[index]
    assert path.parent == home / ".local" / "state" / "helm-egress" and path.is_file()
    assert not (tmp_path / "relative").exists()


def test_a_relative_xdg_state_home_is_ignored_for_the_helm4_error_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "values.yaml"
    bad.write_text("istio:\n  egress:\n    - name: x\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", "relative")
    monkeypatch.setenv("HELM_PLUGIN_NAME", "helm-egress")
    monkeypatch.delenv("HELM_EGRESS_ERROR_FILE", raising=False)
    monkeypatch.setattr(sys, "argv", ["helm-egress", "render", "-f", str(bad)])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(STREAM)))
    assert cli.invoke() == 1
    log = home / ".local" / "state" / "helm-egress" / "last-error.log"
    assert f"errors written to {log}\n" in capsys.readouterr().err
    assert "'ports' is a required property" in log.read_text()
    assert not (tmp_path / "relative").exists()


def test_the_console_entry_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    script = ("import sys\nfrom post_renderer import pipeline\n"
              "def bug(*a, **k): raise TypeError('boom')\n"
              "pipeline.analyse = bug\nsys.argv = ['helm-egress', 'render']\n"
              "from post_renderer.__main__ import main\nmain()\n")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    env.pop("HELM_PLUGIN_NAME", None)
    proc = subprocess.run([sys.executable, "-c", script], input=STREAM, capture_output=True, env=env,
                          timeout=60, check=False)
    assert (proc.returncode, proc.stdout) == (3, b"")
    err = proc.stderr.decode()
    assert "Traceback" not in err and err.count("\n") == 1, err
    found = LINE.fullmatch(err.rstrip("\n"))
    assert found and Path(found["path"]).parent == tmp_path / "state" / "helm-egress", err
    assert "TypeError: boom" in Path(found["path"]).read_text()

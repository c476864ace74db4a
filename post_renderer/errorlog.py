"""What a failed run leaves for its reader besides stderr: the error file (Helm 4 hides a
post-renderer's stderr) and, after an unexpected failure (exit 3), its traceback.

Both live in the state directory, ``$XDG_STATE_HOME/helm-egress`` (by default
``~/.local/state/helm-egress``).
"""

from __future__ import annotations

import os
import re
import stat
import sys
import time
from pathlib import Path

import typer

from post_renderer import __version__
from post_renderer.errors import EgressError, one_line
from post_renderer.terminal import say
from post_renderer.xdg import base_dir

# The first line of every error file helm-egress writes; only such a file is ever
# replaced or removed by it.
ERROR_FILE_HEADER = "# helm-egress "
_OWN_FIRST_LINE = re.compile(re.escape(ERROR_FILE_HEADER).encode() + rb"[^\s]+ failed at [-+:T0-9]+\n")


def state_dir() -> Path | None:
    """helm-egress's folder in the XDG state directory; None when there is no home."""
    base = base_dir("XDG_STATE_HOME", os.path.join(".local", "state"))
    return Path(base) / "helm-egress" if base else None


def default_error_file() -> Path | None:
    if "HELM_PLUGIN_NAME" not in os.environ:
        return None
    state = state_dir()
    return state / "last-error.log" if state else None


def fail(error: EgressError, error_file: Path | None, exit_code: int = 1) -> typer.Exit:
    """Print every problem, in input order, and keep them in the error file if there is one."""
    ordered = sorted(error.problems, key=lambda p: (p.location.file or "", p.location.doc_index or 0, p.location.line or 0))
    lines = [f"error: {p.render()}" for p in ordered]
    for line in lines:
        say(line)
    target = error_file or default_error_file()
    if target is not None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        report = f"{ERROR_FILE_HEADER}{__version__} failed at {stamp}\n" + "\n".join(lines) + "\n"
        if _write_error_file(target, report):
            say(f"helm-egress: errors written to {target}")
        else:
            say(f"helm-egress: errors not written to {target}: it exists and is not a helm-egress error file")
    return typer.Exit(exit_code)


def clear_error_file(error_file: Path | None) -> None:
    """After a success, remove the last error report: only a file helm-egress wrote."""
    target = error_file or default_error_file()
    if target is not None and _ours(target):
        try:
            target.unlink()
        except OSError:
            pass


def _ours(target: Path) -> bool:
    """Whether ``target`` is a regular file helm-egress wrote (it starts with our header)."""
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        # The whole first line as fail() writes it, not only its start: a user's own notes
        # that begin with "# helm-egress " are not a report to replace or remove.
        return _OWN_FIRST_LINE.match(os.read(fd, 256)) is not None
    finally:
        os.close(fd)


def _write_error_file(target: Path, report: str) -> bool:
    """Write the report to a new file, or over an earlier report; never over anything else."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not _ours(target):
                return False
            fd = os.open(target, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(report)
        return True
    except OSError:
        return False


def crash_line(error: Exception) -> str:
    """The one line an unexpected failure prints; its traceback goes to a file it names,
    for the bug report. Called while ``error`` is being handled."""
    try:
        where = f"traceback in {_save_traceback(error)}"
    except (OSError, ValueError) as e:
        why = f"{e.filename}: {e.strerror}" if isinstance(e, OSError) and e.filename and e.strerror else str(e)
        where = f"the traceback could not be saved: {why}"
    return one_line(f"helm-egress: unexpected error: {type(error).__name__}: {error} ({where})")


def _save_traceback(error: Exception) -> Path:
    """Write the traceback to a new file of its own and return its path.

    One file per failure, never replaced: with several renders at once (helmfile), a single
    last-crash file could be overwritten by another run's failure before anyone reads the
    path the first one printed. Failures are bugs, so the files stay few. Frames only, no
    local variables: rendered manifests can hold Secret data."""
    import shlex
    import traceback

    state = state_dir()
    if state is None:
        raise OSError("no home directory and no absolute $XDG_STATE_HOME")
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
    target = state / f"crash-{stamp}-{os.getpid()}.log"
    report = (f"# helm-egress {__version__} crashed at {stamp} (Python {sys.version.split()[0]}, {sys.platform})\n"
              f"# {shlex.join(['helm-egress', *sys.argv[1:]])}\n" + "".join(traceback.format_exception(error)))
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
        f.write(report)
    return target

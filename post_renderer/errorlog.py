"""What a failed run leaves for its reader besides stderr: the error file, since Helm 4
hides a post-renderer's stderr.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

import typer

from post_renderer import __version__
from post_renderer.errors import EgressError
from post_renderer.terminal import say

# The first line of every error file helm-egress writes; only such a file is ever
# replaced or removed by it.
ERROR_FILE_HEADER = "# helm-egress "
_OWN_FIRST_LINE = re.compile(re.escape(ERROR_FILE_HEADER).encode() + rb"[^\s]+ failed at [-+:T0-9]+\n")


def default_error_file() -> Path | None:
    if "HELM_PLUGIN_NAME" not in os.environ:
        return None
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "helm-egress" / "last-error.log"


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


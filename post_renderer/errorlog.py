"""What a failed run leaves for its reader besides stderr: the error file (Helm 4 hides a
post-renderer's stderr) and, after an unexpected failure (exit 3), its traceback.

Both live in the state directory, ``$XDG_STATE_HOME/helm-egress`` (by default
``~/.local/state/helm-egress``).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import time
from pathlib import Path

import typer

from post_renderer import __version__
from post_renderer.errors import EgressError, one_line
from post_renderer.terminal import read_bounded, say
from post_renderer.xdg import base_dir

# An error file is ours only when all of it is exactly what ``report`` writes: this
# header line, then one or more lines each as a failure prints them. A user's notes that
# merely start like one (the header alone, or a header and their own lines) are not a
# report to replace or remove.
ERROR_FILE_HEADER = "# helm-egress "
_STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
_OWN_REPORT = re.compile(
    re.escape(ERROR_FILE_HEADER).encode()
    + rb"[0-9][0-9A-Za-z.+!-]* failed at [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{4}\n"
    + rb"(?:(?:error|hint|helm-egress): [^\x00-\x1f\x7f]+\n)+\Z"
)
# The notes of a successful run, kept beside the error file: Helm 4 shows none of a
# post-renderer's stderr, and a note can matter (the Sidecars' namespace fallback).
_OWN_NOTES = re.compile(
    re.escape(ERROR_FILE_HEADER).encode()
    + rb"[0-9][0-9A-Za-z.+!-]* notes at [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{4}\n"
    + rb"(?:note: [^\x00-\x1f\x7f]+\n)+\Z"
)
NOTES_FILE = "last-notes.log"
# Reports stay far below this; a larger file is not one, and is not read whole.
_MAX_REPORT_BYTES = 64 * 1024 * 1024
# Never wait on the path: a FIFO or device there must not block the run, and is refused
# once open; a symbolic link is not followed.
_OPEN_FLAGS = (getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0))


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
    report(lines, error_file)
    return typer.Exit(exit_code)


def report(lines: list[str], error_file: Path | None) -> None:
    """Keep a failure's lines (already printed) in the error file, replacing the report of
    an earlier failure, and say where they went or why they could not go there."""
    target = error_file or default_error_file()
    if target is None:
        return
    stamp = time.strftime(_STAMP_FORMAT)
    body = "".join(f"{one_line(line)}\n" for line in lines or ["error: failed"])
    why = _write_error_file(target, f"{ERROR_FILE_HEADER}{__version__} failed at {stamp}\n{body}")
    say(f"helm-egress: errors written to {target}" if why is None else f"helm-egress: errors not written to {target}: {why}")


def clear_error_file(error_file: Path | None, own: re.Pattern[bytes] = _OWN_REPORT) -> None:
    """After a success, remove the last error report: only a file helm-egress wrote."""
    target = error_file or default_error_file()
    if target is None:
        return
    try:
        fd = os.open(target, os.O_RDONLY | _OPEN_FLAGS)
    except OSError:
        return
    try:
        ours = _not_ours(fd, own) is None
    finally:
        os.close(fd)
    if ours:
        try:
            target.unlink()
        except OSError:
            pass


def keep_notes(notes: list[str], error_file: Path | None) -> None:
    """After a success, keep its notes in ``last-notes.log`` beside the error file (where
    there is one: a Helm plugin, or --error-file), or remove an earlier run's."""
    errors = error_file or default_error_file()
    if errors is None:
        return
    target = errors.with_name(NOTES_FILE)
    if notes:
        stamp = time.strftime(_STAMP_FORMAT)
        body = "".join(f"{one_line('note: ' + note)}\n" for note in notes)
        _write_error_file(target, f"{ERROR_FILE_HEADER}{__version__} notes at {stamp}\n{body}", _OWN_NOTES)
    else:
        clear_error_file(target, _OWN_NOTES)


def _not_ours(fd: int, own: re.Pattern[bytes] = _OWN_REPORT) -> str | None:
    """Why the open file ``fd`` is not a file helm-egress wrote (``own``: its whole
    content), or None when it is one."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return "it is not a regular file"
    with open(fd, "rb", closefd=False) as f:
        content = read_bounded(f, _MAX_REPORT_BYTES)
    if content is None or own.match(content) is None:
        return "it exists and is not a helm-egress error file"
    return None


def _write_error_file(target: Path, report: str, own: re.Pattern[bytes] = _OWN_REPORT) -> str | None:
    """Write the report to a new file, or over an earlier report; never over anything
    else. None when written, else why not."""
    try:
        parent = target.parent
        if not parent.is_dir():
            if os.path.lexists(parent):
                return f"{parent}: {os.strerror(errno.ENOTDIR)}"
            parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o644)
        except FileExistsError:
            try:
                fd = os.open(target, os.O_RDWR | _OPEN_FLAGS)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    return "it is a symbolic link, which helm-egress does not follow"
                if e.errno == errno.ENXIO:
                    return "it is not a regular file"
                raise
            why = _not_ours(fd, own)
            if why is not None:
                os.close(fd)
                return why
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(fd, "wb") as f:
            f.write(report.encode("utf-8", errors="backslashreplace"))
        return None
    except OSError as e:
        return f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)


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

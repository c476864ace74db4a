"""The process's own streams and the files named on the command line: stdin read bounded,
values files read (never stdin itself), stdout written whole, one line at a time on stderr.

Stages never touch a stream; the commands hand them bytes and print what they return.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from post_renderer.errors import EgressError, Location

if TYPE_CHECKING:
    from post_renderer.values import ValuesFile

# Read limits: a rendered stream is a few MB at most; values files and the allowlist far
# less. `-f /dev/zero` or an endless pipe must end in an error, not a hang.
MAX_STDIN_BYTES = 256 * 1024 * 1024
MAX_VALUES_BYTES = 16 * 1024 * 1024


def read_stdin() -> bytes:
    if sys.stdin is None or sys.stdin.isatty():
        raise typer.BadParameter("pipe the rendered manifests into stdin (e.g. helm template ... | helm-egress render)")
    data = read_bounded(sys.stdin.buffer, MAX_STDIN_BYTES)
    if data is None:
        raise EgressError.one(Location(file="stdin"), f"more than {MAX_STDIN_BYTES // (1024 * 1024)} MiB of "
                                                      "manifests; refusing to read on")
    # Decoded by the stream splitter, document by document, with surrogateescape: bytes
    # that are not UTF-8 pass through untouched in documents helm-egress never reads; the
    # YAML reader refuses them, located, in documents it must read.
    return data


def read_bounded(stream: Any, limit: int) -> bytes | None:
    """Everything ``stream`` holds, or None once it holds more than ``limit`` bytes.

    Into one growing buffer through one reused slice: memory is written once, not as
    chunks and then again joined. Each page a process first touches costs a fault, and a
    copy of a multi-MB stream costs about as much in faults as reading it."""
    out = io.BytesIO()
    window = memoryview(bytearray(min(1 << 20, limit + 1)))
    while True:
        got = stream.readinto(window[: min(len(window), limit + 1 - out.tell())])
        if not got:
            return out.getvalue()  # the buffer itself, not a copy
        out.write(window[:got])
        if out.tell() > limit:
            return None


def is_stdin(fd: int) -> bool:
    """Whether ``fd`` is the pipe or file on stdin (a terminal or /dev/null is no stream)."""
    if fd == 0 or sys.stdin is None:
        return False  # started with stdin closed: the file opened took its descriptor
    try:
        mine, stdin = os.fstat(fd), os.fstat(0)
    except OSError:
        return False
    return (stat.S_ISFIFO(stdin.st_mode) or stat.S_ISREG(stdin.st_mode)) and os.path.samestat(mine, stdin)


def read_values(path: Path, what: str = "values file", *, stdin_is_stream: bool = True) -> ValuesFile:
    from post_renderer.values import ValuesFile

    where = Location(file=str(path))
    try:
        # Opened without waiting: a named pipe nobody writes to would block a plain open
        # for ever. A pipe the user names (`-f <(sops -d values.yaml)`) is still read to
        # its end, however long its writer takes.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise EgressError.one(where, f"cannot read {what}: {e.strerror}") from e
    with open(fd, "rb") as f:
        if stdin_is_stream and is_stdin(fd):
            # `-f /dev/stdin` under Helm would read the manifests as values and leave
            # an empty stream, which Helm would then apply as "nothing".
            raise EgressError.one(where, f"the {what} is stdin, which carries the manifests")
        try:
            head = _pipe_head(fd, what, where)
            os.set_blocking(fd, True)
            rest = read_bounded(f, MAX_VALUES_BYTES - len(head))
        except OSError as e:
            raise EgressError.one(where, f"cannot read {what}: {e.strerror}") from e
    if rest is None:
        raise EgressError.one(where, f"larger than {MAX_VALUES_BYTES // (1024 * 1024)} MiB; not a {what}")
    raw = head + rest
    try:
        return ValuesFile(str(path), raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise EgressError.one(Location(file=str(path), line=line), "invalid UTF-8") from e


def _pipe_head(fd: int, what: str, where: Location) -> bytes:
    """What a pipe holds already (b"" for anything else); refuses one with no writer,
    from which nothing would ever come."""
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        return b""
    try:
        head = os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""  # a writer that has not written yet: wait for it, as any reader would
    if not head:
        raise EgressError.one(where, f"cannot read {what}: it is a pipe with no writer, so nothing would ever "
                                     "arrive; helm-egress does not wait for one")
    return head


class Interrupted(BaseException):
    """SIGINT or SIGTERM. A BaseException, as KeyboardInterrupt is, so that no handler of
    ordinary errors takes it for one; not a KeyboardInterrupt, which typer would turn into
    a silent exit 130."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Output:
    """Where the writing of stdout stands, for a signal that arrives during it."""

    writing = False
    started = False  # some of the output has been written
    finished = False  # all of it
    torn = False  # a piece was left half written: what of it is still buffered must stay there
    pending: int | None = None  # a signal that arrived while a document was being written


def catch_signals() -> None:
    """Handle SIGTERM as SIGINT: stop between documents, never inside one (see
    ``write_stdout``). Helm and CI runners stop a run with SIGTERM, whose default would
    cut a document in half on stdout, without a word."""
    import signal

    _Output.writing = _Output.started = _Output.finished = _Output.torn = False
    _Output.pending = None
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: object) -> None:
    if _Output.writing and _Output.pending is None:
        _Output.pending = signum  # the document under way is finished first
        return
    # Not writing, or a second signal: a reader that stopped reading would otherwise
    # keep the run waiting for ever.
    raise Interrupted(signum)


def interrupted_line(signum: int) -> str:
    name = {2: "SIGINT", 15: "SIGTERM"}.get(signum, f"signal {signum}")
    done = ("the output was complete" if _Output.finished else "the output is incomplete" if _Output.started
            else "nothing was written")
    return f"helm-egress: stopped by {name}; {done}"


def output_torn() -> bool:
    """Whether the writing stopped inside a piece (a second signal, no memory left)."""
    return _Output.torn


def write_stdout(text: str | list[str | memoryview]) -> None:
    """Write the text, or its pieces (a rendered stream, see ``stream.join_chunks``: each
    document is one piece). A signal stops the writing between pieces."""
    out = sys.stdout
    _Output.writing = True
    try:
        if out is None:  # started with stdout closed
            raise OSError(9, "stdout is closed")
        for piece in [text] if isinstance(text, str) else text:
            if _Output.pending is not None:
                raise Interrupted(_Output.pending)
            _Output.started = _Output.torn = True
            if not isinstance(piece, str):
                write_all(out.buffer, piece)  # a document's own bytes
            else:
                # In slices, so a multi-MB text is never held twice (as text and as bytes).
                for start in range(0, len(piece), 1 << 20):
                    write_all(out.buffer, piece[start : start + (1 << 20)].encode("utf-8", errors="surrogateescape"))
            _Output.torn = False
        out.buffer.flush()
        _Output.finished = True
    except BrokenPipeError:
        # The reader went away (Helm, or `| head`): the output was not delivered.
        _silence_stdout()
        say("helm-egress: cannot write the output: the reader closed the pipe")
        raise typer.Exit(1) from None
    except (OSError, ValueError) as e:  # a full disk, a closed descriptor
        _silence_stdout()
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        say(f"helm-egress: cannot write the output: {why}")
        raise typer.Exit(1) from None
    finally:
        _Output.writing = False
    if _Output.pending is not None:
        raise Interrupted(_Output.pending)  # asked to stop: the run does not end as a success


def write_all(sink: Any, data: bytes | memoryview) -> None:
    """Write all of ``data``: unbuffered (python -u, PYTHONUNBUFFERED), stdout's buffer is
    the descriptor itself, whose write may take less than it is given."""
    view = memoryview(data)
    while view:
        done = sink.write(view)
        if done is None:  # a non-blocking descriptor that is full: wait for the reader
            import select

            select.select([], [sink], [])
            continue
        view = view[done:]


def say(line: str) -> None:
    """One line on stderr. Best effort: with stderr closed or on a full disk, the exit
    status is all that can still tell how the run went."""
    try:
        if sys.stderr is not None:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


def print_notes(notes: list[str], quiet: bool) -> None:
    if not quiet:
        for note in notes:
            say(f"note: {note}")


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        if sys.stdout is not None:
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - lives until exit
    except OSError:
        pass

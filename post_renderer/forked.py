"""Run one half of a stage in a forked child while the caller does the other half.

Reading the workloads of a large stream is most of a large render, and each document is
read on its own, so on a machine with a second core a child reads the back half of them
while the parent reads the front half. The child sends its answer back pickled through a
pipe and ends with ``os._exit`` (no atexit handlers, no flushing of the parent's buffered
output). Anything unusual -- not Linux, one core, other threads running (a fork would
copy their locks), a failed fork, a child that dies or answers nothing readable -- gives
``None`` and the caller does the work itself, so the result never depends on whether a
child helped. The CLI hands ``start`` to the pipeline (``from_environment``), so the
stages themselves start no process; ``HELM_EGRESS_NO_FORK=1`` turns it off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

ENV_DISABLE = "HELM_EGRESS_NO_FORK"


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def from_environment(environ: Mapping[str, str] = os.environ) -> Helper | None:
    """``start``, unless ``HELM_EGRESS_NO_FORK`` says not to."""
    if environ.get(ENV_DISABLE, "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    return start


def available() -> bool:
    # Linux only: macOS's system frameworks are not safe to use in a forked child
    # (CPython's multiprocessing spawns there), and Windows has no fork.
    if not sys.platform.startswith("linux") or not hasattr(os, "fork") or cores() < 2:
        return False
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


class Child:
    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd

    def result(self) -> Any | None:
        """The child's answer, or None when it has none (the caller then does its part)."""
        import pickle

        chunks = []
        try:
            while chunk := os.read(self.fd, 1 << 20):
                chunks.append(chunk)
        except OSError:
            chunks = []
        finally:
            os.close(self.fd)
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                status = 1
        if status != 0 or not chunks:
            return None
        try:
            answer: tuple[str, Any] = pickle.loads(b"".join(chunks))
        except Exception:  # noqa: BLE001 - a garbled answer is no answer
            return None
        return answer[1] if isinstance(answer, tuple) and answer[:1] == ("ok",) else None


# What the pipeline is handed: begin a piece of work elsewhere, or say no (None).
Helper = Callable[[Callable[[], Any]], "Child | None"]


def start(work: Callable[[], Any]) -> Child | None:
    """Begin ``work()`` in a child process; None when that is not possible here."""
    if not available():
        return None
    import pickle  # before the fork: the child, which is the one waited for, then has it

    try:
        read_end, write_end = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_end)
            # Let go of the standard streams: Helm reads stdout until every holder has
            # closed it, and the child has nothing to say on any of them.
            quiet = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(quiet, fd)
            payload = pickle.dumps(("ok", work()), protocol=pickle.HIGHEST_PROTOCOL)
            view = memoryview(payload)
            while view:
                view = view[os.write(write_end, view):]
            code = 0
        except BaseException:  # noqa: BLE001 - the parent redoes the work and reports
            pass
        finally:
            os._exit(code)
    os.close(write_end)
    return Child(pid, read_end)

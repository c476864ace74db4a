"""Reading workloads in two processes: the answer never depends on whether a child helped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from post_renderer import forked, stream as streams, workloads
from post_renderer.errors import Problems

REPO = Path(__file__).resolve().parent.parent
CORPUS = sorted((REPO / "fixtures/corpus").glob("*.yaml"))
SEVERAL_WORKLOADS = [p for p in CORPUS if "ingress-nginx" not in p.name]  # ingress-nginx renders one
VALUES = REPO / "fixtures/values/egress-values.yaml"
BROKEN = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: bad{n}\nspec: [unclosed\n"

needs_fork = pytest.mark.skipif(not forked.available(), reason="no fork() or one core here")


def scan(text: str, monkeypatch: pytest.MonkeyPatch, *, fork: bool) -> tuple[dict[str, object], list[object]]:
    """The inventory of ``text``, read with a child (the threshold lowered so small streams
    split too) or in this process alone; and the children started."""
    started: list[object] = []

    def spy(work):  # type: ignore[no-untyped-def]
        child = forked.start(work)
        started.append(child)
        return child

    with monkeypatch.context() as m:
        m.setattr(workloads, "FORK_MIN_CHARS", 0)
        problems = Problems()
        inventory = workloads.scan(streams.split(text), problems, helper=spy if fork else None)
    return {**vars(inventory), "problems": problems.items}, started


@needs_fork
@pytest.mark.parametrize("path", SEVERAL_WORKLOADS, ids=lambda p: p.name)
def test_a_child_reads_half_and_the_inventory_is_the_same(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = path.read_text()
    together, started = scan(text, monkeypatch, fork=True)
    alone, _ = scan(text, monkeypatch, fork=False)
    assert started and started[0] is not None, "the child must have been started"
    assert together == alone
    assert together["workloads"], "a stream with workloads in both halves"


@needs_fork
def test_problems_from_both_halves_come_in_document_order(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "".join(BROKEN.format(n=n) for n in range(6))
    together, _ = scan(text, monkeypatch, fork=True)
    alone, _ = scan(text, monkeypatch, fork=False)
    assert together == alone
    assert [p.location.doc_index for p in together["problems"]] == list(range(6))  # type: ignore[attr-defined]


@needs_fork
def test_a_child_that_fails_leaves_the_work_to_the_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = os.getpid()
    real = workloads._scan_part

    def dies_in_the_child(docs):  # type: ignore[no-untyped-def]
        if os.getpid() != parent:
            raise RuntimeError("the child fails")
        return real(docs)

    text = (REPO / "fixtures/corpus/prometheus.helm3.yaml").read_text()
    alone, _ = scan(text, monkeypatch, fork=False)
    monkeypatch.setattr(workloads, "_scan_part", dies_in_the_child)
    together, started = scan(text, monkeypatch, fork=True)
    assert started and started[0] is not None
    assert together == alone


@needs_fork
@pytest.mark.parametrize("work", [lambda: os._exit(0), lambda: os._exit(7), lambda: (lambda: None)],
                         ids=["no-answer", "exit-status", "unpicklable"])
def test_a_child_without_a_usable_answer_gives_none(work) -> None:  # type: ignore[no-untyped-def]
    child = forked.start(work)
    assert child is not None
    assert child.result() is None


@needs_fork
def test_an_answer_comes_back_whole() -> None:
    big = ["x" * 1000] * 5000  # more than a pipe holds: the parent must read while the child writes
    child = forked.start(lambda: big)
    assert child is not None and child.result() == big


@pytest.mark.parametrize("value, on", [("1", False), ("true", False), ("", True), ("0", True)])
def test_the_switch_turns_it_off(value: str, on: bool) -> None:
    assert (forked.from_environment({forked.ENV_DISABLE: value}) is forked.start) is on
    assert forked.from_environment({}) is forked.start


@needs_fork
@pytest.mark.parametrize("path", SEVERAL_WORKLOADS, ids=lambda p: p.name)
def test_render_gives_the_same_bytes_with_and_without_a_child(path: Path, tmp_path: Path) -> None:
    """The CLI end to end, on the stream repeated (names made unique) past the threshold."""
    text = path.read_text()
    copies = 1
    while True:
        big = "".join("---\n" + text.replace("name: ", f"name: c{i}-") for i in range(copies))
        todo = [d for d in streams.split(big).documents if workloads._to_read(d)]
        if workloads._halves(todo)[1]:
            break  # render will start a child
        copies *= 2
    runs = []
    for env in ({}, {forked.ENV_DISABLE: "1"}):
        runs.append(subprocess.run(
            [sys.executable, "-m", "post_renderer", "render", "-f", str(VALUES), "--release", "demo"],
            input=big.encode(), capture_output=True, env={**os.environ, **env}, cwd=tmp_path, check=False))
    together, alone = runs
    assert together.returncode == 0, together.stderr
    assert (together.stdout, together.stderr) == (alone.stdout, alone.stderr)


@needs_fork
def test_the_child_lets_go_of_stdin_stdout_and_stderr() -> None:
    """Helm reads the post-renderer's stdout until every process holding it has closed it:
    a child must never keep it open, even for a moment longer than the parent."""
    import time

    child = forked.start(lambda: time.sleep(0.5) or "done")
    assert child is not None
    try:
        deadline = time.monotonic() + 2
        while True:
            targets = [os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in (0, 1, 2)]
            if targets == [os.devnull] * 3 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert targets == [os.devnull] * 3
    finally:
        assert child.result() == "done"

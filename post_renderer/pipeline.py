"""The render job, as the list of its stages. Pure: no I/O, no printing.

read → find (values, workloads, annotations, the chart's own egress and mesh objects) →
plan (who may reach what, which ServiceEntry serves it) → build (each output kind) →
check (the admission rules of every generated document; the destination policy) → write.
Each stage is a function of its inputs that returns a record (see each module); ``check``,
``diff`` and ``explain`` run the same stages as ``render``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from post_renderer import bypass, inmesh, kinds, reach
from post_renderer import stream as streams
from post_renderer.emit import emit
from post_renderer.errors import Problem
from post_renderer.find import find
from post_renderer.plan import plan
from post_renderer.read import read
from post_renderer.schema import Verdicts
from post_renderer.settings import Settings
from post_renderer.synth import Generated
from post_renderer.values import ValuesFile

if TYPE_CHECKING:
    from post_renderer.destpolicy import Policy
    from post_renderer.explain import WorkloadReport


class Result:
    def __init__(self, chunks: list[streams.Chunk], notes: list[str] | None = None, generated: list[Generated] | None = None,
                 warnings: list[Problem] | None = None, workloads: list[WorkloadReport] | None = None,
                 violations: list[Problem] | None = None) -> None:
        self.chunks = chunks  # the output stream in pieces, as ``emit`` returns it
        self.notes: list[str] = notes if notes is not None else []
        self.generated: list[Generated] = generated if generated is not None else []
        self.warnings: list[Problem] = warnings if warnings is not None else []
        self.workloads: list[WorkloadReport] = workloads if workloads is not None else []
        # What the destination policy does not approve; render refuses, explain shows them.
        self.violations: list[Problem] = violations if violations is not None else []

    @property
    def output(self) -> str:
        return streams.text_of(self.chunks)


def analyse(
    text: str | bytes,
    values: Sequence[ValuesFile],
    settings: Settings,
    *,
    allowlist: ValuesFile | None = None,
    policy: Policy | None = None,
    verdicts: Verdicts | None = None,
    explain: bool = True,
) -> Result:
    """``text``: the stream, or its bytes, read as UTF-8 with undecodable bytes kept
    (surrogateescape). ``verdicts``: schema verdicts already known (see verdicts.py); None validates all.
    ``explain=False`` leaves ``Result.workloads`` empty: only ``explain`` prints it, and
    on large streams it costs as much as writing the new documents."""
    stream = streams.split(text) if isinstance(text, str) else streams.split_bytes(text)
    needs_mesh = kinds.needs_mesh(settings)
    # Besides workloads and the chart's egress documents: what this run's stages read.
    needs = [inmesh.NEED, *reach.needs(settings)] if needs_mesh else []
    needs.append(bypass.NEED)  # kinds of few documents, refused with a policy, warned of without
    if policy is not None:
        from post_renderer import asked

        needs.append(asked.NEED)
    found = find(read(stream, kinds.NAMES, needs), values, allowlist, settings, verdicts=verdicts,
                 needs_mesh=needs_mesh)
    if stream.is_empty:
        # Given back as it came: comments, blank lines, a BOM.
        return Result([text if isinstance(text, str) else text.decode("utf-8", errors="surrogateescape")],
                      [*found.notes, "the input holds no documents; nothing to add"])
    del text  # the documents hold it now
    planned = plan(found, settings, kinds.label_selected(settings))
    built = kinds.build(planned.ctx)
    kinds.check(built.generated)
    violations: list[Problem] = []
    if policy is not None:
        from post_renderer.approval import violations as judged

        violations = judged(found, planned.served, settings, policy, bypass.reach(planned.ctx))
        bypassing: list[Problem] = []
    else:
        # What a policy would refuse is what check warns of without one; the plan has said
        # it of hostNetwork for the workloads it serves.
        bypassing = bypass.warnings(found.documents, found.inventory.workloads,
                                    {w.doc_index for w in planned.served}, bypass.reach(planned.ctx))
    workloads = found.inventory.workloads
    # A workload that is an item of a List is placed by its List.
    anchor = min((found.documents.holder(w.doc_index) for w in workloads if w.hook is None), default=None)
    chunks = emit(stream, built.generated, drop=found.inventory.generated, anchor=anchor, replace=found.replacements)
    reports: list[WorkloadReport] = []
    if explain:
        from post_renderer.explain import reports as explained

        reports = explained(workloads, planned.status, planned.ctx, built.generated, policy)
    return Result(chunks, [*found.notes, *planned.notes, *built.notes], built.generated,
                  [*found.warnings, *planned.warnings, *built.warnings, *bypassing], reports, violations)


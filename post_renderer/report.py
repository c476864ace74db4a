"""What the operator commands print: findings, diffs, explanations. Text in, text out."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from post_renderer import yamlwriter
from post_renderer.errors import Location, Problem, Problems
from post_renderer.pipeline import WorkloadReport
from post_renderer.settings import Settings
from post_renderer.synth import plan
from post_renderer.values import ValuesFile, load_egress

_COLOURS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m"}
_RESET = "\033[0m"


def check_values(file: ValuesFile, settings: Settings) -> None:
    """Everything render would refuse in one values file on its own."""
    problems = Problems()
    egress = load_egress([file], settings, problems)
    plan(egress.entries, problems)
    problems.raise_if_any()


def findings(errors: Sequence[Problem], warnings: Sequence[Problem], notes: Sequence[str], fmt: str,
             failed: bool) -> str:
    if fmt == "json":
        doc = {
            "ok": not failed,
            "errors": [_problem(p) for p in errors],
            "warnings": [_problem(p) for p in warnings],
            "notes": list(notes),
        }
        return json.dumps(doc, indent=2) + "\n"
    lines = [f"error: {p.render()}" for p in _ordered(errors)]
    lines += [f"warning: {p.render()}" for p in _ordered(warnings)]
    lines += [f"note: {n}" for n in notes]
    verdict = "failed" if failed else "ok"
    lines.append(f"helm-egress check: {verdict}: {len(errors)} error(s), {len(warnings)} warning(s)")
    return "\n".join(lines) + "\n"


def _ordered(problems: Sequence[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.location.file or "", p.location.doc_index or 0, p.location.line or 0))


def _problem(p: Problem) -> dict[str, Any]:
    where: Location = p.location
    location = {k: v for k, v in asdict(where).items() if v is not None}
    return {"location": location, "where": where.render(), "message": p.message}


def unified_diff(before: str, after: str, *, colour: bool) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), "stdin", "helm-egress render"
    )
    out = []
    for line in lines:
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        if colour and line[:1] in _COLOURS and not line.startswith(("+++", "---")):
            line = f"{_COLOURS[line[0]]}{line.rstrip(chr(10))}{_RESET}\n"
        out.append(line)
    return "".join(out)


def explain(workloads: Sequence[WorkloadReport], fmt: str) -> str:
    # Through JSON once: tuples become lists, so both writers see plain data.
    data = json.loads(json.dumps([asdict(w) for w in workloads]))
    if fmt == "json":
        return json.dumps({"workloads": data}, indent=2) + "\n"
    if fmt == "yaml":
        return yamlwriter.write({"workloads": data}, indent_sequences=True)
    header = ("WORKLOAD", "NAMESPACE", "POLICY", "DESTINATION", "PORT", "PROTOCOL", "DECLARED IN", "SERVICEENTRY")
    rows: list[tuple[str, ...]] = []
    for w in workloads:
        if not w.destinations:
            rows.append((w.workload, w.namespace or "-", w.policy or "-", f"({w.status})", "", "", "", ""))
        for d in w.destinations:
            rows.append((w.workload, w.namespace or "-", w.policy or "-", d.destination, str(d.port), d.protocol,
                         d.declared_in, d.served_by or "-"))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in [header, *rows])

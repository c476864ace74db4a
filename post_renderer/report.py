"""What the operator commands print: findings, diffs, explanations. Text in, text out."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from post_renderer import yamlwriter
from post_renderer.errors import Location, Problem, Problems
from post_renderer.explain import WorkloadReport
from post_renderer.kinds.serviceentry import entry_warnings
from post_renderer.schema import Verdicts
from post_renderer.settings import Settings
from post_renderer.synth import plan
from post_renderer.values import ValuesFile, load_egress

if TYPE_CHECKING:
    from post_renderer.destpolicy import Policy

_COLOURS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m"}
_RESET = "\033[0m"


def check_values(file: ValuesFile, settings: Settings, policy: Policy | None = None,
                 verdicts: Verdicts | None = None) -> tuple[list[Problem], list[Problem]]:
    """Everything render would refuse in one values file on its own (raised), the warnings
    it would give, and what the destination policy does not approve (returned)."""
    problems = Problems()
    egress = load_egress([file], settings, problems, verdicts=verdicts)
    plan(egress.entries, problems, settings.istio_minor)
    problems.raise_if_any()
    refused: list[Problem] = []
    if policy is not None:
        from post_renderer.asked import from_entries
        from post_renderer.destpolicy import judge

        # Without a stream, the namespace is --namespace's, or not known.
        refused = judge(policy, from_entries(egress.entries, [settings.namespace]))
    return entry_warnings(egress.entries), refused


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
    location = {k: v for k, v in where._asdict().items() if v is not None}
    return {"location": location, "where": where.render(), "message": p.message}


def unified_diff(before: str, after: str, *, colour: bool) -> str:
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    if a == b:
        return ""
    # difflib's automatic junk heuristic treats lines as common as `---` as noise in long
    # streams and then shows unchanged lines as removed and re-added.
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    out = ["--- stdin\n", "+++ helm-egress render\n"]
    for group in matcher.get_grouped_opcodes(3):
        (_, i1, _, j1, _), (_, _, i2, _, j2) = group[0], group[-1]
        out.append(_paint(f"@@ -{_range(i1, i2)} +{_range(j1, j2)} @@\n", colour))
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                out.extend(_line(" ", line, False) for line in a[a1:a2])
                continue
            out.extend(_line("-", line, colour) for line in a[a1:a2])
            out.extend(_line("+", line, colour) for line in b[b1:b2])
    return "".join(out)


def _range(start: int, stop: int) -> str:
    """A hunk range as unified diff writes it (1-based start, length omitted when 1)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


def _line(prefix: str, line: str, colour: bool) -> str:
    text = _paint(prefix + line.rstrip("\n"), colour) + "\n"
    return text if line.endswith("\n") else text + "\\ No newline at end of file\n"


def _paint(text: str, colour: bool) -> str:
    if not colour:
        return text
    end = "\n" if text.endswith("\n") else ""
    return f"{_COLOURS[text[0]]}{text.rstrip(chr(10))}{_RESET}{end}"


def _plain(value: Any) -> Any:
    """A report record as plain data for both writers: records as mappings, tuples as lists."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in [header, *rows])


def explain(workloads: Sequence[WorkloadReport], fmt: str, violations: Sequence[Problem] | None = None) -> str:
    """``violations`` is None without a destination policy; with one, each destination is
    marked approved or not, and everything the policy refuses is listed with its origin.
    What each workload reaches in the cluster is a second table (``in_cluster``)."""
    data = [_plain(w) for w in workloads]
    judged = violations is not None
    if not judged:
        for w in data:
            for d in w["destinations"]:
                del d["approved"]
    doc: dict[str, Any] = {"workloads": data}
    if violations is not None:
        doc["violations"] = [_problem(p) for p in _ordered(violations)]
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "yaml":
        return yamlwriter.write(doc, indent_sequences=True)
    header: tuple[str, ...] = ("WORKLOAD", "NAMESPACE", "POLICY", "DESTINATION", "PORT", "PROTOCOL", "DECLARED IN",
                               "SERVICEENTRY", "LAYERS")
    header += ("APPROVED",) if judged else ()
    rows: list[tuple[str, ...]] = []
    for w in workloads:
        if not w.destinations:
            rows.append((w.workload, w.namespace or "-", w.policy or "-", f"({w.status})", "", "", "", "", "")
                        + (("",) if judged else ()))
        for d in w.destinations:
            rows.append((w.workload, w.namespace or "-", w.policy or "-", d.destination, str(d.port), d.protocol,
                         d.declared_in, d.served_by or "-", "; ".join(d.layers) or "-")
                        + (("yes" if d.approved else "NO",) if judged else ()))
    table = _table(header, rows)
    # Its own table below: the destinations' columns (port, protocol, ServiceEntry) say
    # nothing of a peer, and a row per reach would bury the external destinations.
    reached = [(w.workload, w.namespace or "-", r.what, r.declared_by, "; ".join(r.layers) or "-")
               for w in workloads for r in w.in_cluster]
    if reached:
        table += "\n" + _table(("WORKLOAD", "NAMESPACE", "IN CLUSTER", "DECLARED BY", "LAYERS"), reached)
    if violations:
        table += "\nnot approved by the destination policy:\n"
        table += "".join(f"  {p.render()}\n" for p in _ordered(violations))
    return table

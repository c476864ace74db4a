"""Write the output stream: input documents as they came, generated ones placed in it.

Generated documents go right before the first workload they serve, so Helm 3, which
creates resources in stream order, creates them first; Helm 4 re-sorts by kind anyway.
Each carries the provenance Helm expects of its generation: a ``# Source:`` line for
Helm 3, the ``postrender-filename`` annotation for Helm 4.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from post_renderer import yamlwriter
from post_renderer.stream import HELM4_ANNOTATION, Chunk, Stream, join_chunks
from post_renderer.kinds import TEMPLATE_FILES
from post_renderer.synth import Generated

FALLBACK_CHART = "helm-egress"


def template_path(stream: Stream, kind: str, chart: str | None = None) -> str:
    """``chart``: the stream's chart name, when the caller has looked it up already."""
    return f"{chart or stream.chart_name or FALLBACK_CHART}/{TEMPLATE_FILES[kind]}"


def render_document(stream: Stream, doc: Generated, chart: str | None = None,
                    memo: yamlwriter.Memo | None = None) -> str:
    """``memo``: see ``yamlwriter.write``; one per output, while ``doc`` and the others live."""
    nl = stream.newline
    path = template_path(stream, doc.kind, chart)
    if stream.shape == "helm4":
        body = dict(doc.body)
        metadata = dict(body["metadata"])
        metadata["annotations"] = {**metadata.get("annotations", {}), HELM4_ANNOTATION: path}
        body["metadata"] = metadata
        return "---" + nl + yamlwriter.write(body, indent_sequences=False, newline=nl, memo=memo)
    text = yamlwriter.write(doc.body, indent_sequences=True, newline=nl, memo=memo)
    return f"---{nl}# Source: {path}{nl}{text}"


def emit(
    stream: Stream,
    generated: Sequence[Generated],
    *,
    drop: Collection[int],
    anchor: int | None,
    replace: Mapping[int, str] | None = None,
) -> list[Chunk]:
    """The output text, in pieces (see ``stream.join_chunks``); ``anchor`` is the index of
    the document to insert before, and ``replace`` maps a document index to its
    normalized text."""
    replace = replace or {}
    chart = stream.chart_name or FALLBACK_CHART  # looked up once, not once per document
    memo: yamlwriter.Memo = {}
    rendered = [(render_document(stream, g, chart, memo), True) for g in generated]
    pieces: list[tuple[Chunk, bool]] = []
    for doc in stream.documents:
        if doc.index == anchor:
            pieces.extend(rendered)
            rendered = []
        if doc.index not in drop:
            pieces.append((replace[doc.index] if doc.index in replace else doc.output, doc.has_separator))
    pieces.extend(rendered)
    return join_chunks(pieces, bom=stream.bom, newline=stream.newline)

"""The stream is split as text and joined back byte for byte, whatever Helm sent."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from post_renderer import stream

CORPUS = sorted((Path(__file__).parent.parent / "fixtures" / "corpus").glob("*.yaml"))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_real_streams_round_trip_exactly(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    s = stream.split(text)
    assert stream.join([(d.raw, d.has_separator) for d in s.documents], bom=s.bom, newline=s.newline) == text
    assert s.shape == ("helm4" if ".helm4." in path.name else "helm3")


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_kinds_are_read_from_text(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    kinds = [d.kind for d in stream.split(text).documents if d.has_content]
    assert kinds.count("Deployment") == text.count("\nkind: Deployment\n") + text.startswith("kind: Deployment\n")
    assert None not in kinds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "---\n",
        "# just a comment\n",
        "\ufeff---\n# Source: c/templates/a.yaml\nkind: A\n",
        "---\r\n# Source: c/templates/a.yaml\r\nkind: A\r\n---\r\nkind: B\r\n",
        "kind: A\n---\nkind: B",  # no final line end
        "---\nkind: A\n...\n---\nkind: B\n...\n",
        "--- # a comment on the marker\nkind: A\n--- {kind: B}\n",
        "---\ndata: |\n  ---\n  not a separator, indented\n---\nkind: C\n",
        "%YAML 1.2\n---\nkind: A\n",
        "----\nkind: A\n",  # four dashes are content, not a marker
    ],
)
def test_odd_streams_round_trip_exactly(text: str) -> None:
    s = stream.split(text)
    assert stream.join([(d.raw, d.has_separator) for d in s.documents], bom=s.bom, newline=s.newline) == text


def test_document_facts() -> None:
    s = stream.split(
        "---\n# Source: shop/templates/web.yaml\napiVersion: apps/v1\nkind: Deployment\n"
        "---\n# HIDDEN: The Secret output has been suppressed\n"
        "--- {\"kind\": \"Pod\"}\n"
        "---\nkind: X\n...\n%YAML 1.2\n"
    )
    web, hidden, flow, ended = s.documents
    assert (web.kind, web.api_version, web.source_path, web.has_content) == (
        "Deployment", "apps/v1", "shop/templates/web.yaml", True)
    assert hidden.has_content is False
    assert flow.kind is None and flow.has_content is True
    assert ended.parse_text == "---\nkind: X\n"
    assert s.chart_name == "shop"
    assert [d.start_line for d in s.documents] == [1, 5, 7, 8]


@pytest.mark.parametrize("text, kind", [
    ("---\napiVersion: v1\nkind: ConfigMap\n", "ConfigMap"),
    ("---\nkind: ConfigMap\nmetadata: {}\nkind: Deployment\n", None),  # a duplicate key: parsed
    ("---\nx: \"a\nkind: ConfigMap\n", None),  # inside a quoted scalar, perhaps
    ("---\nx: [a,\nkind: ConfigMap\n", None),  # inside a flow sequence, perhaps
    ("---\n# a \"comment\nkind: ConfigMap\n", "ConfigMap"),  # quotes in comments do not count
    ("---\nkind: 'Pod' # note\r\n", "Pod"),
    ("---\nkind:Pod\n", "Pod"),
])
@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_kind_read_off_bytes_is_the_kind_read_off_text(text: str, kind: str | None, crlf: bool) -> None:
    if crlf:
        text = text.replace("\r\n", "\n").replace("\n", "\r\n")
    (from_bytes,) = stream.split_bytes(text.encode()).documents
    (from_text,) = stream.split(text).documents
    assert from_bytes.kind == from_text.kind == kind
    assert not isinstance(from_bytes.output, str), "an LF/CRLF document is kept as bytes"


def test_line_ends_and_bom_are_kept_for_new_documents() -> None:
    s = stream.split("\ufeff---\r\nkind: A\r\n")
    assert s.bom and s.newline == "\r\n"
    out = stream.join([(d.raw, d.has_separator) for d in s.documents] + [("---\r\nkind: B\r\n", True)],
                      bom=s.bom, newline=s.newline)
    assert out == "\ufeff---\r\nkind: A\r\n---\r\nkind: B\r\n"


def test_join_adds_only_the_joints_it_needs() -> None:
    # Helm 4's first document has no separator: one is added only when it stops being first.
    assert stream.join([("---\nkind: G\n", True), ("kind: A\n", False)], bom=False, newline="\n") == (
        "---\nkind: G\n---\nkind: A\n"
    )
    assert stream.join([("kind: A", False), ("---\nkind: G\n", True)], bom=False, newline="\n") == (
        "kind: A\n---\nkind: G\n"
    )


def _facts(s: stream.Stream) -> tuple[object, ...]:
    return (s.bom, s.newline, s.shape, [(d.raw, d.view, d.start_line, d.has_separator, d.kind, d.has_content)
                                        for d in s.documents])


# Pieces a bytes splitter could get wrong: every YAML line break, BOMs, markers, UTF-8
# that is wide, partial or invalid (NEL's and LS's bytes alone, a lead byte cut short).
_PIECES = [b"---", b"--- ", b"----", b"\n", b"\r\n", b"\r", "\x85".encode(), "\u2028".encode(),
           "\u2029".encode(), b"\x85", b"\xc2", b"\xe2\x80", b"\xa8", b"\xff", "\ufeff".encode(), b"\xef\xbb",
           "\u00e9".encode(), "\U0001f600".encode(), b"kind: A", b"kind: B", b"...", b"# c", b" ", b"  name: x",
           b"metadata:", stream.HELM4_ANNOTATION.encode(),
           # quotes and brackets left open before a kind line (it may be inside a scalar)
           b'"', b"'", b"[", b"{", b"]", b"}", b"x: ", b"kind:", b"\\"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30))
def test_split_bytes_is_split_of_the_decoded_text(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    assert _facts(stream.split_bytes(data)) == _facts(stream.split(data.decode("utf-8", "surrogateescape")))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30))
def test_documents_kept_as_bytes_are_written_back_as_their_text(pieces: list[bytes]) -> None:
    """Documents of an LF/CRLF stream stay bytes (``Document.output``); the joined output
    is the same whether it is made of those bytes or of the decoded texts."""
    data = b"".join(pieces)
    kept = stream.split_bytes(data)
    as_bytes = stream.join_chunks([(d.output, d.has_separator) for d in kept.documents], bom=kept.bom,
                                  newline=kept.newline)
    as_text = stream.join([(d.raw, d.has_separator) for d in kept.documents], bom=kept.bom, newline=kept.newline)
    assert stream.text_of(as_bytes) == as_text
    assert b"".join(c.encode("utf-8", "surrogateescape") if isinstance(c, str) else bytes(c) for c in as_bytes) \
        == as_text.encode("utf-8", "surrogateescape")


_LABEL_PIECES = [b"---\n", b"\n", b"\r\n", b" ", b"\t", b"{", b",", b'"', b"'", b"x", "\u00e9".encode(), b"\xff",
                 b"app.kubernetes.io/instance", b": ", b":", b"demo", b"other", b"-1.a"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LABEL_PIECES), max_size=30))
def test_the_release_read_off_bytes_is_the_release_read_off_text(pieces: list[bytes]) -> None:
    from post_renderer.workloads import release_from_labels

    data = b"".join(pieces)
    assert release_from_labels(stream.split_bytes(data)) == \
        release_from_labels(stream.split(data.decode("utf-8", "surrogateescape")))


@pytest.mark.parametrize("text, release", [
    ("metadata:\n  labels:\n    app.kubernetes.io/instance: demo\n", "demo"),
    ("metadata: {labels: {app.kubernetes.io/instance: demo}}\n", "demo"),
    ('x: {"app.kubernetes.io/instance": "demo"}\n', "demo"),
    ("x: {a: 1,app.kubernetes.io/instance: demo}\n", "demo"),
    ("x: xapp.kubernetes.io/instance: demo\n", None),  # part of another word
    ("app.kubernetes.io/instance: demo\n", None),  # at the very start: no label of a mapping
    ("---\napp.kubernetes.io/instance: demo\n", None),  # at a line start: top-level key, no label
    ("a:\n  app.kubernetes.io/instance: -x\n", None),  # not a name
])
def test_the_release_is_read_off_bytes_as_off_text(text: str, release: str | None) -> None:
    from post_renderer.workloads import release_from_labels

    for crlf in (False, True):
        t = text.replace("\n", "\r\n") if crlf else text
        assert release_from_labels(stream.split_bytes(t.encode())) == release_from_labels(stream.split(t)) == release


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_the_release_of_real_streams_is_read_without_decoding_them(path: Path) -> None:
    from post_renderer.workloads import release_from_labels

    kept = stream.split_bytes(path.read_bytes())
    assert release_from_labels(kept) == release_from_labels(stream.split(path.read_text())) == "demo"
    assert all(d._raw is None for d in kept.documents), "no document was decoded"


@pytest.mark.parametrize("text", ["\u00e9" * 4000 + "\n" * 90 + "\r\n", "\U0001f600" * 4094 + "\r\n",
                                  "\U0001f600" * 4095 + "\r\n", "a" * 4095 + "\r\n"])
def test_split_bytes_tells_the_line_ending_from_the_same_characters(text: str) -> None:
    data = text.encode()
    assert _facts(stream.split_bytes(data)) == _facts(stream.split(text))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_split_bytes_on_real_streams(path: Path) -> None:
    data = path.read_bytes()
    assert _facts(stream.split_bytes(data)) == _facts(stream.split(data.decode("utf-8", "surrogateescape")))
    crlf = data.replace(b"\n", b"\r\n")
    assert _facts(stream.split_bytes(crlf)) == _facts(stream.split(crlf.decode("utf-8", "surrogateescape")))

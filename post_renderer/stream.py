"""Split a rendered manifest stream into documents as text, and join it back.

Most documents must come out byte for byte, so nothing here parses YAML: a document is
its exact text, and the few facts later stages need to decide whether to parse it (its
top-level ``kind``) are read with anchored regular expressions. In a stream whose only
line breaks are LF or CRLF (nearly all), a document stays the input's bytes until a stage
reads its text, and goes out as those bytes (``split_bytes``, ``Document.output``).

YAML forbids a line starting with ``---`` followed by white space or the line end inside
any scalar, so splitting on such lines is exact, block scalars included.

A line break is what the YAML reader (libyaml, and Helm's go-yaml) takes for one: LF, CRLF,
a lone CR, NEL (U+0085), LS and PS (U+2028, U+2029). Each document keeps a ``view`` of its
text, of the same length, in which every such break is a LF (the CR of a CRLF stays), so
the splitter, the classifier and the reader never disagree on where a line ends.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import AnyStr, Literal, NamedTuple

BOM = "\ufeff"
BREAKS = ("\n", "\r", "\x85", "\u2028", "\u2029")
_ODD_BREAK = re.compile("\r(?!\n)|[\x85\u2028\u2029]")
_CHART_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*\Z")
HELM4_ANNOTATION = "postrenderer.helm.sh/postrender-filename"

_KIND = re.compile(r"""^kind:[ \t]*(["']?)([A-Za-z][A-Za-z0-9]*)\1[ \t]*(?:#[^\n]*)?\r?$""", re.MULTILINE)
_KIND_BYTES = re.compile(_KIND.pattern.encode(), re.MULTILINE)
# A line after the kind's that continues its plain scalar (`kind: Side` then `  car` is
# "Side car"): blank lines, then an indented line that is not a comment.
_CONTINUED = re.compile(r"(?:\r?\n[ \t]*)*\r?\n[ \t]+[^ \t\r\n#]")
_CONTINUED_BYTES = re.compile(_CONTINUED.pattern.encode())
_API_VERSION = re.compile(
    r"""^apiVersion:[ \t]*(["']?)([A-Za-z0-9./-]+)\1[ \t]*(?:#[^\n]*)?\r?$""", re.MULTILINE
)
# metadata.name in block style, two-space indented as every Helm generation writes it.
# One way to match each line (a single leading blank, then anything): `[ \t]+[^\n]*`
# matched an indented line as many ways as it has leading blanks, exponential in lines.
_NAME = re.compile(r"""^metadata:[ \t]*\r?\n(?:[ \t][^\n]*\n)*?  name:[ \t]*(["']?)([-A-Za-z0-9.:_]+)\1[ \t]*\r?$""", re.MULTILINE)
# metadata in flow style (`metadata: {name: web, namespace: prod}`, as templates built
# with toJson or dict write it): its own `name` key, never one of a map inside it.
_FLOW_METADATA = re.compile(r"^metadata:[ \t]*\{", re.MULTILINE)
_FLOW_NAME = re.compile(r"""[ \t\r\n]*(["']?)name\1[ \t]*:[ \t]*(["']?)([-A-Za-z0-9.:_]+)\2[ \t\r\n]*[,}]""")
_FLOW_SCAN = 65536  # a metadata map longer than this is not searched: the name is a courtesy
_SOURCE = re.compile(r"^# Source: ([^\r\n]+?)\r?$", re.MULTILINE)
_HELM4_PATH = re.compile(
    r"""^[ \t]+["']?postrenderer\.helm\.sh/postrender-filename["']?:[ \t]*["']?([^"'\r\n]+)""",
    re.MULTILINE,
)
# A line with YAML content: not blank, not a comment, not a directive or end marker.
_CONTENT_LINE = re.compile(r"^(?![ \t]*(?:#|\r?$))(?!%)(?!\.\.\.(?:[ \t]|\r?$))", re.MULTILINE)
_END_MARKER = re.compile(r"^\.\.\.(?=[ \t\r\n]|\Z)", re.MULTILINE)

Shape = Literal["helm3", "helm4"]


class Document:
    """One document of the stream: its exact text, separator line included."""

    def __init__(self, index: int, raw: str, start_line: int, has_separator: bool, view: str = "") -> None:
        self.index = index
        self.start_line = start_line  # 1-based line of ``raw``'s first character in the input
        self.has_separator = has_separator
        self._raw: str | None = raw
        self._view: str | None = view or line_view(raw)
        self._base: bytes | None = None
        self._start = self._end = 0
        self._kind_lines: list[int] = []
        self._items_lines: list[int] = []

    @classmethod
    def of_bytes(cls, index: int, base: bytes, start: int, end: int, start_line: int, has_separator: bool,
                 kind_lines: list[int], items_lines: list[int] | None = None) -> Document:
        """``base[start:end]``, kept as the input's own bytes (a stream whose only line
        breaks are LF or CRLF): decoded only if a later stage reads its text, and written
        out as the same bytes otherwise. Most documents of a large stream are never decoded.
        ``kind_lines``: the offsets of its lines that start ``kind:``, found by the splitter."""
        doc = cls.__new__(cls)
        doc.index, doc.start_line, doc.has_separator = index, start_line, has_separator
        doc._raw = doc._view = None
        doc._base, doc._start, doc._end = base, start, end
        doc._kind_lines = kind_lines
        doc._items_lines = items_lines if items_lines is not None else []
        return doc

    @property
    def raw(self) -> str:
        """The exact text (undecodable bytes kept as surrogates, see ``split_bytes``)."""
        if self._raw is None:
            self._raw = str(memoryview(self._base or b"")[self._start:self._end], "utf-8", "surrogateescape")
        return self._raw

    @property
    def view(self) -> str:
        """``raw`` with every YAML line break as LF; same length."""
        if self._view is None:
            self._view = self.raw  # only LF/CRLF streams keep bytes: there is nothing to map
        return self._view

    @property
    def items_lines(self) -> list[int]:
        """Of a document kept as bytes, the offsets of its lines that may start a top-level
        ``items`` key or a complex key (``?``), found by the splitter."""
        return self._items_lines

    def kept_bytes(self) -> tuple[bytes, int, int] | None:
        """``(base, start, end)`` when the document is kept as ``base[start:end]``: for
        searches that need not decode it (``^`` matches at ``start``, which starts a line)."""
        return (self._base, self._start, self._end) if self._base is not None else None

    @property
    def output(self) -> str | memoryview:
        """What the output stream carries for the document when nothing replaces it: its
        bytes as they came when it has them, else its text."""
        return memoryview(self._base)[self._start:self._end] if self._base is not None else self.raw

    def __repr__(self) -> str:
        return f"Document(index={self.index}, start_line={self.start_line}, raw={self.raw[:60]!r}...)"

    @cached_property
    def kind(self) -> str | None:
        """The top-level ``kind`` read off the text, or None when the text cannot tell
        for sure (then the document is parsed)."""
        if self._base is not None:
            return self._kind_in_bytes(self._base, self._start, self._end, self._kind_lines)
        m = _KIND.search(self.view)
        if m is None or not _plain_prefix(self.view[: m.start()]) or _CONTINUED.match(self.view, m.end()):
            return None
        if self.view.find("\nkind:", m.end()) >= 0 and _KIND.search(self.view, m.end()):
            # Two top-level kinds (a `# Source:` comment whose NEL or lone CR starts a
            # line, a duplicate key): the reader decides, and refuses the duplicate.
            return None
        return m.group(2)

    @staticmethod
    def _kind_in_bytes(base: bytes, start: int, end: int, kind_lines: list[int]) -> str | None:
        """``kind`` as the text gives it, read off the bytes: no line break but LF and
        CRLF, and only ASCII in the patterns, so the answers are the same. Only the lines
        that start ``kind:`` can match, and the splitter found those in the same pass as
        the document markers; a document starts a line, so ``^`` matches at each."""
        for i, at in enumerate(kind_lines):
            m = _KIND_BYTES.match(base, at, end)
            if m is not None:
                break
        else:
            return None
        if not _plain_prefix(base[start:m.start()].decode("utf-8", "surrogateescape")) \
                or _CONTINUED_BYTES.match(base, m.end(), end):
            return None
        if any(_KIND_BYTES.match(base, at, end) for at in kind_lines[i + 1:]):
            # Two top-level kinds (a duplicate key): the reader decides, and refuses it.
            return None
        return m.group(2).decode("ascii")

    def settle_kind(self, kind: str | None) -> None:
        """The kind a parse read, where the text could not tell it (see ``read``): every
        stage then picks the document by the kind the cluster will see."""
        self.__dict__["kind"] = kind

    @property
    def kind_hint(self) -> str | None:
        """The first ``kind:`` line, sure or not: for messages about documents that do not parse."""
        if self.__dict__.get("kind"):
            return str(self.__dict__["kind"])
        m = _KIND.search(self.view)
        return m.group(2) if m else None

    @property
    def api_version(self) -> str | None:
        m = _API_VERSION.search(self.view)
        return m.group(2) if m else None

    @property
    def name(self) -> str | None:
        """A best-effort ``metadata.name``, for messages about documents that do not parse."""
        m = _NAME.search(self.view)
        return m.group(2) if m else _flow_name(self.view)

    @cached_property
    def has_content(self) -> bool:
        body = self.view
        if self.has_separator:
            # Content may follow the marker on its own line (`--- {a: 1}`, `--- !!map`).
            first, _, body = body.partition("\n")
            rest = first[3:].strip()
            if rest and not rest.startswith("#"):
                return True
        return _CONTENT_LINE.search(self.yaml_text_after_marker(body)) is not None

    @staticmethod
    def yaml_text_after_marker(text: str) -> str:
        # Anything after a `...` end marker is directives or comments for the next
        # document: the parser would reject directives without a following `---`.
        if not text.startswith("...") and "\n..." not in text:
            return text  # no line starts with "...": a substring search, not a regex scan
        m = _END_MARKER.search(text)
        return text[: m.start()] if m else text

    @property
    def parse_text(self) -> str:
        """The text handed to a YAML parser: this document only."""
        return self.raw[: len(self.yaml_text_after_marker(self.view))]

    @property
    def source_path(self) -> str | None:
        """The template path Helm recorded: `# Source:` (Helm 3) or the Helm 4 annotation."""
        m = _SOURCE.search(self.view) or _HELM4_PATH.search(self.view)
        return m.group(1).strip() if m else None


def line_view(text: str) -> str:
    """``text`` with every YAML line break as LF (a CRLF keeps its CR): same length, same
    offsets. The text itself when it holds no other break, as nearly every stream."""
    if "\x85" not in text and "\u2028" not in text and "\u2029" not in text and (
            "\r" not in text or text.count("\r") == text.count("\r\n")):
        return text  # LF or CRLF throughout: a CRLF stream keeps one copy, not two
    return _ODD_BREAK.sub("\n", text)


def _plain_prefix(prefix: str) -> bool:
    """Whether no quoted scalar or flow collection can be open at the end of ``prefix``:
    each of its content lines closes every quote and bracket it opens. A ``kind:`` line
    after an open one may be text inside it (``x: "a<newline>kind: ConfigMap``)."""
    if not any(c in prefix for c in "\"'[{"):
        return True
    for line in prefix.split("\n"):
        if line.lstrip().startswith("#"):
            continue
        line = line.replace("\\\\", "").replace('\\"', "")
        if line.count('"') % 2 or line.count("'") % 2 or line.count("[") != line.count("]") \
                or line.count("{") != line.count("}"):
            return False
    return True


class Stream(NamedTuple):
    bom: str  # the BOMs the input started with ("" when none), given back as they were
    documents: tuple[Document, ...]
    newline: str  # the input's own line ending, reused for generated documents
    shape: Shape

    @property
    def chart_name(self) -> str | None:
        for doc in self.documents:
            path = doc.source_path
            if path and "/" in path:
                # Written into the `# Source:` line of generated documents: a chart name
                # or nothing, never text that could end the comment.
                name = path.split("/", 1)[0]
                return name if _CHART_NAME.match(name) else None
        return None

    @property
    def is_empty(self) -> bool:
        return not any(d.has_content for d in self.documents)


_NEWLINE_PROBE = 4096  # characters read to tell the stream's own line ending


def split(text: str) -> Stream:
    body = text.lstrip(BOM)
    bom = text[: len(text) - len(body)]
    text = body
    view = line_view(text)
    documents: list[Document] = []
    line = 1
    for start, end, has_sep in _bounds(text, _separator_starts(view)):
        raw = text[start:end]
        if not raw and not has_sep:
            continue
        part = view[start:end] if view is not text else raw
        documents.append(Document(len(documents), raw, line, has_sep, part))
        line += part.count("\n")

    newline = "\r\n" if "\r\n" in text[:_NEWLINE_PROBE] else "\n"
    # Helm 4 annotates every document it sends; Helm 3 and `helm template` output never do.
    shape: Shape = "helm4" if HELM4_ANNOTATION in text else "helm3"
    return Stream(bom=bom, documents=tuple(documents), newline=newline, shape=shape)


def split_bytes(data: bytes) -> Stream:
    """``split(data.decode("utf-8", "surrogateescape"))``, without decoding.

    Where the only line breaks are LF (or CRLF), a LF byte is a line break and never part
    of a multi-byte sequence, so the documents are found in the bytes, and each stays
    bytes until a stage reads its text (``Document.of_bytes``): on a large stream most
    are CRDs and ConfigMaps that are only written back out. Every copy of a multi-MB
    stream costs about as much as reading it, mostly in page faults; so does decoding a
    whole stream, which also takes, for every character, the width of its widest one (an
    emoji in a dashboard makes it four bytes a character). Any other break (a lone CR,
    NEL, LS, PS) takes ``split``.
    """
    if _odd_breaks(data):
        return split(data.decode("utf-8", errors="surrogateescape"))
    boms = 0
    while data.startswith(_BOM_BYTES, boms * len(_BOM_BYTES)):
        boms += 1
    body = data[boms * len(_BOM_BYTES):] if boms else data
    documents: list[Document] = []
    line = 1
    starts, kind_lines, items_lines = _markers_and_kind_lines(body)
    k = j = 0
    for start, end, has_sep in _bounds(body, starts):
        first, first_items = k, j
        while k < len(kind_lines) and kind_lines[k] < end:
            k += 1
        while j < len(items_lines) and items_lines[j] < end:
            j += 1
        if start == end and not has_sep:
            continue
        documents.append(Document.of_bytes(len(documents), body, start, end, line, has_sep, kind_lines[first:k],
                                           items_lines[first_items:j]))
        line += body.count(b"\n", start, end)
    # As ``split`` decides it, from the first 4096 characters (at most four bytes each).
    head = body[:4 * _NEWLINE_PROBE].decode("utf-8", errors="surrogateescape")[:_NEWLINE_PROBE]
    newline = "\r\n" if "\r\n" in head else "\n"
    shape: Shape = "helm4" if _HELM4_BYTES in body else "helm3"
    return Stream(bom=BOM * boms, documents=tuple(documents), newline=newline, shape=shape)


_BOM_BYTES = BOM.encode()
_HELM4_BYTES = HELM4_ANNOTATION.encode()


def _odd_breaks(data: bytes) -> bool:
    """Whether ``data`` may hold a line break other than LF and CRLF. Single bytes are
    searched first: a search for one byte is many times faster than for several."""
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return True
    return any(last in data and encoded in data for last, encoded in _MULTIBYTE_BREAKS)


# NEL, LS and PS in UTF-8, each behind its last byte. Their first bytes are lead bytes,
# never a continuation, so these bytes always decode to the break, even with bad UTF-8
# around them.
_MULTIBYTE_BREAKS = tuple((c.encode()[-1:], c.encode()) for c in ("\x85", "\u2028", "\u2029"))


def _bounds(text: AnyStr, starts: list[int]) -> list[tuple[int, int, bool]]:
    """(start, end, has separator) of each document, from the offsets of its markers."""
    bounds: list[tuple[int, int, bool]] = []
    if not starts or starts[0] > 0:
        bounds.append((0, starts[0] if starts else len(text), False))
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        bounds.append((start, end, True))
    return bounds


def _separator_starts(text: AnyStr) -> list[int]:
    """Offsets of the lines that are document markers.

    ``str.find`` for the rare ``\n---`` is several times faster than a multi-line regex
    that must try ``^`` at every position of a multi-MB stream.
    """
    marker = "\n---" if isinstance(text, str) else b"\n---"
    starts = [0] if _is_marker(text, 0) else []
    at = text.find(marker)
    while at >= 0:
        if _is_marker(text, at + 1):
            starts.append(at + 1)
        at = text.find(marker, at + 4)
    return starts


_MARKER_OR_KIND = re.compile(rb"\n(?:---|kind:|[\"']?items|\?)")
_ITEMS_START = (b"items", b'"items', b"'items", b"?")


def _markers_and_kind_lines(body: bytes) -> tuple[list[int], list[int], list[int]]:
    """``_separator_starts(body)``, the offsets of the lines that start ``kind:``, and of
    those that may start a top-level ``items`` key (or a complex key, ``?``): one pass over
    a multi-MB stream instead of one for the markers and several per document."""
    starts = [0] if _is_marker(body, 0) else []
    kind_lines = [0] if body.startswith(b"kind:") else []
    items_lines = [0] if body.startswith(_ITEMS_START) else []
    for m in _MARKER_OR_KIND.finditer(body):
        at = m.start() + 1
        first = body[at]
        if first == 0x6B:  # "k"
            kind_lines.append(at)
        elif first != 0x2D:  # "-"
            items_lines.append(at)
        elif _is_marker(body, at):
            starts.append(at)
    return starts, kind_lines, items_lines


def _is_marker(text: AnyStr, at: int) -> bool:
    if isinstance(text, str):
        return text.startswith("---", at) and (at + 3 == len(text) or text[at + 3] in " \t\r\n")
    return text.startswith(b"---", at) and (at + 3 == len(text) or text[at + 3] in b" \t\r\n")


Chunk = str | memoryview  # a piece of the output: text, or a document's own bytes


def join(pieces: list[tuple[Chunk, bool]], *, bom: str | bool, newline: str) -> str:
    """Concatenate document texts; ``(raw, has_separator)`` pairs in output order.

    A separator is added only where a document without one no longer comes first, and a
    line end only where a document without a final one is no longer last.
    """
    return text_of(join_chunks(pieces, bom=bom, newline=newline))


def join_chunks(pieces: list[tuple[Chunk, bool]], *, bom: str | bool, newline: str) -> list[Chunk]:
    """``join``'s output in pieces, written one by one: documents kept as bytes go out as
    they came in, text is encoded on its own (joined, one wide character would make the
    whole output wide, see ``split_bytes``)."""
    out: list[Chunk] = [bom if isinstance(bom, str) else BOM if bom else ""]
    previous: Chunk = ""
    for raw, has_separator in pieces:
        if previous:
            if not _ends_line(previous):
                out.append(newline)
            if not has_separator:
                out.append("---" + newline)
        out.append(raw)
        previous = raw or previous
    return out


def _ends_line(chunk: Chunk) -> bool:
    if isinstance(chunk, str):
        return chunk.endswith(BREAKS)
    # Bytes are kept only for streams whose one line break is LF (or CRLF).
    return len(chunk) > 0 and chunk[-1] == ord("\n")


def text_of(chunks: list[Chunk]) -> str:
    """The output as one text."""
    return "".join(c if isinstance(c, str) else str(c, "utf-8", "surrogateescape") for c in chunks)


def _flow_name(text: str) -> str | None:
    """``metadata.name`` where metadata is a flow mapping: the ``name`` key at its top level
    (a comma or the opening brace before it, outside quotes and inner maps)."""
    found = _FLOW_METADATA.search(text)
    if found is None:
        return None
    depth, quote, at = 1, "", found.end()
    key, end = at, min(len(text), at + _FLOW_SCAN)
    while at < end:
        if at == key:
            m = _FLOW_NAME.match(text, at)
            if m:
                return m.group(3)
        char = text[at]
        if quote:
            if char == "\\" and quote == '"':
                at += 1  # an escape in a double-quoted scalar, never its end
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if not depth:
                return None
        elif char == "," and depth == 1:
            key = at + 1
        at += 1
    return None

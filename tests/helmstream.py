"""Build the exact stdin that Helm 3 and Helm 4 hand to a post-renderer.

Charts are rendered by Helm's own template engine (the Helm v4 Go SDK through
``helm_python``, offline).  The two functions below then reproduce, in
Python, what Helm does between rendering and running the post-renderer:

* Helm 3 (v3.1-v3.21) ``action.renderResources``: ``SortManifests`` drops
  hooks, partials and empty files, kind-sorts the rest with ``InstallOrder``,
  and every document is written as ``---\\n# Source: <path>\\n<doc>\\n``.
* Helm 4 ``action.annotateAndMerge``: files in sorted order, hooks kept, every
  document re-encoded by kyaml (yaml.v3) with the annotation
  ``postrenderer.helm.sh/postrender-filename`` added, joined by ``---``.

Sources are cited next to each rule; see also
``../shared/docs/helm-post-renderer-contract.md`` sections 1 and 2.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from typing import Any

import helm_python
from ruamel.yaml import YAML
from ruamel.yaml.anchor import Anchor
from ruamel.yaml.emitter import RoundTripEmitter
from ruamel.yaml.tokens import CommentToken
from ruamel.yaml.constructor import SafeConstructor
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "FILENAME_ANNOTATION",
    "HELM3_INSTALL_ORDER",
    "HELM4_INSTALL_ORDER",
    "HIDDEN_SECRET_LINE",
    "HOOK_ANNOTATION",
    "HelmStreamError",
    "helm3_stream",
    "helm4_stream",
    "render_chart",
    "split_documents",
    "split_manifests",
    "with_bom",
    "with_comment_only_doc",
    "with_crlf",
    "with_end_markers",
]

HOOK_ANNOTATION = "helm.sh/hook"
FILENAME_ANNOTATION = "postrenderer.helm.sh/postrender-filename"
# Body Helm 3 writes instead of a v1 Secret under `--hide-secret`
# (helm v3 pkg/action/action.go renderResources).
HIDDEN_SECRET_LINE = "# HIDDEN: The Secret output has been suppressed"

# helm/helm pkg/releaseutil/kind_sorter.go on the v3 line (module
# helm.sh/helm/v3, the version with IngressClass and sort.SliceStable).
# The webhook configuration kinds were added only on main by PR #30701
# (2025-03), which became Helm 4's pkg/release/util/kind_sorter.go; on Helm 3
# they are unknown kinds.
HELM3_INSTALL_ORDER: tuple[str, ...] = (
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
)

# helm/helm pkg/release/util/kind_sorter.go (Helm 4). Helm 4 sorts only after
# the post-renderer ran, so this order never shapes a post-renderer's stdin;
# it is here for tests that want to mimic Helm 4's final manifest.
HELM4_INSTALL_ORDER: tuple[str, ...] = (
    *HELM3_INSTALL_ORDER,
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)

_NOTES_SUFFIX = "NOTES.txt"

# releaseutil.SplitManifests (v3 pkg/releaseutil/manifest.go, v4
# pkg/release/v1/util/manifest.go): `(?:^|\s*\n)---\s*`. RE2's \s is ASCII
# only, so spell it out instead of using Python's Unicode-aware \s.
_GO_RE_SPACE = "[\t\n\f\r ]"
_SPLIT_MANIFESTS = re.compile(f"(?:^|{_GO_RE_SPACE}*\n)---{_GO_RE_SPACE}*")

# Go's unicode.IsSpace, used by strings.TrimSpace / TrimLeftFunc. Python's
# str.strip() also strips \x1c-\x1f, which Go keeps.
_GO_UNICODE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)

# A separator line as the brief defines it, tolerating CRLF so the helper
# still works on streams produced by with_crlf().
_SEPARATOR_LINE = re.compile(r"(?m)^---[ \t]*(?:#[^\r\n]*)?\r?$\n?")

_BOM = "\ufeff"
_YAML_STR_TAG = "tag:yaml.org,2002:str"
_YAML_MAP_TAG = "tag:yaml.org,2002:map"
_YAML_NULL_TAG = "tag:yaml.org,2002:null"


class HelmStreamError(ValueError):
    """A rendered chart that Helm itself would refuse to hand on."""


# --------------------------------------------------------------------------
# Rendering


def render_chart(
    chart_dir: str | PathLike[str],
    values: dict[str, Any] | None = None,
    *,
    release: str,
    namespace: str,
) -> dict[str, str]:
    """Render a chart offline with Helm's engine: template path -> text.

    Keys look like ``<chart>/templates/x.yaml`` (subcharts:
    ``<chart>/charts/<sub>/templates/x.yaml``); ``NOTES.txt`` is included,
    ``_*`` partials are not, and templates that render to nothing map to
    ``"\\n"`` or ``""``.
    """
    with helm_python.Chart.load(chart_dir) as chart:
        return chart.render(values, name=release, namespace=namespace)


# --------------------------------------------------------------------------
# Shared Helm semantics


def split_manifests(content: str, *, trim_right: bool = True) -> list[str]:
    """Split one rendered file into documents like ``releaseutil.SplitManifests``.

    ``trim_right=True`` is the Helm 3 behaviour (``strings.TrimSpace`` on the
    file and on every document); ``False`` is Helm 4's, which only trims on
    the left so that the last document keeps its trailing newlines.
    Documents keep their in-file order (``BySplitManifestsOrder``).
    """
    if trim_right:
        docs = _SPLIT_MANIFESTS.split(_go_trim_space(content))
        return [_go_trim_space(d) for d in docs if d != ""]
    docs = _SPLIT_MANIFESTS.split(content.lstrip(_GO_UNICODE_SPACE))
    return [d.lstrip(_GO_UNICODE_SPACE) for d in docs if _go_trim_space(d) != ""]


def _go_trim_space(text: str) -> str:
    return text.strip(_GO_UNICODE_SPACE)


def _skipped_file(path: str, content: str) -> bool:
    # renderResources deletes every *NOTES.txt (subcharts' too); SortManifests
    # and annotateAndMerge skip `_` partials and whitespace-only files.
    return (
        path.endswith(_NOTES_SUFFIX)
        or posixpath.basename(path).startswith("_")
        or _go_trim_space(content) == ""
    )


# --------------------------------------------------------------------------
# Helm 3


def helm3_stream(
    rendered: Mapping[str, str],
    *,
    install_order: Sequence[str] = HELM3_INSTALL_ORDER,
    hide_secret: bool = False,
) -> str:
    """The stdin Helm 3 (v3.1-v3.21) sends a post-renderer.

    Mirrors ``renderResources`` + ``releaseutil.SortManifests``: files in
    byte order, documents split, every document carrying a ``helm.sh/hook``
    annotation dropped (known and unknown hook types alike), the rest
    stable-sorted by kind with ``install_order`` (unknown kinds last, among
    themselves alphabetically by kind, ties keep file order), each written as
    ``---\\n# Source: <path>\\n<doc>\\n``.  ``hide_secret`` reproduces
    ``--hide-secret``, which swaps v1 Secrets for a comment-only document.
    """
    manifests: list[tuple[str, str, str, str]] = []
    for path in sorted(rendered):
        content = rendered[path]
        if _skipped_file(path, content):
            continue
        for doc in split_manifests(content, trim_right=True):
            api_version, kind, is_hook = _simple_head(doc, path)
            if not is_hook:
                manifests.append((path, doc, api_version, kind))

    order = {kind: index for index, kind in enumerate(install_order)}

    def kind_key(manifest: tuple[str, str, str, str]) -> tuple[int, int, str]:
        kind = manifest[3]
        if kind in order:
            return (0, order[kind], "")
        return (1, 0, kind)

    parts: list[str] = []
    for path, doc, api_version, kind in sorted(manifests, key=kind_key):
        if hide_secret and kind == "Secret" and api_version == "v1":
            doc = HIDDEN_SECRET_LINE
        parts.append(f"---\n# Source: {path}\n{doc}\n")
    return "".join(parts)


class _HeadConstructor(SafeConstructor):
    """SafeConstructor reading a plain ``=`` as the string yaml.v2 sees."""


# ruamel resolves a plain `=` to the YAML 1.1 !!value tag and has no
# constructor for it; CRDs carry such enums (`- =`).
_HeadConstructor.add_constructor("tag:yaml.org,2002:value", SafeConstructor.construct_yaml_str)


def _head_loader() -> YAML:
    # sigs.k8s.io/yaml decodes with a yaml.v2 fork, i.e. YAML 1.1 scalars:
    # an unquoted `yes` is a bool and breaks map[string]string annotations.
    loader = YAML(typ="safe")
    loader.version = (1, 1)
    loader.Constructor = _HeadConstructor
    return loader


def _simple_head(doc: str, path: str) -> tuple[str, str, bool]:
    """(apiVersion, kind, is_hook) the way Helm 3 reads ``SimpleHead``.

    Raises where ``yaml.Unmarshal`` into the Go struct would fail, because
    Helm 3 then aborts with ``YAML parse error on <path>``.
    """
    try:
        data = _head_loader().load(doc)
    except YAMLError as exc:
        raise HelmStreamError(f"YAML parse error on {path}: {exc}") from exc
    if data is None:
        return "", "", False
    if not isinstance(data, dict):
        raise HelmStreamError(
            f"YAML parse error on {path}: cannot unmarshal {type(data).__name__} into SimpleHead"
        )
    api_version = _go_string_field(data.get("apiVersion"), "apiVersion", path)
    kind = _go_string_field(data.get("kind"), "kind", path)
    metadata = data.get("metadata")
    if metadata is None:
        return api_version, kind, False
    if not isinstance(metadata, dict):
        raise HelmStreamError(f"YAML parse error on {path}: metadata is not a mapping")
    _go_string_field(metadata.get("name"), "metadata.name", path)
    annotations = metadata.get("annotations")
    if annotations is None:
        return api_version, kind, False
    if not isinstance(annotations, dict):
        raise HelmStreamError(f"YAML parse error on {path}: annotations is not a mapping")
    for key, value in annotations.items():
        _go_string_field(value, f"metadata.annotations[{key!r}]", path)
    return api_version, kind, HOOK_ANNOTATION in annotations


def _go_string_field(value: object, field: str, path: str) -> str:
    # sigs.k8s.io/yaml converts YAML to JSON *towards the target type*: a bool, number,
    # null or timestamp headed for a Go string becomes that string (measured with Helm
    # v3.17.3: `weight: 5`, `k: yes`, `k: null` under annotations all pass). Only a
    # mapping or a sequence cannot become a string.
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        kind = "object" if isinstance(value, dict) else "array"
        raise HelmStreamError(
            f"YAML parse error on {path}: json: cannot unmarshal {kind} "
            f"into Go struct field {field} of type string"
        )
    return value if isinstance(value, str) else str(value)


# --------------------------------------------------------------------------
# Helm 4


def helm4_stream(rendered: Mapping[str, str], *, quote_filename: bool = True) -> str:
    """The stdin Helm 4 sends a post-renderer (``annotateAndMerge``).

    Files in sorted order (not kind order), NOTES/partials/empty files
    skipped, hooks kept, each document split with ``SplitManifests``
    (v4.2+), dropped if it is empty or comment-only (kyaml ``ParseAll``),
    re-encoded the way kyaml's yaml.v3 encoder does (2-space indent,
    sequences not indented under their key, key order, scalar text and
    quoting kept, no line wrapping), with ``metadata.annotations`` gaining
    ``postrenderer.helm.sh/postrender-filename: '<path>'`` as its last key.
    Documents are joined by ``---`` with no leading separator.

    kyaml's ``AnnotationSetter`` single-quotes the value
    (``TestAnnotateAndMerge`` expects ``'templates/configmap.yaml'``);
    ``quote_filename=False`` gives the plain style seen in
    ``shared/corpus/*.helm4.yaml``.
    """
    documents: list[str] = []
    for path in sorted(rendered):
        content = rendered[path]
        if _skipped_file(path, content):
            continue
        for doc in split_manifests(content, trim_right=False):
            node = _compose_document(doc, path)
            if node is None:
                continue
            _set_filename_annotation(node, path, quoted=quote_filename)
            documents.append(_encode_document(node))
    return "---\n".join(documents)


class _YamlV3Emitter(RoundTripEmitter):
    """ruamel's emitter, nudged to write a parsed node tree the way yaml.v3 does.

    Each rule below was found by comparing with what Helm v4.1.4 actually pipes
    to a post-renderer (tests/test_helm_binaries.py records it).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # yaml.v3's is_printable stops at U+FFFF: a character beyond it (an emoji)
        # forces double quotes and is written as \UXXXXXXXX.
        self.unicode_supplementary = False
        # `[1, {a: b}]` keeps its braces.
        self.brace_single_entry_mapping_in_flow_sequence = True

    def write_double_quoted(self, text: Any, split: Any = True) -> None:
        # yaml.v3 (emitterc.go yaml_emitter_write_double_quoted_scalar) escapes what its
        # is_printable rejects -- everything but \n, 0x20-0x7E, U+00A0-U+D7FF and
        # U+E000-U+FFFD -- plus BOM, line breaks, '"' and '\\'; with no line width it
        # never splits the line. ruamel would write characters beyond U+FFFF raw.
        self.write_indicator('"', True)
        out: list[str] = []
        for ch in text:
            printable = "\x20" <= ch <= "\x7e" or "\xa0" <= ch <= "\ud7ff" or "\ue000" <= ch <= "\ufffd"
            if printable and ch not in '"\\\ufeff\u2028\u2029':
                out.append(ch)
            elif ch in self.ESCAPE_REPLACEMENTS:
                out.append("\\" + self.ESCAPE_REPLACEMENTS[ch])
            elif ch <= "\xff":
                out.append(f"\\x{ord(ch):02X}")
            elif ch <= "\uffff":
                out.append(f"\\u{ord(ch):04X}")
            else:
                out.append(f"\\U{ord(ch):08X}")
        data = "".join(out)
        self.column += len(data)
        self.stream.write(data)
        self.write_indicator('"', False)

    def choose_scalar_style(self) -> Any:
        tag = self.event.ctag
        if tag is not None and getattr(tag, "handle", None) is not None:
            # A tag written in the source (`!!str 123`): yaml.v3 keeps the tag and
            # the plain style, where ruamel would drop the tag and quote instead.
            self.event.implicit = (False, False, False)
        return super().choose_scalar_style()


def _kyaml_like() -> YAML:
    # A fresh instance per call: YAML.serialize_all() never resets its
    # serializer, so a reused instance refuses a second document.
    yaml = YAML(typ="rt")
    yaml.Emitter = _YamlV3Emitter
    yaml.indent(mapping=2, sequence=2, offset=0)
    yaml.width = 2**31 - 1  # yaml.v3 does not fold long lines
    return yaml


def _as_yaml_v3_parsed(node: Node, source_lines: Sequence[str]) -> None:
    """Give a composed tree what yaml.v3 keeps from the source and ruamel would not write back."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue  # an alias: the same node again
        seen.add(id(current))
        if isinstance(current.anchor, str):
            # ruamel writes an anchor only where a node is referenced twice; yaml.v3
            # writes every anchor it read (`data: &d`).
            anchor = Anchor()
            anchor.value, anchor.always_dump = current.anchor, True
            current.anchor = anchor
        if isinstance(current, ScalarNode) and current.style == ">":
            # ruamel marks where the source folded a `>` scalar (\a) and folds there
            # again; yaml.v3 keeps only the value and, with no line width, never folds.
            current.value = current.value.replace("\a", "")
        _tighten_line_comments(current.comment, source_lines)
        if isinstance(current, MappingNode):
            for key, value in current.value:
                _tighten_line_comments(key.comment, source_lines)
                stack.extend((key, value))
        elif isinstance(current, SequenceNode):
            stack.extend(current.value)


def _tighten_line_comments(comments: Any, source_lines: Sequence[str]) -> None:
    """yaml.v3 writes a comment that follows content on its line one space after it."""
    if isinstance(comments, list):
        for item in comments:
            _tighten_line_comments(item, source_lines)
    elif isinstance(comments, CommentToken) and comments.start_mark is not None:
        # yaml.v3 keeps no blank lines: `name: x` + a blank (or blanks-only) line + `labels:`
        # (what `{{- include ... | nindent 2 }}` of nothing leaves) comes out without it.
        comments.value = re.sub(r"\n(?:[ \t]*\n)+", "\n", comments.value)
        mark = comments.start_mark
        if mark.line < len(source_lines) and source_lines[mark.line][: mark.column].strip():
            mark.column = 0  # the emitter then pads with exactly one space


def _compose_document(doc: str, path: str) -> Node | None:
    try:
        nodes = list(_kyaml_like().compose_all(doc))
    except YAMLError as exc:
        raise HelmStreamError(f"parsing {path}: {exc}") from exc
    if not nodes:
        return None  # empty or comment-only: kyaml's ByteReader skips it
    if len(nodes) > 1:
        raise HelmStreamError(f"parsing {path}: SplitManifests left several documents together")
    node = nodes[0]
    if isinstance(node, ScalarNode) and node.tag == _YAML_NULL_TAG:
        return None  # yaml.IsMissingOrNull
    if not isinstance(node, MappingNode):
        raise HelmStreamError(f"parsing {path}: wrong node kind: expected MappingNode")
    _reject_duplicate_keys(node, path)
    _as_yaml_v3_parsed(node, doc.splitlines())
    return node


def _reject_duplicate_keys(node: Node, path: str) -> None:
    # yaml.v3 refuses duplicate mapping keys; ruamel's composer does not.
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                if key.value in seen:
                    raise HelmStreamError(
                        f"parsing {path}: mapping key {key.value!r} already defined"
                    )
                seen.add(key.value)
            _reject_duplicate_keys(value, path)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, path)


def _str_node(value: str, style: str | None = None) -> ScalarNode:
    return ScalarNode(_YAML_STR_TAG, value, style=style)


def _field(mapping: MappingNode, name: str) -> int | None:
    for index, (key, _value) in enumerate(mapping.value):
        if isinstance(key, ScalarNode) and key.value == name:
            return index
    return None


def _ensure_mapping_field(mapping: MappingNode, name: str) -> MappingNode:
    """kyaml ``PathGetter{Create: MappingNode}`` for one path element."""
    index = _field(mapping, name)
    if index is not None:
        key, value = mapping.value[index]
        if isinstance(value, MappingNode):
            return value
        if isinstance(value, ScalarNode) and value.tag == _YAML_NULL_TAG:
            created = MappingNode(_YAML_MAP_TAG, [])
            mapping.value[index] = (key, created)
            return created
        raise HelmStreamError(f"{name} is not a mapping")
    created = MappingNode(_YAML_MAP_TAG, [])
    mapping.value.append((_str_node(name), created))
    return created


def _set_filename_annotation(document: MappingNode, path: str, *, quoted: bool) -> None:
    metadata = _ensure_mapping_field(document, "metadata")
    # kyaml ClearEmptyAnnotations: an empty `annotations` is dropped first,
    # so the recreated one lands at the end of metadata.
    index = _field(metadata, "annotations")
    if index is not None:
        value = metadata.value[index][1]
        if not (isinstance(value, MappingNode) and value.value):
            del metadata.value[index]
    annotations = _ensure_mapping_field(metadata, "annotations")
    value = _str_node(path, style="'" if quoted else None)
    existing = _field(annotations, FILENAME_ANNOTATION)
    if existing is not None:
        annotations.value[existing] = (annotations.value[existing][0], value)
    else:
        annotations.value.append((_str_node(FILENAME_ANNOTATION), value))


def _encode_document(node: Node) -> str:
    buffer = io.StringIO()
    _kyaml_like().serialize(node, buffer)
    text = buffer.getvalue()
    if text.endswith("\n...\n"):
        # An open-ended document (ends in a `|+` scalar): the emitter adds
        # `...`, yaml.v3 does not, and the trailing newlines are content.
        return text[: -len("...\n")]
    # yaml.v3 drops blank lines after the last node; ruamel keeps them.
    return text.rstrip("\n") + "\n"


# --------------------------------------------------------------------------
# Splitting streams and making hostile variants of them


def split_documents(stream: str) -> list[str]:
    """Documents of a stream, exact text, for byte-for-byte comparisons.

    Splits on lines that are exactly ``---`` optionally followed by blanks
    and a comment, drops the separator line itself (with its line break),
    a leading BOM, and whitespace-only pieces.  A Helm 3 document comes back
    as ``"# Source: ...\\n<doc>\\n"``, a Helm 4 one as ``"<doc>\\n"``.
    """
    pieces = _SEPARATOR_LINE.split(stream.removeprefix(_BOM))
    return [piece for piece in pieces if piece.strip()]


def with_crlf(stream: str) -> str:
    """The same stream with Windows line endings."""
    return stream.replace("\r\n", "\n").replace("\n", "\r\n")


def with_bom(stream: str) -> str:
    """The same stream preceded by a UTF-8 byte order mark."""
    return stream if stream.startswith(_BOM) else _BOM + stream


def with_end_markers(stream: str) -> str:
    """Every document closed by a ``...`` document-end line."""
    out: list[str] = []
    pending = False  # content seen since the last separator
    for line in stream.splitlines(keepends=True):
        if _SEPARATOR_LINE.fullmatch(line) and pending:
            out.append("...\n")
            pending = False
        elif not _SEPARATOR_LINE.fullmatch(line):
            pending = pending or bool(line.strip())
        out.append(line)
    if pending:
        if out and not out[-1].endswith("\n"):
            out.append("\n")
        out.append("...\n")
    return "".join(out)


def with_comment_only_doc(
    stream: str,
    *,
    position: int = 1,
    comment_lines: Iterable[str] = (HIDDEN_SECRET_LINE,),
    source: str | None = None,
) -> str:
    """Insert a document made only of comment lines before document ``position``.

    In the Helm 3 shape (stream starts with ``---``) the new document gets a
    ``# Source:`` line like the ones ``helm template --hide-secret`` writes;
    ``source`` defaults to ``<chart>/templates/secret.yaml`` with the chart
    taken from the stream's first ``# Source:``.  In the Helm 4 shape it is
    a bare comment block.  A ``position`` past the end appends.
    """
    body = "".join(f"{line}\n" for line in comment_lines)
    bom = _BOM if stream.startswith(_BOM) else ""
    text = stream.removeprefix(_BOM)
    separators = list(_SEPARATOR_LINE.finditer(text))
    if text.startswith("---") and separators and separators[0].start() == 0:
        if source is None:
            match = re.search(r"(?m)^# Source: ([^/\r\n]+)/", text)
            source = f"{match.group(1) if match else 'chart'}/templates/secret.yaml"
        block = f"---\n# Source: {source}\n{body}"
        if position < len(separators):
            at = separators[position].start()
            return bom + text[:at] + block + text[at:]
        return bom + _with_final_newline(text) + block
    starts = [0, *(match.end() for match in separators)]
    if 0 <= position < len(starts) and text.strip():
        at = starts[position]
        return bom + text[:at] + body + "---\n" + text[at:]
    if not text.strip():
        return bom + body
    return bom + _with_final_newline(text) + "---\n" + body


def _with_final_newline(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"

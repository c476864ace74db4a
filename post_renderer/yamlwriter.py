"""A small, deterministic YAML writer for the documents helm-egress generates.

Generated documents hold only mappings, sequences, strings, integers and booleans, and
must read back the same under YAML 1.1 (Kubernetes' sigs.k8s.io/yaml) and 1.2 (kyaml,
ruamel): a string is written plain only when no YAML version could read it as anything
else. Writing them here keeps key order as built and costs no emitter import.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*\Z")
# Words YAML 1.1 reads as booleans or null, in every spelling it accepts.
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"cannot write {type(value).__name__}")
    return _string(value)


# Generated documents repeat a few hundred keys and values (CIDRs, ports' protocols,
# selectors) across every workload's policy.
@functools.lru_cache(maxsize=4096)
def _string(value: str) -> str:
    if _PLAIN.match(value) and value.lower() not in _RESERVED:
        return value
    if "'" not in value and value.isprintable():
        return f"'{value}'"
    # JSON escapes quotes, backslashes and C0 controls as YAML does; what YAML does not
    # allow in a document (DEL, C1 controls, U+FFFE/FFFF) or reads as a line break (NEL,
    # LS, PS, folded to a space inside quotes) is escaped too, so the value reads back.
    return _not_yaml_printable().sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


@functools.cache  # compiled on first use: rare, and ~0.5 ms of every run otherwise
def _not_yaml_printable() -> re.Pattern[str]:
    return re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


# (id of a list, indent, sequence style) -> (the list, its lines): see ``write``.
Memo = dict[tuple[int, int, bool], tuple[list[Any], list[str]]]


def write(data: dict[str, Any], *, indent_sequences: bool, newline: str = "\n", memo: Memo | None = None) -> str:
    """``memo``: lists already written, shared by the caller's documents. Generated
    policies share their rule lists (every workload with the same entries gets the same
    list object), and writing those is most of writing a policy. The memo holds each list
    it has seen, so no id is reused while it lives; the lists must not change meanwhile."""
    lines: list[str] = []
    _mapping(data, 0, lines, indent_sequences, memo)
    return newline.join(lines) + newline


def _mapping(data: dict[str, Any], indent: int, lines: list[str], seq_indent: bool, memo: Memo | None = None) -> None:
    pad = " " * indent
    for key, value in data.items():
        head = f"{pad}{scalar(key)}:"
        if isinstance(value, dict) and value:
            lines.append(head)
            _mapping(value, indent + 2, lines, seq_indent, memo)
        elif isinstance(value, list) and value:
            lines.append(head)
            at = indent + 2 if seq_indent else indent
            if memo is None:
                _sequence(value, at, lines, seq_indent)
                continue
            known = memo.get((id(value), at, seq_indent))
            if known is None:
                known = memo[(id(value), at, seq_indent)] = (value, [])
                _sequence(value, at, known[1], seq_indent)
            lines.extend(known[1])
        else:
            lines.append(f"{head} {_inline(value)}")


def _sequence(items: list[Any], indent: int, lines: list[str], seq_indent: bool) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            # The first key shares the dash's line; the rest align with it.
            sub: list[str] = []
            _mapping(item, indent + 2, sub, seq_indent)
            lines.append(f"{pad}- {sub[0][indent + 2:]}")
            lines.extend(sub[1:])
        elif isinstance(item, list) and item:
            sub = []
            _sequence(item, indent + 2, sub, seq_indent)
            lines.append(f"{pad}- {sub[0][indent + 2:]}")
            lines.extend(sub[1:])
        else:
            lines.append(f"{pad}- {_inline(item)}")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)

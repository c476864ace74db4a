"""Changes to a parsed YAML document, kept so they can be made again on another copy of it.

A repair is decided once, on the plain data the reading stage parsed, and the same edits
are then made on the comment-preserving copy that is written out: both copies come from
the same text, so a path of keys and indices names the same place in each.
"""

from __future__ import annotations

import copy
from collections.abc import MutableMapping
from typing import Any, Literal, NamedTuple

Path = tuple[str | int, ...]  # keys and indices from a document's root


class Edit(NamedTuple):
    """One change to the mapping or list at ``path``."""

    op: Literal["set", "delete", "insert", "rename"]  # insert: a new key after ``after`` (first when None)
    path: Path
    key: str | int
    value: Any = None  # what "set" and "insert" write; the new key of "rename"
    after: str | None = None

    def apply(self, root: Any) -> None:
        target = root
        for step in self.path:
            target = target[step]
        # Each copy gets its own list: the plain copy lives on as the repaired data.
        value = copy.copy(self.value) if isinstance(self.value, list) else self.value
        if self.op == "set":
            target[self.key] = value
        elif self.op == "delete":
            del target[self.key]
        elif self.op == "insert":
            _set_after(target, str(self.key), value, self.after)
        elif self.op == "rename":
            target[value] = target.pop(self.key)


class Edits:
    """The edits of one document as they are decided: each is made on ``data`` at once, so
    the next decision sees it, and kept in ``made``."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.made: list[Edit] = []

    def _make(self, edit: Edit) -> None:
        edit.apply(self.data)
        self.made.append(edit)

    def set(self, path: Path, key: str | int, value: Any) -> None:
        self._make(Edit("set", path, key, value))

    def delete(self, path: Path, key: str | int) -> None:
        self._make(Edit("delete", path, key))

    def insert(self, path: Path, key: str, value: Any, after: str | None) -> None:
        self._make(Edit("insert", path, key, value, after))

    def rename(self, path: Path, old: str, new: str) -> None:
        """``new`` takes ``old``'s value and goes last, as a comment-preserving map allows."""
        self._make(Edit("rename", path, old, new))


def _set_after(mapping: MutableMapping[str, Any], key: str, value: Any, after: str | None) -> None:
    """Add ``key`` after ``after`` (first when None) where the map keeps an order of its
    own (a comment-preserving one); a plain dict gets it last."""
    if key in mapping or not hasattr(mapping, "insert"):
        mapping[key] = value
        return
    keys = list(mapping)
    position = 0 if after is None else (keys.index(after) + 1 if after in keys else len(keys))
    mapping.insert(position, key, value)

"""The one error type of helm-egress, and the location every problem carries.

Stages raise ``EgressError`` with one or more ``Problem``s; only the CLI renders them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Control characters and every character str.splitlines() breaks on.
_BREAK = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


class Location(NamedTuple):
    """Where a problem is: a values file line, a stream document, a YAML path."""

    file: str | None = None
    line: int | None = None  # 1-based
    doc_index: int | None = None  # 0-based position in the input stream
    kind: str | None = None
    name: str | None = None
    path: str | None = None  # e.g. istio.egress[2].ports[0].protocol
    key: str | None = None  # an annotation key, when the problem is in one

    def render(self) -> str:
        parts: list[str] = []
        if self.file is not None:
            parts.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        if self.doc_index is not None:
            what = f"document {self.doc_index}"
            label = "/".join(x for x in (self.kind, self.name) if x)
            if label:
                what += f" ({label})"
            parts.append(what)
        if self.key is not None:
            parts.append(f"annotation {self.key}")
        if self.path:
            parts.append(self.path)
        return ": ".join(parts)

    def brief(self) -> str:
        """Where a declaration was written, short enough for a table: file:line and path,
        or the annotation on the workload."""
        m = re.search(r'annotations\["([^"]+)"\](?:: (.*))?', self.path or "")
        if m:
            rest = m.group(2) or ""
            return f"annotation {m.group(1)}{rest if rest.startswith('[') else ''} ({self.file}:{self.line})"
        return f"{self.file}:{self.line} {self.path}"

    def at(self, path: str | None = None, line: int | None = None) -> Location:
        """The same place, narrowed to a sub-path (and its line, when known)."""
        return Location(
            file=self.file,
            line=line if line is not None else self.line,
            doc_index=self.doc_index,
            kind=self.kind,
            name=self.name,
            path=path if path is not None else self.path,
            key=self.key,
        )


class Problem(NamedTuple):
    location: Location
    message: str

    def render(self) -> str:
        """One line: a line break or control character that reached a message from the
        input is shown escaped."""
        where = self.location.render()
        return one_line(f"{where}: {self.message}" if where else self.message)


def one_line(text: str) -> str:
    """``text`` with every line break and control character shown escaped: a message
    that reached a terminal or log from the input must not forge a second line."""
    return _BREAK.sub(lambda m: repr(m.group())[1:-1], text)


class EgressError(Exception):
    """Bad input: every problem found, each located. Exit status 1."""

    def __init__(self, problems: list[Problem] | None = None) -> None:
        self.problems: list[Problem] = problems if problems is not None else []
        super().__init__("; ".join(p.render() for p in self.problems))

    @classmethod
    def one(cls, location: Location, message: str) -> EgressError:
        return cls([Problem(location, message)])


class Problems:
    """Collects problems so a stage can report all of them at once, then raise."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, location: Location, message: str) -> None:
        self.items.append(Problem(location, message))

    def extend(self, problems: list[Problem]) -> None:
        self.items.extend(problems)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise EgressError(list(self.items))

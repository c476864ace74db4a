"""Source: ``istio.egress`` from Helm values files, every node located by file and line.

Files merge the way Helm merges values: a later file wins key by key, lists are replaced
and ``null`` deletes. Only ``istio.egress`` matters here, and being a list it always
comes whole from one file, so locations never mix files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from post_renderer import schema, yamlio
from post_renderer.entries import checked_entries
from post_renderer.errors import EgressError, Location, Problems
from post_renderer.incluster import from_values
from post_renderer.model import EgressEntry, InCluster
from post_renderer.settings import Settings

if TYPE_CHECKING:
    from ruamel.yaml.nodes import Node

BASE_PATH = "istio.egress"
IN_CLUSTER_PATH = "istio.inCluster"


class ValuesFile(NamedTuple):
    name: str  # as the user gave it, for messages
    text: str


class EgressValues(NamedTuple):
    """The egress block in force, or ``present=False`` when no file declares one."""

    present: bool
    entries: tuple[EgressEntry, ...]
    file: str | None


def load_egress(
    files: Sequence[ValuesFile],
    settings: Settings,
    problems: Problems,
    *,
    base_path: str = BASE_PATH,
    verdicts: schema.Verdicts | None = None,
) -> EgressValues:
    """The egress block in force; problems are collected, not raised, so one run reports
    bad values and bad manifests together. ``verdicts`` may vouch for a file's schema
    check, keyed by the file's bytes."""
    block = _in_force(files, base_path, problems)
    if block is None:
        return EgressValues(present=False, entries=(), file=None)
    f, egress, locate = block
    source = f"values:{os.path.basename(f.name)}"
    # The block in force always comes whole from this one file, so its bytes (and where
    # in them the block sits) decide what is validated.
    subject = b"values\0" + base_path.encode() + b"\0" + f.text.encode("utf-8", "surrogatepass")
    entries = checked_entries(egress, locate, source=source, settings=settings, problems=problems,
                              verdicts=verdicts, subject=subject)
    return EgressValues(present=True, entries=tuple(entries), file=f.name)


def load_in_cluster(files: Sequence[ValuesFile], problems: Problems) -> tuple[InCluster, ...]:
    """``istio.inCluster``: the in-cluster destinations every workload the values apply to calls."""
    block = _in_force(files, IN_CLUSTER_PATH, problems, report=False)
    if block is None:
        return ()
    _, raw, locate = block
    return tuple(from_values(raw, locate, problems))


Locate = Callable[[Sequence[str | int]], Location]


def _in_force(files: Sequence[ValuesFile], base_path: str, problems: Problems,
              report: bool = True) -> tuple[ValuesFile, Any, Locate] | None:
    """The block at ``base_path`` in force after Helm's merge, with where each node was
    written; None when no file sets it. ``report``: whether a file that cannot be read is
    reported here (once per run: by the egress block's reading)."""
    current: tuple[ValuesFile, Any, Node | None, list[str]] | None = None
    for f in files:
        try:
            data, root = yamlio.load_with_nodes(f.text, Location(file=f.name, line=1), strict_numbers=True)
        except EgressError as e:
            if report:
                problems.extend(e.problems)
            continue
        if data is None:
            continue
        if not isinstance(data, dict):
            if report:
                problems.add(Location(file=f.name, line=1), "a values file must be a mapping")
            continue
        mapping: Any = data
        keys = base_path.split(".")
        for depth, key in enumerate(keys):
            if not isinstance(mapping, dict) or key not in mapping:
                break
            if mapping[key] is None:
                current = None  # Helm: null deletes the key
                break
            if depth == len(keys) - 1:
                current = (f, mapping[key], root, keys)
            elif not isinstance(mapping[key], dict):
                current = None  # a scalar replaces the whole map below it
                break
            mapping = mapping[key]
    if current is None:
        return None
    f, block, root, keys = current

    def locate(path: Sequence[str | int]) -> Location:
        line = yamlio.node_line(root, [*keys, *path])
        return Location(file=f.name, line=line, path=schema.render_path(base_path, path))

    return f, block, locate

"""The output kinds. Each module builds one kind of document from the access model.

Every module has the same surface:

- ``KIND`` and ``TEMPLATE`` (the chart-relative path its documents claim to come from);
- ``build(ctx: access.Context) -> list[Generated]``: its documents (none when not asked for);
- ``check(spec) -> list[str]``: the admission rules its documents must pass;
- optionally ``errors(ctx)`` and ``warnings(ctx) -> list[Problem]``, and ``notes(ctx) -> list[str]``.

A new kind (Calico Enterprise ``domains``, GKE ``FQDNNetworkPolicy``, ...) is one module
added to ``KINDS`` and a row in README's table of output kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from post_renderer.access import Context
from post_renderer.errors import Problem
from post_renderer.kinds import cilium, networkpolicy, serviceentry, sidecar

# ServiceEntries first: the other kinds read which ServiceEntry serves each destination.
KINDS: tuple[ModuleType, ...] = (serviceentry, networkpolicy, cilium, sidecar)
TEMPLATE_FILES: dict[str, str] = {k.KIND: k.TEMPLATE for k in KINDS}
CHECKS: dict[str, Callable[[object], list[str]]] = {k.KIND: k.check for k in KINDS}


def errors(ctx: Context) -> list[Problem]:
    return [p for k in KINDS if hasattr(k, "errors") for p in k.errors(ctx)]


def warnings(ctx: Context) -> list[Problem]:
    return [p for k in KINDS if hasattr(k, "warnings") for p in k.warnings(ctx)]


def notes(ctx: Context) -> list[str]:
    return [n for k in KINDS if hasattr(k, "notes") for n in k.notes(ctx)]

"""The output kinds, and the registry: ``KINDS`` is the only list of them.

A kind is one module of this package that fits ``Kind`` (mypy checks each registered
module against it):

- ``KIND``, ``TEMPLATE``: the document kind it writes, and the chart-relative path its
  documents claim to come from (Helm 3 ``# Source:``, Helm 4 ``postrender-filename``);
- ``SETTINGS``: the ``Settings`` fields it reads (a test holds it to that list);
- ``LAYER``: ``"mesh"`` (configures the proxy) or ``"network"`` (lets packets out): explain
  lists mesh layers first, as traffic meets them;
- ``REPORT``: the explain field naming its per-workload object (``"policy"``, ``"sidecar"``),
  or None for a kind written per destination;
- ``LABEL_SELECTOR``: it selects a workload's pods by their labels alone, so they need some;
- ``NEEDS_MESH``: it reads the chart's in-mesh objects (``Context.inmesh``), which are then
  parsed;
- ``wanted(settings)``: whether this run writes it; ``covers(access, settings)``: whether it
  writes an object for that workload;
- ``errors(ctx)``: what makes its objects wrong, refused before anything is built;
  ``build(ctx)``: its documents; ``warnings(ctx)``, ``notes(ctx)``: for ``check`` and stderr;
- ``check(spec)``: the admission rules its documents must pass;
- ``explain(ctx, access, planned, dest, port)``: the layer it adds for one destination of a
  workload, or None; ``explain_reach(ctx, access, reach)``: what it opens for one thing the
  workload reaches in the cluster (``Context.reach``), or None.

Adding a kind: write the module, add it to ``KINDS`` (its place is its documents' place
in the output), vendor its schema and teach ``tests/oracle.py`` its admission rules; see
README's "Adding an output kind".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, Protocol

from post_renderer.access import Access, Context
from post_renderer.errors import EgressError, Problem, Problems
from post_renderer.kinds import authorizationpolicy, cilium, networkpolicy, serviceentry, sidecar
from post_renderer.reach import Reach
from post_renderer.settings import Settings
from post_renderer.synth import Generated, Planned


class Kind(Protocol):
    # Read-only: a module's constants satisfy them (a plain attribute would have to match
    # exactly, invariantly).
    @property
    def KIND(self) -> str: ...
    @property
    def TEMPLATE(self) -> str: ...
    @property
    def SETTINGS(self) -> frozenset[str]: ...
    @property
    def LAYER(self) -> Literal["mesh", "network"]: ...
    @property
    def REPORT(self) -> Literal["policy", "sidecar"] | None: ...
    @property
    def LABEL_SELECTOR(self) -> bool: ...
    @property
    def NEEDS_MESH(self) -> bool: ...

    def wanted(self, settings: Settings) -> bool: ...
    def covers(self, access: Access, settings: Settings) -> bool: ...
    def errors(self, ctx: Context) -> list[Problem]: ...
    def build(self, ctx: Context) -> list[Generated]: ...
    def warnings(self, ctx: Context) -> list[Problem]: ...
    def notes(self, ctx: Context) -> list[str]: ...
    def check(self, spec: Any) -> list[str]: ...
    def explain(self, ctx: Context, access: Access, planned: Planned, dest: str, port: int) -> str | None: ...
    def explain_reach(self, ctx: Context, access: Access, reach: Reach) -> str | None: ...


# ServiceEntries first: Helm 3 creates in stream order, and a proxy should know a
# destination before a policy lets its packets out; an AuthorizationPolicy before the
# NetworkPolicy that sends its workloads to the waypoint.
KINDS: tuple[Kind, ...] = (serviceentry, authorizationpolicy, networkpolicy, cilium, sidecar)
NAMES: frozenset[str] = frozenset(k.KIND for k in KINDS)
TEMPLATE_FILES: dict[str, str] = {k.KIND: k.TEMPLATE for k in KINDS}
BY_NAME: dict[str, Kind] = {k.KIND: k for k in KINDS}


class Built(NamedTuple):
    generated: list[Generated]  # in output order: by kind, as registered
    warnings: list[Problem]
    notes: list[str]


def active(settings: Settings) -> list[Kind]:
    return [k for k in KINDS if k.wanted(settings)]


def needs_mesh(settings: Settings) -> bool:
    return any(k.NEEDS_MESH for k in active(settings))


def label_selected(settings: Settings) -> Callable[[Access], bool]:
    """Whether a kind of this run selects a workload's pods by their labels alone."""
    chosen = [k for k in active(settings) if k.LABEL_SELECTOR]
    return lambda access: any(k.covers(access, settings) for k in chosen)


def build(ctx: Context) -> Built:
    """Stage: every kind of this run builds its documents. What would make any of them
    wrong is refused first, all of it at once, before anything is built."""
    kinds = active(ctx.settings)
    errors = [p for k in kinds for p in k.errors(ctx)]
    if errors:
        raise EgressError(errors)
    return Built([g for k in kinds for g in k.build(ctx)],
                 [p for k in kinds for p in k.warnings(ctx)],
                 [n for k in kinds for n in k.notes(ctx)])


def check(generated: Sequence[Generated]) -> None:
    """Stage: every generated document must pass Istio's and the API server's rules.

    A failure here means helm-egress itself is wrong, but it is reported like bad input,
    located at the declaration that produced the document, so nothing invalid reaches
    the cluster.
    """
    problems = Problems()
    for g in generated:
        for message in BY_NAME[g.kind].check(g.body["spec"]):
            problems.add(g.origin, f"generated {g.kind} {g.name} would be rejected: {message}")
    problems.raise_if_any()

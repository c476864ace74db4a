"""The output-kind registry is the only list of kinds, and each kind keeps its contract.

A kind module that is not registered would never be written, checked or explained; one
that reads a setting it does not declare hides what changes its output. Both fail here.
"""

from __future__ import annotations

import copy
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import oracle
from post_renderer import inmesh, kinds
from post_renderer import stream as streams
from post_renderer.explain import WorkloadReport
from post_renderer.find import find
from post_renderer.plan import plan
from post_renderer.read import read
from post_renderer.settings import Settings, Waypoint
from post_renderer.values import ValuesFile

CASES = Path(__file__).parent / "cases"


def test_every_kind_module_is_registered() -> None:
    modules = {m.name for m in pkgutil.iter_modules(kinds.__path__)}
    assert modules == {k.__name__.rpartition(".")[2] for k in kinds.KINDS}  # type: ignore[attr-defined]
    assert len(kinds.NAMES) == len(kinds.KINDS)


def test_the_registry_feeds_every_list_of_kinds() -> None:
    assert set(kinds.TEMPLATE_FILES) == kinds.NAMES == set(kinds.BY_NAME)
    # The test oracle judges every kind helm-egress can write, and no other.
    assert set(oracle.PROBLEMS) == kinds.NAMES


@pytest.mark.parametrize("kind", kinds.KINDS, ids=lambda k: k.KIND)
def test_a_kind_declares_its_place(kind: kinds.Kind) -> None:
    assert kind.LAYER in ("mesh", "network")
    assert kind.REPORT is None or kind.REPORT in WorkloadReport._fields
    assert kind.SETTINGS <= set(Settings._fields)
    assert kind.TEMPLATE.startswith("templates/") and kind.TEMPLATE.endswith(".yaml")


class _Recording:
    """Settings that remember which fields were read."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.read: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.read.add(name)
        return getattr(self._settings, name)


# Inputs that make every kind do all it can: chart Sidecars and Cilium policies, twins,
# wildcards, addresses, the allowlist's and the chart's ServiceEntries.
_INPUTS = ["fqdn-travel-cilium-sidecar-helm3", "fqdn-cilium-sidecar-helm4", "values-shop-all-kinds-helm4",
           "normalize-seed-allowlist-helm3", "annotations-and-values-helm4", "ambient-kubernetes-helm3", "dialled-cilium",
           "hostnet-kubernetes"]
_SETTINGS = [
    Settings(network_policy="kubernetes", sidecar=True, namespace="shop"),
    Settings(network_policy="cilium", sidecar=True, cilium_wildcard_depth=2),
    Settings(network_policy="cilium", allow_same_namespace=False),
    Settings(network_policy="kubernetes", allow_same_namespace=False, sidecar_hosts=("payments/api.payments.svc",)),
    Settings(network_policy="none", sidecar=True),
    Settings(network_policy="kubernetes", mesh="ambient", waypoint=Waypoint("istio-egress", "egress-waypoint")),
    Settings(network_policy="cilium", mesh="ambient", waypoint=Waypoint(None, "waypoint"), trust_domain="td.example"),
]


def _contexts() -> list[tuple[str, Settings, Any]]:
    out = []
    for case in _INPUTS:
        folder = CASES / case
        values = [ValuesFile(str(p), p.read_text()) for p in sorted(folder.glob("values*.yaml"))]
        for settings in _SETTINGS:
            stream = streams.split((folder / "input.yaml").read_text())
            try:
                found = find(read(stream, kinds.NAMES, [inmesh.NEED]), values, None, settings, verdicts=None,
                             needs_mesh=True)
                planned = plan(found, settings, kinds.label_selected(settings))
            except Exception:  # noqa: BLE001 - a combination the input refuses says nothing here
                continue
            out.append((case, settings, planned.ctx))
    return out


def test_a_kind_reads_only_the_settings_it_declares() -> None:
    contexts = _contexts()
    assert len(contexts) >= 10
    read: dict[str, set[str]] = {k.KIND: set() for k in kinds.KINDS}
    for case, settings, ctx in contexts:
        for kind in kinds.KINDS:
            recording = _Recording(settings)
            mine = copy.copy(ctx)
            mine.settings = recording
            if not kind.wanted(recording):  # type: ignore[arg-type]
                continue
            kind.errors(mine)
            kind.build(mine)
            kind.warnings(mine)
            kind.notes(mine)
            for access in mine.access:
                kind.covers(access, recording)  # type: ignore[arg-type]
                for p in access.planned:
                    for dest in [*p.entry.hosts, *p.entry.addresses]:
                        for port in p.entry.ports:
                            kind.explain(mine, access, p, dest, port.number)
                # What every policy reaches is read from the run's settings, not the kind's.
                for r in ctx.reach(access):
                    kind.explain_reach(mine, access, r)
            assert recording.read <= kind.SETTINGS, (case, settings, kind.KIND, recording.read - kind.SETTINGS)
            read[kind.KIND] |= recording.read
    # And declares none it never reads: the list says what changes its output.
    for kind in kinds.KINDS:
        assert read[kind.KIND] == kind.SETTINGS, (kind.KIND, kind.SETTINGS - read[kind.KIND])

"""The indexes that keep a render linear answer exactly what a scan of everything would.

``Claims.covering`` (which ServiceEntry serves a destination), ``Context.overlapping``
(which declared hostnames a Sidecar host would take in) and ``Context.carrying_all``
(which workloads a label selector selects) replaced scans that made large releases
quadratic; each is compared here with the scan it replaced, on generated names.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from post_renderer.access import Access, Context
from post_renderer.addresses import covering_wildcards, host_covers
from post_renderer.errors import Location, Problems
from post_renderer.model import EgressEntry, Port, Workload
from post_renderer.settings import Settings
from post_renderer.synth import Claim, Claims, Planned, Resolution

PROPERTY = settings(
    max_examples=int(os.environ.get("HELM_EGRESS_FUZZ_EXAMPLES", "100")),
    derandomize=os.environ.get("HELM_EGRESS_FUZZ_RANDOM") != "1",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LABELS = st.sampled_from(["a", "b", "c", "x", "example"])
# Few labels, so that names and wildcards often cover each other.
NAMES = st.builds(lambda wild, labels: ("*." if wild else "") + ".".join(labels), st.booleans(),
                  st.lists(LABELS, min_size=1, max_size=4))
NAMESPACES = st.sampled_from([None, "a", "b"])


def _claim(dest: str, port: int, scope: frozenset[str | None] | None, n: int) -> Claim:
    return Claim(dest, port, "TLS", scope, f"source {n}", f"se{n}")


@PROPERTY
@given(st.lists(st.tuples(NAMES, st.sampled_from([443, 80]), st.none() | st.frozensets(NAMESPACES, max_size=2))),
       NAMES, st.sampled_from([443, 80]), NAMESPACES)
def test_covering_is_the_scan_it_replaced(made: list[tuple[str, int, frozenset[str | None] | None]], dest: str,
                                          port: int, namespace: str | None) -> None:
    claims = [_claim(d, p, s, n) for n, (d, p, s) in enumerate(made)]
    scan = [c for c in claims if host_covers(c.dest, dest) and c.port == port and c.reaches(namespace)]
    assert Claims(claims).covering(dest, port, namespace) == scan


@PROPERTY
@given(NAMES)
def test_covering_wildcards_are_every_wildcard_that_covers(host: str) -> None:
    below = host[2:] if host.startswith("*.") else host
    candidates = {"*." + ".".join(below.split(".")[i:]) for i in range(1, len(below.split(".")))}
    assert set(covering_wildcards(host)) == {r for r in candidates if host_covers(r, host)} - {host}


def _workload(n: int, labels: dict[str, str]) -> Workload:
    return Workload(n, "Deployment", f"w{n}", None, {"matchLabels": labels}, {}, Location(), labels)


def _access(n: int, hosts: list[str]) -> Access:
    entry = EgressEntry(f"e{n}", tuple(hosts), (), (Port(443, "TLS"),), None, Location(), f"e{n}")
    return Access(_workload(n, {"app": f"w{n}"}), None, f"w{n}-egress", (Planned(entry, Resolution("NONE", "")),), ())


@PROPERTY
@given(st.lists(st.lists(NAMES, min_size=1, max_size=4), min_size=1, max_size=6), NAMES, st.integers(0, 5))
def test_overlapping_is_the_scan_it_replaced(declared: list[list[str]], name: str, mine_at: int) -> None:
    access = [_access(n, hosts) for n, hosts in enumerate(declared)]
    ctx = Context(settings=Settings(), release="r", home=None, access=access)
    mine = access[mine_at % len(access)]
    # The scan: every other workload's hostnames, in the order first declared.
    own = set(mine.hostnames)
    others: dict[str, str] = {}
    for a in access:
        if a is not mine:
            for host in a.hostnames:
                if host not in own:
                    others.setdefault(host, a.workload.name)
    scan = next((h for h in others if host_covers(name, h) or host_covers(h, name)), None)
    found = next((h for h in ctx.overlapping(name) if h not in own and ctx.declared_by_another(h, mine)), None)
    assert found == scan
    if found is not None:
        by = ctx.declared_by_another(found, mine)
        assert by is not None and by.name == others[found]


@PROPERTY
@given(st.lists(st.dictionaries(st.sampled_from(["app", "tier", "part-of"]), st.sampled_from(["1", "2"]),
                                max_size=3), min_size=1, max_size=8),
       st.dictionaries(st.sampled_from(["app", "tier", "part-of"]), st.sampled_from(["1", "2"]), max_size=3))
def test_carrying_all_is_the_scan_it_replaced(labels: list[dict[str, str]], wanted: dict[str, str]) -> None:
    workloads = [_workload(n, ls) for n, ls in enumerate(labels)]
    ctx = Context(settings=Settings(), release="r", home=None, access=[], workloads=workloads)
    scan = [w for w in workloads if all(w.pod_labels.get(k) == v for k, v in wanted.items())]
    assert ctx.carrying_all(wanted) == scan


def test_register_refuses_a_second_protocol_for_an_overlapping_claim() -> None:
    claims = Claims([_claim("api.example", 443, None, 0)])
    problems = Problems()
    other = Claim("api.example", 443, "HTTP", frozenset({"a"}), "values", "se1")
    assert not claims.register([other], Location(), problems)
    assert problems and len(claims) == 1

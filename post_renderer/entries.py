"""Turn schema-valid ``istio.egress`` entries into canonical ``EgressEntry`` records.

This is where the guardrails live: what the schema cannot say (hosts that Istio would
reject or that open too much, addresses reaching the cloud metadata service) is refused
here, each problem located where the user wrote it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from post_renderer import schema
from post_renderer.addresses import (
    ZoneIndex,
    forbidden_literal,
    is_ip_literal,
    network,
    normal_host,
    overlaps_forbidden,
)
from post_renderer.errors import Location, Problems
from post_renderer.model import EgressEntry, Port
from post_renderer.settings import Settings
from post_renderer.validate import non_ascii_host_problem, wildcard_domain_problem

Locate = Callable[[Sequence[str | int]], Location]


def checked_entries(
    raw: Any,
    locate: Locate,
    *,
    source: str,
    settings: Settings,
    problems: Problems,
    verdicts: schema.Verdicts | None = None,
    subject: bytes | None = None,
) -> list[EgressEntry]:
    """Entries from user data: the schema first, then the guardrails, all problems collected.

    A field the schema rejects skips the guardrails; every other field is still checked,
    so one run reports everything that is wrong. ``verdicts`` may vouch for the schema
    check of ``subject`` (what ``raw`` was read from; by default ``raw`` itself); the
    guardrails always run, since they depend on the settings.
    """
    if verdicts is not None and subject is None:
        data = schema.canonical(raw)
        subject = b"entries\0" + data if data is not None else None
    violations = schema.violations(raw, locate, verdicts=verdicts, subject=subject)
    problems.extend([p for _, p in violations])
    if not isinstance(raw, list):
        return []
    # (entry, field) pairs the schema rejected; field None means the entry as a whole.
    # Taken from the instance path itself: a rendered location may number entries its
    # own way (an annotation's entries follow a compact one).
    broken = {_entry_field(path) for path, _ in violations}
    if (None, None) in broken:
        return []
    entries: list[EgressEntry] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        if (i, None) in broken or not isinstance(item, dict):
            continue
        ok = not any(index == i for index, _ in broken)
        name = str(item.get("name"))
        if (i, "name") not in broken:
            if name in seen:
                problems.add(locate([i, "name"]), f"duplicate name {name!r} (also entry {seen[name]})")
                ok = False
            seen.setdefault(name, i)
        hosts: tuple[str, ...] = ()
        addresses: tuple[str, ...] = ()
        ports: tuple[Port, ...] = ()
        if (i, "hosts") not in broken:
            hosts = _hosts(item.get("hosts") or [], functools.partial(_at, locate, i, "hosts"), problems)
        if (i, "addresses") not in broken:
            addresses = _addresses(
                item.get("addresses") or [], functools.partial(_at, locate, i, "addresses"), settings, problems
            )
        if (i, "ports") not in broken:
            ports = _ports(item["ports"], functools.partial(_at, locate, i, "ports"), problems)
        resolution = item.get("resolution")
        if resolution is not None and (i, "resolution") not in broken and not str(resolution).isascii():
            problems.add(locate([i, "resolution"]), f"{resolution!r} is not one of Istio's resolutions (ASCII only)")
            ok = False
        if ok:
            entries.append(
                EgressEntry(
                    name=name,
                    hosts=hosts,
                    addresses=addresses,
                    ports=ports,
                    resolution=str(resolution).upper() if resolution is not None else None,
                    origin=locate([i]),
                    source=f"{source}#{name}",
                    resolution_origin=locate([i, "resolution"]) if resolution is not None else None,
                )
            )
    return entries


def _at(locate: Locate, index: int, field: str, item: int) -> Location:
    return locate([index, field, item])


def _entry_field(path: Sequence[str | int]) -> tuple[int | None, str | None]:
    """The entry and field a schema problem is in, from its instance path (``[3, "ports", 0]``)."""
    if not path or not isinstance(path[0], int):
        return None, None
    return path[0], (path[1] if len(path) > 1 and isinstance(path[1], str) else None)


FORBIDDEN_HOST = ("IP addresses are not hosts, and this one is link-local or a cloud metadata endpoint "
                  "(169.254.169.254, fd00:ec2::254): no workload may reach it, so it belongs in no entry")


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be an egress host, or None. ``host`` is lower-case."""
    if host == "*":
        return "a bare '*' host would match every destination; list the hosts you call"
    if forbidden_literal(host):
        return FORBIDDEN_HOST
    if "://" in host or "/" in host:
        return "hosts are DNS names, not URLs or CIDRs (drop the scheme and path; CIDRs go in addresses)"
    if is_ip_literal(host):
        return "IP addresses are not hosts; move it to addresses"
    first, _, rest = host.partition(".")
    if "*" in first and first != "*":
        # Istio only warns about these, and Envoy then misroutes (istio#44195).
        return "partial wildcards such as '*foo.com' are not allowed; use '*.foo.com'"
    if "*" in rest:
        return "'*' is only allowed as the whole first label ('*.example.com')"
    if first == "*" and not rest:
        return "a bare '*' host would match every destination; list the hosts you call"
    if len(host) > 253:
        return "longer than 253 characters"
    return wildcard_domain_problem(host)


def _hosts(values: Sequence[Any], locate: Callable[[int], Location], problems: Problems) -> tuple[str, ...]:
    hosts: list[str] = []
    for j, value in enumerate(values):
        why = non_ascii_host_problem(str(value).strip())
        if why:
            problems.add(locate(j), f"{value!r}: {why}")
            continue
        host = normal_host(str(value))
        why = host_problem(host)
        if why:
            problems.add(locate(j), f"{value!r}: {why}")
        elif host not in hosts:
            hosts.append(host)
    return tuple(hosts)


def _addresses(
    values: Sequence[Any], locate: Callable[[int], Location], settings: Settings, problems: Problems
) -> tuple[str, ...]:
    out: list[str] = []
    for j, value in enumerate(values):
        text = str(value).strip()
        try:
            net = network(text)
        except ValueError as e:
            why = str(e) if isinstance(e, ZoneIndex) else "not an IP address or CIDR"
            problems.add(locate(j), f"{value!r}: {why}")
            continue
        inside, contains = overlaps_forbidden(net)
        if inside:
            problems.add(
                locate(j),
                f"{value!r} is link-local or a cloud metadata endpoint (169.254.169.254, fd00:ec2::254), in "
                "any spelling (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4); workloads must never be allowed to "
                "reach it",
            )
            continue
        if (contains or net.prefixlen == 0) and not settings.allow_broad_cidrs:
            problems.add(
                locate(j),
                f"{value!r} is too broad: it covers the cloud metadata endpoint or the whole address space; "
                "list narrower ranges, or pass --allow-broad-cidrs (the metadata endpoints stay excepted)",
            )
            continue
        canonical = str(net.network_address) if "/" not in text else str(net)
        if canonical not in out:
            out.append(canonical)
    return tuple(out)


def _ports(values: Sequence[Any], locate: Callable[[int], Location], problems: Problems) -> tuple[Port, ...]:
    ports: dict[int, Port] = {}
    for j, value in enumerate(values):
        if not str(value["protocol"]).isascii():
            # The schema matches protocols case-insensitively, and Unicode case folding
            # would read 'HTTPſ' (long s) as HTTPS.
            problems.add(locate(j), f"{value['protocol']!r} is not one of Istio's protocols (ASCII letters only)")
            continue
        port = Port(int(value["number"]), str(value["protocol"]).upper())
        other = ports.get(port.number)
        if other is not None and other.protocol != port.protocol:
            problems.add(
                locate(j),
                f"port {port.number} is declared twice, as {other.protocol} and {port.protocol}; "
                "Istio allows one protocol per port number",
            )
        ports.setdefault(port.number, port)
    return tuple(ports.values())

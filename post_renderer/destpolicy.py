"""A platform's destination policy (``--policy FILE``): what a release may open at all.

Annotations and values let a chart declare its own egress; a policy is how a platform
team bounds that, for charts it does not own. The file lists allow rules, each naming
hosts and/or addresses, optionally ports and namespaces::

    allow:
      - hosts: [github.com, "*.githubusercontent.com"]
        ports: [443, 22]
      - addresses: [10.50.0.0/16]
        ports: [8200]
        namespaces: [prod]

Everything here is pure: ``load`` takes the file's text (the CLI reads it), ``judge``
takes the requests the pipeline collected (``asked``) and returns one located problem per
request no rule covers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from post_renderer import schema, yamlio
from post_renderer.addresses import (
    ZONE_INDEX, IPNetwork, ZoneIndex, host_covers, inside, network, normal_host, unmapped,
)
from post_renderer.entries import host_problem
from post_renderer.errors import EgressError, Location, Problem, Problems
from post_renderer.validate import non_ascii_host_problem

SCHEMA_FILE = "destination-policy.schema.json"
MAX_PORT = 65535
PortRange = tuple[int, int]  # inclusive
EVERY_NAMESPACE = "*"  # a Request opened in every namespace (no namespace name can be "*")
_RANGE = re.compile(r"[0-9]{1,5}-[0-9]{1,5}\Z")

# A rule containing one of these approves every address there is (of one family, or all
# of IPv4 written as IPv6): no policy may say that.
_EVERYTHING: tuple[tuple[IPNetwork, str], ...] = (
    (network("0.0.0.0/0"), "every IPv4 address"),
    (network("::/0"), "every IPv6 address"),
    (network("::/96"), "every IPv4 address (as IPv4-compatible IPv6, ::/96)"),
    (network("64:ff9b::/96"), "every IPv4 address (through NAT64, 64:ff9b::/96)"),
)


class Rule(NamedTuple):
    label: str  # "allow[2]", or "allow[2] (github)" when named
    hosts: tuple[str, ...]
    networks: tuple[IPNetwork, ...]
    ports: tuple[PortRange, ...] | None  # None: every port
    namespaces: frozenset[str] | None  # None: every namespace

    def applies_in(self, namespace: str | None) -> bool:
        # A request opened in every namespace ("*", never a listed name) or in one nobody
        # named is only covered by a rule that holds everywhere.
        return self.namespaces is None or (namespace is not None and namespace in self.namespaces)


class Request(NamedTuple):
    """One destination and port range the output would open, and who asked for it."""

    destination: str  # a host ("*.example.com": every name below) or an address/CIDR
    address: bool
    ports: PortRange | None  # None: every port
    namespace: str | None  # where it is opened; EVERY_NAMESPACE, or None when not known
    origin: Location
    who: str = ""  # what the location does not say, e.g. "entry stripe"


class Bypass(NamedTuple):
    """A workload whose pods the policy lets send traffic past the mesh's proxy."""

    label: str  # "bypass[1]", or "bypass[1] (migrations)" when named
    kind: str
    name: str
    namespaces: frozenset[str] | None  # None: every namespace


class Policy(NamedTuple):
    file: str
    rules: tuple[Rule, ...]
    # Kinds it accepts unjudged: (kind, API group), the group None for every group.
    kinds: frozenset[tuple[str, str | None]] = frozenset()
    bypass: tuple[Bypass, ...] = ()

    def allows_kind(self, group: str, kind: str) -> bool:
        return (kind, None) in self.kinds or (kind, group) in self.kinds

    def bypass_refusal(self, kind: str, name: str, namespace: str | None) -> str | None:
        """Why the workload ``kind/name`` may not evade the proxy, or None when it may."""
        named = [b for b in self.bypass if b.kind == kind and b.name == name]
        if any(b.namespaces is None or (namespace is not None and namespace in b.namespaces) for b in named):
            return None
        if named:
            limits = sorted({ns for b in named for ns in b.namespaces or ()})
            where = f"in namespace {namespace}" if namespace else "in a namespace the stream does not name"
            return (f"{' and '.join(b.label for b in named)} {'allows' if len(named) == 1 else 'allow'} it only in "
                    f"namespace(s) {', '.join(limits)}, and it runs {where}")
        return f"its bypass list does not name {kind}/{name}"

    @property
    def per_namespace(self) -> bool:
        return any(r.namespaces is not None for r in self.rules)

    def refusal(self, request: Request) -> str | None:
        """Why ``request`` is not approved, or None when it is."""
        net: IPNetwork | None = None
        if request.address:
            if "%" in request.destination:
                return f"it {ZONE_INDEX}, so no rule can approve it"
            net = _network(request.destination)
            if net is None:
                return "not an IP address or CIDR, so no rule can approve it"
        host = normal_host(request.destination)

        def covers(rule: Rule) -> bool:
            if net is not None:
                return any(inside(net, n) for n in rule.networks)
            return any(host_covers(h, host) for h in rule.hosts)

        anywhere = [r for r in self.rules if covers(r)]
        covering = [r for r in anywhere if r.applies_in(request.namespace)]
        if not covering:
            if anywhere:
                limits = sorted({ns for r in anywhere for ns in r.namespaces or ()})
                # Where it is opened leads the message (judge); only an unknown one needs saying.
                unknown = "" if request.namespace else \
                    ", and it is opened in a namespace the stream does not name (pass --namespace)"
                return f"{_labels(anywhere)} {_verb(anywhere)} it only in namespace(s) {', '.join(limits)}{unknown}"
            return _uncovered_destination(request, net, host, self.rules)
        missing = _uncovered_ports(request.ports, [r.ports for r in covering])
        if not missing:
            return None
        approved = sorted({p for r in covering for p in r.ports or ()})
        return f"{_labels(covering)} {_verb(covering)} it only on port(s) {', '.join(_range_text(p) for p in approved)}"

    def approves(self, request: Request) -> bool:
        return self.refusal(request) is None


def judge(policy: Policy, requests: Iterable[Request]) -> list[Problem]:
    """One problem per request the policy does not approve, each where it was asked for."""
    out: list[Problem] = []
    seen: set[tuple[Location, str]] = set()
    for request in requests:
        why = policy.refusal(request)
        if why is None:
            continue
        opened = ""
        if policy.per_namespace and request.namespace:
            opened = f" {_where(request.namespace)}"
        who = f"{request.who}: " if request.who else ""
        message = (f"{who}{request.destination} on {_ports_text(request.ports)}{opened} is not approved by the "
                   f"policy {policy.file}: {why}")
        if (request.origin, message) not in seen:
            seen.add((request.origin, message))
            out.append(Problem(request.origin, message))
    return out


# --- the file ---------------------------------------------------------------------


def load(text: str, name: str, verdicts: schema.Verdicts | None = None) -> Policy:
    """The policy in ``text`` (the file ``name``); every problem located and raised at once.
    ``verdicts`` may vouch for the schema check, keyed by the file's bytes."""
    data, root = yamlio.load_with_nodes(text, Location(file=name, line=1), strict_numbers=True)

    def locate(path: Sequence[str | int]) -> Location:
        return Location(file=name, line=yamlio.node_line(root, path) or 1,
                        path=schema.render_path("", path) or None)

    if data is None:
        raise EgressError.one(locate([]), "the policy file is empty; it needs an allow list "
                                          "(`allow: []` approves nothing)")
    if not isinstance(data, dict):
        raise EgressError.one(locate([]), "a policy file is a mapping with an allow list of rules")
    problems = Problems()
    subject = b"policy\0" + text.encode("utf-8", "surrogatepass")
    problems.extend(schema.validate(data, locate, SCHEMA_FILE, verdicts=verdicts, subject=subject))
    rules: list[Rule] = []
    raw = data.get("allow")
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(item, dict):
            rule = _rule(i, item, locate, problems)
            if rule is not None:
                rules.append(rule)
    kinds = _kinds(data.get("kinds"), locate, problems)
    bypass = _bypass(data.get("bypass"), locate, problems)
    problems.items.sort(key=lambda p: (p.location.line or 0, p.location.path or ""))
    problems.raise_if_any()
    return Policy(name, tuple(rules), kinds, bypass)


def _kinds(value: Any, locate: Any, problems: Problems) -> frozenset[tuple[str, str | None]]:
    from post_renderer.bypass import CILIUM_POLICIES, JUDGED, refusable

    out: set[tuple[str, str | None]] = set()
    for j, item in _strings(value, 316):
        kind, dot, group = item.partition(".")
        if not _strict(_KIND_ENTRY, item, locate(["kinds", j]), problems):
            continue
        if ((group, kind) in JUDGED) if dot else kind in CILIUM_POLICIES:
            problems.add(locate(["kinds", j]), f"{item!r} is judged like the allow rules say, never accepted "
                                               "as a kind: approve its destinations")
        elif not refusable(kind, group if dot else None):
            problems.add(locate(["kinds", j]), f"{item!r} is not a kind helm-egress refuses (EnvoyFilter, WasmPlugin, "
                                               "the network-policy API's, Calico's, Antrea's, ...); see README")
        else:
            out.add((kind, group if dot else None))
    return frozenset(out)


def _bypass(value: Any, locate: Any, problems: Problems) -> tuple[Bypass, ...]:
    from post_renderer.read import WORKLOAD_KINDS

    out: list[Bypass] = []
    for i, item in enumerate(value if isinstance(value, list) else []):
        workload = item.get("workload") if isinstance(item, dict) else None
        if not isinstance(workload, str) or not _strict(_WORKLOAD_ENTRY, workload, locate(["bypass", i, "workload"]),
                                                           problems):
            continue
        kind, _, name = workload.partition("/")
        if kind not in WORKLOAD_KINDS:
            problems.add(locate(["bypass", i, "workload"]),
                         f"{kind!r} is not a kind of workload ({', '.join(WORKLOAD_KINDS)})")
            continue
        namespaces = item.get("namespaces")
        label = item.get("name")
        out.append(Bypass(f"bypass[{i}]" + (f" ({label})" if isinstance(label, str) else ""), kind, name,
                          frozenset(str(n) for n in namespaces) if isinstance(namespaces, list) else None))
    return tuple(out)


def _strict(pattern: re.Pattern[str], value: str, where: Location, problems: Problems) -> bool:
    """Whether ``value`` matches all through; the schema has reported any other mismatch
    but a trailing line break, which its ``$`` lets through."""
    if pattern.match(value):
        return True
    if pattern.match(value.rstrip("\n")):
        problems.add(where, f"{value!r} ends with a line break")
    return False


# The schema's patterns, matched to the end.
_KIND_ENTRY = re.compile(r"[A-Z][A-Za-z0-9]{0,62}(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*\Z")
_WORKLOAD_ENTRY = re.compile(r"[A-Z][A-Za-z0-9]{0,62}/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")


def _rule(i: int, item: dict[str, Any], locate: Any, problems: Problems) -> Rule | None:
    before = len(problems.items)
    hosts: list[str] = []
    for j, value in _strings(item.get("hosts"), 255):
        host = normal_host(value)
        if host.lstrip("*.") == "":
            problems.add(locate(["allow", i, "hosts", j]), f"{value!r} would approve every host; list the hosts "
                                                           "(or '*.domain') you approve")
            continue
        # Before lower-casing: a KELVIN SIGN would otherwise approve the ASCII 'k' name.
        why = non_ascii_host_problem(value.strip()) or host_problem(host)
        if why:
            problems.add(locate(["allow", i, "hosts", j]), f"{value!r}: {why}")
        else:
            hosts.append(host)
    networks: list[IPNetwork] = []
    for j, value in _strings(item.get("addresses"), 64):
        net = _address(value, locate(["allow", i, "addresses", j]), problems)
        if net is not None:
            networks.append(net)
    ports: list[PortRange] | None = None
    if isinstance(item.get("ports"), list):
        ports = []
        for j, value in enumerate(item["ports"]):
            port = _port(value)
            if port is None:
                if isinstance(value, str) and _RANGE.match(value):  # other shapes are the schema's to report
                    problems.add(locate(["allow", i, "ports", j]),
                                 f"{value!r} is not a range FIRST-LAST with 1 <= FIRST <= LAST <= {MAX_PORT}")
            else:
                ports.append(port)
    namespaces = item.get("namespaces")
    if len(problems.items) > before:
        return None
    name = item.get("name")
    return Rule(
        label=f"allow[{i}]" + (f" ({name})" if isinstance(name, str) else ""),
        hosts=tuple(hosts),
        networks=tuple(networks),
        ports=tuple(ports) if ports is not None else None,
        namespaces=frozenset(str(n) for n in namespaces) if isinstance(namespaces, list) else None,
    )


def _strings(value: Any, longest: int) -> list[tuple[int, str]]:
    # Non-strings and overlong strings are the schema's to report; the guardrails look at the
    # rest (by their index in the list, for the location).
    items = value if isinstance(value, list) else []
    return [(j, v) for j, v in enumerate(items) if isinstance(v, str) and len(v) <= longest]


def _address(value: str, where: Location, problems: Problems) -> IPNetwork | None:
    text = value.strip()
    try:
        net = network(text, strict=True)
    except ZoneIndex:
        # ipaddress keeps the zone in its comparisons: the rule would approve part of its own
        # range and not the rest (an address alone: nothing).
        problems.add(where, f"{value!r} {ZONE_INDEX}")
        return None
    except ValueError:
        try:
            loose = network(text)
        except ValueError:
            problems.add(where, f"{value!r} is not an IP address or CIDR")
            return None
        # In a policy a stray host bit is more likely a typo than a wish: ask.
        problems.add(where, f"{value!r} has host bits set; write {str(loose)!r} if that range is meant")
        return None
    for candidate in (net, unmapped(net)):
        for everything, what in _EVERYTHING:
            if inside(everything, candidate):
                problems.add(where, f"{value!r} would approve {what}; list the ranges you approve")
                return None
    return unmapped(net)


# A port in a range's text: five ASCII digits at most (never a long conversion), and no
# leading zero, which Kubernetes would read as octal if it were a number.
_PORT_TEXT = re.compile(r"[1-9][0-9]{0,4}\Z")


def _port(value: Any) -> PortRange | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, value) if 1 <= value <= MAX_PORT else None
    if isinstance(value, str):
        first, sep, last = value.partition("-")
        if sep and _PORT_TEXT.match(first) and _PORT_TEXT.match(last) and 1 <= int(first) <= int(last) <= MAX_PORT:
            return int(first), int(last)
    return None


# --- matching ---------------------------------------------------------------------


def _network(text: str) -> IPNetwork | None:
    try:
        return unmapped(network(text.strip()))
    except ValueError:
        return None


def _uncovered_ports(wanted: PortRange | None, granted: Sequence[tuple[PortRange, ...] | None]) -> list[PortRange]:
    """The parts of ``wanted`` that no granted port list covers (all of them together)."""
    if any(g is None for g in granted):
        return []
    missing: list[PortRange] = []
    # Every port is 1-65535: rules whose ranges add up to that approve it too.
    first, last = wanted or (1, MAX_PORT)
    for lo, hi in sorted(p for g in granted for p in g or ()):
        if hi < first:
            continue
        if lo > last:
            break
        if lo > first:
            missing.append((first, lo - 1))
        first = max(first, hi + 1)
        if first > last:
            return missing
    missing.append((first, last))
    return missing


def _uncovered_destination(request: Request, net: IPNetwork | None, host: str, rules: Sequence[Rule]) -> str:
    if net is not None:
        if net.prefixlen == 0:
            return "a policy can never approve every address"
        parts = [r for r in rules if any(inside(n, net) for n in r.networks)]
        if parts:
            return f"{_labels(parts)} {_verb(parts)} only part of it"
        return "no rule approves this address"
    if host.startswith("*"):
        parts = [r for r in rules if any(host_covers(host, h) for h in r.hosts)]
        if parts:
            some = sorted({h for r in parts for h in r.hosts if host_covers(host, h)})
            return (f"a wildcard needs a rule approving every host it matches; {_labels(parts)} {_verb(parts)} only "
                    f"{', '.join(some)}")
    return "no rule approves this host"


def _where(namespace: str) -> str:
    return "in every namespace" if namespace == EVERY_NAMESPACE else f"in namespace {namespace}"


def _labels(rules: Sequence[Rule]) -> str:
    return " and ".join(r.label for r in rules)


def _verb(rules: Sequence[Rule]) -> str:
    return "approves" if len(rules) == 1 else "approve"


def _range_text(p: PortRange) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}-{p[1]}"


def _ports_text(p: PortRange | None) -> str:
    if p is None:
        return "every port"
    return f"port {p[0]}" if p[0] == p[1] else f"ports {p[0]}-{p[1]}"

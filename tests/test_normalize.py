"""Normalization never changes what a chart's ServiceEntries and NetworkPolicies mean.

``render`` repairs the ServiceEntry (any ``networking.istio.io`` version) and egress
NetworkPolicy documents a chart renders itself (see ``post_renderer/normalize.py`` and the
README). These are property checks over every ``tests/cases/normalize-*`` case that is
expected to succeed, and over the real rendered streams in ``fixtures/corpus``:

* per document, the *meaning* of the input equals the meaning of the output, where the
  meaning is written down here from Istio's and Kubernetes' rules
  (``../shared/docs/istio-and-networkpolicy-rules.md`` sections 1-2), not from
  helm-egress's code;
* a repaired document passes the independent ``oracle``;
* documents that need nothing, and documents out of scope, keep their bytes;
* normalizing the output again changes nothing;
* a repaired document keeps its ``# Source:`` line, its comments and the order of its keys;
* no document of the output shares kind, namespace and name with another.

A second group damages the canonical documents of those outputs in ways that have exactly
one repair (lower-case protocols, upper-case hosts, missing port names, ...) and checks that
the repair brings the meaning back.
"""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeAlias

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

import oracle
from helmstream import split_documents
from post_renderer.cli import app

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases"
CORPUS = ROOT / "fixtures" / "corpus"
EXAMPLE_VALUES = ROOT / "fixtures" / "values" / "egress-values.yaml"

DEFAULT_API_VERSION = "networking.istio.io/v1"
GENERATED_BY = "helm-egress.io/generated-by"
ISTIO_PROTOCOLS = {p.upper() for p in ("TCP", "UDP", "GRPC", "GRPC-Web", "HTTP", "HTTP_PROXY", "HTTP2",
                                       "HTTPS", "TLS", "Mongo", "Redis", "MySQL")}
NP_PROTOCOLS = {"TCP", "UDP", "SCTP"}
# What the generator and the README call a port name: a lower-case RFC 1123 label.
# (Istio itself also accepts upper case; see the report.)
PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Doc: TypeAlias = dict[str, Any]


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Run:
    """One invocation of ``helm-egress`` on one input stream."""

    name: str
    folder: Path  # relative paths in ``args`` resolve here
    args: tuple[str, ...]
    stdin: bytes

    @property
    def normalizes(self) -> bool:
        return "--no-normalize" not in self.args

    @property
    def target(self) -> str:
        args = list(self.args)
        return args[args.index("--istio-api-version") + 1] if "--istio-api-version" in args else DEFAULT_API_VERSION


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: bytes
    stderr: str


def invoke(folder: Path, args: Sequence[str], stdin: bytes) -> Outcome:
    with contextlib.chdir(folder):
        result = CliRunner().invoke(app, list(args), input=stdin)
    return Outcome(result.exit_code, result.stdout_bytes, result.stderr)


def _success_cases() -> list[Run]:
    runs = []
    for folder in sorted(CASES.glob("normalize-*")):
        if not (folder / "args").is_file() or folder.name.startswith("normalize-error-"):
            continue
        args = tuple((folder / "args").read_text().splitlines())
        if args[0] != "render":
            continue
        runs.append(Run(folder.name, folder, args, (folder / "input.yaml").read_bytes()))
    return runs


def _corpus() -> list[Run]:
    runs = []
    for stream in sorted(CORPUS.glob("*.yaml")):
        runs.append(Run(f"corpus-{stream.stem}", CORPUS, ("render",), stream.read_bytes()))
        runs.append(Run(f"corpus-{stream.stem}-values", CORPUS, ("render", "-f", str(EXAMPLE_VALUES)),
                        stream.read_bytes()))
    return runs


RUNS = _success_cases() + _corpus()


@cache
def outcome(run: Run) -> Outcome:
    result = invoke(run.folder, run.args, run.stdin)
    assert result.exit_code == 0, result.stderr
    return result


# --------------------------------------------------------------------------- documents


_SAFE = YAML(typ="safe")


@cache
def parse(text: str) -> Any:
    """The document as plain data. Cached: callers never modify what it returns."""
    return _SAFE.load(text)


def documents(stream: bytes) -> list[str]:
    return split_documents(stream.decode("utf-8-sig"))


def group_kind(doc: Any) -> tuple[str, str] | None:
    if not isinstance(doc, dict):
        return None
    return str(doc.get("apiVersion", "")).rpartition("/")[0], str(doc.get("kind"))


def is_serviceentry(doc: Any) -> bool:
    return group_kind(doc) == ("networking.istio.io", "ServiceEntry")


def is_networkpolicy(doc: Any) -> bool:
    return group_kind(doc) == ("networking.k8s.io", "NetworkPolicy")


def has_egress_rules(doc: Any) -> bool:
    return is_networkpolicy(doc) and bool((doc.get("spec") or {}).get("egress"))


def in_scope(doc: Any) -> bool:
    """What normalization may touch: ServiceEntries and NetworkPolicies with egress rules."""
    return is_serviceentry(doc) or has_egress_rules(doc)


def is_generated(doc: Any) -> bool:
    return isinstance(doc, dict) and GENERATED_BY in ((doc.get("metadata") or {}).get("annotations") or {})


@dataclass(frozen=True)
class Pair:
    index: int
    before: str
    after: str

    @property
    def doc_before(self) -> Any:
        return parse(self.before)

    @property
    def doc_after(self) -> Any:
        return parse(self.after)

    @property
    def changed(self) -> bool:
        return self.before != self.after


@cache
def pairs(run: Run) -> tuple[Pair, ...]:
    """Each input document with the output document it became (generated ones left out)."""
    before = documents(run.stdin)
    after = [text for text in documents(outcome(run).stdout) if not is_generated(parse(text))]
    assert len(before) == len(after), "an input document went missing or was duplicated"
    return tuple(Pair(i, b, a) for i, (b, a) in enumerate(zip(before, after)))


def ids(runs: Sequence[Run]) -> list[str]:
    return [r.name for r in runs]


# --------------------------------------------------------------------------- meaning


def host_key(host: Any) -> str:
    text = str(host).strip().lower()
    return text[:-1] if text.endswith(".") and len(text) > 1 else text


def network(value: Any) -> IPNetwork:
    return ipaddress.ip_network(str(value).strip(), strict=False)


def serviceentry_meaning(doc: Doc) -> dict[str, Any]:
    """What Istio does with a ServiceEntry, minus the spellings normalization may change.

    Hosts match case-insensitively and a trailing dot is the same name; addresses are
    networks; a port is its number, protocol (parsed case-insensitively; unset is
    sniffing) and targetPort, its name being only a handle; an endpoint's ``ports`` map
    refers to ports by name, so it is read through the names to numbers. Everything else
    (workloadSelector, subjectAltNames, exportTo - absent stays absent -, location,
    metadata, unknown fields) must stay exactly as it was. ``resolution`` and
    ``apiVersion`` are checked on their own.
    """
    spec = dict(doc.get("spec") or {})
    ports = [p for p in spec.pop("ports", None) or [] if isinstance(p, dict)]
    number_of: dict[str, Any] = {}
    for port in ports:
        number_of.setdefault(str(port.get("name")), port.get("number"))  # first wins, like the webhook's map
    endpoints = []
    for endpoint in spec.pop("endpoints", None) or []:
        endpoint = dict(endpoint)
        if isinstance(endpoint.get("ports"), dict):
            endpoint["ports"] = {number_of.get(str(k), f"no port named {k}"): v for k, v in endpoint["ports"].items()}
        endpoints.append(endpoint)
    spec.pop("resolution", None)
    rest = {k: v for k, v in doc.items() if k not in ("apiVersion", "spec")}
    return {
        "hosts": {host_key(h) for h in spec.pop("hosts", None) or []},
        "addresses": {network(a) for a in spec.pop("addresses", None) or []},
        "ports": {(p.get("number"), str(p.get("protocol") or "").upper(), p.get("targetPort")) for p in ports},
        "endpoints": endpoints,
        "spec": spec,
        "document": rest,
    }


def expected_resolution(doc: Doc) -> Any:
    """Istio rejects a wildcard host resolved by DNS without endpoints; NONE keeps its meaning.
    An address-only entry whose one host is its own name (lazy-helm-charts' convention)
    resolves a name no DNS knows; NONE sends its traffic to the addresses, as declared."""
    spec = doc.get("spec") or {}
    resolution = spec.get("resolution")
    hosts = [str(h).lower() for h in spec.get("hosts") or []]
    wildcard = any(h.startswith("*") for h in hosts)
    invented = bool(spec.get("addresses")) and set(hosts) == {str((doc.get("metadata") or {}).get("name")).lower()}
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and (wildcard or invented) and not spec.get("endpoints"):
        return "NONE"
    return resolution


SERVED_API_VERSIONS = {"networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"}


def expected_api_version(doc: Doc, target: str) -> Any:
    """A version Istio serves is kept as the chart wrote it; only another one is moved."""
    return doc.get("apiVersion") if doc.get("apiVersion") in SERVED_API_VERSIONS else target


def _peer_meaning(peer: Any) -> Any:
    if not isinstance(peer, dict) or not isinstance(peer.get("ipBlock"), dict):
        return peer
    block = peer["ipBlock"]
    rest = {k: v for k, v in peer.items() if k != "ipBlock"}
    return {**rest, "ipBlock": (network(block["cidr"]), frozenset(network(e) for e in block.get("except") or []))}


def _port_meaning(port: Any) -> Any:
    if not isinstance(port, dict):
        return port
    return {**port, "protocol": str(port.get("protocol") or "TCP").upper()}  # TCP is Kubernetes' default


def effective_policy_types(spec: Mapping[str, Any]) -> set[str]:
    """Kubernetes: absent means Ingress, plus Egress when there are egress rules."""
    given = spec.get("policyTypes")
    if given is not None:
        return set(given)
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def networkpolicy_meaning(doc: Doc) -> dict[str, Any]:
    """The pods selected, ingress exactly, egress peers as networks, ports with the default protocol."""
    spec = dict(doc.get("spec") or {})
    types = effective_policy_types(spec)
    spec.pop("policyTypes", None)
    egress = []
    for rule in spec.pop("egress", None) or []:
        rule = dict(rule)
        if isinstance(rule.get("to"), list):
            rule["to"] = [_peer_meaning(p) for p in rule["to"]]
        if isinstance(rule.get("ports"), list):
            rule["ports"] = [_port_meaning(p) for p in rule["ports"]]
        egress.append(rule)
    rest = {k: v for k, v in doc.items() if k != "spec"}
    return {"policyTypes": types, "egress": egress, "spec": spec, "document": rest}


def meaning(doc: Doc) -> dict[str, Any]:
    return serviceentry_meaning(doc) if is_serviceentry(doc) else networkpolicy_meaning(doc)


# --------------------------------------------------------------------------- what needs repair


def defects(doc: Doc, target: str) -> list[str]:
    """What the README says normalization repairs in ``doc``; empty for a canonical document."""
    found: list[str] = []
    spec = doc.get("spec") or {}
    if is_serviceentry(doc):
        if doc.get("apiVersion") != expected_api_version(doc, target):
            found.append("apiVersion")
        hosts = [str(h) for h in spec.get("hosts") or []]
        if any(h != host_key(h) for h in hosts) or len({host_key(h) for h in hosts}) < len(hosts):
            found.append("hosts")
        if expected_resolution(doc) != spec.get("resolution"):
            found.append("resolution")
        names: list[Any] = []
        seen: set[tuple[Any, str]] = set()
        for port in spec.get("ports") or []:
            protocol = port.get("protocol")
            if isinstance(protocol, str) and protocol.upper() in ISTIO_PROTOCOLS and protocol != protocol.upper():
                found.append("protocol")
            key = (port.get("number"), str(protocol or "").upper())
            if key in seen:
                found.append("repeated port")
            seen.add(key)
            names.append(port.get("name"))
        if any(not isinstance(n, str) or not PORT_NAME.fullmatch(n) or len(n) > 63 for n in names):
            found.append("port name")
        if len(set(map(str, names))) < len(names):
            found.append("duplicate port name")
    elif has_egress_rules(doc):
        if spec.get("policyTypes") is None:
            found.append("policyTypes")
        for rule in spec.get("egress") or []:
            for port in (rule or {}).get("ports") or []:
                protocol = port.get("protocol")
                if protocol is None or (str(protocol).upper() in NP_PROTOCOLS and protocol != str(protocol).upper()):
                    found.append("port protocol")
            for peer in (rule or {}).get("to") or []:
                block = (peer or {}).get("ipBlock")
                if isinstance(block, dict):
                    for cidr in [block.get("cidr"), *(block.get("except") or [])]:
                        if str(cidr) != str(network(cidr)):
                            found.append(f"cidr {cidr}")
    return found


# --------------------------------------------------------------------------- helpers for the checks


def prune_nulls(value: Any) -> Any:
    """What the API server stores: a ``null`` field is pruned from a custom resource
    (structural schemas, "Defaulting and Nullable") and decodes to the zero value, i.e.
    omitted, in a built-in type. The seed chart renders ``protocol:`` (null) for a port
    without protocol; that is the same as no protocol."""
    if isinstance(value, dict):
        return {k: prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [prune_nulls(v) for v in value]
    return value


def comments(text: str) -> list[str]:
    """The comments of a YAML text, in order (``#`` after a blank or at line start, outside quotes)."""
    found = []
    for line in text.replace("\r\n", "\n").split("\n"):
        quote: str | None = None
        for i, ch in enumerate(line):
            if quote:
                if ch == quote:
                    quote = None
            elif ch in "'\"" and (i == 0 or line[i - 1] in " \t[{,:-"):
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
                found.append(line[i:].rstrip())
                break
    return found


def is_subsequence(needles: Sequence[str], haystack: Sequence[str]) -> bool:
    it = iter(haystack)
    return all(any(n == h for h in it) for n in needles)


def key_order_differences(before: Any, after: Any, path: str = "") -> Iterator[str]:
    """Paths where keys present both before and after appear in another order."""
    if isinstance(before, dict) and isinstance(after, dict):
        common_before = [k for k in before if k in after]
        common_after = [k for k in after if k in before]
        if common_before != common_after:
            yield f"{path or '.'}: {common_before} became {common_after}"
        for key in common_before:
            yield from key_order_differences(before[key], after[key], f"{path}.{key}")
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after)):
            yield from key_order_differences(b, a, f"{path}[{i}]")


def repaired_notes(stderr: str) -> dict[int, int]:
    """How many ``repaired:`` notes each document index got."""
    counts: dict[int, int] = {}
    for m in re.finditer(r"^note: .*?document (\d+) \(.*?\): repaired: ", stderr, re.MULTILINE):
        counts[int(m.group(1))] = counts.get(int(m.group(1)), 0) + 1
    return counts


# --------------------------------------------------------------------------- properties of the cases


def test_the_cases_are_found() -> None:
    names = ids(RUNS)
    assert any(n.startswith("normalize-seed-") for n in names)
    assert any(n.startswith("corpus-") for n in names)


@pytest.mark.parametrize("run", RUNS, ids=ids(RUNS))
def test_meaning_is_unchanged(run: Run) -> None:
    for pair in pairs(run):
        before, after = pair.doc_before, pair.doc_after
        if not in_scope(before):
            continue
        where = f"document {pair.index} ({before['kind']}/{before['metadata'].get('name')})"
        assert meaning(after) == meaning(before), where
        if is_serviceentry(before) and run.normalizes:
            assert after["apiVersion"] == expected_api_version(before, run.target), where
            assert (after.get("spec") or {}).get("resolution") == expected_resolution(before), where


@pytest.mark.parametrize("run", RUNS, ids=ids(RUNS))
def test_repaired_documents_pass_the_oracle(run: Run) -> None:
    for pair in pairs(run):
        if not pair.changed:
            continue
        after = prune_nulls(pair.doc_after)
        check = oracle.serviceentry_problems if is_serviceentry(after) else oracle.networkpolicy_problems
        assert check(after) == [], f"document {pair.index} ({after['kind']}/{after['metadata'].get('name')})"


@pytest.mark.parametrize("run", RUNS, ids=ids(RUNS))
def test_only_documents_that_need_a_repair_change(run: Run) -> None:
    notes = repaired_notes(outcome(run).stderr)
    for pair in pairs(run):
        before = pair.doc_before
        needs = defects(before, run.target) if run.normalizes and in_scope(before) else []
        where = f"document {pair.index}: {needs or 'canonical or out of scope'}"
        if needs:
            assert pair.changed, where
            assert notes.get(pair.index, 0) >= 1 or "--quiet" in run.args, where
        else:
            assert pair.after == pair.before, where  # byte for byte
            assert pair.index not in notes, where


@pytest.mark.parametrize("run", RUNS, ids=ids(RUNS))
def test_normalizing_the_output_again_changes_nothing(run: Run) -> None:
    first = outcome(run)
    again = invoke(run.folder, run.args, first.stdout)
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout
    assert repaired_notes(again.stderr) == {}


@pytest.mark.parametrize("run", RUNS, ids=ids(RUNS))
def test_repaired_documents_keep_their_source_line_comments_and_key_order(run: Run) -> None:
    for pair in [p for p in pairs(run) if p.changed]:
        where = f"document {pair.index}"
        source = [line for line in pair.before.splitlines() if line.startswith("# Source: ")]
        assert source == [line for line in pair.after.splitlines() if line.startswith("# Source: ")], where
        assert is_subsequence(comments(pair.before), comments(pair.after)), where
        assert list(key_order_differences(pair.doc_before, pair.doc_after)) == [], where
        assert ("\r\n" in pair.before) == ("\r\n" in pair.after), where
        assert pair.after.count("\n") == pair.after.count("\r\n") or "\r\n" not in pair.before, where


@pytest.mark.parametrize("run", RUNS, ids=ids(RUNS))
def test_no_two_output_documents_share_kind_namespace_and_name(run: Run) -> None:
    seen: dict[tuple[str, str, str, str], int] = {}
    for i, text in enumerate(documents(outcome(run).stdout)):
        doc = parse(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("metadata"), dict):
            continue
        group, kind = group_kind(doc) or ("", "")
        key = (group, kind, str(doc["metadata"].get("namespace") or ""), str(doc["metadata"].get("name")))
        assert key not in seen, f"documents {seen[key]} and {i} are both {key}"
        seen[key] = i


@pytest.mark.parametrize("run", [r for r in RUNS if not r.normalizes], ids=ids([r for r in RUNS if not r.normalizes]))
def test_no_normalize_passes_every_document_through(run: Run) -> None:
    assert all(pair.after == pair.before for pair in pairs(run))
    assert repaired_notes(outcome(run).stderr) == {}


def test_quiet_prints_no_notes() -> None:
    quiet = next(r for r in RUNS if "--quiet" in r.args)
    loud = Run(quiet.name, quiet.folder, tuple(a for a in quiet.args if a != "--quiet"), quiet.stdin)
    assert outcome(quiet).stderr == ""
    assert repaired_notes(outcome(loud).stderr) != {}
    assert outcome(quiet).stdout == outcome(loud).stdout


# --------------------------------------------------------------------------- damage and repair


Damage: TypeAlias = Callable[[Doc], bool]  # damages the document in place; False when it does not apply


def _lower_protocols(doc: Doc) -> bool:
    ports = [p for p in (doc.get("spec") or {}).get("ports") or [] if isinstance(p.get("protocol"), str)]
    if is_networkpolicy(doc):
        ports = [p for rule in doc["spec"].get("egress") or [] for p in (rule or {}).get("ports") or []
                 if isinstance(p.get("protocol"), str)]
    for port in ports:
        port["protocol"] = port["protocol"].lower()
    return any(p["protocol"] != p["protocol"].upper() for p in ports)


def _old_api_version(doc: Doc) -> bool:
    if not is_serviceentry(doc):
        return False
    doc["apiVersion"] = "networking.istio.io/v1alpha2"  # never served for ServiceEntry
    return True


def _shouting_hosts(doc: Doc) -> bool:
    hosts = (doc.get("spec") or {}).get("hosts") if is_serviceentry(doc) else None
    if not hosts:
        return False
    doc["spec"]["hosts"] = [h.upper() + "." if i % 2 == 0 else h.title() for i, h in enumerate(hosts)] + [hosts[0]]
    return True


def _unnamed_ports(doc: Doc) -> bool:
    spec = doc.get("spec") or {}
    if not is_serviceentry(doc) or not spec.get("ports"):
        return False
    if any(isinstance(e.get("ports"), dict) for e in spec.get("endpoints") or []):
        return False  # an endpoint refers to a port by name: removing the name loses the reference
    for port in spec["ports"]:
        port.pop("name", None)
    return True


def _repeated_port(doc: Doc) -> bool:
    spec = doc.get("spec") or {}
    if not is_serviceentry(doc) or not spec.get("ports"):
        return False
    spec["ports"].append({k: v for k, v in spec["ports"][0].items() if k != "name"})
    return True


def _wildcard_by_dns(doc: Doc) -> bool:
    spec = doc.get("spec") or {}
    wildcard = any(str(h).startswith("*") for h in spec.get("hosts") or [])
    if not is_serviceentry(doc) or not wildcard or spec.get("endpoints") or spec.get("resolution") != "NONE":
        return False
    spec["resolution"] = "DNS"
    return True


def _implicit_policy_types(doc: Doc) -> bool:
    spec = doc.get("spec") or {}
    if not has_egress_rules(doc) or set(spec.get("policyTypes") or []) != {"Ingress", "Egress"}:
        return False  # dropping any other policyTypes would change what the policy isolates
    del spec["policyTypes"]
    return True


def _implicit_tcp(doc: Doc) -> bool:
    ports = [p for rule in (doc.get("spec") or {}).get("egress") or [] for p in (rule or {}).get("ports") or []
             if p.get("protocol") == "TCP"] if has_egress_rules(doc) else []
    for port in ports:
        del port["protocol"]
    return bool(ports)


def _sloppy_cidrs(doc: Doc) -> bool:
    blocks = [peer["ipBlock"] for rule in (doc.get("spec") or {}).get("egress") or []
              for peer in (rule or {}).get("to") or [] if isinstance((peer or {}).get("ipBlock"), dict)
              ] if has_egress_rules(doc) else []

    def sloppy(cidr: str) -> str:
        net = network(cidr)
        if net.prefixlen == net.max_prefixlen:
            return str(net.network_address)  # a bare IP
        return f"{net.network_address + 1}/{net.prefixlen}"  # host bits set

    for block in blocks:
        block["cidr"] = sloppy(block["cidr"])
        if block.get("except"):
            block["except"] = [sloppy(e) for e in block["except"]]
    return bool(blocks)


DAMAGES: dict[str, Damage] = {
    "lower-case-protocols": _lower_protocols,
    "old-api-version": _old_api_version,
    "shouting-hosts": _shouting_hosts,
    "unnamed-ports": _unnamed_ports,
    "repeated-port": _repeated_port,
    "wildcard-by-dns": _wildcard_by_dns,
    "implicit-policy-types": _implicit_policy_types,
    "implicit-tcp": _implicit_tcp,
    "sloppy-cidrs": _sloppy_cidrs,
}


def _dump(doc: Doc) -> str:
    out = io.StringIO()
    yaml = YAML(typ="rt")
    yaml.dump(doc, out)
    return out.getvalue()


def canonical_documents(run: Run) -> list[Doc]:
    """The in-scope documents of a normalized output, generated ones made the chart's own."""
    docs = []
    for text in documents(outcome(run).stdout):
        doc = parse(text)
        if in_scope(doc):
            doc = copy.deepcopy(doc)
            (doc["metadata"].get("annotations") or {}).pop(GENERATED_BY, None)
            docs.append(doc)
    return docs


SOURCES = [r for r in RUNS if r.normalizes and r.name.startswith("normalize-")]


@pytest.mark.parametrize("run", SOURCES, ids=ids(SOURCES))
def test_a_damaged_canonical_document_is_repaired_to_its_meaning(run: Run) -> None:
    originals = canonical_documents(run)
    tried = []
    for damage, harm in DAMAGES.items():
        damaged = [copy.deepcopy(d) for d in originals]
        applies = [harm(d) for d in damaged]
        if not any(applies):
            continue  # this run has no document that damage fits
        tried.append(damage)
        stream = "".join(f"---\n{_dump(d)}" for d in damaged).encode()
        args = ["render", *(["--istio-api-version", run.target] if run.target != DEFAULT_API_VERSION else [])]
        result = invoke(run.folder, args, stream)
        assert result.exit_code == 0, (damage, result.stderr)
        repaired = [parse(t) for t in documents(result.stdout)]
        assert len(repaired) == len(originals), damage
        for original, damaged_doc, applied, doc in zip(originals, damaged, applies, repaired):
            where = f"{damage}: {original['kind']}/{original['metadata'].get('name')}"
            assert meaning(doc) == meaning(original), where
            assert defects(doc, run.target) == [], where
            check = oracle.serviceentry_problems if is_serviceentry(doc) else oracle.networkpolicy_problems
            assert check(prune_nulls(doc)) == [], where
            if is_serviceentry(doc):
                assert doc["spec"].get("resolution") == original["spec"].get("resolution"), where
            if not applied:
                assert doc == damaged_doc, where
    assert tried, f"no damage fits any document of {run.name}"


# --------------------------------------------------------------------------- only the repaired lines


@dataclass(frozen=True)
class LineRepair:
    """A document whose repair changes exactly the lines in ``changes``, and nothing else."""

    name: str
    text: str
    changes: tuple[tuple[str, str], ...]  # (line before, line after)

    @property
    def expected(self) -> str:
        out = self.text
        for old, new in self.changes:
            assert out.count(old) == 1, old
            out = out.replace(old, new)
        return out


LINE_REPAIRS = [
    LineRepair("two-space-block", (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: two\n  labels:\n    app: x\n"
        "spec:\n  hosts:\n  - api.example.com\n  ports:\n  - number: 443\n    name: tls-443\n    protocol: tls\n"
        "  resolution: DNS\n"), (("    protocol: tls\n", "    protocol: TLS\n"),)),
    LineRepair("indented-sequences-crlf", (
        "apiVersion: networking.k8s.io/v1\r\nkind: NetworkPolicy\r\nmetadata:\r\n  name: db\r\nspec:\r\n"
        "  podSelector: {}\r\n  policyTypes:\r\n    - Egress\r\n  egress:\r\n    - to:\r\n        - ipBlock:\r\n"
        "            cidr: 10.1.2.3\r\n      ports:\r\n        - protocol: TCP\r\n          port: 5432\r\n"),
        (("cidr: 10.1.2.3\r\n", "cidr: 10.1.2.3/32\r\n"),)),
    # Charts written with four-space indentation (or `nindent 4` everywhere) exist.
    LineRepair("four-space-block", (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n    name: four\n    labels:\n"
        "        app: x\nspec:\n    hosts:\n    -   api.example.com\n    ports:\n    -   number: 443\n"
        "        name: tls-443\n        protocol: tls\n    resolution: DNS\n"),
        (("        protocol: tls\n", "        protocol: TLS\n"),)),
    # A flow mapping inside a flow sequence keeps its braces.
    LineRepair("flow-peer", (
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: flow}\n"
        "spec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 10.0.0.1}}], "
        "ports: [{port: 53, protocol: UDP}]}]}\n"),
        (("{cidr: 10.0.0.1}", "{cidr: 10.0.0.1/32}"),)),
]


@pytest.mark.parametrize("case", LINE_REPAIRS, ids=[c.name for c in LINE_REPAIRS])
def test_a_repair_changes_only_the_repaired_lines(case: LineRepair) -> None:
    result = invoke(CASES, ["render"], case.text.encode())
    assert result.exit_code == 0, result.stderr
    assert result.stdout.decode() == case.expected

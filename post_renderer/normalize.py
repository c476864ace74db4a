"""Normalize the ServiceEntry and egress NetworkPolicy documents a chart already renders.

Repair what has exactly one correct repair, refuse what has none, never change what a
document means. A document that needs nothing keeps its bytes. The repairs are worked out
once, on the data the reading stage parsed, as a list of edits; a document that has some
is re-read comment-preserving, given the same edits, and written back with its comments,
key order and quoting, so only the repaired values differ.

ServiceEntry (any ``networking.istio.io`` version):
  an apiVersion Istio does not serve moved to the target version (a served one, v1,
  v1beta1 or v1alpha3, is kept as written); an address-only entry whose one host is its
  own name (a chart convention) moved from DNS to NONE resolution; port protocols
  upper-cased; missing, invalid
  or duplicate port names replaced by ``<protocol>-<number>`` (endpoint port maps
  follow); hosts lower-cased, trailing dots dropped, duplicates removed; wildcard hosts
  with DNS resolution and no endpoints moved to NONE. Refused: a ``*`` host, IP literals
  as hosts, CIDR addresses with a resolution other than NONE/STATIC, one port number
  with two protocols.

NetworkPolicy with egress rules:
  bare IPs in ``ipBlock`` become /32 or /128, host bits are cleared, ``except`` entries
  must lie strictly inside their ``cidr``; egress port protocols upper-cased with the
  TCP default made explicit; an absent ``policyTypes`` written out with the meaning
  Kubernetes gives it (Ingress, plus Egress since there are egress rules).
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Callable, MutableMapping, MutableSequence
from typing import Any

from post_renderer import yamlio
from post_renderer.addresses import IPNetwork, forbidden_literal, is_ip_literal, network, normal_host, strictly_inside
from post_renderer.edits import Edit, Edits, Path
from post_renderer.errors import EgressError, Location, Problem, Problems
from post_renderer.model import PROTOCOLS, RESOLUTIONS, Existing
from post_renderer.settings import ISTIO_API_VERSIONS, Settings
from post_renderer.stream import Document, Stream
from post_renderer.validate import networkpolicy_port_problems, non_ascii_host_problem

ISTIO_GROUP = "networking.istio.io"
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_PROTOCOLS = {p.upper(): p for p in PROTOCOLS}


Repair = Callable[[Edits, Settings, Problems, Location], list[str]]


class Normalized:
    def __init__(self) -> None:
        self.replacements: dict[int, str] = {}  # doc index -> new text
        self.serviceentries: list[Existing] = []  # as they will be applied
        self.warnings: list[Problem] = []  # repairs a chart author should hear of


def normalize(stream: Stream, existing: list[Existing], settings: Settings, problems: Problems,
              notes: list[str]) -> Normalized:
    result = Normalized()
    for item in existing:
        repair: Repair = _repair_serviceentry if item.kind == "ServiceEntry" else _repair_networkpolicy
        # A copy: a NetworkPolicy's data as the chart wrote it is what a destination policy judges.
        edits = Edits(copy.deepcopy(item.data))
        local = Problems()
        repairs = repair(edits, settings, local, item.location)
        problems.extend(local.items)
        if local:
            continue
        if item.kind == "ServiceEntry":
            result.serviceentries.append(Existing(item.doc_index, item.kind, edits.data, item.location))
        if not edits.made:
            continue
        if item.doc_index >= len(stream.documents):
            # An item of a List: rewriting it would mean rewriting the List, which stays as it came.
            problems.add(item.location, (
                f"this item of a List needs repairs ({'; '.join(repairs)}), and helm-egress does not rewrite "
                "Lists: write it as its own document, or fix it in the chart"))
            continue
        doc = stream.documents[item.doc_index]
        try:
            result.replacements[item.doc_index] = _rewrite(doc, stream, edits.made, item.location)
        except EgressError as e:  # pragma: no cover - the safe read succeeded, so should this
            problems.extend(e.problems)
            continue
        for r in repairs:
            notes.append(f"{item.location.render()}: repaired: {r}")
            if r.startswith(INVENTED_HOST_REPAIR):
                result.warnings.append(Problem(item.location.at("spec.resolution"), (
                    "an address-only ServiceEntry resolved by DNS: its only host is its own name, which no DNS "
                    "server knows, so Istio accepts it but its traffic goes nowhere; render repairs it to NONE "
                    "(traffic goes to the addresses, as declared). Fix the chart")))
    return result


INVENTED_HOST_REPAIR = "address-only entry"


def invented_host(doc: Any) -> bool:
    """An address-only ServiceEntry as lazy-helm-charts' library renders it: its one host
    is its own name, which no DNS server knows, so DNS resolution sends the addresses'
    traffic nowhere. ``doc`` is shape-checked."""
    metadata, spec = doc.get("metadata") or {}, doc.get("spec") or {}
    hosts = [str(h).strip().lower() for h in spec.get("hosts") or []]
    name = metadata.get("name")
    return (
        isinstance(name, str)
        and bool(spec.get("addresses"))
        and not spec.get("endpoints")
        and spec.get("resolution") in ("DNS", "DNS_ROUND_ROBIN")
        and bool(hosts)
        and all(h == name.lower() for h in hosts)
    )


def _rewrite(doc: Document, stream: Stream, edits: list[Edit], where: Location) -> str:
    """Re-read ``doc`` comment-preserving, make ``edits``, and write it back."""
    head, body = "", doc.raw
    if doc.has_separator:
        first, nl, rest = doc.raw.partition("\n")
        after = first[3:].strip()
        if not after or after.startswith("#"):
            head, body = first + nl, rest  # the marker line stays exactly as it was
        else:
            head = "---" + stream.newline  # content on the marker line is re-written below it
    crlf = "\r\n" in body
    text = body.replace("\r\n", "\n") if crlf else body
    parsed = Document.yaml_text_after_marker(text)
    tail = text[len(parsed):]  # an end marker and what follows it, kept verbatim
    yaml = yamlio.roundtrip_loader()
    yaml.width = 4096
    # Keep `[{a: 1}]` as written; ruamel would otherwise drop the braces of a
    # single-entry mapping inside a flow sequence.
    yaml.brace_single_entry_mapping_in_flow_sequence = True
    yaml.indent(**dict(zip(("mapping", "sequence", "offset"), _indentation(parsed, stream))))
    data = yamlio.load(yaml, parsed, where, line_offset=doc.start_line - 1)
    for edit in edits:
        edit.apply(data)
    out = io.StringIO()
    yaml.dump(data, out)
    written = out.getvalue()
    if written.startswith("---\n") and not parsed.startswith("---"):
        written = written[4:]
    written += tail
    return head + (written.replace("\n", "\r\n") if crlf else written)


def _is_key(item: str) -> bool:
    return re.match(r"-\s+[\w./-]+:(\s|$)", item) is not None


def _indentation(body: str, stream: Stream) -> tuple[int, int, int]:
    """(mapping, sequence, offset) as ruamel wants them, read off the document itself."""
    lines = [line for line in body.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    mapping = sequence = offset = None
    for prev, line in zip(lines, lines[1:]):
        if not prev.rstrip().endswith(":"):
            continue
        key = len(prev) - len(prev.lstrip(" "))
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if stripped.startswith("- ") and (sequence is None or _is_key(stripped)):
            # Items that are mappings show the style best: `-   key:` pads the dash.
            content = indent + 1 + len(stripped[1:]) - len(stripped[1:].lstrip(" "))
            offset, sequence = indent - key, content - key
            if _is_key(stripped) and mapping is not None:
                break
        elif not stripped.startswith("-") and indent > key and mapping is None:
            mapping = indent - key
    default = (2, 2, 0) if stream.shape == "helm4" else (2, 4, 2)
    mapping = mapping or default[0]
    if sequence is None or offset is None or sequence < offset + 2:
        sequence, offset = default[1], default[2]
    return mapping, sequence, offset


# --- ServiceEntry -------------------------------------------------------------------


def _repair_serviceentry(edits: Edits, settings: Settings, problems: Problems, where: Location) -> list[str]:
    doc = edits.data
    repairs: list[str] = []
    if doc.get("apiVersion") not in ISTIO_API_VERSIONS:
        # Only a version Istio does not serve is broken; a served one stays as written
        # (rewriting it breaks older meshes and shows as churn in every helm diff).
        repairs.append(f"apiVersion {doc.get('apiVersion')} -> {settings.istio_api_version} (not served by Istio)")
        edits.set((), "apiVersion", settings.istio_api_version)
    spec = doc.get("spec")
    if not isinstance(spec, MutableMapping):
        problems.add(where.at("spec"), "a ServiceEntry needs a spec")
        return repairs
    written = spec.get("resolution")
    if isinstance(written, str) and written not in RESOLUTIONS:
        # The CRD's enum is case-sensitive; the upper-case spelling is the one repair.
        if written.upper() in RESOLUTIONS:
            repairs.append(f"resolution {written} -> {written.upper()}")
            edits.set(("spec",), "resolution", written.upper())
        else:
            problems.add(where.at("spec.resolution"), f"{written!r} is not one of {', '.join(RESOLUTIONS)}")
    if invented_host(doc):
        # Section 2.3 of the rules: with NONE the sidecar forwards to the original
        # destination, the addresses, which is what the entry asks for; STATIC would need
        # the addresses as endpoints, which a CIDR cannot be.
        old = spec.get("resolution")
        repairs.append(f"{INVENTED_HOST_REPAIR} resolved by {old}: resolution {old} -> NONE (its only host, "
                       f"{doc['metadata']['name']!r}, is its own name, which DNS cannot resolve; NONE sends the "
                       "traffic to the addresses as declared)")
        edits.set(("spec",), "resolution", "NONE")
    resolution = spec.get("resolution", "NONE")
    endpoints = spec.get("endpoints")

    hosts = spec.get("hosts")
    if not isinstance(hosts, MutableSequence) or not hosts:
        problems.add(where.at("spec.hosts"), "a ServiceEntry must have at least one host")
        hosts = []
    seen: set[str] = set()
    i = 0
    while i < len(hosts):
        raw = str(hosts[i])
        why = non_ascii_host_problem(raw.strip())
        if why:
            problems.add(where.at(f"spec.hosts[{i}]"), f"{raw!r}: {why}")
            i += 1
            continue
        host = normal_host(raw)
        if host == "*":
            problems.add(where.at(f"spec.hosts[{i}]"), "a bare '*' host matches every destination; Istio rejects it")
        elif forbidden_literal(host):
            # Not "it belongs in addresses": there it would be refused as well.
            problems.add(where.at(f"spec.hosts[{i}]"), f"{raw!r} is an IP address, link-local or a cloud metadata "
                                                       "endpoint: no workload may reach it, in hosts or addresses")
        elif is_ip_literal(host):
            problems.add(where.at(f"spec.hosts[{i}]"), f"{raw!r} is an IP address; it belongs in addresses")
        if host in seen:
            repairs.append(f"duplicate host {raw!r} removed")
            edits.delete(("spec", "hosts"), i)
            continue
        seen.add(host)
        if host != raw:
            repairs.append(f"host {raw!r} -> {host!r}")
            edits.set(("spec", "hosts"), i, host)
        i += 1

    for j, address in enumerate(spec.get("addresses") or []):
        try:
            network(str(address))
        except ValueError:
            problems.add(where.at(f"spec.addresses[{j}]"), f"{address!r} is not an IP address or CIDR")
            continue
        if "/" in str(address) and resolution not in ("NONE", "STATIC"):
            problems.add(where.at(f"spec.addresses[{j}]"),
                         f"CIDR address {address} needs resolution NONE or STATIC, not {resolution}")

    if resolution in ("DNS", "DNS_ROUND_ROBIN") and not endpoints and any(str(h).startswith("*") for h in hosts):
        # Istio's webhook rejects this; with no endpoints NONE is the only resolution
        # that keeps the wildcard's meaning (traffic to any matching host).
        repairs.append(f"resolution {resolution} -> NONE (wildcard hosts cannot be resolved by DNS)")
        edits.set(("spec",), "resolution", "NONE")
        resolution = "NONE"
    if resolution == "NONE" and "endpoints" in spec and not endpoints:
        # `endpoints: []` (a template rendering an empty list) means no endpoints, but the
        # CRD's NONE rule rejects the key being there at all.
        repairs.append("empty endpoints removed (NONE cannot set endpoints)")
        edits.delete(("spec",), "endpoints")
    elif resolution == "NONE" and endpoints:
        # STATIC or DNS would each change where traffic goes: no repair.
        problems.add(where.at("spec.endpoints"), "endpoints need resolution STATIC or DNS; with NONE "
                     f"({'the default' if 'resolution' not in spec else 'as written'}) Istio rejects them")

    _repair_ports(spec, edits, repairs, problems, where)
    return repairs


def _repair_ports(spec: MutableMapping[str, Any], edits: Edits, repairs: list[str], problems: Problems,
                  where: Location) -> None:
    ports = spec.get("ports")
    if not isinstance(ports, MutableSequence):
        return
    referenced = {
        str(k)
        for endpoint in spec.get("endpoints") or []
        if isinstance(endpoint, MutableMapping) and isinstance(endpoint.get("ports"), MutableMapping)
        for k in endpoint["ports"]
    }
    for i, port in enumerate(ports):
        for key in ("number", "targetPort"):
            value = port.get(key) if isinstance(port, MutableMapping) else None
            if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= 65535:
                problems.add(where.at(f"spec.ports[{i}].{key}"), f"{value} is not a port number 1..65535")
        protocol = port.get("protocol") if isinstance(port, MutableMapping) else None
        if isinstance(protocol, str) and protocol.upper() in _PROTOCOLS and protocol != protocol.upper():
            repairs.append(f"ports[{i}].protocol {protocol} -> {protocol.upper()}")
            edits.set(("spec", "ports", i), "protocol", protocol.upper())
    _drop_repeated_ports(ports, edits, referenced, repairs, problems, where)
    _name_ports(spec, ports, edits, referenced, repairs)


def _protocol(port: Any) -> str:
    return str(port.get("protocol") or "").upper() if isinstance(port, MutableMapping) else ""


def _drop_repeated_ports(ports: MutableSequence[Any], edits: Edits, referenced: set[str], repairs: list[str],
                         problems: Problems, where: Location) -> None:
    """One port number, one port: Istio rejects repeats. Two protocols for one number have
    no right repair; the same port twice keeps the copy endpoints refer to by name."""
    groups: dict[int, list[int]] = {}
    for i, port in enumerate(ports):
        number = port.get("number") if isinstance(port, MutableMapping) else None
        if isinstance(number, int) and not isinstance(number, bool):
            groups.setdefault(number, []).append(i)
    doomed: list[int] = []
    for number, indices in groups.items():
        if len(indices) < 2:
            continue
        protocols = [_protocol(ports[i]) for i in indices]
        if len(set(protocols)) > 1:
            problems.add(where.at(f"spec.ports[{indices[1]}]"),
                         f"port {number} is declared as {' and as '.join(p or 'unset' for p in dict.fromkeys(protocols))}; "
                         "Istio allows one protocol per port number")
            continue
        used = [i for i in indices if ports[i].get("name") in referenced]
        if len(used) > 1:
            problems.add(where.at(f"spec.ports[{used[1]}]"),
                         f"port {number} is declared twice and endpoints map both names; keep one")
            continue
        keep = used[0] if used else indices[0]
        for i in indices:
            if i != keep:
                repairs.append(f"ports[{i}] repeats port {number} {protocols[0]}: removed")
                doomed.append(i)
    for i in sorted(doomed, reverse=True):
        edits.delete(("spec", "ports"), i)


def _name_ports(spec: MutableMapping[str, Any], ports: MutableSequence[Any], edits: Edits, referenced: set[str],
                repairs: list[str]) -> None:
    """Give every port a valid, unique name without taking one another port keeps."""
    def valid(name: Any) -> bool:
        return isinstance(name, str) and _PORT_NAME.match(name) is not None and len(name) <= 63

    kept: set[str] = set()
    needs: list[int] = []
    for i, port in enumerate(ports):
        if not isinstance(port, MutableMapping):
            continue
        name = port.get("name")
        if valid(name) and name not in kept:
            kept.add(str(name))
        else:
            needs.append(i)
    renames: dict[str, str] = {}
    for i in needs:
        port = ports[i]
        name = port.get("name")
        base = f"{_protocol(port).lower().replace('_', '-') or 'port'}-{port.get('number')}"
        new, n = base, 1
        while new in kept:
            n += 1
            new = f"{base}-{n}"
        kept.add(new)
        why = "missing" if name is None else ("invalid" if not valid(name) else "duplicate")
        repairs.append(f"ports[{i}].name {why} -> {new!r}" if name is None else f"ports[{i}].name {why} {name!r} -> {new!r}")
        if why == "invalid" and str(name) in referenced:
            renames[str(name)] = new
        edits.insert(("spec", "ports", i), "name", new, "number")
    # Endpoints map ports by name: a renamed port keeps its endpoint mapping.
    for k, endpoint in enumerate(spec.get("endpoints") or []):
        mapping = endpoint.get("ports") if isinstance(endpoint, MutableMapping) else None
        if isinstance(mapping, MutableMapping):
            for old, new in renames.items():
                if old in mapping:
                    edits.rename(("spec", "endpoints", k, "ports"), old, new)


# --- NetworkPolicy ------------------------------------------------------------------


def _repair_networkpolicy(edits: Edits, settings: Settings, problems: Problems, where: Location) -> list[str]:
    repairs: list[str] = []
    spec = edits.data.get("spec")
    if not isinstance(spec, MutableMapping) or not spec.get("egress"):
        return repairs  # no egress rules: not ours to touch
    if spec.get("policyTypes") is None:
        # Kubernetes reads an absent policyTypes as Ingress, plus Egress when egress rules
        # exist: writing that out keeps ingress isolated, as it was.
        types = ["Ingress", "Egress"]
        if "policyTypes" in spec:
            edits.set(("spec",), "policyTypes", types)
        else:
            edits.insert(("spec",), "policyTypes", types, "podSelector")
        repairs.append("policyTypes made explicit: [Ingress, Egress]")
    for r, rule in enumerate(spec.get("egress") or []):
        if not isinstance(rule, MutableMapping):
            continue
        for p, port in enumerate(rule.get("ports") or []):
            if not isinstance(port, MutableMapping):
                continue
            protocol = port.get("protocol")
            at = ("spec", "egress", r, "ports", p)
            if protocol is None:
                edits.insert(at, "protocol", "TCP", None)
                repairs.append(f"egress[{r}].ports[{p}].protocol: TCP made explicit")
            elif isinstance(protocol, str) and protocol.upper() in ("TCP", "UDP", "SCTP") and protocol != protocol.upper():
                edits.set(at, "protocol", protocol.upper())
                repairs.append(f"egress[{r}].ports[{p}].protocol {protocol} -> {protocol.upper()}")
            # No repair for the rest: a port name that is no name ('٤٤٣'), a number out of
            # range, an unknown protocol. Refused, so a repaired policy is always valid.
            for why in networkpolicy_port_problems(port):
                field, _, message = why.partition(": ")
                problems.add(where.at(f"spec.egress[{r}].ports[{p}]{field}"), message)
        for t, peer in enumerate(rule.get("to") or []):
            block = peer.get("ipBlock") if isinstance(peer, MutableMapping) else None
            if isinstance(block, MutableMapping):
                _repair_ip_block(block, ("spec", "egress", r, "to", t, "ipBlock"), f"spec.egress[{r}].to[{t}].ipBlock",
                                 edits, repairs, problems, where)
    return repairs


def _repair_ip_block(block: MutableMapping[str, Any], at: Path, path: str, edits: Edits, repairs: list[str],
                     problems: Problems, where: Location) -> None:
    cidr = _canonical(block.get("cidr"), f"{path}.cidr", repairs, problems, where)
    if cidr is None:
        return
    if str(block.get("cidr")) != str(cidr):
        edits.set(at, "cidr", str(cidr))
    excepts = block.get("except") or []
    for e in range(len(excepts)):
        net = _canonical(excepts[e], f"{path}.except[{e}]", repairs, problems, where)
        if net is None:
            continue
        if str(excepts[e]) != str(net):
            edits.set((*at, "except"), e, str(net))
        if not strictly_inside(net, cidr):
            problems.add(where.at(f"{path}.except[{e}]"), f"{net} is not strictly inside {cidr}")


def _canonical(value: Any, path: str, repairs: list[str], problems: Problems,
               where: Location) -> IPNetwork | None:
    try:
        net = network(str(value))
    except ValueError:
        problems.add(where.at(path), f"{value!r} is not a CIDR")
        return None
    if str(net) != str(value):
        repairs.append(f"{path.removeprefix('spec.')} {value} -> {net}")
    return net

"""Istio's and the Kubernetes API server's rules for the documents helm-egress writes.

Each function returns the errors Istio's validating webhook (``ValidateServiceEntry``,
CRD CEL rules) or the API server (``ValidateNetworkPolicy``) would report, as messages
with a YAML path. Generated documents must pass them; a failure is a helm-egress bug.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from post_renderer.addresses import canonical_network, inside, network, strictly_inside
from post_renderer.model import HTTP_FAMILY, PROTOCOLS, RESOLUTIONS, TLS_FAMILY
from post_renderer.names import dns_subdomain_problem
from post_renderer.reach import NODE_ENTITIES

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_WILDCARD_FIRST = re.compile(r"(\*|(\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)\Z")
_HOST_LABEL = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
_IANA_SVC_NAME = re.compile(r"(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_PROTOCOLS = {p.upper() for p in PROTOCOLS}


def wildcard_domain_problem(host: str) -> str | None:
    """Istio's ``ValidateWildcardDomain``: None when ``host`` is acceptable."""
    if not 0 < len(host) <= 255:
        return "host must be 1 to 255 characters"
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not _WILDCARD_FIRST.match(labels[0]) or len(labels[0]) > 63:
        return f"{labels[0]!r} is not a valid DNS label"
    for label in labels[1:]:
        if len(label) > 63 or not _HOST_LABEL.match(label):
            return f"{label!r} is not a valid DNS label"
    if len(labels) > 1 and labels[-1].isdigit():
        return "the last label may not be all digits (IP addresses are not hosts)"
    return None


def non_ascii_host_problem(host: str) -> str | None:
    """Hosts are ASCII on the wire. Lower-casing first would be wrong: 'K' (KELVIN SIGN)
    lower-cases to 'k', so the user would silently get another name."""
    if host.isascii():
        return None
    try:
        suggestion = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "hosts must be ASCII DNS names"
    return f"hosts must be ASCII DNS names; the IDNA (punycode) form of this one is {suggestion!r}"


def is_fqdn(host: str) -> bool:
    return "*" not in host and wildcard_domain_problem(host) is None


def serviceentry_problems(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return ["spec: must be a mapping"]
    out: list[str] = []
    hosts = spec.get("hosts") or []
    if not hosts:
        out.append("spec.hosts: service entry must have at least one host")
    for i, host in enumerate(hosts):
        if host == "*":
            out.append(f"spec.hosts[{i}]: hostname cannot be wildcard '*'")
            continue
        why = wildcard_domain_problem(str(host))
        if why:
            out.append(f"spec.hosts[{i}]: {why}")
    resolution = spec.get("resolution", "NONE")
    if resolution not in RESOLUTIONS:
        out.append(f"spec.resolution: {resolution!r} is not one of {', '.join(RESOLUTIONS)}")
    location = spec.get("location", "MESH_EXTERNAL")
    if location not in ("MESH_EXTERNAL", "MESH_INTERNAL"):
        out.append(f"spec.location: {location!r} is not MESH_EXTERNAL or MESH_INTERNAL")
    endpoints = spec.get("endpoints")
    if spec.get("workloadSelector") is not None and endpoints is not None:
        out.append("spec: only one of workloadSelector or endpoints can be set")
    addresses = spec.get("addresses") or []
    cidr = False
    for i, address in enumerate(addresses):
        text = str(address)
        try:
            network(text)
            cidr = cidr or "/" in text
        except ValueError:
            out.append(f"spec.addresses[{i}]: {text!r} is not an IP address or CIDR")
    if cidr and resolution not in ("NONE", "STATIC"):
        out.append("spec.resolution: CIDR addresses are allowed only for NONE/STATIC resolution types")
    if resolution == "NONE" and endpoints is not None:
        out.append("spec.endpoints: NONE mode cannot set endpoints")
    if resolution == "DNS_ROUND_ROBIN" and len(endpoints or []) > 1:
        out.append("spec.endpoints: DNS_ROUND_ROBIN allows at most one endpoint")
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and not endpoints:
        for i, host in enumerate(hosts):
            if not is_fqdn(str(host)):
                out.append(
                    f"spec.hosts[{i}]: {host!r}: hosts must be FQDN if no endpoints are provided "
                    f"for resolution mode {resolution}"
                )
    ports = spec.get("ports") or []
    names: set[str] = set()
    numbers: set[int] = set()
    protocols: list[str] = []
    for i, port in enumerate(ports):
        if not isinstance(port, dict):
            out.append(f"spec.ports[{i}]: must be a mapping")
            continue
        name = port.get("name")
        if not isinstance(name, str) or not _DNS1123_LABEL.match(name) or len(name) > 63:
            out.append(f"spec.ports[{i}].name: {name!r} is not a valid port name (DNS-1123 label)")
        elif name in names:
            out.append(f"spec.ports[{i}].name: duplicate port name {name!r}")
        else:
            names.add(name)
        number = port.get("number")
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
            out.append(f"spec.ports[{i}].number: {number!r} is not a port number 1..65535")
        elif number in numbers:
            out.append(f"spec.ports[{i}].number: duplicate port number {number}")
        else:
            numbers.add(number)
        target = port.get("targetPort")
        if target is not None and (not isinstance(target, int) or not 1 <= target <= 65535):
            out.append(f"spec.ports[{i}].targetPort: {target!r} is not a port number 1..65535")
        protocol = str(port.get("protocol") or "")
        if protocol and protocol.upper() not in _PROTOCOLS:
            out.append(f"spec.ports[{i}].protocol: unsupported protocol {protocol!r}")
        protocols.append(protocol.upper())
    if resolution != "NONE" and len(hosts) > 1:
        if any(p not in HTTP_FAMILY and p not in TLS_FAMILY for p in protocols):
            out.append("spec: multiple hosts provided with non-HTTP, non-TLS ports")
    if resolution == "DYNAMIC_DNS":
        if any(not str(h).startswith("*") for h in hosts):
            out.append("spec.hosts: DYNAMIC_DNS requires every host to be a wildcard")
        if addresses or endpoints:
            out.append("spec: DYNAMIC_DNS does not allow addresses or endpoints")
        # The widest Istio's set (1.30+); synth.choose_resolution holds an entry to its version's.
        if any(p not in ("HTTP", "TLS", "GRPC", "HTTP2") for p in protocols):
            out.append("spec.ports: DYNAMIC_DNS only allows HTTP, TLS, GRPC and HTTP2 ports")
    out.extend(_export_to_problems(spec.get("exportTo")))
    return out


def _export_to_problems(export_to: Any) -> list[str]:
    if export_to is None:
        return []
    if not isinstance(export_to, list):
        return ["spec.exportTo: must be a list"]
    out = []
    seen: set[str] = set()
    for i, item in enumerate(export_to):
        text = str(item)
        if text not in (".", "*", "~") and not _DNS1123_LABEL.match(text):
            out.append(f"spec.exportTo[{i}]: {text!r} is not '.', '*', '~' or a namespace")
        if text in seen:
            out.append(f"spec.exportTo[{i}]: duplicate {text!r}")
        seen.add(text)
    if ("*" in seen or "~" in seen) and len(seen) > 1:
        out.append("spec.exportTo: '*' and '~' must stand alone")
    return out


def networkpolicy_problems(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return ["spec: must be a mapping"]
    out: list[str] = []
    types = spec.get("policyTypes")
    if types is not None:
        if not isinstance(types, list) or len(types) > 2 or any(t not in ("Ingress", "Egress") for t in types):
            out.append("spec.policyTypes: at most Ingress and Egress")
    egress = spec.get("egress") or []
    if not isinstance(egress, list):
        return [*out, "spec.egress: must be a list"]
    # Workloads with the same reach share one rule list (networkpolicy.build): judged once.
    # The list is held, so its id cannot be another's while it is remembered.
    seen = _EGRESS_JUDGED.get(id(egress))
    if seen is None or seen[0] is not egress:
        if len(_EGRESS_JUDGED) >= 256:
            _EGRESS_JUDGED.clear()
        seen = _EGRESS_JUDGED[id(egress)] = (egress, _egress_problems(egress))
    return [*out, *seen[1]]


_EGRESS_JUDGED: dict[int, tuple[list[Any], list[str]]] = {}


def _egress_problems(egress: list[Any]) -> list[str]:
    out: list[str] = []
    for r, rule in enumerate(egress):
        base = f"spec.egress[{r}]"
        if not isinstance(rule, dict):
            out.append(f"{base}: must be a mapping")
            continue
        for p, port in enumerate(rule.get("ports") or []):
            out.extend(f"{base}.ports[{p}]{m}" for m in _port_problems(port))
        for t, peer in enumerate(rule.get("to") or []):
            out.extend(f"{base}.to[{t}]{m}" for m in _peer_problems(peer))
    return out


def networkpolicy_port_problems(port: Any) -> list[str]:
    """Why the API server would reject one NetworkPolicy port (suffixes of its path)."""
    return _port_problems(port)


def _port_problems(port: Any) -> list[str]:
    if not isinstance(port, dict):
        return [": must be a mapping"]
    out = []
    protocol = port.get("protocol", "TCP")
    if protocol not in ("TCP", "UDP", "SCTP"):
        out.append(f".protocol: {protocol!r} is not TCP, UDP or SCTP")
    number = port.get("port")
    end = port.get("endPort")
    if isinstance(number, bool) or (isinstance(number, int) and not 1 <= number <= 65535):
        out.append(f".port: {number!r} is not 1..65535")
    elif isinstance(number, str) and not (_IANA_SVC_NAME.match(number) and len(number) <= 15):
        out.append(f".port: {number!r} is not a port number or name")
    if end is not None:
        if not isinstance(number, int):
            out.append(".endPort: may not be specified when port is non-numeric or not specified")
        elif not isinstance(end, int) or not number <= end <= 65535:
            out.append(f".endPort: {end!r} must be between port and 65535")
    return out


def _peer_problems(peer: Any) -> list[str]:
    if not isinstance(peer, dict) or not peer:
        return [": a peer needs podSelector, namespaceSelector or ipBlock"]
    if "ipBlock" not in peer:
        return []
    if len(peer) > 1:
        return [": may not specify both ipBlock and another peer"]
    block = peer["ipBlock"] or {}
    excepts = block.get("except") or []
    if isinstance(block.get("cidr"), str) and isinstance(excepts, list) and all(isinstance(e, str) for e in excepts):
        return list(_ipblock_problems(block["cidr"], tuple(excepts)))
    return _block_problems(block.get("cidr"), excepts)


# Every generated NetworkPolicy repeats the same few blocks (the hostname CIDRs, each with
# its excepts): each is judged once.
@functools.lru_cache(maxsize=1024)
def _ipblock_problems(cidr: str, excepts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_block_problems(cidr, excepts))


def _block_problems(cidr_value: Any, excepts: Any) -> list[str]:
    cidr = canonical_network(str(cidr_value))
    if cidr is None:
        return [f".ipBlock.cidr: {cidr_value!r} is not a canonical CIDR"]
    out = []
    for e, text in enumerate(excepts):
        net = canonical_network(str(text))
        if net is None:
            out.append(f".ipBlock.except[{e}]: {text!r} is not a canonical CIDR")
            continue
        if not strictly_inside(net, cidr):
            out.append(f".ipBlock.except[{e}]: {text} must be a strict subset of {cidr}")
    return out


def canonical_sidecar_host(host: str) -> str:
    """A Sidecar egress host as Istio matches it against service hostnames, which are
    lower case and have no trailing dot: ``payments/API.Payments.svc.cluster.local.``
    written as given would import nothing. The namespace stays as given (names are case
    sensitive there; a wrong one is refused)."""
    namespace, sep, dns_name = host.strip().partition("/")
    return f"{namespace}{sep}{dns_name.lower().removesuffix('.')}" if sep else host


def sidecar_host_problem(host: str) -> str | None:
    """Istio's ``ValidateNamespaceSlashWildcardHostname`` for a Sidecar egress host, plus
    what helm-egress never writes: a whole namespace (`ns/*`), or `~` (imports nothing)."""
    namespace, sep, dns_name = host.partition("/")
    if not sep:
        return "must be namespace/dnsName (e.g. payments/api.payments.svc.cluster.local)"
    if not namespace or not dns_name:
        return "namespace and dnsName cannot be empty"
    if namespace not in ("*", ".") and not _DNS1123_LABEL.match(namespace):
        return f"invalid namespace {namespace!r}: '.', '*' or a namespace name"
    if dns_name == "*" or "/" in dns_name:
        return "imports every host of a namespace; name the hosts (least privilege)"
    if "." not in dns_name:
        return "short names are not allowed; use the FQDN (e.g. api.payments.svc.cluster.local)"
    if "*" in dns_name and not dns_name.startswith("*."):
        return f"partial wildcard {dns_name!r} not allowed"
    why = wildcard_domain_problem(dns_name)
    return f"{dns_name!r}: {why}" if why else None


def sidecar_problems(spec: Any) -> list[str]:
    """Istio's ``ValidateSidecar`` for the fields helm-egress writes."""
    if not isinstance(spec, dict):
        return ["spec: must be a mapping"]
    out: list[str] = []
    labels = (spec.get("workloadSelector") or {}).get("labels")
    if not labels:
        out.append("spec.workloadSelector.labels: a Sidecar without labels applies to the whole namespace")
    for key, value in (labels or {}).items():
        if not key or "*" in str(key) or "*" in str(value):
            out.append(f"spec.workloadSelector.labels: {key}={value} is not a valid selector")
    egress = spec.get("egress") or []
    if len(egress) != 1 or "port" in egress[0]:
        out.append("spec.egress: one listener without a port")
    for i, listener in enumerate(egress):
        hosts = listener.get("hosts") or []
        if not hosts:
            out.append(f"spec.egress[{i}].hosts: an egress listener must contain at least one host")
        for j, host in enumerate(hosts):
            if host == "~/*":
                continue
            why = sidecar_host_problem(str(host))
            if why:
                out.append(f"spec.egress[{i}].hosts[{j}]: {host}: {why}")
        if len(set(hosts)) != len(hosts):
            out.append(f"spec.egress[{i}].hosts: duplicated egress host")
    if (spec.get("outboundTrafficPolicy") or {}).get("mode") not in ("REGISTRY_ONLY", "ALLOW_ANY"):
        out.append("spec.outboundTrafficPolicy.mode: REGISTRY_ONLY or ALLOW_ANY")
    return out


_CILIUM_NAME = re.compile(r"[-a-zA-Z0-9_]+(?:\.[-a-zA-Z0-9_]+)*\.?\Z")
_CILIUM_PATTERN = re.compile(r"[-a-zA-Z0-9_*]+(?:\.[-a-zA-Z0-9_*]+)*\.?\Z")
_L3 = ("toEndpoints", "toCIDR", "toCIDRSet", "toEntities", "toServices", "toGroups", "toNodes", "toRequires")


# The CRD's pattern for a named port (cilium/cilium#11092).
_ENTITIES = frozenset({"kube-apiserver", *NODE_ENTITIES})  # the only ones helm-egress writes
_CILIUM_PORT_NAME = re.compile(r"([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*")


def ciliumnetworkpolicy_problems(spec: Any) -> list[str]:
    """The CiliumNetworkPolicy rules the CRD schema and Cilium's own ``Sanitize`` enforce on
    what helm-egress writes, and the ones it promises: no world, no bare `*` name."""
    if not isinstance(spec, dict):
        return ["spec: must be a mapping"]
    out: list[str] = []
    selector = spec.get("endpointSelector") or {}
    if not selector.get("matchLabels"):
        out.append("spec.endpointSelector: an empty selector selects every pod of the namespace")
    for r, rule in enumerate(spec.get("egress") or []):
        base = f"spec.egress[{r}]"
        if rule.get("toFQDNs") and any(rule.get(k) for k in _L3):
            out.append(f"{base}: toFQDNs cannot share a rule with other L3 selectors")
        for entity in rule.get("toEntities") or []:
            # The API server's identity and the nodes' (host-network pods) are reached by
            # entity only; world, cluster, all and the rest would open far more than anything
            # declared. The nodes run more than one workload's pods: only on their ports.
            if entity not in _ENTITIES:
                out.append(f"{base}.toEntities: helm-egress opens no entity but kube-apiserver, host and "
                           f"remote-node, not {entity!r}")
            elif entity in NODE_ENTITIES and not rule.get("toPorts"):
                out.append(f"{base}.toEntities: {entity} on every port; the nodes are opened on ports only")
        for i, selector in enumerate(rule.get("toFQDNs") or []):
            name, pattern = selector.get("matchName"), selector.get("matchPattern")
            if (name is None) == (pattern is None):
                out.append(f"{base}.toFQDNs[{i}]: exactly one of matchName and matchPattern")
            elif name is not None and (len(name) > 255 or not _CILIUM_NAME.match(name)):
                out.append(f"{base}.toFQDNs[{i}].matchName: {name!r} is not a DNS name")
            elif pattern is not None and (len(pattern) > 255 or not _CILIUM_PATTERN.match(pattern)
                                          or pattern.strip("*.") == ""):
                out.append(f"{base}.toFQDNs[{i}].matchPattern: {pattern!r} is not a pattern below a domain")
        for i, block in enumerate(rule.get("toCIDRSet") or []):
            cidr = canonical_network(str(block.get("cidr")))
            if cidr is None:
                out.append(f"{base}.toCIDRSet[{i}].cidr: {block.get('cidr')!r} is not a canonical CIDR")
                continue
            for text in block.get("except") or []:
                if not inside(network(str(text)), cidr):
                    out.append(f"{base}.toCIDRSet[{i}].except: {text} is not inside {cidr}")
        for t, to_ports in enumerate(rule.get("toPorts") or []):
            ports = to_ports.get("ports") or []
            if not 0 < len(ports) <= 40:
                out.append(f"{base}.toPorts[{t}].ports: 1 to 40 ports")
            for port in ports:
                number = port.get("port")
                # A pod's port name (a Service's named targetPort) is allowed since Cilium 1.8.
                if not isinstance(number, str) or not ((number.isascii() and number.isdigit() and 1 <= int(number) <= 65535)
                                                       or _CILIUM_PORT_NAME.fullmatch(number)):
                    out.append(f"{base}.toPorts[{t}].ports: {number!r} is not a port number or name string")
                if port.get("protocol") not in ("TCP", "UDP", "SCTP", "ANY"):
                    out.append(f"{base}.toPorts[{t}].ports: protocol {port.get('protocol')!r}")
    return out


# Istio's ValidateAuthorizationPolicy (pkg/config/validation) and the CRD's CEL rules, for
# what helm-egress writes: ALLOW policies attached to ServiceEntries of their namespace.
_TARGET_KINDS = {("networking.istio.io", "ServiceEntry"), ("", "Service"),
                 ("gateway.networking.k8s.io", "Gateway"), ("gateway.networking.k8s.io", "GatewayClass")}


def authorizationpolicy_problems(spec: Any) -> list[str]:
    if not isinstance(spec, dict):
        return ["spec: must be a mapping"]
    out: list[str] = []
    if sum(key in spec for key in ("selector", "targetRef", "targetRefs")) > 1:
        out.append("spec: only one of targetRefs or selector can be set")
    refs = spec.get("targetRefs")
    if not isinstance(refs, list) or not refs:
        out.append("spec.targetRefs: helm-egress attaches every policy to a ServiceEntry")
    for i, ref in enumerate(refs if isinstance(refs, list) else []):
        if not isinstance(ref, dict) or (ref.get("group", ""), ref.get("kind")) not in _TARGET_KINDS:
            out.append(f"spec.targetRefs[{i}]: not a kind a policy can be attached to")
        elif ref.get("namespace"):
            out.append(f"spec.targetRefs[{i}].namespace: cross namespace referencing is not supported")
        elif dns_subdomain_problem(str(ref.get("name") or "")):
            out.append(f"spec.targetRefs[{i}].name: {ref.get('name')!r} is not an object name")
    if spec.get("action") != "ALLOW":
        out.append("spec.action: helm-egress writes ALLOW policies only")
    rules = spec.get("rules")
    if not isinstance(rules, list) or not rules:
        # An ALLOW policy without rules admits nothing: every caller would be refused.
        out.append("spec.rules: an ALLOW policy without rules admits no one")
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        sources = [f.get("source") for f in rule.get("from") or [] if isinstance(f, dict)]
        if not sources or not all(isinstance(s, dict) and s.get("principals") for s in sources):
            out.append(f"spec.rules[{i}].from: every rule names the principals it admits")
        for s in sources:
            for p in (s or {}).get("principals") or []:
                if not isinstance(p, str) or not p or p == "*":
                    out.append(f"spec.rules[{i}].from: {p!r} is not one principal")
        operations = [t.get("operation") for t in rule.get("to") or [] if isinstance(t, dict)]
        if not operations or not all(isinstance(o, dict) and o.get("ports") for o in operations):
            out.append(f"spec.rules[{i}].to: every rule names its ports")
        for o in operations:
            for port in (o or {}).get("ports") or []:
                if not (isinstance(port, str) and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
                    out.append(f"spec.rules[{i}].to: port {port!r} is not a port number 1..65535")
    return out

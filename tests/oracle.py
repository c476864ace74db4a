"""Independent test oracle for generated ServiceEntry and NetworkPolicy documents.

Tests use this module to judge what helm-egress emits. It is written from the
rules document (Istio CEL + webhook, Kubernetes API-server validation, NetworkPolicy
semantics) and the vendored upstream schemas in ``fixtures/schemas``, and
deliberately shares no code with ``post_renderer``. A test that checked our output
with our own logic would only prove the code agrees with itself.

Each rule names the upstream function it mirrors, so a disagreement can be settled by
reading that source:

* Istio: ``pkg/config/validation/validation.go`` (ValidateServiceEntry, validateExportTo),
  ``pkg/config/validation/agent/validation.go`` (ValidateWildcardDomain, ValidateFQDN,
  ValidateIPSubnet, ValidatePartialWildCard), ``pkg/config/labels/instance.go``,
  ``pkg/config/protocol/instance.go``.
* Kubernetes: ``pkg/apis/networking/validation/validation.go``,
  ``staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation`` (label selectors),
  ``pkg/apis/networking/v1/defaults.go`` (policyTypes defaulting).

Where this oracle is deliberately *stricter* than upstream, the docstring says so. Those
cases are things we promise never to emit, such as non-canonical CIDRs, unknown fields and
HBONE.

Public API:

* ``serviceentry_problems(doc)`` / ``serviceentry_warnings(doc)``
* ``networkpolicy_problems(doc)``
* ``egress_allows(policies, pod_labels, *, dest, ...)``
* Building blocks the tests also exercise directly: ``validate_wildcard_domain``,
  ``validate_fqdn``, ``parse_istio_protocol``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeAlias

from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import ValidationError

__all__ = [
    "SCHEMA_DIR",
    "serviceentry_problems",
    "serviceentry_warnings",
    "networkpolicy_problems",
    "egress_allows",
    "validate_wildcard_domain",
    "validate_fqdn",
    "parse_istio_protocol",
]

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "schemas"

Doc: TypeAlias = Mapping[str, Any]
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
NamespaceLabels: TypeAlias = (
    Callable[[str], Mapping[str, str]] | Mapping[str, Mapping[str, str]] | None
)

# --------------------------------------------------------------------------- schemas


@cache
def _load_schema(name: str) -> dict[str, Any]:
    with (SCHEMA_DIR / name).open(encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


_SE_API_VERSIONS = {
    "networking.istio.io/v1": "v1",
    "networking.istio.io/v1beta1": "v1beta1",
    "networking.istio.io/v1alpha3": "v1alpha3",
}


@cache
def _serviceentry_validator(version: str) -> Draft7Validator:
    # Validate against the one definition that matches apiVersion, not the top-level
    # oneOf: a oneOf failure hides the real error behind "is not valid under any schema".
    full = _load_schema("serviceentry.crd.strict.json")
    schema = {
        "$schema": full["$schema"],
        "definitions": full["definitions"],
        "allOf": [{"$ref": f"#/definitions/{version}"}],
    }
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


@cache
def _networkpolicy_validator() -> Draft202012Validator:
    schema = _load_schema("networkpolicy.json")
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _schema_problems(validator: Draft7Validator | Draft202012Validator, doc: Any) -> list[str]:
    errors: list[ValidationError] = sorted(
        validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]
    )
    return [f"schema: {_path(e.absolute_path)}: {e.message[:300]}" for e in errors]


def _unknown_field_problems(value: Any, schema: Mapping[str, Any], where: str) -> list[str]:
    """Unknown keys where the CRD schema lists properties and does not allow extras.

    Stricter than jsonschema (the CRD wrapper has no additionalProperties:false) but
    matches the API server: unknown fields are pruned silently or, with kubectl's
    default strict field validation, rejected. Either way a typo such as `resolutions`
    would be lost, so the oracle reports it.
    """
    problems: list[str] = []
    if isinstance(value, Mapping) and isinstance(schema.get("properties"), Mapping):
        props: Mapping[str, Any] = schema["properties"]
        extra_ok = schema.get("additionalProperties") not in (None, False) or schema.get(
            "x-kubernetes-preserve-unknown-fields", False
        )
        for key, sub in value.items():
            if key in props:
                problems += _unknown_field_problems(sub, props[key], f"{where}.{key}")
            elif not extra_ok:
                problems.append(f"{where}: unknown field {key!r}")
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            problems += _unknown_field_problems(item, schema["items"], f"{where}[{i}]")
    return problems


# ------------------------------------------------------------------ names and hosts

_DNS1123_LABEL_RE = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")
# pkg/config/labels/instance.go: wildcardPrefix = `(\*|(\*|\*-)?` + DNS1123LabelFmt + `)`
_WILDCARD_LABEL_RE = re.compile(r"\*|(?:\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")
_K8S_DNS1123_SUBDOMAIN_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME_RE = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_IANA_SVC_NAME_RE = re.compile(r"[-a-z0-9]+")


def _utf8_len(value: str) -> int:
    # Go's len() counts bytes, which matters only for non-ASCII input.
    return len(value.encode("utf-8"))


def _is_dns1123_label(value: str) -> bool:
    """Istio's IsDNS1123Label: upper case is allowed, unlike Kubernetes'."""
    return _utf8_len(value) <= 63 and _DNS1123_LABEL_RE.fullmatch(value) is not None


def _go_atoi_succeeds(value: str) -> bool:
    if re.fullmatch(r"[+-]?[0-9]+", value) is None:
        return False
    return -(2**63) <= int(value) < 2**63


def _validate_dns1123_labels(domain: str) -> str | None:
    parts = domain.split(".")
    tld = parts[-1]
    if _go_atoi_succeeds(tld):
        return f"domain name {domain!r} invalid (top level domain {tld!r} cannot be all-numeric)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # a trailing dot is allowed ("istio.io.")
        if not _is_dns1123_label(label):
            return f"domain name {domain!r} invalid (label {label!r} invalid)"
    return None


def _dns1123_preconditions(name: str) -> str | None:
    if _utf8_len(name) > 255:
        return f"domain name {name!r} too long (max 255)"
    if name == "":
        return "empty domain name not allowed"
    return None


def validate_wildcard_domain(domain: str) -> str | None:
    """Istio agent.ValidateWildcardDomain: an error message, or None when valid.

    Only the first label may be a wildcard (`*`, `*foo`, `*-foo`). The TLD may not be
    all-numeric, so IPv4 literals fail; `:` fails, so IPv6 literals fail. A single label
    (a "short name") is valid.
    """
    if (err := _dns1123_preconditions(domain)) is not None:
        return err
    first, dot, rest = domain.partition(".")
    if _utf8_len(first) > 63 or _WILDCARD_LABEL_RE.fullmatch(first) is None:
        return f"domain name {domain!r} invalid (label {first!r} invalid)"
    return _validate_dns1123_labels(rest) if dot else None


def validate_fqdn(fqdn: str) -> str | None:
    """Istio agent.ValidateFQDN: like ValidateWildcardDomain, but without wildcards."""
    if (err := _dns1123_preconditions(fqdn)) is not None:
        return err
    return _validate_dns1123_labels(fqdn)


def _validate_partial_wildcard(host: str) -> str | None:
    if "*" in host and len(host) != 1 and not host.startswith("*."):
        return f"partial wildcard {host!r} not allowed"
    return None


def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _validate_ip_subnet(value: str) -> str | None:
    """Istio agent.ValidateIPSubnet: an IP, or a CIDR whose host bits need *not* be zero."""
    if value.count("/") == 1:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value} is not a valid CIDR block"
        return None
    return None if _parse_ip(value) is not None else f"{value} is not a valid IP"


# ------------------------------------------------------------------------ protocols

_ISTIO_PROTOCOLS = (
    "TCP", "UDP", "GRPC", "GRPC-Web", "HTTP", "HTTP_PROXY",
    "HTTP2", "HTTPS", "TLS", "Mongo", "Redis", "MySQL",
)  # fmt: skip
_ISTIO_PROTOCOL_BY_LOWER = {p.lower(): p for p in _ISTIO_PROTOCOLS}
_HTTP_FAMILY = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"})
_TLS_FAMILY = frozenset({"HTTPS", "TLS"})
_TCP_FAMILY = frozenset({"TCP", "HTTPS", "TLS", "Mongo", "Redis", "MySQL"})
# What a DYNAMIC_DNS port may carry, by Istio minor version: ValidateServiceEntry
# (istio/istio pkg/config/validation/validation.go) compares protocol.Parse(port.Protocol)
# with exact instances, so HTTPS (its own instance) is refused everywhere:
#   1.28.0-1.28.10  `!= protocol.HTTP`                  "only HTTP protocol is supported"
#   1.29.0-1.29.6   HTTP or TLS                          "only HTTP and TLS protocol is supported"
#   1.30.0-1.30.3, master 86c9f01f: HTTP, TLS, GRPC, HTTP2
# Before 1.28 the CRD's resolution enum has no DYNAMIC_DNS.
_DYNAMIC_DNS_PROTOCOLS: dict[int, frozenset[str]] = {
    28: frozenset({"HTTP"}),
    29: frozenset({"HTTP", "TLS"}),
    30: frozenset({"HTTP", "TLS", "GRPC", "HTTP2"}),
}
# Without a version: what every Istio that has DYNAMIC_DNS accepts.
OLDEST_DYNAMIC_DNS = 28


def dynamic_dns_protocols(istio_minor: int) -> frozenset[str]:
    if istio_minor < OLDEST_DYNAMIC_DNS:
        return frozenset()
    return _DYNAMIC_DNS_PROTOCOLS[min(istio_minor, max(_DYNAMIC_DNS_PROTOCOLS))]


def parse_istio_protocol(value: str) -> str | None:
    """Istio protocol.Parse: case-insensitive. Returns the canonical name, or None for
    Unsupported.

    An empty string also gives None, because it parses to Unsupported even though the
    webhook allows it (it means sniffing). HBONE/DoubleHBONE are internal and treated as
    unsupported here (stricter than upstream).
    """
    return _ISTIO_PROTOCOL_BY_LOWER.get(value.lower())


def _is_http_or_tls(protocol: Any) -> bool:
    parsed = parse_istio_protocol(protocol) if isinstance(protocol, str) else None
    return parsed in _HTTP_FAMILY or parsed in _TLS_FAMILY


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_port_number(value: Any) -> bool:
    return _is_int(value) and 1 <= value <= 65535


# ------------------------------------------------------------------ ServiceEntry

def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _metadata(doc: Doc) -> Mapping[str, Any]:
    meta = doc.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _name_problems(doc: Doc) -> list[str]:
    name = _metadata(doc).get("name")
    if not isinstance(name, str) or name == "":
        return ["metadata.name: required"]
    if len(name) > 253 or _K8S_DNS1123_SUBDOMAIN_RE.fullmatch(name) is None:
        return [f"metadata.name: {name!r} is not a lowercase RFC 1123 subdomain (max 253)"]
    return []


def serviceentry_problems(doc: Doc, istio_minor: int = OLDEST_DYNAMIC_DNS) -> list[str]:
    """Everything the Istio API server would reject, as one message per problem.

    The checks, in order:
    1. The strict CRD schema for the document's apiVersion (v1, v1beta1 or v1alpha3),
       which includes the CEL rules expressible in JSON Schema.
    2. Unknown fields under `spec`.
    3. A DNS-1123-subdomain `metadata.name`.
    4. Every error-level rule of ValidateServiceEntry.

    An empty list means "would be admitted".
    """
    if not isinstance(doc, Mapping):
        return ["document is not a mapping"]
    problems: list[str] = []
    api_version = doc.get("apiVersion")
    version = _SE_API_VERSIONS.get(api_version) if isinstance(api_version, str) else None
    if version is None:
        problems.append(f"apiVersion: {api_version!r} is not a served ServiceEntry version")
    else:
        problems += _schema_problems(_serviceentry_validator(version), doc)
        spec_schema = _load_schema("serviceentry.crd.strict.json")["definitions"][version][
            "properties"
        ]["spec"]
        problems += _unknown_field_problems(doc.get("spec"), spec_schema, "spec")
    if doc.get("kind") != "ServiceEntry":
        problems.append(f"kind: {doc.get('kind')!r} is not 'ServiceEntry'")
    problems += _name_problems(doc)
    spec = doc.get("spec")
    if isinstance(spec, Mapping):
        problems += _serviceentry_webhook_errors(doc, spec, istio_minor)
    elif version is None:
        problems.append("spec: required")
    return problems


def _serviceentry_webhook_errors(doc: Doc, spec: Mapping[str, Any], istio_minor: int) -> list[str]:
    errs: list[str] = []
    hosts = [h for h in _as_list(spec.get("hosts")) if isinstance(h, str)]
    addresses = [a for a in _as_list(spec.get("addresses")) if isinstance(a, str)]
    ports = _as_list(spec.get("ports"))
    endpoints = _as_list(spec.get("endpoints"))
    resolution = spec.get("resolution") or "NONE"  # proto default (enum value 0)
    selector = spec.get("workloadSelector")

    if isinstance(selector, Mapping):
        labels = selector.get("labels")
        for key, val in (labels.items() if isinstance(labels, Mapping) else ()):
            if key == "":
                errs.append(f"spec.workloadSelector.labels: empty key is not supported ({key}={val})")
            if "*" in str(key) or "*" in str(val):
                errs.append(f"spec.workloadSelector.labels: wildcard is not supported ({key}={val})")
    if selector is not None and "endpoints" in spec:
        errs.append("spec: only one of WorkloadSelector or Endpoints is allowed in Service Entry")

    if not hosts:
        errs.append("spec.hosts: service entry must have at least one host")
    for i, host in enumerate(hosts):
        if host == "*":
            errs.append(f"spec.hosts[{i}]: invalid host *")
        elif (err := validate_wildcard_domain(host)) is not None:
            errs.append(f"spec.hosts[{i}]: {err}")

    cidr_found = False
    for i, address in enumerate(addresses):
        cidr_found = cidr_found or "/" in address
        if (err := _validate_ip_subnet(address)) is not None:
            errs.append(f"spec.addresses[{i}]: {err}")
    if cidr_found and resolution not in ("NONE", "STATIC"):
        errs.append("spec.addresses: CIDR addresses are allowed only for NONE/STATIC resolution types")

    port_names: set[str] = set()
    port_numbers: set[int] = set()
    for i, port in enumerate(ports):
        where = f"spec.ports[{i}]"
        if not isinstance(port, Mapping):
            errs.append(f"{where}: service entry port may not be null")
            continue
        name = port.get("name", "")
        number = port.get("number", 0)
        if isinstance(name, str):
            if name in port_names:
                errs.append(f"{where}.name: service entry port name {name!r} already defined")
            port_names.add(name)
            if not _is_dns1123_label(name):
                errs.append(f"{where}.name: invalid port name: {name!r}")
        if _is_int(number):
            if number in port_numbers:
                errs.append(f"{where}.number: service entry port {number} already defined")
            port_numbers.add(number)
        if not _valid_port_number(number):
            errs.append(f"{where}.number: port number {number} must be in the range 1..65535")
        target = port.get("targetPort", 0)
        if target not in (0, None) and not _valid_port_number(target):
            errs.append(f"{where}.targetPort: port number {target} must be in the range 1..65535")
        protocol = port.get("protocol", "")
        if isinstance(protocol, str) and protocol != "" and parse_istio_protocol(protocol) is None:
            errs.append(f"{where}.protocol: unsupported protocol: {protocol}")

    if resolution == "NONE":
        if endpoints:
            errs.append("spec.endpoints: no endpoints should be provided for resolution type none")
    elif resolution == "STATIC":
        errs += _endpoint_errors(endpoints, port_names, allow_fqdn=False)
    elif resolution in ("DNS", "DNS_ROUND_ROBIN"):
        if not endpoints:
            for i, host in enumerate(hosts):
                if validate_fqdn(host) is not None:
                    errs.append(
                        f"spec.hosts[{i}]: hosts must be FQDN if no endpoints are provided "
                        f"for resolution mode {resolution} (got {host!r})"
                    )
        if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
            errs.append(f"spec.endpoints: there must only be 0 or 1 endpoint for resolution mode {resolution}")
        errs += _endpoint_errors(endpoints, port_names, allow_fqdn=True)
    elif resolution == "DYNAMIC_DNS":
        errs += _dynamic_dns_errors(doc, spec, hosts, ports, istio_minor)

    # Plain TCP carries no Host header or SNI, so with several hosts the proxy cannot
    # tell them apart; only NONE (which ignores hosts) is exempt. An unset protocol
    # parses to Unsupported and therefore counts as non-HTTP.
    if resolution != "NONE" and len(hosts) > 1:
        if any(isinstance(p, Mapping) and not _is_http_or_tls(p.get("protocol", "")) for p in ports):
            errs.append("spec: multiple hosts provided with non-HTTP, non-TLS ports")

    errs += _export_to_errors(_metadata(doc).get("namespace"), _as_list(spec.get("exportTo")))
    return errs


def _endpoint_errors(endpoints: Sequence[Any], port_names: set[str], *, allow_fqdn: bool) -> list[str]:
    errs: list[str] = []
    for i, endpoint in enumerate(endpoints):
        where = f"spec.endpoints[{i}]"
        if not isinstance(endpoint, Mapping):
            errs.append(f"{where}: endpoint cannot be nil")
            continue
        address = endpoint.get("address", "")
        address = address if isinstance(address, str) else ""
        if address == "" and not endpoint.get("network"):
            errs.append(f"{where}.address: address is required")
        elif address.startswith("unix://"):
            path = address[len("unix://") :]
            if not (path.startswith("@") or (path.startswith("/") and not path.endswith("/"))):
                errs.append(f"{where}.address: {path} is not an absolute path to a file")
            if endpoint.get("ports"):
                errs.append(f"{where}: unix endpoint {address} must not include ports")
            if len(port_names) != 1:
                errs.append(f"{where}: exactly 1 service port required for unix endpoints")
        elif address and _parse_ip(address) is None:
            if not allow_fqdn:
                errs.append(f"{where}.address: endpoint address {address!r} is not a valid IP address")
            elif validate_fqdn(address) is not None:
                errs.append(f"{where}.address: endpoint address {address!r} is not a valid FQDN or an IP address")
        ep_ports = endpoint.get("ports")
        for name, number in (ep_ports.items() if isinstance(ep_ports, Mapping) else ()):
            if name not in port_names:
                errs.append(f"{where}.ports: endpoint port {name!r} is not defined by the service entry")
            if not _is_dns1123_label(str(name)):
                errs.append(f"{where}.ports: invalid port name: {name!r}")
            if not _valid_port_number(number):
                errs.append(f"{where}.ports.{name}: port number {number} must be in the range 1..65535")
    return errs


def _dynamic_dns_errors(
    doc: Doc, spec: Mapping[str, Any], hosts: Sequence[str], ports: Sequence[Any], istio_minor: int
) -> list[str]:
    """DYNAMIC_DNS (Istio >= 1.28): Envoy resolves the request's Host/SNI itself."""
    errs: list[str] = []
    allowed = dynamic_dns_protocols(istio_minor)
    if not allowed:
        errs.append(f"spec.resolution: Istio 1.{istio_minor} has no DYNAMIC_DNS")
    for i, host in enumerate(hosts):
        if not host.startswith("*"):
            errs.append(f"spec.hosts[{i}]: DYNAMIC_DNS requires wildcard hosts (got {host!r})")
    if spec.get("addresses"):
        errs.append("spec.addresses: not allowed with DYNAMIC_DNS resolution")
    if spec.get("endpoints"):
        errs.append("spec.endpoints: not allowed with DYNAMIC_DNS resolution")
    for i, port in enumerate(ports):
        if isinstance(port, Mapping):
            protocol = port.get("protocol", "")
            parsed = parse_istio_protocol(protocol) if isinstance(protocol, str) else None
            if allowed and parsed not in allowed:
                errs.append(
                    f"spec.ports[{i}].protocol: DYNAMIC_DNS supports only {', '.join(sorted(allowed))} "
                    f"ports on Istio 1.{istio_minor} (got {protocol!r})"
                )
    labels = _metadata(doc).get("labels")
    if (
        spec.get("location") == "MESH_INTERNAL"
        and isinstance(labels, Mapping)
        and "istio.io/use-waypoint" in labels
    ):
        errs.append("spec.location: MESH_INTERNAL DYNAMIC_DNS cannot use a waypoint")
    return errs


def _export_to_errors(namespace: Any, export_to: Sequence[Any]) -> list[str]:
    """Istio validateExportTo with isServiceEntry=true."""
    errs: list[str] = []
    entries = [e for e in export_to if isinstance(e, str)]
    # Rendered charts often omit metadata.namespace; Istio would then substitute the
    # release namespace. Keeping "." as its own key avoids a spurious error for "".
    own_ns = namespace if isinstance(namespace, str) and namespace else "."
    seen: set[str] = set()
    for entry in entries:
        key = own_ns if entry == "." else entry
        if key in seen:
            if key != entry:
                errs.append(f"spec.exportTo: duplicate entries in exportTo: . and current namespace {own_ns}")
            else:
                errs.append(f"spec.exportTo: duplicate entries in exportTo for entry {entry}")
            continue
        if entry == "~" or key in (".", "*") or _is_dns1123_label(key):
            seen.add(key)
        else:
            errs.append(
                f"spec.exportTo: {entry!r}: only ., *, ~ or a valid DNS 1123 label is allowed as exportTo entry"
            )
    if "*" in seen and len(entries) > 1:
        errs.append("spec.exportTo: cannot have both public (*) and non-public exportTo values for a resource")
    if "~" in seen and len(entries) > 1:
        errs.append("spec.exportTo: cannot export service entry to no one (~) and someone")
    return errs


def serviceentry_warnings(doc: Doc) -> list[str]:
    """Webhook warnings (W) and the IST0134 analyzer message.

    Warnings are admitted but usually indicate broken traffic. Covered: partial-wildcard
    hosts (skipped for DYNAMIC_DNS); IST0134, a TCP or unset protocol without
    `addresses` (the protocol is compared case-insensitively, slightly broader than
    upstream's literal ""/"TCP"); workloadSelector without labels or with NONE/DNS
    resolution; DNS with addresses, a TCP-family port and several hosts.
    """
    spec = doc.get("spec") if isinstance(doc, Mapping) else None
    if not isinstance(spec, Mapping):
        return []
    warns: list[str] = []
    hosts = [h for h in _as_list(spec.get("hosts")) if isinstance(h, str)]
    ports = [p for p in _as_list(spec.get("ports")) if isinstance(p, Mapping)]
    resolution = spec.get("resolution") or "NONE"
    if resolution != "DYNAMIC_DNS":
        for i, host in enumerate(hosts):
            if host != "*" and (msg := _validate_partial_wildcard(host)) is not None:
                warns.append(f"spec.hosts[{i}]: {msg}")
    if not spec.get("addresses"):
        for i, port in enumerate(ports):
            protocol = port.get("protocol", "")
            if isinstance(protocol, str) and protocol.upper() in ("", "TCP"):
                warns.append(
                    f"spec.ports[{i}]: IST0134 ServiceEntryAddressesRequired: addresses are "
                    f"required for ports serving TCP (or unset) protocol"
                )
    selector = spec.get("workloadSelector")
    if selector is not None:
        if not (isinstance(selector, Mapping) and selector.get("labels")):
            warns.append("spec.workloadSelector: workload selector specified without labels")
        if resolution in ("NONE", "DNS", "DNS_ROUND_ROBIN"):
            warns.append(f"spec.workloadSelector: should not be set when resolution mode is {resolution}")
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and spec.get("addresses") and len(hosts) > 1:
        if any(parse_istio_protocol(str(p.get("protocol", ""))) in _TCP_FAMILY for p in ports):
            warns.append(
                "spec: service entry can not have more than one host specified simultaneously "
                "with address and tcp port"
            )
    return warns


# ------------------------------------------------------------------ NetworkPolicy

_NP_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})
_POLICY_TYPES = frozenset({"Ingress", "Egress"})
_PEER_FIELDS = ("podSelector", "namespaceSelector", "ipBlock")


def networkpolicy_problems(doc: Doc) -> list[str]:
    """Everything the Kubernetes API server would reject, plus non-canonical CIDRs.

    The checks, in order:
    1. The strict v1.37 schema (Draft 2020-12).
    2. A DNS-1123-subdomain `metadata.name`.
    3. ValidateNetworkPolicySpec: label selectors, ports (protocol, number or
       IANA_SVC_NAME, endPort), peers, ipBlock, policyTypes.

    A CIDR with host bits set, or not in canonical text form, is also a problem. The API
    server accepts such CIDRs unless StrictIPCIDRValidation is on, but helm-egress
    promises canonical output.
    """
    if not isinstance(doc, Mapping):
        return ["document is not a mapping"]
    problems = _schema_problems(_networkpolicy_validator(), doc)
    if doc.get("apiVersion") != "networking.k8s.io/v1" or doc.get("kind") != "NetworkPolicy":
        problems.append("apiVersion/kind: must be networking.k8s.io/v1 NetworkPolicy")
    problems += _name_problems(doc)
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        return problems
    if spec.get("podSelector") is not None:
        problems += _selector_problems(spec["podSelector"], "spec.podSelector")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(_as_list(spec.get(direction))):
            if not isinstance(rule, Mapping):
                continue
            where = f"spec.{direction}[{i}]"
            for j, port in enumerate(_as_list(rule.get("ports"))):
                problems += _np_port_problems(port, f"{where}.ports[{j}]")
            for j, peer in enumerate(_as_list(rule.get(peers_key))):
                problems += _np_peer_problems(peer, f"{where}.{peers_key}[{j}]")
    policy_types = spec.get("policyTypes")
    if isinstance(policy_types, list):
        if len(policy_types) > 2:
            problems.append("spec.policyTypes: may not specify more than two policyTypes")
        for i, value in enumerate(policy_types):
            if value not in _POLICY_TYPES:
                problems.append(f"spec.policyTypes[{i}]: unsupported value {value!r}: supported values: Ingress, Egress")
    return problems


def _is_qualified_name(value: str) -> bool:
    prefix, slash, name = value.rpartition("/")
    if slash and (
        prefix == "" or len(prefix) > 253 or _K8S_DNS1123_SUBDOMAIN_RE.fullmatch(prefix) is None
    ):
        return False
    return 0 < len(name) <= 63 and _LABEL_NAME_RE.fullmatch(name) is not None


def _is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and _LABEL_NAME_RE.fullmatch(value) is not None)


def _selector_problems(selector: Any, where: str) -> list[str]:
    """metav1validation.ValidateLabelSelector."""
    if not isinstance(selector, Mapping):
        return []
    problems: list[str] = []
    match_labels = selector.get("matchLabels")
    for key, value in (match_labels.items() if isinstance(match_labels, Mapping) else ()):
        if not _is_qualified_name(str(key)):
            problems.append(f"{where}.matchLabels: invalid label key {key!r}")
        if not isinstance(value, str) or not _is_label_value(value):
            problems.append(f"{where}.matchLabels.{key}: invalid label value {value!r}")
    for i, expr in enumerate(_as_list(selector.get("matchExpressions"))):
        if not isinstance(expr, Mapping):
            continue
        operator, values = expr.get("operator"), _as_list(expr.get("values"))
        here = f"{where}.matchExpressions[{i}]"
        if operator in ("In", "NotIn"):
            if not values:
                problems.append(f"{here}.values: must be specified when `operator` is 'In' or 'NotIn'")
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                problems.append(f"{here}.values: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
        else:
            problems.append(f"{here}.operator: {operator!r} is not a valid selector operator")
        if not _is_qualified_name(str(expr.get("key", ""))):
            problems.append(f"{here}.key: invalid label key {expr.get('key')!r}")
        for value in values:
            if not isinstance(value, str) or not _is_label_value(value):
                problems.append(f"{here}.values: invalid label value {value!r}")
    return problems


def _is_iana_svc_name(value: str) -> bool:
    """k8s.io/apimachinery validation.IsValidPortName."""
    return (
        1 <= len(value) <= 15
        and _IANA_SVC_NAME_RE.fullmatch(value) is not None
        and re.search(r"[a-z]", value) is not None
        and "--" not in value
        and not value.startswith("-")
        and not value.endswith("-")
    )


def _np_port_problems(port: Any, where: str) -> list[str]:
    if not isinstance(port, Mapping):
        return []
    problems: list[str] = []
    protocol = port.get("protocol")
    if protocol is not None and protocol not in _NP_PROTOCOLS:
        problems.append(f"{where}.protocol: unsupported value {protocol!r}: supported values: TCP, UDP, SCTP")
    number = port.get("port")
    if _is_int(number):
        if not _valid_port_number(number):
            problems.append(f"{where}.port: {number} must be between 1 and 65535, inclusive")
    elif isinstance(number, str) and not _is_iana_svc_name(number):
        problems.append(f"{where}.port: {number!r} is not a valid IANA_SVC_NAME")
    end_port = port.get("endPort")
    if end_port is not None:
        if not _is_int(number):
            problems.append(f"{where}.endPort: may not be specified when `port` is non-numeric or not specified")
        elif _is_int(end_port) and end_port < number:
            problems.append(f"{where}.endPort: must be greater than or equal to `port` ({end_port} < {number})")
        if not _valid_port_number(end_port):
            problems.append(f"{where}.endPort: {end_port} must be between 1 and 65535, inclusive")
    return problems


def _parse_cidr(value: Any) -> IPNetwork | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def _cidr_problems(value: Any, where: str) -> tuple[IPNetwork | None, list[str]]:
    net = _parse_cidr(value)
    if net is None:
        return None, [f"{where}: {value!r} is not a valid CIDR"]
    if str(net) != value:
        return net, [f"{where}: {value!r} is not canonical (expected {str(net)!r}; host bits must be zero)"]
    return net, []


def _np_peer_problems(peer: Any, where: str) -> list[str]:
    if not isinstance(peer, Mapping):
        return [f"{where}: must specify a peer"]
    present = [f for f in _PEER_FIELDS if peer.get(f) is not None]
    if not present:
        return [f"{where}: must specify a peer"]
    if "ipBlock" in present and len(present) > 1:
        return [f"{where}: may not specify both ipBlock and another peer"]
    problems: list[str] = []
    for selector_field in ("podSelector", "namespaceSelector"):
        if selector_field in present:
            problems += _selector_problems(peer[selector_field], f"{where}.{selector_field}")
    block = peer.get("ipBlock")
    if isinstance(block, Mapping):
        cidr, cidr_problems = _cidr_problems(block.get("cidr"), f"{where}.ipBlock.cidr")
        problems += cidr_problems
        for k, value in enumerate(_as_list(block.get("except"))):
            here = f"{where}.ipBlock.except[{k}]"
            exc, exc_problems = _cidr_problems(value, here)
            problems += exc_problems
            if cidr is not None and exc is not None and not _strict_subset(exc, cidr):
                problems.append(f"{here}: {value!r} must be a strict subset of `cidr` {block.get('cidr')!r}")
    return problems


def _strict_subset(inner: IPNetwork, outer: IPNetwork) -> bool:
    return (
        inner.version == outer.version
        and inner.network_address in outer
        and inner.prefixlen > outer.prefixlen
    )


# --------------------------------------------------------- egress semantics


def egress_allows(
    policies: Iterable[Doc],
    pod_labels: Mapping[str, str],
    *,
    dest: Mapping[str, Any],
    pod_namespace: str | None = None,
    namespace_labels_of: NamespaceLabels = None,
) -> bool:
    """Would Kubernetes NetworkPolicy allow this pod's egress connection to `dest`?

    `policies` are NetworkPolicy documents. Only those in the source pod's namespace
    apply. That namespace is `pod_namespace`, or else the one namespace named by the
    policies; a policy without metadata.namespace counts as being in it.

    `dest` is one of:

    * an address: ``{"ip": "10.40.0.15", "port": 3306, "protocol": "TCP"}``
    * a pod: ``{"pod_labels": {...}, "namespace": "kube-system", "port": 53,
      "protocol": "UDP"}``, optionally with ``"namespace_labels"``. The pod form may
      also carry ``"ip"``, which makes ipBlock peers apply to it. Kubernetes leaves
      ipBlock matching of pod IPs to the implementation, so that is opt-in.

    `protocol` defaults to TCP. An optional ``"port_name"`` is what a named
    (string) port in a rule is matched against. It is the destination *pod's*
    container port name; without it, named ports never match.

    A destination namespace's labels come from ``dest["namespace_labels"]``, then from
    `namespace_labels_of` (a callable or a mapping of namespace to labels), else are
    empty. The immutable ``kubernetes.io/metadata.name`` label is always added.

    Semantics (networking/v1 API docs, v1.37):
    * A pod that no Egress-typed policy selects is not isolated: everything is allowed.
    * Otherwise the allowed set is the union of every selecting policy's `egress` rules.
    * Within a rule, `to` and `ports` are ANDed; an empty or missing list means "all".
    * Peers within a list are ORed. podSelector+namespaceSelector in one peer are ANDed.
      A peer podSelector without a namespaceSelector means the policy's namespace.
    * An ipBlock allows its `cidr` minus each `except`.
    * Missing policyTypes default to Ingress, plus Egress when `egress` is non-empty.

    Raises ValueError for input that the API server would reject, or that this model
    cannot decide: an empty peer, an unknown selector operator, a malformed `dest`.
    """
    policy_list = [p for p in policies if isinstance(p, Mapping)]
    namespace = _source_namespace(policy_list, pod_namespace)
    dst = _Destination.build(dest, namespace_labels_of)
    isolated = False
    for policy in policy_list:
        meta_ns = _metadata(policy).get("namespace")
        if meta_ns not in (None, namespace):
            continue
        spec = policy.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}
        if not _selector_matches(spec.get("podSelector") or {}, pod_labels):
            continue
        if "Egress" not in _effective_policy_types(spec):
            continue
        isolated = True
        for rule in _as_list(spec.get("egress")):
            if isinstance(rule, Mapping) and _rule_allows(rule, dst, namespace):
                return True
    return not isolated


def _source_namespace(policies: Sequence[Doc], pod_namespace: str | None) -> str:
    if pod_namespace is not None:
        return pod_namespace
    named = {
        ns for p in policies if isinstance(ns := _metadata(p).get("namespace"), str) and ns
    }
    if len(named) > 1:
        raise ValueError(f"policies span namespaces {sorted(named)}; pass pod_namespace")
    return named.pop() if named else "default"


def _effective_policy_types(spec: Mapping[str, Any]) -> list[str]:
    declared = spec.get("policyTypes")
    if isinstance(declared, list) and declared:
        return [str(t) for t in declared]
    # pkg/apis/networking/v1/defaults.go: Egress only when egress rules exist.
    return ["Ingress", "Egress"] if _as_list(spec.get("egress")) else ["Ingress"]


class _Destination:
    __slots__ = ("ip", "port", "port_name", "protocol", "pod_labels", "namespace", "namespace_labels")

    def __init__(
        self,
        *,
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
        port: int,
        port_name: str | None,
        protocol: str,
        pod_labels: Mapping[str, str] | None,
        namespace: str | None,
        namespace_labels: Mapping[str, str],
    ) -> None:
        self.ip = ip
        self.port = port
        self.port_name = port_name
        self.protocol = protocol
        self.pod_labels = pod_labels
        self.namespace = namespace
        self.namespace_labels = namespace_labels

    @classmethod
    def build(cls, dest: Mapping[str, Any], namespace_labels_of: NamespaceLabels) -> _Destination:
        if not isinstance(dest, Mapping):
            raise ValueError("dest must be a mapping")
        port = dest.get("port")
        if not _valid_port_number(port):
            raise ValueError(f"dest port must be 1..65535, got {port!r}")
        protocol = str(dest.get("protocol", "TCP")).upper()
        if protocol not in _NP_PROTOCOLS:
            raise ValueError(f"dest protocol must be TCP, UDP or SCTP, got {protocol!r}")
        ip = None
        if dest.get("ip") is not None:
            ip = _parse_ip(str(dest["ip"]))
            if ip is None:
                raise ValueError(f"dest ip {dest['ip']!r} is not an IP address")
        pod_labels = dest.get("pod_labels")
        namespace = dest.get("namespace")
        if pod_labels is not None and not isinstance(namespace, str):
            raise ValueError("a pod destination needs 'namespace'")
        if ip is None and pod_labels is None:
            raise ValueError("dest needs 'ip' or 'pod_labels' + 'namespace'")
        ns_labels: dict[str, str] = {}
        if isinstance(namespace, str):
            if dest.get("namespace_labels") is not None:
                ns_labels.update(dest["namespace_labels"])
            elif callable(namespace_labels_of):
                ns_labels.update(namespace_labels_of(namespace))
            elif isinstance(namespace_labels_of, Mapping):
                ns_labels.update(namespace_labels_of.get(namespace, {}))
            ns_labels["kubernetes.io/metadata.name"] = namespace
        return cls(
            ip=ip,
            port=port,
            port_name=dest.get("port_name"),
            protocol=protocol,
            pod_labels=pod_labels,
            namespace=namespace if isinstance(namespace, str) else None,
            namespace_labels=ns_labels,
        )


def _rule_allows(rule: Mapping[str, Any], dst: _Destination, policy_ns: str) -> bool:
    peers = _as_list(rule.get("to"))
    ports = _as_list(rule.get("ports"))
    peer_ok = not peers or any(_peer_matches(p, dst, policy_ns) for p in peers)
    port_ok = not ports or any(_port_matches(p, dst) for p in ports if isinstance(p, Mapping))
    return peer_ok and port_ok


def _peer_matches(peer: Any, dst: _Destination, policy_ns: str) -> bool:
    if not isinstance(peer, Mapping) or not any(peer.get(f) is not None for f in _PEER_FIELDS):
        raise ValueError(f"invalid peer {peer!r}: a peer needs podSelector, namespaceSelector or ipBlock")
    block = peer.get("ipBlock")
    if block is not None:
        return dst.ip is not None and _ip_block_contains(block, dst.ip)
    if dst.pod_labels is None:
        return False  # selectors pick pods; a bare address is not a pod
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    if ns_sel is None:
        ns_ok = dst.namespace == policy_ns
    else:
        ns_ok = _selector_matches(ns_sel, dst.namespace_labels)
    return ns_ok and (pod_sel is None or _selector_matches(pod_sel, dst.pod_labels))


def _ip_block_contains(block: Any, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if not isinstance(block, Mapping):
        return False
    cidr = _parse_cidr(block.get("cidr"))
    if cidr is None:
        raise ValueError(f"invalid ipBlock.cidr {block.get('cidr')!r}")
    if ip.version != cidr.version or ip not in cidr:
        return False
    for value in _as_list(block.get("except")):
        exc = _parse_cidr(value)
        if exc is None:
            raise ValueError(f"invalid ipBlock.except entry {value!r}")
        if exc.version == ip.version and ip in exc:
            return False
    return True


def _port_matches(port: Mapping[str, Any], dst: _Destination) -> bool:
    if (port.get("protocol") or "TCP") != dst.protocol:
        return False
    number = port.get("port")
    if number is None:
        return True
    if isinstance(number, str):
        return dst.port_name is not None and number == dst.port_name
    end_port = port.get("endPort")
    if end_port is not None:
        return number <= dst.port <= end_port
    return number == dst.port


def _selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    if not isinstance(selector, Mapping):
        return False
    match_labels = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in _as_list(selector.get("matchExpressions")):
        key, operator = expr.get("key"), expr.get("operator")
        values = _as_list(expr.get("values"))
        present = key in labels
        if operator == "In":
            ok = present and labels[key] in values
        elif operator == "NotIn":
            ok = not present or labels[key] not in values
        elif operator == "Exists":
            ok = present
        elif operator == "DoesNotExist":
            ok = not present
        else:
            raise ValueError(f"unknown selector operator {operator!r}")
        if not ok:
            return False
    return True


# ------------------------------------------------------------ CiliumNetworkPolicy
#
# Sources: the vendored CRD schema (Cilium 1.18.2) and, for what it cannot say,
# cilium/cilium `pkg/policy/api` (EgressRule.sanitize: toFQDNs may not share a rule with
# other L3 selectors), `pkg/fqdn/matchpattern` (ToAnchoredRegexp) and the `DNS based`
# section of the policy-language docs. Stricter than upstream where we promise never to
# emit something: an entity other than kube-apiserver, host and remote-node (those two only
# with ports), a bare `*` name, ports outside 1..65535.

_CILIUM_L3 = ("toEndpoints", "toCIDR", "toCIDRSet", "toEntities", "toServices", "toGroups", "toNodes", "toRequires")
_CILIUM_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
# pkg/fqdn/matchpattern: allowedDNSCharsREGroup
_CILIUM_DNS_CHARS = "[-a-z0-9_]"


@cache
def _cilium_validator() -> Draft7Validator:
    schema = _load_schema("ciliumnetworkpolicy.crd.json")
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def ciliumnetworkpolicy_problems(doc: Doc) -> list[str]:
    """What the API server (CRD schema) or the Cilium agent would refuse, plus what we
    promise never to write. Beware: the schema's name pattern backtracks exponentially on
    long invalid names; only pass generated (valid, short) documents or capped fuzz."""
    if not isinstance(doc, Mapping):
        return ["document is not a mapping"]
    problems = _schema_problems(_cilium_validator(), doc)
    if doc.get("apiVersion") != "cilium.io/v2" or doc.get("kind") != "CiliumNetworkPolicy":
        problems.append("apiVersion/kind: not cilium.io/v2 CiliumNetworkPolicy")
    problems += _name_problems(doc)
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        return problems + ["spec: required"]
    if not isinstance(spec.get("endpointSelector"), Mapping):
        problems.append("spec.endpointSelector: required (a rule without it selects nothing)")
    for r, rule in enumerate(_as_list(spec.get("egress"))):
        where = f"spec.egress[{r}]"
        if not isinstance(rule, Mapping):
            continue
        if rule.get("toFQDNs") and any(rule.get(k) for k in _CILIUM_L3):
            problems.append(f"{where}: toFQDNs cannot be combined with other L3 selectors in one rule")
        for entity in _as_list(rule.get("toEntities")):
            if entity not in ("kube-apiserver", "host", "remote-node"):
                problems.append(f"{where}.toEntities: {entity!r} (never written by helm-egress)")
            elif entity != "kube-apiserver" and not rule.get("toPorts"):
                problems.append(f"{where}.toEntities: {entity!r} on every port (the nodes only on ports)")
        for i, sel in enumerate(_as_list(rule.get("toFQDNs"))):
            pattern = sel.get("matchPattern") if isinstance(sel, Mapping) else None
            if isinstance(pattern, str) and pattern.strip(".*") == "":
                problems.append(f"{where}.toFQDNs[{i}]: {pattern!r} matches every name")
        for t, to_ports in enumerate(_as_list(rule.get("toPorts"))):
            for p, port in enumerate(_as_list(to_ports.get("ports") if isinstance(to_ports, Mapping) else None)):
                number = port.get("port") if isinstance(port, Mapping) else None
                # A number, or a pod's port name (the CRD's pattern; cilium/cilium#11092).
                if not (isinstance(number, str) and (number.isdigit() and 1 <= int(number) <= 65535
                                                     or _CILIUM_PORT_NAME.fullmatch(number))):
                    problems.append(f"{where}.toPorts[{t}].ports[{p}].port: {number!r} is not 1..65535 or a name")
    return problems


def cilium_name_matches(selector: Mapping[str, str], qname: str) -> bool:
    """Does a toFQDNs / rules.dns selector match the DNS name ``qname``?

    matchName: literal, case-insensitive, a trailing dot added to both. matchPattern:
    case-insensitive; ``*`` alone matches every name; ``**.`` as the first label matches
    one or more whole labels (Cilium >= 1.19); any other ``*`` matches zero or more DNS
    characters within one label (never a dot).
    """
    name = qname.lower()
    name = name if name.endswith(".") else name + "."
    if "matchName" in selector:
        target = selector["matchName"].lower()
        return name == (target if target.endswith(".") else target + ".")
    pattern = selector["matchPattern"].lower().strip()
    if pattern == "*":
        return True
    pattern = pattern if pattern.endswith(".") else pattern + "."
    regex = ""
    if pattern.startswith("**."):
        regex, pattern = f"(?:{_CILIUM_DNS_CHARS}+\\.)+", pattern[3:]
    if "**" in pattern:
        raise ValueError(f"{selector!r}: ** only as the first label is modelled")
    regex += pattern.replace(".", "\\.").replace("*", f"{_CILIUM_DNS_CHARS}*")
    return re.fullmatch(regex, name) is not None


def _cilium_selects(selector: Any, labels: Mapping[str, str], namespace: str, policy_namespace: str) -> bool:
    """A Cilium EndpointSelector against a pod; label keys may carry `k8s:`/`any:`."""
    if not isinstance(selector, Mapping):
        return False
    ns_key = None
    match_labels: dict[str, str] = {}
    for key, value in (selector.get("matchLabels") or {}).items():
        plain = key.split(":", 1)[1] if key.split(":", 1)[0] in ("k8s", "any") and ":" in key else key
        if plain == _CILIUM_NAMESPACE_LABEL:
            ns_key = value
        else:
            match_labels[plain] = value
    # A namespaced policy's selectors without a namespace label stay in its namespace.
    if (ns_key or policy_namespace) != namespace:
        return False
    expressions = []
    for expr in _as_list(selector.get("matchExpressions")):
        key = str(expr.get("key"))
        plain = key.split(":", 1)[1] if key.split(":", 1)[0] in ("k8s", "any") and ":" in key else key
        expressions.append({**expr, "key": plain})
    return _selector_matches({"matchLabels": match_labels, "matchExpressions": expressions}, labels)


_CILIUM_PORT_NAME = re.compile(r"([a-zA-Z0-9]-?)*[a-zA-Z](-?[a-zA-Z0-9])*")


def _cilium_ports_allow(rule: Mapping[str, Any], port: int, protocol: str, port_name: str | None = None) -> bool:
    """A named port matches the destination pod's container port of that name."""
    to_ports = _as_list(rule.get("toPorts"))
    if not to_ports:
        return True
    for item in to_ports:
        for p in _as_list(item.get("ports")):
            proto = p.get("protocol") or "ANY"
            given = str(p["port"])
            matches = int(given) in (0, port) if given.isdigit() else given == port_name
            if matches and proto in ("ANY", protocol):
                return True
    return False


def cilium_allows(
    policies: Iterable[Doc],
    pod_labels: Mapping[str, str],
    pod_namespace: str,
    *,
    port: int,
    protocol: str = "TCP",
    host: str | None = None,
    ip: str | None = None,
    peer: tuple[Mapping[str, str], str] | None = None,
    port_name: str | None = None,
    entity: str | None = None,
) -> bool:
    """Would Cilium let this pod open a connection to ``host`` (an external name the pod
    resolved through an allowed DNS query), ``ip`` (an external address), ``peer`` (a
    pod: labels, namespace) or ``entity`` (a reserved identity: kube-apiserver; host and
    remote-node, this node and the others, where host-network pods listen) on
    ``port``/``protocol``?

    An entity is selected by ``toEntities`` naming it (or ``all``) only: CIDR rules never
    select a reserved identity such as the API server's, whatever its address
    (cilium/cilium#14724, #20550), ``world`` is outside the cluster, and a host-network
    pod is never selected by its pod labels (it has the node's identity).

    A pod no egress policy selects is not isolated. Otherwise the union of the egress
    rules of every CiliumNetworkPolicy in its namespace whose endpointSelector selects it.
    """
    isolated = False
    address = ipaddress.ip_address(ip) if ip is not None else None
    for doc in policies:
        if doc.get("kind") != "CiliumNetworkPolicy":
            continue
        namespace = _metadata(doc).get("namespace") or pod_namespace
        spec = doc.get("spec") or {}
        if namespace != pod_namespace or not _cilium_selects(spec.get("endpointSelector"), pod_labels,
                                                             pod_namespace, namespace):
            continue
        rules = _as_list(spec.get("egress"))
        isolated = isolated or bool(rules) or "egress" in spec
        for rule in rules:
            if not _cilium_ports_allow(rule, port, protocol, port_name):
                continue
            entities = _as_list(rule.get("toEntities"))
            if entity is not None:
                if entity in entities or "all" in entities:
                    return True
                continue
            if any(e in ("world", "all") for e in entities) and peer is None:
                return True
            if host is not None and any(cilium_name_matches(s, host) for s in _as_list(rule.get("toFQDNs"))):
                return True
            if address is not None:
                for block in _as_list(rule.get("toCIDRSet")):
                    net = ipaddress.ip_network(block["cidr"])
                    if address.version == net.version and address in net and not any(
                        address in ipaddress.ip_network(e) for e in _as_list(block.get("except"))
                        if ipaddress.ip_network(e).version == address.version
                    ):
                        return True
            if peer is not None and any(_cilium_selects(sel, peer[0], peer[1], namespace)
                                        for sel in _as_list(rule.get("toEndpoints"))):
                return True
    return not isolated


def cilium_dns_query_allowed(policies: Iterable[Doc], pod_labels: Mapping[str, str], pod_namespace: str,
                             dns_pod: tuple[Mapping[str, str], str], port: int, qname: str) -> bool:
    """Does a rule to the DNS pods carry an L7 DNS rule (so the proxy sees and learns the
    answer) that admits ``qname``? Without one, toFQDNs learns nothing."""
    for doc in policies:
        spec = doc.get("spec") or {}
        namespace = _metadata(doc).get("namespace") or pod_namespace
        if doc.get("kind") != "CiliumNetworkPolicy" or namespace != pod_namespace:
            continue
        if not _cilium_selects(spec.get("endpointSelector"), pod_labels, pod_namespace, namespace):
            continue
        for rule in _as_list(spec.get("egress")):
            if not any(_cilium_selects(sel, dns_pod[0], dns_pod[1], namespace) for sel in _as_list(rule.get("toEndpoints"))):
                continue
            for item in _as_list(rule.get("toPorts")):
                ports = {(int(p["port"]), p.get("protocol", "ANY")) for p in _as_list(item.get("ports"))}
                if not ({(port, "UDP"), (port, "ANY")} & ports):
                    continue
                dns = _as_list((item.get("rules") or {}).get("dns"))
                if any(cilium_name_matches(sel, qname) for sel in dns):
                    return True
    return False


# -------------------------------------------------------------------- Istio Sidecar
#
# Sources: the vendored CRD subset and Istio's webhook, pkg/config/validation
# (ValidateSidecar, agent.ValidateNamespaceSlashWildcardHostname,
# validateSidecarOrGatewayHostnamePart); import semantics from the Sidecar reference
# (`namespace/dnsName`; `.` the Sidecar's namespace, `*` any, `~` none; only services
# exported to the Sidecar's namespace) and pilot/pkg/model/sidecar.go (an import more
# specific than a wildcard service imports that service narrowed to the import's name).


@cache
def _sidecar_validator() -> Draft7Validator:
    schema = _load_schema("sidecar.v1.subset.json")
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def _sidecar_host_error(host: str) -> str | None:
    namespace, sep, dns_name = host.partition("/")
    if not sep:
        return "host must be of form namespace/dnsName"
    if not namespace or not dns_name:
        return "config namespace and dnsName in host entry cannot be empty"
    if namespace not in ("*", ".", "~") and not _is_dns1123_label(namespace):
        return f"invalid namespace value {namespace!r} in sidecar"
    if dns_name != "*" and "." not in dns_name:
        return "short names (non FQDN) are not allowed"
    if dns_name != "*" and (err := validate_wildcard_domain(dns_name)) is not None:
        return err
    return _validate_partial_wildcard(dns_name)


def sidecar_problems(doc: Doc) -> list[str]:
    """Everything the schema and Istio's Sidecar webhook would refuse."""
    if not isinstance(doc, Mapping):
        return ["document is not a mapping"]
    problems = _schema_problems(_sidecar_validator(), doc)
    problems += _name_problems(doc)
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        return problems + ["spec: required"]
    selector = spec.get("workloadSelector")
    if isinstance(selector, Mapping):
        # validateWorkloadSelector: labels.Instance.Validate (label keys and values).
        problems += _selector_problems({"matchLabels": selector.get("labels")}, "spec.workloadSelector")
    egress = _as_list(spec.get("egress"))
    if not egress and not spec.get("ingress") and spec.get("outboundTrafficPolicy") is None:
        problems.append("sidecar: empty configuration provided")
    catch_all = 0
    for i, listener in enumerate(egress):
        if not isinstance(listener, Mapping):
            problems.append(f"spec.egress[{i}]: egress listener may not be null")
            continue
        if listener.get("port") is None:
            catch_all += 1
            if catch_all > 1:
                problems.append("sidecar: egress can have only one listener with empty port")
            elif i != len(egress) - 1:
                problems.append("sidecar: the egress listener with empty port should be the last listener in the list")
        hosts = _as_list(listener.get("hosts"))
        if not hosts:
            problems.append(f"spec.egress[{i}]: egress listener must contain at least one host")
        for j, host in enumerate(hosts):
            if (err := _sidecar_host_error(str(host))) is not None:
                problems.append(f"spec.egress[{i}].hosts[{j}]: {host}: {err}")
    return problems


def _istio_host_matches(pattern: str, name: str) -> bool:
    """Istio host matching: ``*`` every name; ``*.x`` every name below x, never x."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and (not name.startswith("*.") or name[1:].endswith(pattern[1:]))
    return pattern == name


def _exported_to(doc: Doc, namespace: str, home: str) -> bool:
    export_to = _as_list((doc.get("spec") or {}).get("exportTo"))
    own = _metadata(doc).get("namespace") or home
    return not export_to or "*" in export_to or namespace in [own if e == "." else e for e in export_to]


def mesh_services(documents: Iterable[Doc], home: str, cluster_domain: str = "cluster.local") -> list[dict[str, Any]]:
    """The services Istio's registry builds: one per ServiceEntry host (its namespace,
    hosts, addresses, ports, exportTo) and per Kubernetes Service (exported everywhere)."""
    out: list[dict[str, Any]] = []
    for doc in documents:
        kind = doc.get("kind")
        meta = _metadata(doc)
        namespace = meta.get("namespace") or home
        spec = doc.get("spec") or {}
        if kind == "ServiceEntry":
            for host in _as_list(spec.get("hosts")):
                out.append({"host": str(host).lower(), "namespace": namespace, "doc": doc,
                            "addresses": [str(a) for a in _as_list(spec.get("addresses"))],
                            "ports": {p["number"] for p in _as_list(spec.get("ports"))}})
        elif kind == "Service" and str(doc.get("apiVersion")) == "v1":
            out.append({"host": f"{meta['name']}.{namespace}.svc.{cluster_domain}", "namespace": namespace, "doc": doc,
                        "addresses": [], "ports": {p["port"] for p in _as_list(spec.get("ports"))}})
    return out


def sidecar_for(documents: Iterable[Doc], pod_labels: Mapping[str, str], namespace: str, home: str) -> Doc | None:
    """The Sidecar that configures the pod: one whose workloadSelector matches it, else the
    namespace's default (no selector). Two with selectors is undefined: ValueError."""
    selecting, default = [], None
    for doc in documents:
        if doc.get("kind") != "Sidecar" or (_metadata(doc).get("namespace") or home) != namespace:
            continue
        selector = (doc.get("spec") or {}).get("workloadSelector")
        if selector is None:
            default = doc
        elif all(pod_labels.get(k) == v for k, v in (selector.get("labels") or {}).items()):
            selecting.append(doc)
    if len(selecting) > 1:
        raise ValueError(f"{len(selecting)} Sidecars select the pod: undefined in Istio")
    return selecting[0] if selecting else default


# What every cluster has and no chart renders: the API server's Service, `kubernetes` in
# `default` (port 443, named https; created by the API server itself), which Istio's
# registry knows like any other Service.
EVERY_CLUSTER: tuple[Doc, ...] = (
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
     "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
)


def mesh_allows(documents: Sequence[Doc], pod_labels: Mapping[str, str], namespace: str, *, host: str | None = None,
                ip: str | None = None, port: int, home: str | None = None,
                cluster: Sequence[Doc] = EVERY_CLUSTER) -> bool:
    """Would the pod's proxy route a request to ``host`` (or ``ip``) on ``port``, under
    REGISTRY_ONLY? Only services exported to its namespace, and under a Sidecar only those
    it imports (narrowed to the import when the import is more specific). ``cluster``: the
    Services the cluster has besides the stream's (by default the API server's)."""
    home = home or namespace
    sidecar = sidecar_for(documents, pod_labels, namespace, home)
    visible = [s for s in mesh_services([*documents, *cluster], home) if s["doc"].get("kind") == "Service"
               or _exported_to(s["doc"], namespace, home)]
    if sidecar is not None:
        if ((sidecar.get("spec") or {}).get("outboundTrafficPolicy") or {}).get("mode") == "ALLOW_ANY":
            return True
        imported = []
        for listener in _as_list((sidecar.get("spec") or {}).get("egress")):
            for entry in _as_list(listener.get("hosts")):
                ns, _, dns_name = str(entry).partition("/")
                ns = namespace if ns == "." else ns
                for s in visible:
                    if ns == "~" or (ns != "*" and ns != s["namespace"]):
                        continue
                    if _istio_host_matches(dns_name, s["host"]):
                        imported.append(s)
                    elif _istio_host_matches(s["host"], dns_name):
                        imported.append({**s, "host": dns_name.lower()})
        visible = imported
    for s in visible:
        if port not in s["ports"]:
            continue
        if host is not None and _istio_host_matches(s["host"], host):
            return True
        if ip is not None and any(ipaddress.ip_address(ip) in ipaddress.ip_network(a, strict=False) for a in s["addresses"]):
            return True
    return False


# ------------------------------------------------------------ Istio AuthorizationPolicy
# Sources: the vendored CRD schema (istio.authorizationpolicy_v1.json), its CEL rules, and
# Istio's webhook (pkg/config/validation ValidateAuthorizationPolicy) for the fields used.
# Semantics (istio.io reference, "Authorization Policy"; ambient: "targetRefs" to a
# ServiceEntry, enforced at the waypoint the ServiceEntry is bound to with the label
# istio.io/use-waypoint): with no policy attached every caller is admitted; with ALLOW
# policies, a request is admitted only when a rule of one of them matches it.


@cache
def _authorizationpolicy_validator() -> Draft7Validator:
    schema = _load_schema("istio.authorizationpolicy_v1.json")
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def authorizationpolicy_problems(doc: Doc) -> list[str]:
    if not isinstance(doc, Mapping):
        return ["document is not a mapping"]
    problems = _schema_problems(_authorizationpolicy_validator(), doc)
    if doc.get("apiVersion") not in ("security.istio.io/v1", "security.istio.io/v1beta1"):
        problems.append(f"apiVersion: {doc.get('apiVersion')!r} is not a served AuthorizationPolicy version")
    if doc.get("kind") != "AuthorizationPolicy":
        problems.append(f"kind: {doc.get('kind')!r} is not 'AuthorizationPolicy'")
    problems += _name_problems(doc)
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    if sum(k in spec for k in ("selector", "targetRef", "targetRefs")) > 1:
        problems.append("spec: only one of targetRefs or selector can be set (CEL)")
    for i, ref in enumerate(_as_list(spec.get("targetRefs"))):
        if isinstance(ref, Mapping) and ref.get("namespace"):
            problems.append(f"spec.targetRefs[{i}].namespace: cross namespace referencing is not supported (CEL)")
        if isinstance(ref, Mapping) and ref.get("kind") == "ServiceEntry" and ref.get("group") != "networking.istio.io":
            problems.append(f"spec.targetRefs[{i}]: a ServiceEntry is in group networking.istio.io")
    if spec.get("action", "ALLOW") not in ("ALLOW", "DENY", "AUDIT", "CUSTOM"):
        problems.append(f"spec.action: {spec.get('action')!r}")
    for i, rule in enumerate(_as_list(spec.get("rules"))):
        rule = rule if isinstance(rule, Mapping) else {}
        for j, item in enumerate(_as_list(rule.get("from"))):
            source = item.get("source") if isinstance(item, Mapping) else None
            if not isinstance(source, Mapping) or not source:
                problems.append(f"spec.rules[{i}].from[{j}]: `source` must not be empty")
                continue
            for value in _as_list(source.get("principals")):
                if value == "":
                    problems.append(f"spec.rules[{i}].from[{j}].source.principals: empty value is not allowed")
        for j, item in enumerate(_as_list(rule.get("to"))):
            operation = item.get("operation") if isinstance(item, Mapping) else None
            if not isinstance(operation, Mapping) or not operation:
                problems.append(f"spec.rules[{i}].to[{j}]: `operation` must not be empty")
                continue
            for value in _as_list(operation.get("ports")):
                if not (isinstance(value, str) and value.isdigit() and 0 <= int(value) <= 65535):
                    problems.append(f"spec.rules[{i}].to[{j}].operation.ports: {value!r} is not a port")
    return problems


def _principal_matches(pattern: str, principal: str) -> bool:
    """Istio string match: exact, `*`, a `prefix*` or a `*suffix`."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return principal.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return principal.endswith(pattern[1:])
    return pattern == principal


def _rule_admits(rule: Mapping[str, Any], principal: str, port: int) -> bool:
    sources = [f.get("source") or {} for f in _as_list(rule.get("from")) if isinstance(f, Mapping)]
    operations = [t.get("operation") or {} for t in _as_list(rule.get("to")) if isinstance(t, Mapping)]
    # Within a rule, from and to are ANDed; items of a list are ORed; an absent list is "any".
    source_ok = not sources or any(
        any(_principal_matches(p, principal) for p in _as_list(s.get("principals"))) for s in sources)
    operation_ok = not operations or any(str(port) in [str(x) for x in _as_list(o.get("ports"))]
                                         for o in operations)
    return source_ok and operation_ok


def ambient_admits(documents: Iterable[Doc], principal: str, host: str, port: int) -> bool | None:
    """Would an ambient waypoint let ``principal`` reach ``host:port``? None when no
    ServiceEntry bound to a waypoint serves it (the waypoint never sees the call; the
    NetworkPolicy decides). ztunnel and waypoints read every ServiceEntry as exported to
    all namespaces (exportTo '*', Istio >= 1.28)."""
    docs = [d for d in documents if isinstance(d, Mapping)]
    entries = [d for d in docs if d.get("kind") == "ServiceEntry"
               and "istio.io/use-waypoint" in (_metadata(d).get("labels") or {})
               and any(_istio_host_matches(str(h), host) for h in _as_list((d.get("spec") or {}).get("hosts")))
               and any(isinstance(p, Mapping) and p.get("number") == port
                       for p in _as_list((d.get("spec") or {}).get("ports")))]
    if not entries:
        return None
    for se in entries:
        se_ns = _metadata(se).get("namespace")
        attached = [ap for ap in docs if ap.get("kind") == "AuthorizationPolicy"
                    and _metadata(ap).get("namespace") == se_ns
                    and any(isinstance(r, Mapping) and r.get("kind") == "ServiceEntry"
                            and r.get("name") == _metadata(se).get("name")
                            for r in _as_list((ap.get("spec") or {}).get("targetRefs")))]
        allow = [ap for ap in attached if (ap.get("spec") or {}).get("action", "ALLOW") == "ALLOW"]
        if not allow or any(_rule_admits(r, principal, port) for ap in allow
                            for r in _as_list((ap.get("spec") or {}).get("rules")) if isinstance(r, Mapping)):
            return True
    return False


# ------------------------------------------------------------------- dispatch by kind
# Every kind helm-egress writes (post_renderer.kinds.KINDS) must have its admission rules
# here; tests/test_kinds.py fails for a registered kind the oracle cannot judge.
PROBLEMS: dict[str, Callable[[Doc], list[str]]] = {
    "ServiceEntry": serviceentry_problems,
    "NetworkPolicy": networkpolicy_problems,
    "CiliumNetworkPolicy": ciliumnetworkpolicy_problems,
    "Sidecar": sidecar_problems,
    "AuthorizationPolicy": authorizationpolicy_problems,
}


def problems(doc: Doc) -> list[str]:
    """What the API server or the kind's admission webhook would refuse in ``doc``."""
    check = PROBLEMS.get(doc.get("kind")) if isinstance(doc, Mapping) else None
    if check is None:
        return [f"the oracle has no rules for kind {doc.get('kind') if isinstance(doc, Mapping) else None!r}"]
    return check(doc)

"""End to end: what a user of ``helm-egress render`` notices, on real chart streams.

The fixture charts are rendered with Helm's own engine and turned into the exact stdin
Helm 3 and Helm 4 give a post-renderer (``tests/helmstream.py``); the corpus streams are
real third-party charts. Each stream, in each hostile-but-legal variant (CRLF, BOM, ``...``
end markers, comment-only documents), goes through the real CLI with the example values and
with a second values file that exercises what the example does not (addresses and CIDRs of
both families, a wildcard, several hosts on a TCP port, a UDP port, upper-case and
trailing-dot hosts, a name that must be shortened).

Expectations are derived from the values files and the input streams, never from
helm-egress's own code; generated documents are judged by the independent ``oracle``.

The matrix: byte-level properties (pass-through, shape, idempotence, ``--network-policy
none``) run on every stream x variant; the full judgement of the generated documents
(ServiceEntries, policy selection, reachability, metadata endpoint) runs on the plain
streams, and every other variant must generate exactly the same documents.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

import oracle
from helmstream import (
    FILENAME_ANNOTATION,
    HIDDEN_SECRET_LINE,
    HOOK_ANNOTATION,
    helm3_stream,
    helm4_stream,
    render_chart,
    split_documents,
    with_bom,
    with_comment_only_doc,
    with_crlf,
    with_end_markers,
)
from post_renderer.cli import app

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / "fixtures" / "charts"
CORPUS = ROOT / "fixtures" / "corpus"
EXAMPLE_VALUES = ROOT / "fixtures" / "values" / "egress-values.yaml"
EXECUTABLE = Path(sys.executable).parent / "helm-egress"

RELEASE = "demo"  # what every stream here was rendered with
NAMESPACE = "prod"
BOM = "\ufeff"
GENERATED_BY = "helm-egress.io/generated-by"
SOURCE = "helm-egress.io/source"
INSTANCE_LABEL = "app.kubernetes.io/instance"

# Pod-bearing kinds the README promises a policy for (a Rollout only with an inline template).
WORKLOAD_KINDS = (
    "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController",
    "Job", "CronJob", "Pod", "Rollout",
)  # fmt: skip
_WORKLOAD_KIND_LINE = re.compile(rf"(?m)^kind:[ \t]*({'|'.join(WORKLOAD_KINDS)})[ \t]*\r?$")
_GENERATED_LINE = re.compile(rf"(?m)^[ \t]+{re.escape(GENERATED_BY)}:[ \t]*['\"]?helm-egress['\"]?[ \t]*\r?$")
_SOURCE_LINE = re.compile(r"(?m)^# Source: ([^/\r\n]+)/")
_FILENAME_LINE = re.compile(rf"(?m)^[ \t]+{re.escape(FILENAME_ANNOTATION)}:[ \t]*['\"]?([^/'\"\r\n]+)/")
_INSTANCE_VALUE = re.compile(rf"(?m)^[ \t]+{re.escape(INSTANCE_LABEL)}:[ \t]*['\"]?([A-Za-z0-9][-A-Za-z0-9_.]*)")

# Istio protocols that carry a Host header or SNI: several hosts may share such a port.
HTTP_OR_TLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB", "HTTPS", "TLS"})
METADATA_ENDPOINTS = (
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("::ffff:169.254.169.254"),  # the IPv4 endpoint, reached over IPv6
)
PUBLIC_IPS = ("203.0.113.7", "2001:db8:ffff::7")  # documentation ranges: "somewhere on the internet"

# Everything the example values do not show. The last entry's name is a valid 61-character
# DNS label, so `<release>-<name>` is longer than Kubernetes allows and must be shortened.
MORE_VALUES = """\
istio:
  egress:
    - name: ledger-db
      addresses: [10.40.0.15, 192.168.10.0/24, "2001:db8::10", "2001:db8:1::/64"]
      ports:
        - {number: 5432, protocol: tcp}
    - name: googleapis
      hosts: ["*.googleapis.com"]
      ports:
        - {number: 443, protocol: https}
    - name: smtp-relays
      hosts: [SMTP1.Example.COM, smtp2.example.com, smtp3.example.com]
      ports:
        - {number: 587, protocol: TCP}
    - name: ntp
      hosts: [time.example.org]
      ports:
        - {number: 123, protocol: udp}
    - name: billing-and-invoicing-api-of-the-external-finance-provider-eu
      hosts: [billing.example.net, "Billing.Example.NET."]
      ports:
        - {number: 443, protocol: TLS}
        - {number: 8080, protocol: http_proxy}
"""

Doc = dict[str, Any]
GENERATED_FILES = {
    "ServiceEntry": "helm-egress-serviceentries.yaml",
    "NetworkPolicy": "helm-egress-networkpolicies.yaml",
}


# --------------------------------------------------------------------------- the values


@dataclass(frozen=True)
class Entry:
    """One `istio.egress` entry as the user wrote it."""

    name: str
    hosts: tuple[str, ...]
    addresses: tuple[str, ...]
    ports: tuple[tuple[int, str], ...]  # (number, protocol upper-cased)
    resolution: str | None

    @property
    def expected_hosts(self) -> list[str]:
        """Lower-cased, trailing dot dropped, duplicates removed."""
        return list(dict.fromkeys(host.lower().rstrip(".") for host in self.hosts))

    @property
    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(address, strict=False) for address in self.addresses]

    @property
    def expected_resolution(self) -> str:
        if self.resolution is not None:
            return self.resolution
        hosts = self.expected_hosts
        if not hosts or any(h.startswith("*") for h in hosts) or any("/" in a for a in self.addresses):
            return "NONE"
        if len(hosts) > 1 and any(protocol not in HTTP_OR_TLS for _, protocol in self.ports):
            return "NONE"
        return "DNS"

    def serviceentry_name(self, release: str) -> str:
        return f"{release}-{self.name}"


def load_entries(path: Path) -> tuple[Entry, ...]:
    values = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    return tuple(
        Entry(
            name=raw["name"],
            hosts=tuple(raw.get("hosts") or ()),
            addresses=tuple(str(a) for a in raw.get("addresses") or ()),
            ports=tuple((int(p["number"]), str(p["protocol"]).upper()) for p in raw["ports"]),
            resolution=raw.get("resolution"),
        )
        for raw in values["istio"]["egress"]
    )


# --------------------------------------------------------------------------- the streams


@dataclass(frozen=True)
class Workload:
    kind: str
    name: str
    namespace: str
    pod_labels: dict[str, str]
    hook: bool
    host_network: bool = False  # its pods listen on their node's address


_LOADER = YAML(typ="safe", pure=False)


@cache
def _load(text: str) -> Any:
    """One document, parsed; memoised because the variants repeat most documents (do not mutate)."""
    return _LOADER.load(text)


def common_prefix_length(a: str, b: str) -> int:
    """Length of the longest common prefix, by bisection on slices (fast on large streams)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _pod_labels(kind: str, doc: Doc) -> dict[str, str]:
    spec = doc.get("spec") or {}
    if kind == "Pod":
        meta = doc.get("metadata") or {}
    elif kind == "CronJob":
        meta = spec["jobTemplate"]["spec"]["template"].get("metadata") or {}
    else:
        meta = spec["template"].get("metadata") or {}
    return {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}


def _host_network(kind: str, doc: Doc) -> bool:
    spec = doc.get("spec") or {}
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]["template"]
    elif kind != "Pod":
        spec = spec["template"]
    return (spec if kind == "Pod" else spec.get("spec") or {}).get("hostNetwork") is True


def find_workloads(documents: Sequence[str]) -> list[tuple[int, Workload]]:
    """(document index, workload) for every pod-bearing document, hooks included."""
    found: list[tuple[int, Workload]] = []
    for index, text in enumerate(documents):
        if not _WORKLOAD_KIND_LINE.search(text):
            continue  # only workloads are parsed: the corpus is large
        doc = _load(text)
        meta = doc["metadata"]
        annotations = meta.get("annotations") or {}
        found.append(
            (
                index,
                Workload(
                    kind=doc["kind"],
                    name=meta["name"],
                    namespace=meta.get("namespace") or NAMESPACE,
                    pod_labels=_pod_labels(doc["kind"], doc),
                    hook=HOOK_ANNOTATION in annotations,
                    host_network=_host_network(doc["kind"], doc),
                ),
            )
        )
    return found


def kinds_in(stream: str) -> Counter[str]:
    """Kinds of the documents a YAML parser finds in the whole stream (comment-only ones are null)."""
    return Counter(doc["kind"] for doc in _LOADER.load_all(stream.removeprefix(BOM)) if doc is not None)


def is_helm3(stream: str) -> bool:
    return stream.removeprefix(BOM).startswith("---")


def chart_name(stream: str) -> str:
    """The top chart, from the first `# Source:` line (Helm 3) or filename annotation (Helm 4)."""
    match = (_SOURCE_LINE if is_helm3(stream) else _FILENAME_LINE).search(stream)
    assert match is not None, "not a Helm stream"
    return match.group(1)


def instance_label(stream: str) -> str:
    """The most common `app.kubernetes.io/instance` value: the release a user would expect."""
    counts = Counter(str(value) for value in _INSTANCE_VALUE.findall(stream))
    return counts.most_common(1)[0][0]


def with_comment_doc_before_first_workload(stream: str) -> str:
    """`helm template --hide-secret` can leave a comment-only document right where ours go."""
    first = next(i for i, w in find_workloads(split_documents(stream)) if not w.hook)
    return with_comment_only_doc(stream, position=first)


VARIANTS: dict[str, Callable[[str], str]] = {
    "plain": lambda s: s,
    "crlf": with_crlf,
    "bom": with_bom,
    "end-markers": with_end_markers,
    "comment-doc": with_comment_doc_before_first_workload,
    "comment-first": lambda s: with_comment_only_doc(s, position=0),
}
ALL_AT_ONCE = "bom-crlf-markers"  # for the installed executable
VARIANTS_EXTRA: dict[str, Callable[[str], str]] = {ALL_AT_ONCE: lambda s: with_bom(with_crlf(with_end_markers(s)))}

CORPUS_CHARTS = ("ingress-nginx", "prometheus", "kube-prometheus-stack")
STREAMS = (
    *(f"{chart}-{shape}" for chart in ("shop", "minimal") for shape in ("helm3", "helm4")),
    *(f"{chart}-{shape}" for chart in CORPUS_CHARTS for shape in ("helm3", "helm4")),
)
VALUES = ("example", "more")


# --------------------------------------------------------------------------- running the CLI


@dataclass
class Run:
    exit_code: int
    stdout: str  # decoded from bytes: typer's Result.stdout would turn CRLF into LF
    stderr: str


def invoke(stream: str, *args: str) -> Run:
    result = CliRunner().invoke(app, ["render", *args], input=stream.encode("utf-8"))
    return Run(result.exit_code, result.stdout_bytes.decode("utf-8"), result.stderr)


def render_ok(stream: str, *args: str) -> str:
    run = invoke(stream, *args)
    assert run.exit_code == 0, run.stderr
    return run.stdout


@dataclass
class Rendered:
    """One run of `helm-egress render`, with what the tests need to judge it."""

    stream: str
    output: str
    values_file: Path
    entries: tuple[Entry, ...]
    args: tuple[str, ...]

    @cached_property
    def input_documents(self) -> list[str]:
        return split_documents(self.stream)

    @cached_property
    def output_documents(self) -> list[str]:
        return split_documents(self.output)

    @cached_property
    def generated_indexes(self) -> list[int]:
        """Indexes into `output_documents` of the documents helm-egress wrote."""
        return [i for i, text in enumerate(self.output_documents) if _GENERATED_LINE.search(text)]

    @cached_property
    def generated(self) -> list[tuple[str, Doc]]:
        """(text, parsed) of every generated document, in output order."""
        out: list[tuple[str, Doc]] = []
        for i in self.generated_indexes:
            text = self.output_documents[i]
            doc = _load(text)
            assert doc["metadata"]["annotations"][GENERATED_BY] == "helm-egress", text
            out.append((text, doc))
        return out

    def generated_of(self, kind: str) -> list[Doc]:
        return [doc for _, doc in self.generated if doc["kind"] == kind]

    def passed_through(self) -> list[str]:
        """The output's documents minus the generated ones, in order."""
        generated = set(self.generated_indexes)
        return [text for i, text in enumerate(self.output_documents) if i not in generated]

    @cached_property
    def workloads(self) -> list[tuple[int, Workload]]:
        return find_workloads(self.input_documents)

    @property
    def release_workloads(self) -> list[Workload]:
        return [w for _, w in self.workloads if not w.hook]

    @property
    def hooks(self) -> list[Workload]:
        return [w for _, w in self.workloads if w.hook]

    @property
    def namespaces(self) -> set[str]:
        return {w.namespace for w in self.release_workloads}


class Lab:
    """Module-wide cache of chart renders and CLI runs (a shop Helm 4 render takes ~100 ms)."""

    def __init__(self, values_dir: Path) -> None:
        self._streams: dict[str, str] = {}
        self._kinds: dict[str, Counter[str]] = {}
        self._runs: dict[tuple[str, str, str, tuple[str, ...]], Rendered] = {}
        more = values_dir / "more-egress-values.yaml"
        more.write_text(MORE_VALUES, encoding="utf-8")
        self.values_files = {"example": EXAMPLE_VALUES, "more": more}
        self.entries = {name: load_entries(path) for name, path in self.values_files.items()}

    def base_stream(self, stream_id: str) -> str:
        if stream_id not in self._streams:
            chart, _, shape = stream_id.rpartition("-")
            if chart in CORPUS_CHARTS:
                text = (CORPUS / f"{chart}.{shape}.yaml").read_text(encoding="utf-8")
            else:
                values = {"debug": {"enabled": True}, "canary": {"enabled": True}} if chart == "shop" else {}
                rendered = render_chart(CHARTS / chart, values, release=RELEASE, namespace=NAMESPACE)
                text = helm3_stream(rendered) if shape == "helm3" else helm4_stream(rendered)
            self._streams[stream_id] = text
        return self._streams[stream_id]

    def kinds(self, stream_id: str) -> Counter[str]:
        if stream_id not in self._kinds:
            self._kinds[stream_id] = kinds_in(self.base_stream(stream_id))
        return self._kinds[stream_id]

    def stream(self, stream_id: str, variant: str) -> str:
        return (VARIANTS | VARIANTS_EXTRA)[variant](self.base_stream(stream_id))

    def run(self, stream_id: str, variant: str, values: str, *extra: str) -> Rendered:
        key = (stream_id, variant, values, extra)
        if key not in self._runs:
            stream = self.stream(stream_id, variant)
            args = ("-f", str(self.values_files[values]), *extra)
            self._runs[key] = Rendered(stream, render_ok(stream, *args), self.values_files[values],
                                       self.entries[values], args)
        return self._runs[key]


@pytest.fixture(scope="module")
def lab(one_command: None, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab(tmp_path_factory.mktemp("values"))


every_stream = pytest.mark.parametrize("stream_id", STREAMS)
every_variant = pytest.mark.parametrize("variant", list(VARIANTS))
hostile_variant = pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "plain"])
every_values = pytest.mark.parametrize("values", VALUES)


# --------------------------------------------------------------------------- NetworkPolicy helpers

# No generated rule opens SCTP to an address, so only a policy that does not select the pod
# lets this through (egress_allows treats an unselected pod as unrestricted).
_ISOLATION_PROBE = {"ip": "192.0.2.1", "port": 9, "protocol": "SCTP"}


def selects(policy: Doc, workload: Workload) -> bool:
    return not allows([policy], workload, _ISOLATION_PROBE)


def allows(policies: Sequence[Doc], workload: Workload, dest: Mapping[str, Any]) -> bool:
    """May a pod of `workload` open this connection, under these policies?"""
    return oracle.egress_allows(policies, workload.pod_labels, dest=dest, pod_namespace=workload.namespace)


def transport(protocol: str) -> str:
    return "UDP" if protocol == "UDP" else "TCP"


def sample_ips(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    return list(dict.fromkeys([str(network[0]), str(network[-1])]))


_SERVICE_KIND_LINE = re.compile(r"^kind: *Service\s*$", re.MULTILINE)


def release_services(documents: Sequence[str]) -> list[tuple[str, str, dict[str, str], list[tuple[Any, str]]]]:
    """(name, namespace, pod selector, [(pod port, protocol)]) of every Service with a selector:
    a caller's packets reach the pod's port after the Service's DNAT (targetPort, else port).
    Not those whose pods run with hostNetwork (a node exporter): no policy selects those pods
    by their labels, so they are reached on the nodes, which these runs give no address for
    (test_cluster_needs and test_hostnet judge them, with --node-cidr and under Cilium)."""
    hosted = [w for _, w in find_workloads(documents) if w.host_network]
    out = []
    for text in documents:
        if not _SERVICE_KIND_LINE.search(text):
            continue
        doc = _load(text)
        spec = doc.get("spec") or {}
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            continue
        namespace = doc["metadata"].get("namespace") or NAMESPACE
        if any(w.namespace == namespace and all(w.pod_labels.get(k) == v for k, v in spec["selector"].items())
               for w in hosted):
            continue
        ports = [(p.get("targetPort") or p["port"], p.get("protocol", "TCP")) for p in spec.get("ports") or []]
        out.append((doc["metadata"]["name"], doc["metadata"].get("namespace") or NAMESPACE, spec["selector"], ports))
    return out


def must_reach(entries: Sequence[Entry], namespace: str,
               services: Sequence[tuple[str, str, dict[str, str], list[tuple[Any, str]]]] = ()
               ) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, service_namespace, selector, ports in services:
        for port, protocol in ports:
            dest: dict[str, Any] = {"pod_labels": selector, "namespace": service_namespace, "protocol": protocol}
            # A named target port is matched by the pod's container port name.
            dest.update({"port": port} if isinstance(port, int) else {"port": 1, "port_name": port})
            yield f"the release's Service {name} on {port}/{protocol}", dest
    yield "kube-dns over UDP", {"pod_labels": {"k8s-app": "kube-dns"}, "namespace": "kube-system",
                                "port": 53, "protocol": "UDP"}
    yield "kube-dns over TCP", {"pod_labels": {"k8s-app": "kube-dns"}, "namespace": "kube-system",
                                "port": 53, "protocol": "TCP"}
    yield "istiod xDS", {"pod_labels": {"app": "istiod"}, "namespace": "istio-system", "port": 15012}
    for entry in entries:
        for number, protocol in entry.ports:
            for network in entry.networks:
                for ip in sample_ips(network):
                    yield f"{entry.name} address {ip}", {"ip": ip, "port": number, "protocol": transport(protocol)}
            if entry.hosts:
                for ip in PUBLIC_IPS:
                    yield f"{entry.name} host via {ip}", {"ip": ip, "port": number, "protocol": transport(protocol)}


def must_not_reach(entries: Sequence[Entry], namespace: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    declared = {(number, transport(protocol)) for entry in entries for number, protocol in entry.ports}
    to_hosts = {(number, transport(protocol)) for entry in entries if entry.hosts for number, protocol in entry.ports}
    undeclared = next(p for p in range(1, 65536) if (p, "TCP") not in declared and p not in (53, 15012))
    for endpoint in METADATA_ENDPOINTS:
        for number, proto in sorted({(80, "TCP"), *declared}):
            yield f"metadata endpoint {endpoint}:{number}/{proto}", {"ip": str(endpoint), "port": number,
                                                                     "protocol": proto}
    for ip in PUBLIC_IPS:
        yield f"undeclared port {undeclared} on {ip}", {"ip": ip, "port": undeclared}
        # An address entry's ports lead to its addresses only; a port's other transport is not declared.
        for number, proto in sorted(declared - to_hosts):
            yield f"address-entry port {number}/{proto} on {ip}", {"ip": ip, "port": number, "protocol": proto}
        for number, proto in sorted(to_hosts):
            other = "TCP" if proto == "UDP" else "UDP"
            if (number, other) not in to_hosts:
                yield f"{number}/{other} on {ip}", {"ip": ip, "port": number, "protocol": other}
    for entry in entries:
        for number, proto in entry.ports:
            other = "TCP" if transport(proto) == "UDP" else "UDP"
            if (number, other) not in declared:
                for network in entry.networks:
                    address = sample_ips(network)[0]
                    yield f"{entry.name} {address}:{number}/{other}", {"ip": address, "port": number,
                                                                       "protocol": other}
    # Least privilege: not every pod of its namespace (--same-namespace), and no private
    # address for a hostname (a Service's VIP, a pod, a node).
    yield "a pod of its own namespace", {"pod_labels": {"app": "anything"}, "namespace": namespace, "port": 8443}
    for number, proto in sorted(to_hosts):
        for ip in ("10.96.0.10", "172.20.1.1", "192.168.1.1", "100.64.0.1", "fd00::1"):
            yield f"private {ip}:{number}/{proto} for a hostname", {"ip": ip, "port": number, "protocol": proto}
    yield "another pod in istiod's namespace", {"pod_labels": {"app": "kiali"}, "namespace": "istio-system",
                                                "port": 15012}
    yield "istiod on another port", {"pod_labels": {"app": "istiod"}, "namespace": "istio-system", "port": 15010}
    yield "kube-dns on another port", {"pod_labels": {"k8s-app": "kube-dns"}, "namespace": "kube-system",
                                       "port": 80}
    yield "a DNS look-alike elsewhere", {"pod_labels": {"k8s-app": "kube-dns"}, "namespace": f"{namespace}-other",
                                         "port": 53, "protocol": "UDP"}


# =========================================================================== 1. pass-through


@every_stream
@every_variant
@every_values
def test_every_input_document_comes_out_unchanged_and_in_order(
    lab: Lab, stream_id: str, variant: str, values: str
) -> None:
    run = lab.run(stream_id, variant, values)
    assert run.generated, "values with entries must generate documents"
    assert run.passed_through() == run.input_documents
    # Byte level: the output is the input with one block of generated documents inserted.
    prefix = common_prefix_length(run.stream, run.output)
    suffix = common_prefix_length(run.stream[prefix:][::-1], run.output[prefix:][::-1])
    assert prefix + suffix == len(run.stream)


@every_stream
@hostile_variant
@every_values
def test_the_stream_variant_changes_no_generated_content(lab: Lab, stream_id: str, variant: str, values: str) -> None:
    """CRLF, a BOM, end markers and comment-only documents are bytes, not meaning.

    So the generated documents must equal the plain stream's, which the tests below judge in
    full (ServiceEntries, policy selection, reachability, metadata endpoint).
    """
    plain = lab.run(stream_id, "plain", values)
    run = lab.run(stream_id, variant, values)
    assert [doc for _, doc in run.generated] == [doc for _, doc in plain.generated]


# =========================================================================== 2. ServiceEntries


@every_stream
@every_values
def test_each_values_entry_gets_a_valid_serviceentry_per_namespace(lab: Lab, stream_id: str, values: str) -> None:
    run = lab.run(stream_id, "plain", values)
    release = instance_label(run.stream)
    serviceentries = run.generated_of("ServiceEntry")
    assert len(serviceentries) == len(run.entries) * len(run.namespaces)
    names = [(se["metadata"]["namespace"], se["metadata"]["name"]) for se in serviceentries]
    assert len(set(names)) == len(names), "ServiceEntry names clash"

    for namespace in sorted(run.namespaces):
        for entry in run.entries:
            [se] = [
                se for se in serviceentries
                if se["metadata"]["namespace"] == namespace
                and se["metadata"]["annotations"][SOURCE] == f"values:{run.values_file.name}#{entry.name}"
            ]  # fmt: skip
            check_serviceentry(se, entry, release)


def check_serviceentry(se: Doc, entry: Entry, release: str) -> None:
    assert oracle.serviceentry_problems(se) == []
    # Istio's only complaint may be the user's own choice: a TCP port on hostnames, no addresses.
    tcp_without_addresses = not entry.addresses and any(protocol == "TCP" for _, protocol in entry.ports)
    warnings = oracle.serviceentry_warnings(se)
    assert all("IST0134" in w for w in warnings) and bool(warnings) == tcp_without_addresses, warnings
    assert se["apiVersion"] == "networking.istio.io/v1"
    name, spec = se["metadata"]["name"], se["spec"]
    check_serviceentry_name(name, entry.serviceentry_name(release))

    if entry.hosts:
        assert sorted(spec["hosts"]) == sorted(entry.expected_hosts)
        assert len(spec["hosts"]) == len(entry.expected_hosts)
    else:
        assert spec["hosts"] == [name], "an address-only entry is named by its ServiceEntry"
    if entry.addresses:
        written = [ipaddress.ip_network(a, strict=False) for a in spec["addresses"]]
        assert sorted(written, key=str) == sorted(entry.networks, key=str)
    else:
        assert "addresses" not in spec

    assert sorted((p["number"], p["protocol"]) for p in spec["ports"]) == sorted(entry.ports)
    for port in spec["ports"]:
        assert port["name"] == f"{port['protocol'].lower().replace('_', '-')}-{port['number']}"
    assert len({p["name"] for p in spec["ports"]}) == len(spec["ports"])

    assert spec["exportTo"] == ["."]
    assert spec["location"] == "MESH_EXTERNAL"
    assert spec["resolution"] == entry.expected_resolution


def check_serviceentry_name(name: str, wanted: str) -> None:
    assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    if len(wanted) <= 63:
        assert name == wanted
    else:  # cut, with a hash suffix: still recognisable, never the over-long name
        assert name != wanted[:63]
        assert common_prefix_length(name, wanted) >= 40, name


# =========================================================================== 3. NetworkPolicies


@every_stream
@every_values
def test_each_workload_is_selected_by_exactly_one_valid_policy(lab: Lab, stream_id: str, values: str) -> None:
    run = lab.run(stream_id, "plain", values)
    policies = run.generated_of("NetworkPolicy")
    assert run.release_workloads, "every stream here has workloads"
    for policy in policies:
        assert oracle.networkpolicy_problems(policy) == [], policy["metadata"]["name"]
    assert len(policies) == len(run.release_workloads)

    for workload in run.release_workloads:
        selecting = [p for p in policies if selects(p, workload)]
        assert [p["metadata"]["name"] for p in selecting] == [f"{workload.name}-egress"], workload
        assert selecting[0]["metadata"]["namespace"] == workload.namespace
    for hook in run.hooks:
        assert not [p["metadata"]["name"] for p in policies if selects(p, hook)], f"hook {hook.name} is selected"


@every_stream
@every_values
def test_workload_pods_reach_what_they_need_and_nothing_more(lab: Lab, stream_id: str, values: str) -> None:
    run = lab.run(stream_id, "plain", values)
    policies = run.generated_of("NetworkPolicy")
    for workload in run.release_workloads:
        blocked = [what for what, dest in must_reach(run.entries, workload.namespace,
                                                     release_services(run.input_documents))
                   if not allows(policies, workload, dest)]
        assert blocked == [], f"{workload.kind}/{workload.name} cannot reach what it needs"
        opened = [what for what, dest in must_not_reach(run.entries, workload.namespace)
                  if allows(policies, workload, dest)]
        assert opened == [], f"{workload.kind}/{workload.name} may reach too much"


@pytest.mark.parametrize("stream_id", ["shop-helm3", "shop-helm4"])
def test_workloads_in_two_namespaces_get_serviceentries_and_policies_in_their_own(lab: Lab, stream_id: str) -> None:
    base = lab.stream(stream_id, "plain")
    moved = "name: demo-shop-agent\n  namespace: monitoring\n"
    stream = base.replace("name: demo-shop-agent\n  namespace: prod\n", moved)
    assert stream.count(moved) == 1
    args = ("-f", str(lab.values_files["more"]))
    run = Rendered(stream, render_ok(stream, *args), lab.values_files["more"], lab.entries["more"], args)
    assert run.namespaces == {"prod", "monitoring"}
    assert run.passed_through() == run.input_documents

    serviceentries = run.generated_of("ServiceEntry")
    assert len(serviceentries) == 2 * len(run.entries)
    for namespace in run.namespaces:
        here = {se["metadata"]["annotations"][SOURCE].rpartition("#")[2]: se
                for se in serviceentries if se["metadata"]["namespace"] == namespace}
        for entry in run.entries:
            check_serviceentry(here[entry.name], entry, RELEASE)

    policies = run.generated_of("NetworkPolicy")
    for workload in run.release_workloads:
        assert [p["metadata"]["name"] for p in policies if selects(p, workload)] == [f"{workload.name}-egress"]
        assert [what for what, dest in must_reach(run.entries, workload.namespace,
                                                  release_services(run.input_documents))
                if not allows(policies, workload, dest)] == []
        assert [what for what, dest in must_not_reach(run.entries, workload.namespace)
                if allows(policies, workload, dest)] == []
    agent = next(w for w in run.release_workloads if w.name == "demo-shop-agent")
    web = next(w for w in run.release_workloads if w.name == "demo-shop-web")
    a_prod_pod = {"pod_labels": {"app": "anything"}, "namespace": "prod", "port": 8443}
    assert not allows(policies, agent, a_prod_pod) and not allows(policies, web, a_prod_pod)
    # The release's Services stay in prod: the moved agent reaches them across namespaces.
    for name, namespace, selector, ports in release_services(run.input_documents):
        assert namespace == "prod"
        for port, protocol in ports:
            if isinstance(port, int):
                dest = {"pod_labels": selector, "namespace": namespace, "port": port, "protocol": protocol}
                assert allows(policies, agent, dest), f"{name} {port}"


def test_helm4_hooks_are_present_and_get_no_policy(lab: Lab) -> None:
    run = lab.run("shop-helm4", "plain", "example")
    hooks = {(w.kind, w.name) for w in run.hooks}
    assert hooks == {("Job", "demo-shop-pre-upgrade"), ("Pod", "demo-shop-test-connection")}
    named = {p["metadata"]["name"] for p in run.generated_of("NetworkPolicy")}
    assert not {f"{name}-egress" for _, name in hooks} & named
    shop3 = lab.run("shop-helm3", "plain", "example")
    assert {w.name for w in run.release_workloads} == {w.name for w in shop3.release_workloads}
    assert {w.kind for w in run.release_workloads} == {
        "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "Rollout"
    }


# =========================================================================== 4. metadata endpoint


@every_stream
@every_values
def test_no_generated_ipblock_opens_the_metadata_endpoint(lab: Lab, stream_id: str, values: str) -> None:
    run = lab.run(stream_id, "plain", values)
    for policy in run.generated_of("NetworkPolicy"):
        name = policy["metadata"]["name"]
        for rule in policy["spec"].get("egress") or []:
            if not rule.get("to"):
                pytest.fail(f"{name}: a rule without peers allows every address")
            for peer in rule["to"]:
                block = peer.get("ipBlock")
                if block is None:
                    continue
                cidr = ipaddress.ip_network(block["cidr"])
                excepted = [ipaddress.ip_network(e) for e in block.get("except") or []]
                for ip in METADATA_ENDPOINTS:
                    if ip.version == cidr.version and ip in cidr:
                        assert any(ip in e for e in excepted), f"{name}: {cidr} opens {ip}"


# =========================================================================== 5. determinism, idempotence


@every_stream
@every_values
def test_two_runs_give_the_same_bytes(lab: Lab, stream_id: str, values: str) -> None:
    run = lab.run(stream_id, "plain", values)  # cached: the call below is a second, fresh run
    assert render_ok(run.stream, *run.args) == run.output


@every_stream
@every_variant
def test_rendering_the_output_again_gives_the_same_bytes(lab: Lab, stream_id: str, variant: str) -> None:
    run = lab.run(stream_id, variant, "more")
    assert render_ok(run.output, *run.args) == run.output


@every_stream
def test_a_second_pass_with_other_values_replaces_what_the_first_generated(lab: Lab, stream_id: str) -> None:
    first = lab.run(stream_id, "plain", "example")
    direct = lab.run(stream_id, "plain", "more", "--release", "other")
    assert render_ok(first.output, *direct.args) == direct.output


def test_only_documents_of_the_kinds_it_writes_are_taken_for_its_own_output() -> None:
    """A chart's ConfigMap or Deployment that carries the generated-by annotation is the
    chart's, never dropped as an earlier helm-egress document: the ConfigMap passes
    through, the workload's annotation is refused like any unknown one of the prefix."""
    config_map = ("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  annotations:\n"
                  f"    {GENERATED_BY}: helm-egress\ndata: {{}}\n")
    deployment = ("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  annotations:\n"
                  f"    {GENERATED_BY}: helm-egress\nspec:\n  selector:\n    matchLabels: {{app: d}}\n"
                  "  template:\n    metadata:\n      labels: {app: d}\n    spec:\n      containers: []\n")
    assert render_ok(config_map) == config_map
    run = invoke(config_map + deployment)
    assert (run.exit_code, run.stdout) == (1, "")
    assert f'document 1 (Deployment/d): metadata.annotations["{GENERATED_BY}"]: unknown annotation' in run.stderr


@every_stream
@every_variant
def test_network_policy_none_on_the_output_drops_only_the_policies(lab: Lab, stream_id: str, variant: str) -> None:
    run = lab.run(stream_id, variant, "example")
    again = Rendered(run.output, render_ok(run.output, *run.args, "--network-policy", "none"),
                     run.values_file, run.entries, run.args)
    assert again.generated_of("NetworkPolicy") == []
    serviceentry_texts = [text for text, doc in run.generated if doc["kind"] == "ServiceEntry"]
    assert [text for text, _ in again.generated] == serviceentry_texts
    assert again.passed_through() == run.input_documents


# =========================================================================== 6. shape fidelity


@every_stream
@every_variant
@every_values
def test_generated_documents_take_the_stream_shape(lab: Lab, stream_id: str, variant: str, values: str) -> None:
    run = lab.run(stream_id, variant, values)
    chart = chart_name(run.stream)
    newline = "\r\n" if "\r\n" in run.stream else "\n"
    for text, doc in run.generated:
        path = f"{chart}/templates/{GENERATED_FILES[doc['kind']]}"
        annotations = doc["metadata"]["annotations"]
        assert annotations[SOURCE].startswith(f"values:{run.values_file.name}")
        if is_helm3(run.stream):
            assert text.startswith(f"# Source: {path}{newline}")
            assert FILENAME_ANNOTATION not in annotations
        else:
            assert annotations[FILENAME_ANNOTATION] == path
            assert "# Source:" not in text

    # All of them together, right before the first workload that is not a hook.
    first_workload = next(i for i, w in run.workloads if not w.hook)
    kept = [i for i in range(len(run.output_documents)) if i not in set(run.generated_indexes)]
    before = kept[first_workload]
    assert run.generated_indexes == list(range(before - len(run.generated), before))

    if newline == "\r\n":
        assert "\n" not in run.output.replace("\r\n", ""), "a bare LF in a CRLF stream"
    else:
        assert "\r" not in run.output
    assert run.output.startswith(BOM) == run.stream.startswith(BOM)
    assert run.output.count(BOM) == run.stream.count(BOM)


@pytest.mark.parametrize("stream_id", [s for s in STREAMS if s.startswith(("shop", "minimal"))])
@every_variant
def test_the_output_is_one_valid_yaml_stream(lab: Lab, stream_id: str, variant: str) -> None:
    run = lab.run(stream_id, variant, "more")
    expected = lab.kinds(stream_id) + Counter(doc["kind"] for _, doc in run.generated)
    assert kinds_in(run.output) == expected


# =========================================================================== declared nothing


@pytest.fixture(scope="module")
def nothing_declared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("nothing")
    files = {"empty-list": "istio:\n  egress: []\n", "no-egress-key": "image:\n  tag: '1.0'\nistio:\n  enabled: true\n"}
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text, encoding="utf-8")
    return {name: folder / f"{name}.yaml" for name in files}


@every_stream
def test_an_empty_egress_list_locks_workloads_to_dns_istiod_and_the_releases_services(
    lab: Lab, nothing_declared: dict[str, Path], stream_id: str
) -> None:
    stream = lab.stream(stream_id, "plain")
    run = Rendered(stream, render_ok(stream, "-f", str(nothing_declared["empty-list"])),
                   nothing_declared["empty-list"], (), ())
    assert run.passed_through() == run.input_documents
    assert run.generated_of("ServiceEntry") == []
    policies = run.generated_of("NetworkPolicy")
    assert len(policies) == len(run.release_workloads) == len(run.generated)
    for workload in run.release_workloads:
        assert [p["metadata"]["name"] for p in policies if selects(p, workload)] == [f"{workload.name}-egress"]
        assert [what for what, dest in must_reach((), workload.namespace, release_services(run.input_documents))
                if not allows(policies, workload, dest)] == []
        https_anywhere = ("https anywhere", {"ip": PUBLIC_IPS[0], "port": 443})
        assert [what for what, dest in [*must_not_reach((), workload.namespace), https_anywhere]
                if allows(policies, workload, dest)] == []


@every_stream
def test_values_without_istio_egress_add_nothing(lab: Lab, nothing_declared: dict[str, Path], stream_id: str) -> None:
    stream = lab.stream(stream_id, "plain")
    assert render_ok(stream, "-f", str(nothing_declared["no-egress-key"])) == stream


# =========================================================================== 7. release name


@pytest.mark.parametrize("stream_id", ["shop-helm3", "shop-helm4", "ingress-nginx-helm4", "prometheus-helm3"])
@every_values
def test_release_option_overrides_the_inferred_name(lab: Lab, stream_id: str, values: str) -> None:
    inferred = lab.run(stream_id, "plain", values)
    assert instance_label(inferred.stream) == RELEASE
    assert lab.run(stream_id, "plain", values, "--release", RELEASE).output == inferred.output

    release = "payments-checkout-production-eu-west-1-blue-green-v2"  # 52: Helm allows 53
    run = lab.run(stream_id, "plain", values, "--release", release)
    by_entry = {se["metadata"]["annotations"][SOURCE].rpartition("#")[2]: se for se in run.generated_of("ServiceEntry")}
    assert len(by_entry) == len(run.entries)
    for entry in run.entries:
        check_serviceentry(by_entry[entry.name], entry, release)
    # What the policies allow does not depend on the release name.
    assert [p["spec"] for p in run.generated_of("NetworkPolicy")] == [
        p["spec"] for p in inferred.generated_of("NetworkPolicy")
    ]


# =========================================================================== 8. empty input


EMPTY_STREAMS = {
    "nothing": "",
    "helm3-hidden-secret": f"---\n# Source: shop/templates/secret.yaml\n{HIDDEN_SECRET_LINE}\n",
    "helm3-two-comment-docs": (
        f"---\n# Source: shop/templates/secret.yaml\n{HIDDEN_SECRET_LINE}\n"
        f"---\n# Source: shop/templates/other-secret.yaml\n{HIDDEN_SECRET_LINE}\n"
    ),
    "helm4-comment-doc": f"{HIDDEN_SECRET_LINE}\n",
    "bom-crlf-comment-doc": f"{BOM}---\r\n# Source: shop/templates/secret.yaml\r\n# just a comment\r\n",
}


@pytest.mark.parametrize("stream", list(EMPTY_STREAMS.values()), ids=list(EMPTY_STREAMS))
@pytest.mark.parametrize("values", [*VALUES, None])
def test_empty_input_comes_back_unchanged(lab: Lab, stream: str, values: str | None) -> None:
    args = () if values is None else ("-f", str(lab.values_files[values]))
    run = invoke(stream, *args)
    assert run.exit_code == 0, run.stderr
    assert run.stdout == stream


# =========================================================================== the installed executable


def run_executable(stream: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(EXECUTABLE), "render", *args], input=stream, capture_output=True,
                          check=False, timeout=60)


def test_installed_executable_writes_what_the_cli_writes(lab: Lab) -> None:
    run = lab.run("shop-helm3", "plain", "more")
    done = run_executable(run.stream.encode("utf-8"), *run.args)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == run.output.encode("utf-8")


def test_installed_executable_keeps_crlf_bom_and_end_markers_byte_for_byte(lab: Lab) -> None:
    run = lab.run("shop-helm4", ALL_AT_ONCE, "example")
    done = run_executable(run.stream.encode("utf-8"), *run.args)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == run.output.encode("utf-8")
    assert done.stdout.startswith(b"\xef\xbb\xbf") and done.stdout.count(b"\xef\xbb\xbf") == 1
    assert b"\n" not in done.stdout.replace(b"\r\n", b"")
    output = done.stdout.decode("utf-8")
    assert [d for d in split_documents(output) if not _GENERATED_LINE.search(d)] == split_documents(run.stream)

"""Property-based checks of the error and stream contract (hypothesis).

Generated streams (workloads with annotations, the chart's own ServiceEntries and
NetworkPolicies, documents helm-egress never reads, junk), values files and raw mutations
of a real stream, each held to what README promises:

- exit status 0, 1 or 2 only; never a traceback or an "unexpected error";
- on failure nothing on stdout and every problem on stderr as an ``error:`` line;
- on success every input document byte for byte (the chart's ServiceEntries and
  NetworkPolicies may be repaired), the same output twice, the same output again when
  the output is rendered, and every generated document valid under ``tests/oracle.py``.

The budget is fixed and the examples derandomized in CI (``HELM_EGRESS_FUZZ_EXAMPLES``
examples per test, default 100); set it higher, and ``HELM_EGRESS_FUZZ_RANDOM=1``, for a
longer exploratory run. Failures found this way are kept as golden cases in tests/cases/
or as regressions in tests/test_robustness.py. Text lengths are capped: the oracle's
Cilium ``matchName`` regex backtracks exponentially in Python.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import oracle
from helmstream import split_documents
from post_renderer.cli import app
from post_renderer.errors import EgressError, Location
from post_renderer.yamlio import load, safe_loader

EXAMPLES = int(os.environ.get("HELM_EGRESS_FUZZ_EXAMPLES", "100"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("HELM_EGRESS_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)
ROOT = Path(__file__).resolve().parent.parent
SHOP = (ROOT / "tests" / "cases" / "annotations-and-values-helm4" / "input.yaml").read_text()
PREFIX = "helm-egress.io/"

# --------------------------------------------------------------------------- strategies

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
TRICKY = st.sampled_from([
    "", " ", "-", "*", "\u212a.com", "bücher.de", "٤٤٣", "²", "a\x85b", "a\rb", "a\u2028b", "\ufeff", "'", '"',
    "[", "{", "#", "&a", "*a", "!!python/object", "~", "null", "yes", "0x1F", "1e3", ".inf", "a: b", "- x",
])
TEXT = st.one_of(TRICKY, NAMES, st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 70000), st.floats(allow_nan=False, width=16), TEXT)
ANY = st.recursive(SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3), max_leaves=6)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``valid``, sometimes anything at all (a wrong type, a hostile string)."""
    return st.one_of(valid, valid, valid, ANY)


HOSTS = st.sampled_from(["api.example.com", "*.example.com", "API.Example.com.", "a.b.example.org", "db", "*",
                         "10.0.0.1", "http://x.example.com", "*foo.com", "\u212a.com", "bücher.de", "a..b",
                         "x" * 64 + ".com", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "0xfoo.example.com",
                         "a\uff0eexample.com", "\ufb01le.example.com", "\u0131.example.com"])
ADDRESSES = st.sampled_from(["10.0.0.5", "10.1.0.0/16", "10.1.2.3/16", "2001:db8::/32", "169.254.169.254",
                             "64:ff9b::a9fe:a9fe", "::169.254.169.254", "::ffff:169.254.169.254", "0.0.0.0/0",
                             "fe80::1%eth0", "fd00:ec2::254", "300.1.1.1", "::/0"])
PROTOCOLS = st.sampled_from(["TCP", "tls", "HTTPS", "http", "HTTP_PROXY", "GRPC-Web", "UDP", "Mongo", "HTTPX",
                             "HTTP\u017f", ""])
RESOLUTIONS = st.sampled_from(["NONE", "STATIC", "DNS", "dns", "DNS_ROUND_ROBIN", "DYNAMIC_DNS", "WHATEVER"])
PORT_NUMBERS = st.one_of(st.integers(1, 65535), st.sampled_from([0, 70000, 443, 8080]))


@st.composite
def entries(draw: st.DrawFn) -> list[Any]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        entry: dict[str, Any] = {"name": draw(maybe(NAMES))}
        if draw(st.booleans()):
            entry["hosts"] = draw(maybe(st.lists(HOSTS, min_size=1, max_size=3)))
        if draw(st.booleans()):
            entry["addresses"] = draw(maybe(st.lists(ADDRESSES, min_size=1, max_size=2)))
        entry["ports"] = draw(maybe(st.lists(st.fixed_dictionaries(
            {"number": maybe(PORT_NUMBERS), "protocol": maybe(PROTOCOLS)}), min_size=1, max_size=2)))
        if draw(st.booleans()):
            entry["resolution"] = draw(RESOLUTIONS)
        out.append(entry)
    return out


# In-cluster destinations: NS/SERVICE[:PORT[/PROTOCOL],...] items (the annotation), and the
# values' {namespace, service, ports, selector} (istio.inCluster).
IN_CLUSTER_ITEMS = st.lists(st.sampled_from([
    "prod/api", "prod/api:80", "prod/api:9100,5353/UDP", "billing/invoices:8080", "billing/invoices", "Bad/x:1",
    "prod/api:0", "prod/api:80/HTTP", "/x", "prod", "prod/api:٨٠", "team-a/*:80"]), min_size=1, max_size=3)
IN_CLUSTER = st.lists(st.fixed_dictionaries(
    {"namespace": maybe(st.sampled_from(["prod", "billing", "Bad_NS"])),
     "service": maybe(st.sampled_from(["api", "invoices", "x" * 64]))},
    optional={"ports": maybe(st.lists(st.one_of(PORT_NUMBERS, st.fixed_dictionaries(
        {"port": maybe(PORT_NUMBERS)}, optional={"targetPort": maybe(st.one_of(PORT_NUMBERS, st.sampled_from(
            ["http", "metrics", "HTTP", "٨٠"]))), "protocol": maybe(st.sampled_from(["TCP", "UDP", "HTTP"]))})),
        max_size=2)),
        "selector": maybe(st.dictionaries(st.sampled_from(["app", "a b"]), NAMES, max_size=2))}), max_size=2)


@st.composite
def annotations(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out[PREFIX + "hosts"] = ", ".join(draw(st.lists(HOSTS, min_size=1, max_size=3)))
    if draw(st.booleans()):
        out[PREFIX + "addresses"] = " ".join(draw(st.lists(ADDRESSES, min_size=1, max_size=2)))
    if draw(st.booleans()):
        out[PREFIX + "ports"] = draw(st.one_of(
            st.lists(st.builds(lambda n, p: f"{n}/{p}" if p else str(n), PORT_NUMBERS, PROTOCOLS), min_size=1,
                     max_size=2).map(", ".join), TRICKY))
    if draw(st.booleans()):
        out[PREFIX + "egress"] = draw(st.one_of(entries().map(json.dumps), TRICKY))
    if draw(st.integers(0, 3)) == 0:
        out[PREFIX + "in-cluster"] = draw(st.one_of(IN_CLUSTER_ITEMS.map(" ".join), TRICKY))
    if draw(st.integers(0, 3)) == 0:
        out[PREFIX + "apiserver"] = draw(st.sampled_from(["true", "false", "yes", 1]))
    if draw(st.integers(0, 5)) == 0:
        out[PREFIX + draw(st.sampled_from(["ignore", "host", "egres"]))] = draw(st.sampled_from(["true", "no", 5]))
    return out


LABELS = st.one_of(st.dictionaries(st.sampled_from(["app", "tier", "app.kubernetes.io/name"]), NAMES, min_size=1,
                                   max_size=2), ANY)
# Labels the pods carry beyond the selector's: copied into Sidecar and Cilium selectors.
EXTRA_LABELS = st.dictionaries(st.sampled_from(["version", "a b", "k8s.io/", "x" * 64, "team"]),
                               st.sampled_from(["v1", "a b", "v" * 64, ""]), max_size=2)


@st.composite
def workload(draw: st.DrawFn) -> dict[str, Any]:
    kind, api = draw(st.sampled_from([("Deployment", "apps/v1"), ("StatefulSet", "apps/v1"), ("Job", "batch/v1"),
                                      ("CronJob", "batch/v1"), ("Pod", "v1"), ("DaemonSet", "apps/v1")]))
    name = draw(NAMES)
    labels = draw(st.one_of(st.just({"app": name}), LABELS))
    metadata: dict[str, Any] = {"name": draw(maybe(st.just(name))),
                                "labels": {"app.kubernetes.io/instance": "rel", **(labels if isinstance(labels, dict) else {})}}
    if draw(st.booleans()):
        metadata["namespace"] = draw(maybe(st.sampled_from(["prod", "team-a"])))
    own = draw(annotations())
    if kind == "Pod":
        metadata["annotations"] = own
        return {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": {"containers": []}}
    pod_labels = {**labels, **draw(EXTRA_LABELS)} if isinstance(labels, dict) else labels
    template: dict[str, Any] = {"metadata": draw(maybe(st.just({"labels": pod_labels, "annotations": own})))}
    if draw(st.booleans()):
        template["spec"] = draw(maybe(st.fixed_dictionaries({}, optional={
            "hostNetwork": maybe(st.booleans()), "serviceAccountName": maybe(st.sampled_from(["web", "default"])),
            "automountServiceAccountToken": maybe(st.booleans()),
            "containers": maybe(st.lists(st.fixed_dictionaries({"name": maybe(NAMES)}, optional={
                "ports": maybe(st.lists(st.fixed_dictionaries({"containerPort": maybe(PORT_NUMBERS)}, optional={
                    "name": maybe(st.sampled_from(["http", "metrics", "HTTP"]))}), max_size=2)),
                "securityContext": maybe(st.fixed_dictionaries({}, optional={
                    "runAsUser": maybe(st.sampled_from([1337, 0, 1000])),
                    "capabilities": maybe(st.fixed_dictionaries({"add": maybe(st.lists(st.sampled_from(
                        ["NET_ADMIN", "net_raw", "CAP_NET_RAW", "SYS_TIME"]), max_size=2))}))}))}), max_size=2))})))
    spec: dict[str, Any] = {"template": template}
    if kind not in ("Job",):
        spec["selector"] = draw(maybe(st.one_of(
            st.just({"matchLabels": labels}),
            st.fixed_dictionaries({"matchExpressions": st.lists(st.fixed_dictionaries({
                "key": maybe(st.just("app")), "operator": maybe(st.sampled_from(["In", "NotIn", "Exists"])),
                "values": maybe(st.lists(NAMES, max_size=2))}), min_size=1, max_size=2)}))))
    if kind == "CronJob":
        spec = {"schedule": "* * * * *", "jobTemplate": {"spec": spec}}
    return {"apiVersion": api, "kind": kind, "metadata": metadata, "spec": spec}


@st.composite
def serviceentry(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": draw(maybe(st.lists(HOSTS, min_size=1, max_size=3)))}
    if draw(st.booleans()):
        spec["addresses"] = draw(maybe(st.lists(ADDRESSES, min_size=1, max_size=2)))
    spec["ports"] = draw(maybe(st.lists(st.fixed_dictionaries(
        {"number": maybe(PORT_NUMBERS), "name": maybe(NAMES), "protocol": maybe(PROTOCOLS)}), min_size=1, max_size=3)))
    spec["resolution"] = draw(maybe(RESOLUTIONS))
    if draw(st.booleans()):
        spec["exportTo"] = draw(maybe(st.lists(st.sampled_from([".", "*", "prod", "~"]), min_size=1, max_size=2)))
    if draw(st.integers(0, 3)) == 0:
        spec["endpoints"] = draw(maybe(st.lists(st.fixed_dictionaries({"address": st.sampled_from(
            ["10.0.0.9", "db.example.com"])}), max_size=2)))
    version = draw(st.sampled_from(["v1", "v1beta1", "v1alpha3", "v1alpha2"]))
    return {"apiVersion": f"networking.istio.io/{version}", "kind": "ServiceEntry",
            "metadata": draw(maybe(st.fixed_dictionaries({"name": NAMES}))), "spec": spec}


@st.composite
def networkpolicy(draw: st.DrawFn) -> dict[str, Any]:
    block = {"cidr": draw(maybe(ADDRESSES))}
    if draw(st.booleans()):
        block["except"] = draw(maybe(st.lists(ADDRESSES, max_size=2)))
    rule = {"to": draw(maybe(st.just([{"ipBlock": block}]))),
            "ports": draw(maybe(st.lists(st.fixed_dictionaries(
                {"port": maybe(st.one_of(PORT_NUMBERS, st.sampled_from(["https", "٤٤٣", "HTTPS_x", "²"]))),
                 "protocol": maybe(st.sampled_from(["tcp", "UDP", "SCTP", "XTCP"]))},
                optional={"endPort": st.sampled_from([10, 8443, 70000])}), max_size=2)))}
    spec: dict[str, Any] = {"podSelector": {}, "egress": draw(maybe(st.just([rule])))}
    if draw(st.booleans()):
        spec["policyTypes"] = ["Egress"]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": draw(NAMES)}, "spec": spec}


@st.composite
def service(draw: st.DrawFn) -> dict[str, Any]:
    ports = draw(maybe(st.lists(st.fixed_dictionaries(
        {"port": maybe(PORT_NUMBERS)},
        optional={"targetPort": maybe(st.one_of(PORT_NUMBERS, st.sampled_from(["http", "metrics", "٨٠", ""]))),
                  "protocol": maybe(st.sampled_from(["TCP", "UDP", "SCTP", "tcp"])), "name": NAMES}), max_size=3)))
    spec: dict[str, Any] = {"selector": draw(maybe(LABELS)), "ports": ports}
    if draw(st.integers(0, 4)) == 0:
        spec["type"] = draw(st.sampled_from(["ExternalName", "ClusterIP", 5]))
    metadata: dict[str, Any] = {"name": draw(maybe(st.sampled_from(["api", "invoices"])))}
    if draw(st.booleans()):
        metadata["namespace"] = draw(maybe(st.sampled_from(["prod", "billing"])))
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}


@st.composite
def rbac(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["RoleBinding", "ClusterRoleBinding", "ServiceAccount"]))
    metadata = {"name": draw(maybe(NAMES)), "namespace": draw(maybe(st.sampled_from(["prod", "team-a"])))}
    if kind == "ServiceAccount":
        return {"apiVersion": "v1", "kind": kind, "metadata": metadata,
                "automountServiceAccountToken": draw(maybe(st.booleans()))}
    subject = st.fixed_dictionaries({"kind": maybe(st.sampled_from(["ServiceAccount", "User", "Group"])),
                                     "name": maybe(st.sampled_from(["default", "web", "system:serviceaccounts",
                                                                    "system:serviceaccount:prod:web", "system:serviceaccounts:"]))},
                                    optional={"namespace": maybe(st.sampled_from(["prod", "team-a"]))})
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata,
            "roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": draw(maybe(st.lists(subject, max_size=2)))}


CONFIGMAP = st.builds(lambda name, data: {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                                          "data": data}, NAMES, ANY)
JUNK = st.text(st.sampled_from(list("ab: -[]{}'\"#\n\r\x85\u2028\ufeff\t&*!|>%.")), max_size=40)


def block_yaml(value: Any, indent: int = 0, step: int = 2) -> str:
    """Block-style YAML for generated data (scalars as JSON, which YAML reads alike)."""
    pad = " " * indent
    if isinstance(value, dict) and value:
        lines = []
        for k, v in value.items():
            key = json.dumps(k, ensure_ascii=False) if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z][\w./-]*", k) else k
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{key}:\n{block_yaml(v, indent + step, step)}")
            else:
                lines.append(f"{pad}{key}: {json.dumps(v, ensure_ascii=False)}\n")
        return "".join(lines)
    if isinstance(value, list) and value:
        return "".join(f"{pad}- {json.dumps(v, ensure_ascii=False)}\n" for v in value)
    return f"{pad}{json.dumps(value, ensure_ascii=False)}\n"


@st.composite
def documents(draw: st.DrawFn) -> list[str]:
    docs = []
    for _ in range(draw(st.integers(1, 5))):
        data = draw(st.one_of(workload(), workload(), serviceentry(), networkpolicy(), CONFIGMAP, service(), rbac()))
        style = draw(st.sampled_from(["block", "block4", "flow"]))
        if style == "flow":
            body = json.dumps(data, ensure_ascii=False) + "\n"
        else:
            body = block_yaml(data, step=4 if style == "block4" else 2)
        docs.append(f"---\n# Source: chart/templates/t{len(docs)}.yaml\n{body}")
    if draw(st.integers(0, 3)) == 0:
        docs.append("---\n" + draw(JUNK) + "\n")
    return docs


def as_helm4(doc: str) -> str:
    """A generated document as Helm 4 hands it over: no `# Source:` line, the filename annotation."""
    body = doc.split("\n", 2)[2] if doc.startswith("---\n# Source:") else doc.removeprefix("---\n")
    return "---\n" + body.replace('"metadata": {', '"metadata": {"annotations": {"postrenderer.helm.sh/postrender-filename": "c/t.yaml"}, ', 1) \
        if body.startswith("{") else "---\n" + body


@st.composite
def streams(draw: st.DrawFn) -> tuple[str, list[str]]:
    docs = draw(documents())
    if draw(st.booleans()):
        docs = [as_helm4(d) for d in docs]
    if draw(st.booleans()):
        docs = [d.replace("\n", "\r\n") for d in docs]
    return ("\ufeff" if draw(st.booleans()) else "") + "".join(docs), docs


def values_text(data: Any, style: str, in_cluster: Any = None) -> str:
    doc: dict[str, Any] = {"istio": {"egress": data}}
    if in_cluster is not None:
        doc["istio"]["inCluster"] = in_cluster
    return json.dumps(doc, ensure_ascii=False) if style == "json" else block_yaml(doc)


# --------------------------------------------------------------------------- the contract


def invoke(args: list[str], stdin: bytes) -> Any:
    return CliRunner().invoke(app, ["render", *args], input=stdin)


def _chart_policy(text: str) -> bool:
    try:
        doc = load(safe_loader(), text, Location())
    except EgressError:
        return False
    return isinstance(doc, dict) and doc.get("kind") in ("ServiceEntry", "NetworkPolicy")


def assert_contract(stdin: str, args: list[str], docs: list[str]) -> None:
    data = stdin.encode("utf-8")
    first = invoke(args, data)
    assert first.exit_code in (0, 1, 2), (first.exit_code, first.stderr)
    assert "Traceback" not in first.stderr and "unexpected error" not in first.stderr, first.stderr
    if first.exit_code != 0:
        assert first.stdout_bytes == b"", first.stderr
        if first.exit_code == 1:
            assert all(line.startswith(("error: ", "note: ", "helm-egress: ")) for line in first.stderr.splitlines())
            assert any(line.startswith("error: ") for line in first.stderr.splitlines()), first.stderr
        return
    out = first.stdout_bytes
    assert invoke(args, data).stdout_bytes == out  # deterministic
    again = invoke(args, out)
    assert (again.exit_code, again.stdout_bytes) == (0, out), again.stderr  # idempotent
    text = out.decode("utf-8")
    for doc in docs:
        if not _chart_policy(doc):
            assert doc in text  # byte for byte
    for piece in split_documents(text):
        try:
            doc = load(safe_loader(), piece, Location())
        except EgressError:
            continue
        metadata = doc.get("metadata") if isinstance(doc, dict) else None
        if not isinstance(metadata, dict) or "helm-egress.io/generated-by" not in (metadata.get("annotations") or {}):
            continue  # the chart's, however odd its metadata
        check = {"ServiceEntry": oracle.serviceentry_problems, "NetworkPolicy": oracle.networkpolicy_problems,
                 "CiliumNetworkPolicy": oracle.ciliumnetworkpolicy_problems,
                 "Sidecar": oracle.sidecar_problems}[doc["kind"]]
        assert check(doc) == [], (doc, check(doc))


@pytest.fixture(scope="module")
def values_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("values")


FLAVOURS = st.sampled_from([[], ["--network-policy", "cilium"], ["--sidecar"], ["--network-policy", "none", "--sidecar"],
                            ["--network-policy", "cilium", "--sidecar", "--apiserver-cidr", "172.18.0.2/32"],
                            ["--apiserver-cidr", "172.18.0.2/32", "--node-cidr", "10.0.0.0/16", "--same-namespace"],
                            ["--mesh", "ambient", "--waypoint", "istio-egress/waypoint", "--namespace", "prod"]])


@PROPERTY
@given(stream=streams(), egress=st.one_of(st.none(), entries()), release=st.booleans(), flavour=FLAVOURS)
def test_generated_streams_keep_the_contract(stream: tuple[str, list[str]], egress: list[Any] | None,
                                             release: bool, flavour: list[str], values_dir: Path) -> None:
    text, docs = stream
    args = (["--release", "rel"] if release else []) + flavour
    if egress is not None:
        path = values_dir / "values.yaml"
        path.write_text(values_text(egress, "json"))
        args += ["-f", str(path)]
    assert_contract(text, args, docs)
    # check validates what render does: the same verdict, findings on stdout, no traceback.
    rendered = invoke(args, text.encode("utf-8"))
    checked = CliRunner().invoke(app, ["check", *args], input=text.encode("utf-8"))
    assert "Traceback" not in checked.stderr + checked.stdout and "unexpected error" not in checked.stderr
    if rendered.exit_code in (0, 1):
        assert checked.exit_code == rendered.exit_code, (checked.stdout, rendered.stderr)


@PROPERTY
@given(egress=st.one_of(entries(), ANY), style=st.sampled_from(["json", "block"]),
       junk=st.one_of(st.none(), JUNK), in_cluster=st.one_of(st.none(), IN_CLUSTER, ANY))
def test_generated_values_keep_the_contract(egress: Any, style: str, junk: str | None, in_cluster: Any,
                                            values_dir: Path) -> None:
    path = values_dir / "values.yaml"
    path.write_text(values_text(egress, style, in_cluster) if junk is None else junk, encoding="utf-8")
    assert_contract(SHOP, ["-f", str(path)], [])


@PROPERTY
@given(at=st.integers(0, len(SHOP)), insert=JUNK, cut=st.integers(0, 8))
def test_a_mutated_real_stream_keeps_the_contract(at: int, insert: str, cut: int) -> None:
    """A real Helm 4 stream with a few characters cut or inserted anywhere."""
    assert_contract(SHOP[:at] + insert + SHOP[at + cut:], ["--release", "demo"], [])


OPTION_VALUES = {
    "--release": st.one_of(NAMES, TRICKY), "--namespace": st.one_of(NAMES, TRICKY),
    "--dns-selector": st.sampled_from(["k8s-app=kube-dns", "a=b,c=d", "a b=c", "k8s-app", "a=" + "v" * 64, "\u212a=b"]),
    "--istiod-selector": st.sampled_from(["app=istiod", "app=istiod,", "a==b", "=x"]),
    "--dns-namespace": st.one_of(NAMES, TRICKY), "--istiod-namespace": st.one_of(NAMES, TRICKY),
    "--dns-port": st.sampled_from(["53", "5353", "٥٣", "²", "0", "70000", "x", " 53"]),
    "--istiod-port": st.sampled_from(["15012", "١٥٠١٢", "-1"]),
    "--hostname-cidr": st.sampled_from(["10.0.0.0/8", "10.1.2.3/8", "::/0", "fe80::%eth0/64", "169.254.0.0/16",
                                        "١٠.0.0.0/8", "64:ff9b::/96"]),
    "--hostname-except": st.sampled_from(["10.0.0.0/8", "10.0.0.0/9", "10.128.0.0/9", "11.0.0.0/8", "0.0.0.0/0",
                                          "::ffff:10.1.0.0/112"]),
    "--cluster-domain": st.sampled_from(["cluster.local", "a..b", "\u212a.local", "x"]),
    "--cilium-wildcard-depth": st.sampled_from(["0", "3", "٣", "17"]),
    "--mesh-service": st.sampled_from(["observability/otel:4317", "o/otel:4317,6831/UDP:app=otel", "o/otel",
                                       "o/otel:0", "O/otel:1", "o/otel:80:a b=c", "o/otel:٨٠", "o/otel:80/SCTP"]),
    "--dns-service": st.sampled_from(["kube-system/kube-dns", "", "kube-dns", "a/B", "a/"]),
    "--apiserver-cidr": st.sampled_from(["172.18.0.2/32", "10.0.0.0/8", "0.0.0.0/0", "169.254.169.254/32", "x"]),
    "--apiserver-port": st.sampled_from(["443", "6443", "0", "٤٤٣", "70000"]),
    "--node-cidr": st.sampled_from(["10.0.0.0/16", "::/0", "fe80::/64", "1.2.3.4"]),
    "--apiserver-access": st.sampled_from(["rbac", "all", "none", "some"]),
}


@PROPERTY
@given(options=st.lists(st.tuples(st.sampled_from(sorted(OPTION_VALUES)), st.data()), max_size=4),
       flavour=FLAVOURS)
def test_generated_options_keep_the_contract(options: list[tuple[str, Any]], flavour: list[str]) -> None:
    """Option values are checked like the fields they fill: a usage error (exit 2) or a
    render whose generated documents are valid."""
    args = [a for name, data in options for a in (name, data.draw(OPTION_VALUES[name]))]
    assert_contract(SHOP, ["--release", "demo", *flavour, *args], [])


# One hostile field in an otherwise valid stream: the generators above mostly produce
# streams with several problems, refused at the first; this reaches every field alone.
VALID_DOCS: list[dict[str, Any]] = [
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "web", "namespace": "prod", "labels": {"app.kubernetes.io/instance": "rel"}},
     "spec": {"selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web", "version": "v1"},
                                        "annotations": {PREFIX + "hosts": "api.example.com, *.example.org",
                                                        PREFIX + "addresses": "10.0.0.5",
                                                        PREFIX + "ports": "443/TLS, 8080"}},
                           "spec": {"containers": [{"name": "c", "image": "i"}]}}}},
    {"apiVersion": "batch/v1", "kind": "CronJob",
     "metadata": {"name": "report", "namespace": "prod", "labels": {"app.kubernetes.io/instance": "rel"}},
     "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
         "metadata": {"labels": {"app": "report"},
                      "annotations": {PREFIX + "egress": '[{"name": "s3", "hosts": ["*.s3.amazonaws.com"], '
                                                         '"ports": [{"number": 443, "protocol": "HTTPS"}]}]'}},
         "spec": {"containers": [{"name": "c", "image": "i"}]}}}}}},
    {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
     "metadata": {"name": "rel-db", "namespace": "prod"},
     "spec": {"hosts": ["rel-db"], "addresses": ["10.40.0.15"], "exportTo": ["."], "location": "MESH_EXTERNAL",
              "ports": [{"number": 3306, "name": "tcp-3306", "protocol": "TCP"}], "resolution": "DNS"}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "prod"},
     "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                                                    {"name": "m", "port": 9100, "targetPort": 9100, "protocol": "TCP"}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "agent", "namespace": "prod"},
     "spec": {"selector": {"app": "agent"}, "ports": [{"port": 9100, "targetPort": "metrics"}]}},
    {"apiVersion": "apps/v1", "kind": "DaemonSet",
     "metadata": {"name": "agent", "namespace": "prod", "labels": {"app.kubernetes.io/instance": "rel"}},
     "spec": {"selector": {"matchLabels": {"app": "agent"}},
              "template": {"metadata": {"labels": {"app": "agent"}, "annotations": {
                  PREFIX + "in-cluster": "prod/web:80 billing/invoices:8080"}},
                           "spec": {"hostNetwork": True, "serviceAccountName": "agent",
                                    "containers": [{"name": "c", "image": "i", "ports": [
                                        {"name": "metrics", "containerPort": 9100}],
                                        "securityContext": {"runAsUser": 65534}}]}}}},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "agent"},
     "roleRef": {"kind": "ClusterRole", "name": "view", "apiGroup": "rbac.authorization.k8s.io"},
     "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": "prod"},
                  {"kind": "Group", "name": "system:serviceaccounts:prod"}]},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": "prod"},
     "automountServiceAccountToken": False},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np", "namespace": "prod"},
     "spec": {"podSelector": {"matchLabels": {"app": "web"}},
              "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                          "ports": [{"port": 443, "protocol": "tcp"}, {"port": "https"}]}]}},
]
HOSTILE = st.one_of(TRICKY, SCALARS, ANY, HOSTS, ADDRESSES, st.sampled_from(
    ["٤٤٣/TLS", "443/TLS", "a b", "v" * 64, "k8s.io/", "Bad_NS", "70000", "0xa9fea9fe", "::ffff:169.254.169.254"]))


def _node_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        out += _node_paths(child, (*prefix, key))
    return out


@st.composite
def one_field_mutated(draw: st.DrawFn) -> list[str]:
    docs = json.loads(json.dumps(VALID_DOCS))
    target = draw(st.sampled_from(range(len(docs))))
    # Fields copied into generated documents or read as destinations come up more often.
    paths = _node_paths(docs[target])
    paths += [p for p in paths if p[-1] in ("labels", "matchLabels", "annotations", "namespace", "ports", "hosts",
                                            "addresses", "port", "number", "cidr")] * 6
    path = draw(st.sampled_from(paths))
    parent = docs[target]
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent[path[-1]], dict) and draw(st.booleans()):
        parent[path[-1]][draw(st.one_of(TEXT, st.sampled_from(["a b", "k8s.io/", "x" * 64])))] = draw(HOSTILE)
    else:
        parent[path[-1]] = draw(HOSTILE)
    style = draw(st.sampled_from(["block", "flow"]))
    out = [f"---\n# Source: chart/templates/t{i}.yaml\n"
           + (block_yaml(d) if style == "block" else json.dumps(d, ensure_ascii=False) + "\n") for i, d in enumerate(docs)]
    return [as_helm4(d) for d in out] if draw(st.booleans()) else out


@settings(PROPERTY, max_examples=3 * EXAMPLES)  # one field of dozens: a larger share of the budget
@given(docs=one_field_mutated(), flavour=FLAVOURS, values=st.booleans())
def test_one_hostile_field_keeps_the_contract(docs: list[str], flavour: list[str], values: bool,
                                             values_dir: Path) -> None:
    args = ["--release", "rel", *flavour]
    if values:
        path = values_dir / "one-field-values.yaml"
        path.write_text(values_text([{"name": "slack", "hosts": ["hooks.slack.com"],
                                      "ports": [{"number": 443, "protocol": "TLS"}]}], "block"))
        args += ["-f", str(path)]
    assert_contract("".join(docs), args, docs)

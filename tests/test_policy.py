"""The platform's destination policy (``--policy``): charts may only open what it approves.

Charts are rendered by Helm's engine in both shapes Helm hands a post-renderer. The
policies are derived from what the inputs declare (the values file and the annotations,
read here independently of helm-egress), so every approval can be taken away one at a time
and the refusal checked: exit 1, nothing on stdout, the destination, its port and who
asked for it named.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

from helmstream import helm3_stream, helm4_stream, render_chart
from post_renderer import asked
from post_renderer.asked import (
    from_cilium,
    from_networkpolicy,
    from_serviceentry,
    from_services,
    from_sidecar,
    from_workloadentries,
)
from post_renderer.cli import app
from post_renderer.destpolicy import Policy, Request, host_covers, judge, load
from post_renderer.errors import EgressError, Location, Problems
from post_renderer.model import Existing
from post_renderer.read import Need, Parsed, read
from post_renderer.stream import split

ROOT = Path(__file__).resolve().parent.parent
CHARTS = ROOT / "fixtures" / "charts"
VALUES = ROOT / "fixtures" / "values" / "egress-values.yaml"  # the seed's example values
CASES = ROOT / "tests" / "cases"
SHAPES = {"helm3": helm3_stream, "helm4": helm4_stream}
PREFIX = "helm-egress.io"
_YAML = YAML(typ="safe")

# Egress declared on the shop chart's workloads: a compact pair on a pod template, an
# `egress` list on a workload, an opted-out workload, and a hook (whose annotations are
# never applied, so a policy need not approve them).
ANNOTATIONS = {
    "web": {"podAnnotations": {f"{PREFIX}/hosts": "api.stripe.com", f"{PREFIX}/ports": "443/TLS 8443/TLS"}},
    "api": {"annotations": {f"{PREFIX}/egress": (
        "- name: search\n  hosts: [search.example.com]\n  ports: [{number: 9200, protocol: HTTPS}]\n"
        "- name: cache\n  addresses: [10.1.2.3]\n  ports: [{number: 6379, protocol: Redis}]\n")}},
    "db": {"podAnnotations": {f"{PREFIX}/ignore": "true"}},
    "preUpgrade": {"podAnnotations": {f"{PREFIX}/hosts": "hook.example.com", f"{PREFIX}/ports": "443/TLS"}},
}
# Who declared each destination in ANNOTATIONS: the workload and the annotation key.
ANNOTATED = {
    "api.stripe.com": ("Deployment/demo-shop-web", f"{PREFIX}/hosts"),
    "search.example.com": ("Deployment/demo-shop-api", f"{PREFIX}/egress"),
    "10.1.2.3": ("Deployment/demo-shop-api", f"{PREFIX}/egress"),
}


@dataclass(frozen=True)
class Declared:
    destination: str
    address: bool
    ports: tuple[int, ...]
    who: str  # what a refusal must name: "file:line" or the workload
    key: str  # and the entry name or annotation


def declared() -> list[Declared]:
    """Every destination the values file and the annotations declare, read here directly."""
    text = VALUES.read_text(encoding="utf-8")
    out: list[Declared] = []
    for entry in _YAML.load(text)["istio"]["egress"]:
        line = next(n for n, s in enumerate(text.splitlines(), 1) if re.search(rf"name: {entry['name']}\b", s))
        ports = tuple(sorted(p["number"] for p in entry["ports"]))
        out += [Declared(h, False, ports, f"{VALUES.name}:{line}", entry["name"]) for h in entry.get("hosts", [])]
        out += [Declared(a, True, ports, f"{VALUES.name}:{line}", entry["name"]) for a in entry.get("addresses", [])]
    web = ANNOTATIONS["web"]["podAnnotations"]
    out.append(Declared(web[f"{PREFIX}/hosts"], False,
                        tuple(sorted(int(p.split("/")[0]) for p in web[f"{PREFIX}/ports"].split())),
                        *ANNOTATED["api.stripe.com"]))
    for entry in _YAML.load(ANNOTATIONS["api"]["annotations"][f"{PREFIX}/egress"]):
        ports = tuple(p["number"] for p in entry["ports"])
        for dest in entry.get("hosts", []) + entry.get("addresses", []):
            out.append(Declared(dest, "hosts" not in entry, ports, *ANNOTATED[dest]))
    return out


def rule(d: Declared, ports: Sequence[int | str] | None = None) -> dict[str, Any]:
    return {"addresses" if d.address else "hosts": [d.destination], "ports": list(d.ports if ports is None else ports)}


def policy_text(rules: Sequence[dict[str, Any]]) -> str:
    return json.dumps({"allow": list(rules)}, indent=1)  # JSON is YAML


@cache
def shop(shape: str) -> str:
    rendered = render_chart(CHARTS / "shop", ANNOTATIONS, release="demo", namespace="prod")
    return SHAPES[shape](rendered)


def clean_env() -> dict[str, str | None]:
    return {k: None for k in os.environ if k.startswith("HELM_EGRESS_") or k.startswith("HELM_PLUGIN")}


def invoke(args: Sequence[str], stream: str | None, env: Mapping[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stream, env={**clean_env(), **(env or {})},
                              catch_exceptions=False)


@pytest.fixture(params=sorted(SHAPES))
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def policy_file(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "policy.yaml"


def render(stream: str, policy: Path | None = None, *extra: str) -> Result:
    return invoke(["render", "-f", str(VALUES), *(["--policy", str(policy)] if policy else []), *extra], stream)


def assert_refused(result: Result, d: Declared, port: int) -> None:
    assert result.exit_code == 1, result.stdout
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if f" {d.destination} on port {port} " in line]
    assert lines, result.stderr
    assert all(d.who in line and d.key in line and "not approved" in line for line in lines), lines


# ------------------------------------------------------------------- the whole story


def test_a_policy_approving_everything_declared_changes_nothing(shape: str, policy_file: Path) -> None:
    stream = shop(shape)
    policy_file.write_text(policy_text([rule(d) for d in declared()]))
    plain, judged = render(stream), render(stream, policy_file)
    assert plain.exit_code == 0 and judged.exit_code == 0, judged.stderr
    assert judged.stdout_bytes == plain.stdout_bytes
    assert judged.stderr == plain.stderr


def test_taking_away_any_one_approval_refuses_the_render(shape: str, policy_file: Path) -> None:
    stream = shop(shape)
    everything = declared()
    for d in everything:
        policy_file.write_text(policy_text([rule(o) for o in everything if o != d]))
        result = render(stream, policy_file)
        for port in d.ports:
            assert_refused(result, d, port)
        # Only what was taken away is refused.
        assert len(result.stderr.splitlines()) == len(d.ports), result.stderr


def test_taking_away_one_port_refuses_that_port(shape: str, policy_file: Path) -> None:
    stream = shop(shape)
    everything = declared()
    for d in (d for d in everything if len(d.ports) > 1):
        kept, dropped = d.ports[:-1], d.ports[-1]
        policy_file.write_text(policy_text([rule(o, kept if o == d else None) for o in everything]))
        result = render(stream, policy_file)
        assert_refused(result, d, dropped)
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert f"only on port(s) {', '.join(map(str, kept))}" in result.stderr


@pytest.mark.parametrize(("declared_as", "approved", "ok"), [
    # A wildcard request needs a rule covering every host it matches.
    ("*.s3.amazonaws.com", "*.s3.amazonaws.com", True),
    ("*.s3.amazonaws.com", "*.amazonaws.com", True),  # a wildcard covers wildcards below it
    ("*.s3.amazonaws.com", "*.S3.amazonaws.com.", True),  # case and a trailing dot do not matter
    ("*.s3.amazonaws.com", "bucket.s3.amazonaws.com", False),  # one host it matches is not all of them
    ("*.s3.amazonaws.com", "s3.amazonaws.com", False),
    ("*.s3.amazonaws.com", "*.bucket.s3.amazonaws.com", False),  # a narrower wildcard
    # An address is approved when it lies inside a rule's range.
    ("10.40.0.15", "10.40.0.15", True),
    ("10.40.0.15", "10.40.0.15/32", True),
    ("10.40.0.15", "10.40.0.0/24", True),
    ("10.40.0.15", "::ffff:10.40.0.0/120", True),  # the same range written as IPv4-mapped IPv6
    ("10.40.0.15", "10.40.1.0/24", False),
    ("10.40.0.15", "10.41.0.0/16", False),
    ("10.40.0.15", "2001:db8::/32", False),
])
def test_one_destination_approved_by_another_rule(
        shape: str, policy_file: Path, declared_as: str, approved: str, ok: bool) -> None:
    everything = declared()
    (d,) = [d for d in everything if d.destination == declared_as]
    rules = [rule(o) for o in everything if o != d]
    key = "addresses" if d.address else "hosts"
    policy_file.write_text(policy_text([*rules, {key: [approved], "ports": list(d.ports)}]))
    result = render(shop(shape), policy_file)
    if ok:
        assert result.exit_code == 0, result.stderr
    else:
        assert_refused(result, d, d.ports[0])


@pytest.mark.parametrize(("namespaces", "ok"), [(["prod"], True), (["prod", "staging"], True), (["staging"], False)])
def test_a_rule_for_some_namespaces_approves_only_there(
        shape: str, policy_file: Path, namespaces: list[str], ok: bool) -> None:
    everything = declared()
    rules = [{**rule(d), "namespaces": namespaces} for d in everything]
    policy_file.write_text(policy_text(rules))
    result = render(shop(shape), policy_file)
    if ok:
        assert result.exit_code == 0, result.stderr
    else:
        for d in everything:
            assert_refused(result, d, d.ports[0])
        assert "in namespace prod" in result.stderr and "only in namespace(s) staging" in result.stderr


def test_the_environment_names_the_policy(shape: str, policy_file: Path) -> None:
    policy_file.write_text(policy_text([]))
    result = invoke(["render", "-f", str(VALUES)], shop(shape), env={"HELM_EGRESS_POLICY": str(policy_file)})
    assert result.exit_code == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == sum(len(d.ports) for d in declared())


def test_a_bad_policy_is_a_located_error_everywhere(shape: str, policy_file: Path) -> None:
    policy_file.write_text("allow:\n  - hosts: [github.com]\n    port: [443]\n")
    for command in ("render", "diff", "explain"):
        result = invoke([command, "--policy", str(policy_file)], shop(shape))
        assert result.exit_code == (2 if command == "diff" else 1)
        assert result.stdout == ""
        assert result.stderr == f"error: {policy_file}:3: allow[0].port: unknown key 'port' " \
                                "(allowed: addresses, hosts, name, namespaces, ports)\n"
    result = invoke(["check", "--policy", str(policy_file)], shop(shape))
    assert result.exit_code == 1
    assert f"error: {policy_file}:3: allow[0].port: unknown key 'port'" in result.stdout


# ------------------------------------------------------------------ operator commands


def test_check_lists_every_request_the_policy_refuses(shape: str, policy_file: Path) -> None:
    everything = declared()
    kept = everything[::2]
    policy_file.write_text(policy_text([rule(d) for d in kept]))
    result = invoke(["check", "-f", str(VALUES), "--policy", str(policy_file), "--format", "json"], shop(shape))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    refused = {(d.destination, p) for d in everything if d not in kept for p in d.ports}
    found = [re.search(r"(\S+) on port (\d+) ", e["message"]) for e in report["errors"]]
    assert all(found), report["errors"]
    got = {m.groups() for m in found if m}
    assert got == {(dest, str(p)) for dest, p in refused}

    policy_file.write_text(policy_text([rule(d) for d in everything]))
    result = invoke(["check", "-f", str(VALUES), "--policy", str(policy_file)], shop(shape))
    assert result.exit_code == 0, result.stdout
    assert "0 error(s)" in result.stdout


def test_check_without_a_stream_judges_the_values_files(policy_file: Path) -> None:
    from_values = [d for d in declared() if d.who.startswith(VALUES.name)]
    policy_file.write_text(policy_text([rule(d) for d in from_values[1:]]))
    result = invoke(["check", "--no-stream", "-f", str(VALUES), "--policy", str(policy_file)], None)
    assert result.exit_code == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(from_values[0].ports)
    assert all(from_values[0].destination in e and from_values[0].who in e for e in errors)


def test_explain_marks_each_destination(shape: str, policy_file: Path) -> None:
    everything = declared()
    kept = everything[1::2]
    policy_file.write_text(policy_text([rule(d) for d in kept]))
    args = ["-f", str(VALUES), "--policy", str(policy_file)]
    approved = {(d.destination, p) for d in kept for p in d.ports}
    out = invoke(["explain", "-o", "json", *args], shop(shape))
    assert out.exit_code == 0, out.stderr
    report = json.loads(out.stdout)
    rows = [d for w in report["workloads"] for d in w["destinations"]]
    assert rows
    for d in rows:
        assert d["approved"] == ((d["destination"], d["port"]) in approved), d
    refused = {(d.destination, p) for d in everything if d not in kept for p in d.ports}
    assert len(report["violations"]) == len(refused)

    table = invoke(["explain", *args], shop(shape)).stdout.splitlines()
    assert table[0].split()[-1] == "APPROVED"
    body = table[1:table.index("")]
    marks = [line.split()[-1] for line in body if line.split()[-1] in ("yes", "NO")]
    assert marks == ["yes" if r["approved"] else "NO" for r in rows]
    assert len(body) == len(rows) + sum(1 for w in report["workloads"] if not w["destinations"])
    assert any(line.startswith("not approved by the destination policy") for line in table)

    # Without a policy, nothing is judged and nothing says so.
    plain = json.loads(invoke(["explain", "-o", "json", "-f", str(VALUES)], shop(shape)).stdout)
    assert "violations" not in plain
    assert all("approved" not in d for w in plain["workloads"] for d in w["destinations"])


def test_diff_refuses_like_render(shape: str, policy_file: Path) -> None:
    policy_file.write_text(policy_text([]))
    result = invoke(["diff", "-f", str(VALUES), "--policy", str(policy_file)], shop(shape))
    assert result.exit_code == 2 and result.stdout == ""
    assert "not approved by the policy" in result.stderr


def test_a_helm4_plugin_run_writes_the_refusal_to_the_error_file(policy_file: Path, tmp_path: Path) -> None:
    policy_file.write_text(policy_text([]))
    result = invoke(["render", "-f", str(VALUES), "--policy", str(policy_file)], shop("helm4"),
                    env={"HELM_PLUGIN_NAME": "helm-egress", "XDG_STATE_HOME": str(tmp_path)})
    assert result.exit_code == 1
    log = (tmp_path / "helm-egress" / "last-error.log").read_text()
    assert "hooks.slack.com on port 443" in log


def test_golden_policies_approving_everything_render_as_without_a_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [c for c in CASES.iterdir() if (c / "expected.yaml").exists() and "--policy" in (c / "args").read_text()]
    assert len(cases) >= 4
    for case in cases:
        args = (case / "args").read_text().splitlines()
        at = args.index("--policy")
        monkeypatch.chdir(case)
        plain = invoke(args[:at] + args[at + 2:], (case / "input.yaml").read_text())
        assert plain.exit_code == 0
        assert plain.stdout_bytes == (case / "expected.yaml").read_bytes(), case.name


def test_a_render_without_a_policy_never_loads_the_policy_machinery() -> None:
    stream = helm3_stream(render_chart(CHARTS / "minimal", {}, release="demo", namespace="prod"))
    code = (
        # invoke(), not main(): main() ends the process once the command is done.
        "import sys\nfrom post_renderer.cli import invoke\nsys.argv = ['helm-egress', 'render']\n"
        "invoke()\n"
        "sys.stderr.write('loaded: ' + ' '.join(m for m in ('jsonschema', 'post_renderer.destpolicy',"
        " 'post_renderer.asked') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_EGRESS_")}
    result = subprocess.run([sys.executable, "-c", code], input=stream, capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert result.stderr.endswith("loaded: "), result.stderr
    assert result.stdout


# ------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(("rule_host", "host", "covered"), [
    ("github.com", "github.com", True),
    ("github.com", "api.github.com", False),
    ("*.githubusercontent.com", "raw.githubusercontent.com", True),
    ("*.githubusercontent.com", "a.b.githubusercontent.com", True),  # any depth
    ("*.githubusercontent.com", "githubusercontent.com", False),  # not the domain itself
    ("*.githubusercontent.com", "evilgithubusercontent.com", False),
    ("*.githubusercontent.com", "*.githubusercontent.com", True),
    ("*.x.com", "*.a.x.com", True),
    ("*.a.x.com", "*.x.com", False),
    ("raw.githubusercontent.com", "*.githubusercontent.com", False),
    ("*.com", "*", False),
])
def test_host_coverage(rule_host: str, host: str, covered: bool) -> None:
    assert host_covers(rule_host, host) is covered


def judge_one(policy_yaml: str, destination: str, ports: tuple[int, int] | None = (443, 443),
              namespace: str | None = "prod") -> str | None:
    policy = load(policy_yaml, "policy.yaml")
    address = destination[:1].isdigit() or ":" in destination
    return policy.refusal(Request(destination, address, ports, namespace, Location()))


@pytest.mark.parametrize(("rule_text", "dest", "ports", "ok"), [
    ("addresses: [10.50.0.0/16]", "10.50.3.4", (8200, 8200), True),
    ("addresses: [10.50.0.0/16]", "10.50.0.0/16", (8200, 8200), True),
    ("addresses: [10.50.0.0/16]", "10.50.0.0/15", (8200, 8200), False),
    ("addresses: [10.50.0.0/16]", "::ffff:10.50.0.9", (8200, 8200), True),
    ("addresses: ['::ffff:10.50.0.0/112']", "10.50.1.9", (8200, 8200), True),
    ("addresses: ['2001:db8::/32']", "2001:db8:1::/48", (8200, 8200), True),
    ("addresses: ['2001:db8::/32']", "2001:db9::1", (8200, 8200), False),
    ("addresses: ['2001:db8::/32']", "10.0.0.1", (8200, 8200), False),
    ("addresses: [10.50.0.0/16], ports: ['8000-8999']", "10.50.0.1", (8200, 8210), True),
    ("addresses: [10.50.0.0/16], ports: ['8000-8199']", "10.50.0.1", (8190, 8210), False),
    ("addresses: [10.50.0.0/16], ports: [8200]", "10.50.0.1", None, False),  # every port needs a rule without ports
    ("addresses: [10.50.0.0/16]", "10.50.0.1", None, True),
    ("addresses: [10.50.0.0/16], ports: ['1-65535']", "10.50.0.1", None, True),  # ... or all of 1-65535
    ("addresses: [10.50.0.0/16], ports: ['2-65535']", "10.50.0.1", None, False),
])
def test_address_and_port_coverage(rule_text: str, dest: str, ports: tuple[int, int] | None, ok: bool) -> None:
    assert (judge_one(f"allow: [{{{rule_text}}}]", dest, ports) is None) is ok


def test_ports_of_several_rules_for_one_destination_add_up() -> None:
    text = ("allow:\n  - {hosts: [a.example.com], ports: ['8000-8099']}\n"
            "  - {hosts: ['*.example.com'], ports: ['8100-8199']}\n")
    assert judge_one(text, "a.example.com", (8050, 8150)) is None
    assert judge_one(text, "b.example.com", (8050, 8150)) is not None
    halves = ("allow:\n  - {hosts: [a.example.com], ports: ['1-1000']}\n"
              "  - {hosts: [a.example.com], ports: ['1001-65535']}\n")
    assert judge_one(halves, "a.example.com", None) is None  # every port, in two rules


def test_a_request_in_every_or_an_unknown_namespace_needs_a_rule_for_all_namespaces() -> None:
    text = "allow:\n  - {hosts: [a.example.com], namespaces: [prod]}\n"
    assert judge_one(text, "a.example.com", namespace="prod") is None
    why = judge_one(text, "a.example.com", namespace=None)
    assert why is not None and "--namespace" in why
    # Exported everywhere is known, not a missing --namespace.
    (problem,) = judge(load(text, "p.yaml"), [Request("a.example.com", False, (443, 443), "*", Location())])
    assert "a.example.com on port 443 in every namespace is not approved" in problem.message
    assert "--namespace" not in problem.message


@pytest.mark.parametrize("text", [
    "allow: [{hosts: ['*']}]",
    "allow: [{hosts: ['*.']}]",
    "allow: [{hosts: ['*.*.com']}]",
    "allow: [{addresses: [0.0.0.0/0]}]",
    "allow: [{addresses: ['::/0']}]",
    "allow: [{addresses: ['::ffff:0:0/96']}]",
    "allow: [{addresses: ['64:ff9b::/96']}]",
    "allow: [{addresses: [10.1.2.3/16]}]",
    "allow: [{ports: [443]}]",
    "allow: [{hosts: [a.example.com], ports: ['2-1']}]",
    "allow: [{hosts: [a.example.com], ports: [70000]}]",
    "allow: [{hosts: [a.example.com], namespace: [prod]}]",
    "allow: {hosts: [a.example.com]}",
    "allowed: []",
    "[]",
    "",
    "allow: [",
    "allow: []\nallow: []\n",
])
def test_bad_policies_are_refused_with_the_file_named(text: str) -> None:
    with pytest.raises(EgressError) as caught:
        load(text, "platform.yaml")
    assert caught.value.problems
    assert all(p.location.file == "platform.yaml" and p.location.line for p in caught.value.problems)


def test_a_problem_is_located_at_its_own_item_and_never_quotes_a_huge_value() -> None:
    with pytest.raises(EgressError) as caught:
        load("allow:\n  - hosts: [5, '*']\n    addresses: [7, 0.0.0.0/0]\n", "p.yaml")
    assert {(p.location.path, p.message.split(" ")[0]) for p in caught.value.problems} >= {
        ("allow[0].hosts[1]", "'*'"), ("allow[0].addresses[1]", "'0.0.0.0/0'")}
    rules = "".join(f"  - {{hosts: [h{i}.example.com]}}\n" for i in range(10_001))
    long_host = "a" * 3000 + ".com"
    with pytest.raises(EgressError) as caught:
        load(f"allow:\n{rules}  - hosts: [{long_host}]\n    ports: {{{', '.join(f'p{i}: 1' for i in range(999))}}}\n",
             "p.yaml")
    messages = [p.message for p in caught.value.problems]
    assert "10002 items, more than the 10000 allowed" in messages
    assert "3004 characters, more than the 255 allowed" in messages
    assert any("(999 keys) is not of type 'array'" in m for m in messages)
    assert all(len(m) < 200 for m in messages)


def test_an_empty_allow_list_approves_nothing() -> None:
    policy = load("allow: []\n", "p.yaml")
    assert isinstance(policy, Policy) and policy.rules == ()
    assert judge_one("allow: []\n", "a.example.com") == "no rule approves this host"


# ----------------------------------------------------------- the chart's own documents


def existing(kind: str, body: str) -> Existing:
    return Existing(3, kind, _YAML.load(body), Location(file="stdin", line=10, doc_index=3, kind=kind, name="x"))


def test_what_a_chart_serviceentry_opens() -> None:
    se = existing("ServiceEntry", """\
metadata: {name: ledger, namespace: prod}
spec:
  hosts: [ledger, db.example.com]
  addresses: [10.0.0.5]
  ports: [{number: 5432, name: tcp, protocol: TCP, targetPort: 6432}]
  resolution: STATIC
  endpoints:
    - {address: 10.0.0.7, ports: {tcp: 7432}}
    - {address: 10.0.0.8}
    - {address: "unix:///var/run/sock"}
  exportTo: [".", staging]
""")
    got = {(r.destination, r.ports, r.namespace, r.origin.path) for r in from_serviceentry(se, None)}
    expected = set()
    for ns in ("prod", "staging"):
        for dest, path in (("db.example.com", "spec.hosts[1]"), ("10.0.0.5", "spec.addresses[0]")):
            expected |= {(dest, (5432, 5432), ns, path), (dest, (6432, 6432), ns, path)}
        expected |= {("10.0.0.7", (7432, 7432), ns, "spec.endpoints[0].address"),
                     ("10.0.0.8", (6432, 6432), ns, "spec.endpoints[1].address")}
    # The placeholder host "ledger" (the entry's own name, STATIC) is never dialled.
    assert got == expected


@pytest.mark.parametrize(("name", "resolution", "judged"), [
    ("legacy-db", "NONE", False),  # a single label names nothing outside the cluster
    ("legacy-db", "STATIC", False),
    ("db.example.com", "STATIC", False),  # the proxy sends it to the endpoints
    ("db.example.com", "NONE", True),  # an HTTP request for the real name leaves the mesh
    ("db.example.com", "DNS", True),
])
def test_an_address_only_serviceentry_names_itself(name: str, resolution: str, judged: bool) -> None:
    se = existing("ServiceEntry", f"""\
metadata: {{name: {name}, namespace: prod}}
spec:
  hosts: [{name}]
  addresses: [10.0.0.5]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: {resolution}
  endpoints: [{{address: 10.0.0.5}}]
""")
    hosts = {r.destination for r in from_serviceentry(se, None) if not r.address}
    assert hosts == ({name} if judged else set())


def test_a_chart_serviceentry_exported_everywhere_opens_in_every_namespace() -> None:
    se = existing("ServiceEntry", "metadata: {name: a}\nspec: {hosts: [a.example.com], ports: [{number: 443}]}\n")
    assert [(r.destination, r.namespace) for r in from_serviceentry(se, "prod")] == [("a.example.com", "*")]


def test_what_a_chart_networkpolicy_opens() -> None:
    np = existing("NetworkPolicy", """\
metadata: {name: x, namespace: prod}
spec:
  podSelector: {}
  egress:
    - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}, {podSelector: {}}]
      ports: [{port: 443}, {port: 8000, endPort: 8080}, {port: https}]
    - to: [{namespaceSelector: {}}]
    - ports: [{port: 53, protocol: UDP}]
""")
    got = [(r.destination, r.ports, r.origin.path) for r in from_networkpolicy(np, None)]
    assert got == [
        ("10.0.0.0/8", (443, 443), "spec.egress[0].to[0].ipBlock.cidr"),
        ("10.0.0.0/8", (8000, 8080), "spec.egress[0].to[0].ipBlock.cidr"),
        ("10.0.0.0/8", None, "spec.egress[0].to[0].ipBlock.cidr"),  # a named port could be any
        ("0.0.0.0/0", (53, 53), "spec.egress[2]"),  # no `to`: every destination
        ("::/0", (53, 53), "spec.egress[2]"),
    ]
    ingress_only = existing("NetworkPolicy", "spec: {policyTypes: [Ingress], egress: [{}]}\n")
    assert from_networkpolicy(ingress_only, "prod") == []


# ------------------------------------------------------------------------ helmfile


def test_the_helmfile_example_passes_the_policy_to_every_release(shape: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    examples = ROOT / "examples"
    helmfile = _YAML.load((examples / "helmfile.yaml").read_text())
    defaults = helmfile["helmDefaults"].get("postRendererArgs", [])
    for release in helmfile["releases"]:
        args = list(release.get("postRendererArgs", defaults))
        (policy,) = [a.split("=", 1)[1] for a in args if a.startswith("--policy=")]
        chart_values: dict[str, Any] = {}
        for v in release.get("values", []):
            chart_values.update(_YAML.load((examples / v).read_text()))
        stream = SHAPES[shape](render_chart((examples / release["chart"]).resolve(), chart_values,
                                            release=release["name"], namespace=release["namespace"]))
        monkeypatch.chdir(examples)
        assert invoke(args, stream).exit_code == 0, release["name"]
        # The policy does the work: a policy approving nothing refuses the release.
        (tmp_path / "nothing.yaml").write_text("allow: []\n")
        refused = invoke([a if a != f"--policy={policy}" else f"--policy={tmp_path / 'nothing.yaml'}" for a in args],
                         stream)
        assert refused.exit_code == 1 and refused.stdout == "", release["name"]


def test_the_readme_policy_example_is_a_valid_policy() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("# platform-egress-policy.yaml")
    policy = load(readme[start:readme.index("```", start)], "README.md")
    assert policy.rules and policy.per_namespace


@pytest.mark.parametrize(("pattern", "asks_for"), [
    ("*.example.com", "*.example.com"),
    ("**.example.com", "*.example.com"),
    ("api-*.example.com", "*.example.com"),  # no rule names a partial wildcard: the domain it lies in
    ("a.*.example.com", "*.example.com"),
    ("*", "*"),
    ("api.example.com.", "api.example.com"),
])
def test_a_cilium_match_pattern_asks_for_every_name_it_can_match(pattern: str, asks_for: str) -> None:
    (doc,) = chart(CILIUM.format(rule=f"toFQDNs: [{{matchPattern: '{pattern}'}}]"))
    (request,) = from_cilium(doc, None, Problems())
    assert (request.destination, request.ports, request.namespace) == (asks_for, None, "crawl")


def chart(text: str) -> list[Parsed]:
    """The documents of ``text`` a policy judges, as the reading stage gives them."""
    return read(split(text), frozenset(), [asked.NEED]).wanted(asked.wants)


CILIUM = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: c, namespace: crawl}}
spec:
  endpointSelector: {{}}
  egress:
  - {rule}
"""


@pytest.mark.parametrize("rule", ["5", "toFQDNs: 7", "toFQDNs: [1, {matchName: 3}]", "toPorts: [{ports: [{port: x}]}]",
                                  "toCIDRSet: [{cidrGroupRef: g}]", "toEntities: [cluster, host]"])
def test_odd_cilium_rules_never_break_the_judging(rule: str) -> None:
    (doc,) = chart(CILIUM.format(rule=rule))
    requests = from_cilium(doc, None, Problems())
    policy = load("allow: [{hosts: [a.example.com]}]", "p.yaml")
    assert all(isinstance(policy.refusal(r), str) for r in requests)


@pytest.mark.parametrize(("selector", "reaches"), [
    # Cilium reads a reserved: key as the identity it names (EntitySelectorMapping), with no
    # namespace added (getEndpointSelector): {"reserved:world": ""} is toEntities: [world].
    ('{matchLabels: {"reserved:world": ""}}', {"0.0.0.0/0", "::/0"}),
    ('{matchLabels: {"reserved:world-ipv4": ""}}', {"0.0.0.0/0"}),
    ('{matchLabels: {"reserved:world-ipv6": ""}}', {"::/0"}),
    ('{matchLabels: {"$world": ""}}', {"0.0.0.0/0", "::/0"}),
    ('{matchLabels: {"reserved.world": ""}}', {"0.0.0.0/0", "::/0"}),
    ('{matchLabels: {"reserved:all": ""}}', {"0.0.0.0/0", "::/0"}),
    ('{matchExpressions: [{key: "reserved:world", operator: Exists}]}', {"0.0.0.0/0", "::/0"}),
    # Leaving an identity out selects every other one, the world's among them.
    ('{matchExpressions: [{key: "reserved:host", operator: DoesNotExist}]}', {"0.0.0.0/0", "::/0"}),
    ('{matchExpressions: [{key: "reserved:kube-apiserver", operator: NotIn, values: [""]}]}', {"0.0.0.0/0", "::/0"}),
    ('{matchLabels: {"reserved:made-up": ""}}', {"0.0.0.0/0", "::/0"}),
    # In-cluster identities, and pods: peers, as toEntities [host] and plain selectors are.
    ('{matchLabels: {"reserved:host": ""}}', set()),
    ('{matchLabels: {"reserved:kube-apiserver": ""}}', set()),
    ('{matchLabels: {"reserved:remote-node": ""}}', set()),
    ('{matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, world: ""}}', set()),
    ("{}", set()),
    ("7", set()),
    ("{matchLabels: 7, matchExpressions: [7, {key: 5}]}", set()),
])
def test_a_cilium_selector_on_reserved_labels_is_the_entity_it_names(selector: str, reaches: set[str]) -> None:
    (doc,) = chart(CILIUM.format(rule=f"toEndpoints: [{selector}]\n    toPorts: [{{ports: [{{port: '443'}}]}}]"))
    requests = from_cilium(doc, None, Problems())
    assert {r.destination for r in requests} == reaches
    assert all(r.ports == (443, 443) and r.origin.path == "spec.egress[0].toEndpoints[0]" for r in requests)
    assert all(judge_one("allow: [{hosts: [a.example.com]}]", r.destination) ==
               "a policy can never approve every address" for r in requests)


def test_a_cilium_policy_that_is_not_yaml_is_a_located_error() -> None:
    problems = Problems()
    (doc,) = chart("---\n" + CILIUM.format(rule="toFQDNs: ["))
    assert from_cilium(doc, None, problems) == []
    assert problems.items and problems.items[0].location.doc_index == 0


# ------------------------------------------------- Services Istio routes outside the mesh

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: partner, namespace: prod}
spec:
  type: ExternalName
  externalName: API.Partner.example.
  ports: [{port: 443, targetPort: 8443}, {port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: alias, namespace: prod}
spec: {type: ExternalName, externalName: vault.security.svc.cluster.local.}
---
apiVersion: v1
kind: Service
metadata: {name: anyport, namespace: prod}
spec: {type: ExternalName, externalName: 192.0.2.10}
---
apiVersion: v1
kind: Service
metadata:
  name: legacy
  namespace: prod
  annotations: {networking.istio.io/exportTo: ".,batch"}
spec: {ports: [{port: 5432}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: legacy, namespace: prod}
subsets:
  - addresses: [{ip: 203.0.113.7}]
    notReadyAddresses: [{ip: 203.0.113.9}]
    ports: [{port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: other-1, namespace: prod, labels: {kubernetes.io/service-name: other}}
addressType: IPv4
ports: [{port: null}]
endpoints: [{addresses: ["2001:db8::7"]}]
---
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: fn, namespace: prod}
spec: {type: ExternalName, externalName: not.core.example}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec: {ports: [{port: 80}]}
"""


def test_what_a_chart_externalname_service_and_its_own_endpoints_open() -> None:
    problems = Problems()
    requests = from_services(chart(SERVICES), None, problems, "cluster.local")
    got = {(r.destination, r.address, r.ports, r.namespace, r.origin.kind, r.origin.path) for r in requests}
    assert not problems.items
    assert got == {
        # The name Istio resolves, on the port dialled and the port forwarded to; a named
        # targetPort adds nothing. A Service of the cluster is an in-cluster peer.
        ("API.Partner.example.", False, (80, 80), "*", "Service", "spec.externalName"),
        ("API.Partner.example.", False, (443, 443), "*", "Service", "spec.externalName"),
        ("API.Partner.example.", False, (8443, 8443), "*", "Service", "spec.externalName"),
        ("192.0.2.10", True, None, "*", "Service", "spec.externalName"),  # no ports: every port
        # Endpoints are as visible as their Service.
        *{(ip, True, (5432, 5432), ns, "Endpoints", f"subsets[0].{key}[0].ip")
          for ip, key in (("203.0.113.7", "addresses"), ("203.0.113.9", "notReadyAddresses"))
          for ns in ("batch", "prod")},
        ("2001:db8::7", True, None, "*", "EndpointSlice", "endpoints[0].addresses[0]"),
    }
    policy = load("allow: [{hosts: ['*.partner.example'], ports: [443, 8443, 80]}]", "p.yaml")
    assert [r.destination for r in requests if policy.approves(r)] == ["API.Partner.example."] * 3


@pytest.mark.parametrize("body", [
    "apiVersion: v1\nkind: Service\nspec: {type: ExternalName, externalName: [a], ports: 3}\n",
    "apiVersion: v1\nkind: Service\nspec: {type: ExternalName, externalName: a.example, ports: [{port: x}, 7]}\n",
    "apiVersion: v1\nkind: Endpoints\nsubsets: [{addresses: [{ip: 5}, 7], ports: {port: 1}}, 3]\n",
    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {labels: 4}\nendpoints: [{addresses: 5}, 6]\n",
    "apiVersion: v1\nkind: Endpoints\nmetadata: [1]\n",
])
def test_odd_services_never_break_the_judging(body: str) -> None:
    requests = from_services(chart(body), None, Problems(), "cluster.local")
    policy = load("allow: [{hosts: [a.example.com]}]", "p.yaml")
    assert all(isinstance(policy.refusal(r), str) for r in requests)


@pytest.mark.parametrize(("body", "opens_everything"), [
    ("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {namespace: crawl}\n"
     "spec: {outboundTrafficPolicy: {mode: ALLOW_ANY}}\n", True),
    ("apiVersion: networking.istio.io/v1beta1\nkind: Sidecar\nspec: {outboundTrafficPolicy: {mode: allow_any}}\n",
     True),
    ("apiVersion: networking.istio.io/v1\nkind: Sidecar\nspec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}\n",
     False),
    ("apiVersion: example.com/v1\nkind: Sidecar\nspec: {outboundTrafficPolicy: {mode: ALLOW_ANY}}\n", False),
    ("apiVersion: networking.istio.io/v1\nkind: Sidecar\nspec: {outboundTrafficPolicy: ALLOW_ANY}\n", False),
    ("apiVersion: networking.istio.io/v1\nkind: Sidecar\nspec: [ALLOW_ANY]\n", False),
])
def test_a_chart_sidecar_allowing_any_destination_asks_for_every_address(body: str, opens_everything: bool) -> None:
    (doc,) = read(split(body), frozenset(), [Need(lambda _: True)]).parsed.values()
    requests = from_sidecar(doc, "prod", Problems())
    assert sorted(r.destination for r in requests) == (["0.0.0.0/0", "::/0"] if opens_everything else [])
    policy = load("allow: [{addresses: [10.0.0.0/8]}]", "p.yaml")
    assert not any(policy.approves(r) for r in requests)


WORKLOADENTRIES = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a, namespace: vms}
spec: {address: 203.0.113.5, ports: {http: 8080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: b, namespace: vms}
spec: {address: vm-b.example.net}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: c, namespace: vms}
spec: {address: "unix:///var/run/c.sock"}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: d, namespace: vms}
spec: {network: vpc-2}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
spec: [7]
"""


def test_what_a_chart_workloadentry_opens_without_its_serviceentry() -> None:
    # No ServiceEntry in the stream selects them: its port map, else every port, in its namespace.
    requests = from_workloadentries(chart(WORKLOADENTRIES), [], None, Problems())
    assert [(r.destination, r.address, r.ports, r.namespace) for r in requests] == [
        ("203.0.113.5", True, (8080, 8080), "vms"),
        ("vm-b.example.net", False, None, "vms"),
    ]
    selecting = existing("ServiceEntry", """\
metadata: {name: vms, namespace: vms}
spec:
  hosts: [vms.example.net]
  ports: [{number: 80, name: http, targetPort: 8000}, {number: 22, name: ssh}]
  workloadSelector: {labels: {app: vm}}
  exportTo: ["*"]
""")
    requests = from_workloadentries(chart(WORKLOADENTRIES), [selecting], None, Problems())
    assert [(r.destination, r.ports, r.namespace) for r in requests] == [
        ("203.0.113.5", (22, 22), "*"), ("203.0.113.5", (8080, 8080), "*"),  # its map wins for http
        ("vm-b.example.net", (22, 22), "*"), ("vm-b.example.net", (8000, 8000), "*"),
    ]


# ------------------------------------------- what opens egress where nothing can be judged

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: prod
  labels: {{app.kubernetes.io/instance: demo}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata:
      labels: {{app: web{labels}}}
      annotations:
        helm-egress.io/hosts: api.stripe.com
        helm-egress.io/ports: 443/TLS{annotations}
    spec:
{spec}      containers:
      - name: web
        image: web:1
"""
STRIPE = "allow: [{hosts: [api.stripe.com], ports: [443]}]\n"


def web(labels: str = "", annotations: str = "", spec: str = "") -> str:
    return WEB.format(labels=labels, annotations="".join(f"\n        {a}" for a in annotations.splitlines()),
                      spec="".join(f"      {line}\n" for line in spec.splitlines()))


@pytest.mark.parametrize(("labels", "annotations", "spec", "path"), [
    ("", 'sidecar.istio.io/inject: "false"', "", 'spec.template.metadata.annotations["sidecar.istio.io/inject"]'),
    ("", 'sidecar.istio.io/inject: "disabled"', "", 'spec.template.metadata.annotations["sidecar.istio.io/inject"]'),
    (', sidecar.istio.io/inject: "false"', 'sidecar.istio.io/inject: "true"', "",
     'spec.template.metadata.labels["sidecar.istio.io/inject"]'),  # the label wins
    (", istio.io/dataplane-mode: none", "", "", 'spec.template.metadata.labels["istio.io/dataplane-mode"]'),
    ("", "traffic.sidecar.istio.io/excludeOutboundIPRanges: 0.0.0.0/0", "",
     'spec.template.metadata.annotations["traffic.sidecar.istio.io/excludeOutboundIPRanges"]'),
    ("", 'traffic.sidecar.istio.io/excludeOutboundPorts: "443"', "",
     'spec.template.metadata.annotations["traffic.sidecar.istio.io/excludeOutboundPorts"]'),
    ("", 'traffic.sidecar.istio.io/includeOutboundIPRanges: "10.0.0.0/8"', "",
     'spec.template.metadata.annotations["traffic.sidecar.istio.io/includeOutboundIPRanges"]'),
    ("", "sidecar.istio.io/interceptionMode: NONE", "",
     'spec.template.metadata.annotations["sidecar.istio.io/interceptionMode"]'),
    ("", "", "securityContext: {runAsUser: 1337}", "spec.template.spec.securityContext.runAsUser"),
    ("", "", "securityContext: {runAsGroup: 1337}", "spec.template.spec.securityContext.runAsGroup"),
    ("", "", "hostNetwork: true", "spec.template.spec.hostNetwork"),
    ("", "", "initContainers:\n- name: setup\n  securityContext: {capabilities: {add: [NET_ADMIN]}}",
     "spec.template.spec.initContainers[0].securityContext.capabilities.add[0]"),
    ("", "", "initContainers:\n- name: setup\n  securityContext: {runAsUser: 1337}",
     "spec.template.spec.initContainers[0].securityContext.runAsUser"),
    ("", "", "containers:\n- name: side\n  securityContext: {capabilities: {add: [CHOWN, cap_net_raw]}}",
     "spec.template.spec.containers[0].securityContext.capabilities.add[1]"),
    ("", "", "containers:\n- name: side\n  securityContext: {privileged: true}",
     "spec.template.spec.containers[0].securityContext.privileged"),
])
def test_a_workload_that_evades_the_proxy_is_refused_unless_the_policy_names_it(
        labels: str, annotations: str, spec: str, path: str, policy_file: Path) -> None:
    stream = web(labels, annotations, spec).replace("      containers:\n      - name: web", "      - name: web", 1) \
        if spec.startswith("containers:") else web(labels, annotations, spec)
    plain = invoke(["render"], stream)
    assert plain.exit_code == 0, plain.stderr
    policy_file.write_text(STRIPE)
    refused = invoke(["render", "--policy", str(policy_file)], stream)
    assert refused.exit_code == 1 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"error: stdin:") and f"(Deployment/web): {path}: " in line, line
    assert line.endswith(f"not allowed by the policy {policy_file}: its bypass list does not name Deployment/web")
    policy_file.write_text(STRIPE + "bypass: [{workload: Deployment/web, name: a reason}]\n")
    allowed = invoke(["render", "--policy", str(policy_file)], stream)
    assert allowed.exit_code == 0 and allowed.stdout == plain.stdout
    # Without a policy, check warns where the policy would refuse; render says nothing more.
    checked = invoke(["check"], stream)
    assert checked.exit_code == 0
    if path.endswith("hostNetwork"):  # said once, by the plan, of a workload it serves
        assert checked.stdout.count("hostNetwork: true") == 1, checked.stdout
    else:
        assert [w for w in checked.stdout.splitlines() if f"{path}: " in w and "bypass list" in w], checked.stdout
    assert plain.stderr == ""


@pytest.mark.parametrize(("labels", "annotations", "spec"), [
    ("", 'sidecar.istio.io/inject: "true"', ""),
    ("", 'sidecar.istio.io/inject: "Yes"', ""),
    (', sidecar.istio.io/inject: "true"', 'sidecar.istio.io/inject: "false"', ""),  # the label wins
    ("", 'traffic.sidecar.istio.io/excludeOutboundPorts: ""', ""),
    ("", 'traffic.sidecar.istio.io/includeOutboundIPRanges: "*"', ""),
    ("", "traffic.sidecar.istio.io/includeOutboundPorts: '9000'", ""),
    ("", "", "securityContext: {runAsUser: 1000, runAsGroup: '1337'}"),
    ("", "", "hostNetwork: 'true'"),
    ("", "", "securityContext: {runAsUser: true}\ninitContainers: [7, {securityContext: {capabilities: {add: NET_ADMIN,"
             " drop: [NET_RAW]}, privileged: 'true'}}]"),
    ("", "", "initContainers: {a: 1}"),
])
def test_settings_that_keep_the_proxy_in_place_pass(labels: str, annotations: str, spec: str, policy_file: Path) -> None:
    policy_file.write_text(STRIPE)
    result = invoke(["render", "--policy", str(policy_file)], web(labels, annotations, spec))
    assert result.exit_code == 0, result.stderr


def test_the_controllers_own_annotations_are_not_the_pods() -> None:
    stream = web().replace("  labels: {app.kubernetes.io/instance: demo}\n",
                           "  labels: {app.kubernetes.io/instance: demo}\n"
                           "  annotations: {sidecar.istio.io/inject: 'false'}\n", 1)
    assert "inject" not in invoke(["check"], stream).stdout


def test_every_workload_is_judged_hooks_and_the_undeclared_too(policy_file: Path) -> None:
    job = """\
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  namespace: prod
  annotations: {helm.sh/hook: pre-upgrade}
spec:
  template:
    metadata:
      labels: {app: migrate, sidecar.istio.io/inject: "false"}
    spec:
      containers: [{name: migrate, image: m}]
"""
    policy_file.write_text(STRIPE)
    result = invoke(["render", "--policy", str(policy_file)], web() + job)
    assert result.exit_code == 1
    assert result.stderr.count("error: ") == 1 and "(Job/migrate)" in result.stderr
    # What reaches the network layer is said only of a workload that gets a policy.
    assert "NetworkPolicy opens" not in result.stderr
    for allowed in ("[{workload: Job/migrate}]", "[{workload: Job/migrate, namespaces: [prod, staging]}]"):
        policy_file.write_text(STRIPE + f"bypass: {allowed}\n")
        assert invoke(["render", "--policy", str(policy_file)], web() + job).exit_code == 0
    # Without a policy check warns of it, hostNetwork included: the plan warns only of those it serves.
    warned = invoke(["check"], web() + job.replace("containers:", "hostNetwork: true\n      containers:")).stdout
    assert '(Job/migrate): spec.template.metadata.labels["sidecar.istio.io/inject"]: ' in warned
    assert "(Job/migrate): spec.template.spec.hostNetwork: hostNetwork: true: " in warned
    policy_file.write_text(STRIPE + "bypass: [{workload: Job/migrate, namespaces: [staging], name: jobs}]\n")
    result = invoke(["render", "--policy", str(policy_file)], web() + job)
    assert result.stderr.rstrip().endswith(
        "bypass[0] (jobs) allows it only in namespace(s) staging, and it runs in namespace prod"), result.stderr


def test_an_evading_pod_under_the_kubernetes_flavour_reaches_any_host_on_the_hostnames_ports(
        policy_file: Path) -> None:
    stream = web(annotations='sidecar.istio.io/inject: "false"')
    policy_file.write_text(STRIPE)
    result = invoke(["render", "--policy", str(policy_file)], stream)
    assert "its NetworkPolicy opens 0.0.0.0/0, ::/0 except 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7 on port(s) 443 for api.stripe.com, which only the proxy narrows " \
           "to the name: any host on port(s) 443;" in result.stderr
    for other in (["--network-policy", "cilium"], ["--network-policy", "none"]):
        result = invoke(["render", "--policy", str(policy_file), *other], stream)
        assert result.exit_code == 1 and "NetworkPolicy opens" not in result.stderr


CHART_KINDS = [
    ("networking.istio.io/v1alpha3", "EnvoyFilter", True),
    ("networking.istio.io/v1", "WorkloadGroup", True),
    ("extensions.istio.io/v1alpha1", "WasmPlugin", True),
    ("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy", True),
    ("policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy", True),
    ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", True),
    ("projectcalico.org/v3", "NetworkPolicy", True),
    ("crd.projectcalico.org/v1", "GlobalNetworkPolicy", True),
    ("projectcalico.org/v3", "GlobalNetworkSet", True),
    ("crd.antrea.io/v1beta1", "NetworkPolicy", True),
    ("crd.antrea.io/v1beta1", "ClusterNetworkPolicy", True),
    ("cilium.io/v2", "CiliumEnvoyConfig", True),
    ("cilium.io/v2alpha1", "CiliumCIDRGroup", True),
    ("networking.gke.io/v1alpha1", "FQDNNetworkPolicy", True),
    ("example.com/v1", "FancyNetworkPolicy", True),  # some network plugin's policy
    ("networking.istio.io/v1", "VirtualService", False),  # routes only to the registry
    ("networking.istio.io/v1", "DestinationRule", False),
    ("security.istio.io/v1", "AuthorizationPolicy", False),
    ("v1", "ConfigMap", False),
    ("example.com/v1", "EnvoyFilter", False),  # not Istio's
]


@pytest.mark.parametrize(("api", "kind", "refused"), CHART_KINDS)
def test_a_kind_that_opens_egress_no_policy_can_judge_is_refused_unless_named(
        api: str, kind: str, refused: bool, policy_file: Path) -> None:
    stream = web() + f"---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: x, namespace: prod}}\nspec: {{}}\n"
    policy_file.write_text(STRIPE)
    result = invoke(["render", "--policy", str(policy_file)], stream)
    assert result.exit_code == (1 if refused else 0), result.stderr
    group = api.rpartition("/")[0]
    if refused:
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: stdin:19: document 1 ({kind}/x): {kind} ({group}) can open egress no "
                               "destination policy can judge: ")
        assert line.endswith(f"its kinds list does not name {kind}")
        warned = invoke(["check"], stream).stdout
        assert f"warning: stdin:19: document 1 ({kind}/x): {kind} ({group})" in warned
    for named in (kind, f"{kind}.{group}"):
        policy_file.write_text(STRIPE + f"kinds: [{named}]\n" if refused else STRIPE)
        assert invoke(["render", "--policy", str(policy_file)], stream).exit_code == 0


def test_a_kind_named_with_its_group_allows_that_group_only(policy_file: Path) -> None:
    stream = web() + "".join(f"---\napiVersion: {api}\nkind: NetworkPolicy\nmetadata: {{name: {name}}}\n"
                             for api, name in (("projectcalico.org/v3", "calico"), ("crd.antrea.io/v1beta1", "antrea")))
    policy_file.write_text(STRIPE + "kinds: [NetworkPolicy.projectcalico.org]\n")
    result = invoke(["render", "--policy", str(policy_file)], stream)
    assert result.exit_code == 1 and "NetworkPolicy/antrea" in result.stderr and "calico" not in result.stderr
    # Naming a kind never stops the judging of Kubernetes' own NetworkPolicies.
    policy_file.write_text(STRIPE + "kinds: [NetworkPolicy]\n")
    own = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: own, namespace: prod}\n" \
          "spec: {podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 192.0.2.0/24}}]}]}\n"
    result = invoke(["render", "--policy", str(policy_file)], stream + own)
    assert result.exit_code == 1 and result.stderr.count("error: ") == 1 and "192.0.2.0/24" in result.stderr


@pytest.mark.parametrize(("text", "path", "message"), [
    ("kinds: [EnvoyFiltr]", "kinds[0]", "'EnvoyFiltr' is not a kind helm-egress refuses"),
    ("kinds: [VirtualService.networking.istio.io]", "kinds[0]", "is not a kind helm-egress refuses"),
    ("kinds: [CiliumNetworkPolicy]", "kinds[0]", "is judged like the allow rules say"),
    ("kinds: [NetworkPolicy.networking.k8s.io]", "kinds[0]", "is judged like the allow rules say"),
    ("kinds: [envoyfilter]", "kinds[0]", "is not a kind, or a kind and its API group"),
    ('kinds: ["EnvoyFilter\\n"]', "kinds[0]", "ends with a line break"),
    ("kinds: EnvoyFilter", "kinds", "is not of type 'array'"),
    ("bypass: [{workload: Deploymnet/web}]", "bypass[0].workload", "'Deploymnet' is not a kind of workload"),
    ("bypass: [{workload: web}]", "bypass[0].workload", "is not Kind/name of a workload"),
    ('bypass: [{workload: "Deployment/web\\n"}]', "bypass[0].workload", "ends with a line break"),
    ("bypass: [{namespaces: [prod]}]", "bypass[0]", "'workload' is a required property"),
    ("bypass: [{workload: Job/a, namespace: [prod]}]", "bypass[0].namespace", "unknown key 'namespace'"),
    ("bypass: [{workload: Job/a, namespaces: [Prod]}]", "bypass[0].namespaces[0]", "is not a namespace name"),
])
def test_bad_kinds_and_bypass_entries_are_located_errors(text: str, path: str, message: str) -> None:
    with pytest.raises(EgressError) as caught:
        load(f"allow: []\n{text}\n", "platform.yaml")
    (problem,) = caught.value.problems
    assert (problem.location.file, problem.location.line, problem.location.path) == ("platform.yaml", 2, path)
    assert message in problem.message, problem.message

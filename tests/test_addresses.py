"""Addresses and hosts (``post_renderer/addresses.py``): one module parses every address
and CIDR, and a zone index (``fe80::1%eth0``) is refused wherever an address is read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from post_renderer import addresses
from post_renderer.addresses import ZoneIndex, destination_key, excepts_for, host_covers, is_address, network
from post_renderer.cli import app
from post_renderer.destpolicy import load
from post_renderer.errors import EgressError

WORKLOAD = ("---\n# Source: c/templates/w.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\n"
            "spec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n")


PACKAGE = Path(addresses.__file__).parent


def render(stdin: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["render", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


# ------------------------------------------------------------------------ the module


def test_no_module_but_addresses_imports_ipaddress() -> None:
    """A second parser is how a zone index once slipped through one reader: every address
    is read through addresses.py."""
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "ipaddress" or n.startswith("ipaddress.") for n in names):
                importers.append(str(path.relative_to(PACKAGE)))
    assert importers == ["addresses.py"]


@pytest.mark.parametrize("text", ["fe80::1%eth0", "2001:db8::%eth0/64", "10.0.0.1%eth0", "%eth0"])
def test_a_zone_index_is_refused_with_one_message(text: str) -> None:
    with pytest.raises(ZoneIndex, match=r"has a zone index \('%\.\.\.'\); addresses are written without one"):
        network(text)


def test_addresses_have_one_canonical_form_and_a_zone_makes_another() -> None:
    assert destination_key("10.0.0.5") == destination_key("10.0.0.5/32") == "10.0.0.5"
    assert destination_key("2001:0db8::1/128") == "2001:db8::1"
    assert destination_key("10.1.2.3/16") == "10.1.0.0/16"
    assert destination_key("API.example.com") == "API.example.com"  # hosts are left as they are
    assert destination_key("2001:db8::1%eth0") == "2001:db8::1%eth0"  # equal to no address


@pytest.mark.parametrize(("text", "address"), [
    ("10.0.0.1", True), (" 10.0.0.0/8 ", True), ("2001:db8::1%eth0", True), ("10.0.0.1%eth0", True),
    ("a.example.com", False), ("%eth0", False), ("300.1.1.1", False),
])
def test_a_zone_index_never_turns_an_address_into_a_host(text: str, address: bool) -> None:
    assert is_address(text) is address


def test_excepts_are_the_forbidden_ranges_strictly_inside() -> None:
    assert [str(n) for n in excepts_for(network("169.254.0.0/16"))] == ["169.254.169.254/32"]
    assert excepts_for(network("169.254.169.254/32")) == []  # not strictly inside itself
    assert [str(n) for n in excepts_for(network("10.0.0.0/8"), (network("10.1.0.0/17"), network("10.1.128.0/17")))] \
        == ["10.1.0.0/16"]  # collapsed


def test_host_coverage_is_the_one_the_policy_uses() -> None:
    # Sidecars and claims look names up by index (Context.overlapping, Claims.covering);
    # tests/test_lookups.py holds both to this matcher.
    from post_renderer import destpolicy

    assert destpolicy.host_covers is host_covers
    assert host_covers("*.example.com", "a.b.example.com") and not host_covers("*.example.com", "example.com")


# --------------------------------------------------------------- the destination policy


@pytest.mark.parametrize("address", ["2001:db8::1%eth0", "2001:db8::%eth0/32", "fe80::1%1", "10.0.0.1%eth0"])
def test_a_policy_rule_with_a_zone_index_is_refused_when_the_file_is_loaded(address: str) -> None:
    text = f"allow:\n  - hosts: [a.example.com]\n  - addresses: [10.0.0.0/8, '{address}']\n    ports: [443]\n"
    with pytest.raises(EgressError) as caught:
        load(text, "platform.yaml")
    (problem,) = caught.value.problems
    assert (problem.location.file, problem.location.line, problem.location.path) == \
        ("platform.yaml", 3, "allow[1].addresses[1]")
    assert problem.message == f"{address!r} has a zone index ('%...'); addresses are written without one"


def test_a_render_with_such_a_policy_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("allow:\n  - addresses: ['2001:db8::1%eth0']\n")
    code, out, err = render(WORKLOAD, "--policy", str(policy))
    assert (code, out) == (1, ""), err
    assert err == (f"error: {policy}:2: allow[0].addresses[0]: '2001:db8::1%eth0' has a zone index ('%...'); "
                   "addresses are written without one\n")


# ------------------------------------------------------- everywhere else an address is read

ZONED = "2001:db8::1%eth0"
ENTRY = "istio:\n  egress:\n    - {name: db, addresses: ['%s'], ports: [{number: 5432, protocol: TCP}]}\n"


@pytest.mark.parametrize("option", ["-f", "--global-allowlist"])
def test_a_values_or_allowlist_address_with_a_zone_index_is_refused(option: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(ENTRY % ZONED)
    code, out, err = render(WORKLOAD, option, str(values))
    assert (code, out) == (1, ""), err
    assert err == (f"error: {values}:3: istio.egress[0].addresses[0]: '{ZONED}': '{ZONED}' has a zone index ('%...'); "
                   "addresses are written without one\n")


def test_an_annotated_address_with_a_zone_index_is_refused() -> None:
    annotated = WORKLOAD.replace("metadata: {labels: {app: w}}", "metadata: {labels: {app: w}, annotations: "
                                 f"{{helm-egress.io/addresses: '{ZONED}', helm-egress.io/ports: '443/TLS'}}}}")
    code, out, err = render(annotated)
    assert (code, out) == (1, ""), err
    assert f"addresses[0]: '{ZONED}': '{ZONED}' has a zone index ('%...')" in err


@pytest.mark.parametrize("option", ["--hostname-cidr", "--hostname-except"])
def test_an_option_with_a_zone_index_is_refused(option: str) -> None:
    code, out, err = render(WORKLOAD, option, "2001:db8::%eth0/32")
    assert (code, out) == (2, ""), err
    assert "'2001:db8::%eth0/32' has a zone index" in err


SE = ("---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se, namespace: prod}\n"
      "spec:\n  hosts: [db.example.com]\n  addresses: ['%s']\n  ports: [{number: 5432, name: tcp, protocol: TCP}]\n"
      "  resolution: NONE\n")
NP = ("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: prod}\n"
      "spec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n"
      "    - to: [{ipBlock: {cidr: '%s'}}]\n      ports: [{protocol: TCP, port: 5432}]\n")


@pytest.mark.parametrize(("doc", "path", "message"), [
    (SE % ZONED, "spec.addresses[0]", f"'{ZONED}' is not an IP address or CIDR"),
    (NP % "2001:db8::%eth0/32", "spec.egress[0].to[0].ipBlock.cidr", "'2001:db8::%eth0/32' is not a CIDR"),
])
def test_a_chart_document_normalized_with_a_zone_index_is_refused(doc: str, path: str, message: str) -> None:
    code, out, err = render(doc + WORKLOAD)
    assert (code, out) == (1, ""), err
    assert f"{path}: {message}" in err


# A policy approving every address of 2001:db8::/32 on every port: the zoned address would
# lie inside it for ipaddress, but it names no address a rule approves.
POLICY = "allow:\n  - addresses: ['2001:db8::/32']\n  - hosts: [db.example.com]\n"
CILIUM = ("---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c, namespace: prod}\n"
          "spec:\n  endpointSelector: {}\n  egress:\n    - %s\n")
JUDGED = {
    "serviceentry-address": (SE % ZONED, "spec.addresses[0]"),
    "serviceentry-endpoint": ((SE % "2001:db8::1").replace("resolution: NONE", "resolution: STATIC\n"
                                                            f"  endpoints: [{{address: '{ZONED}'}}]"),
                              "spec.endpoints[0].address"),
    "networkpolicy-cidr": (NP % "2001:db8::%eth0/32", "spec.egress[0].to[0].ipBlock.cidr"),
    "cilium-toCIDR": (CILIUM % f"toCIDR: ['{ZONED}']", "spec.egress[0].toCIDR[0]"),
    "cilium-toCIDRSet": (CILIUM % "toCIDRSet: [{cidr: '2001:db8::%eth0/64'}]", "spec.egress[0].toCIDRSet[0].cidr"),
    "workloadentry": ("---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
                      f"metadata: {{name: vm, namespace: prod}}\nspec: {{address: '{ZONED}'}}\n", "spec.address"),
    "endpoints": ("---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: legacy, namespace: prod}\n"
                  f"subsets: [{{addresses: [{{ip: '{ZONED}'}}], ports: [{{port: 5432}}]}}]\n",
                  "subsets[0].addresses[0].ip"),
    "endpointslice": ("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
                      "metadata: {name: legacy-1, namespace: prod, labels: {kubernetes.io/service-name: legacy}}\n"
                      f"addressType: IPv6\nports: [{{port: 5432}}]\nendpoints: [{{addresses: ['{ZONED}']}}]\n",
                      "endpoints[0].addresses[0]"),
    "endpoints-ipv4": ("---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: legacy, namespace: prod}\n"
                       "subsets: [{addresses: [{ip: '10.0.0.1%eth0'}], ports: [{port: 5432}]}]\n",
                       "subsets[0].addresses[0].ip"),
}


@pytest.mark.parametrize(("doc", "path"), JUDGED.values(), ids=JUDGED.keys())
def test_a_judged_chart_address_with_a_zone_index_is_never_approved(doc: str, path: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    code, out, err = render(doc + WORKLOAD, "--policy", str(policy), "--no-normalize")
    assert (code, out) == (1, ""), err
    (line,) = err.splitlines()
    assert f": {path}: " in line
    assert line.endswith("it has a zone index ('%...'); addresses are written without one, so no rule can approve it")
    # Without the zone the same document is approved.
    code, out, err = render(doc.replace("%eth0", "").replace("10.0.0.1", "2001:db8::1") + WORKLOAD,
                            "--policy", str(policy), "--no-normalize")
    assert code == 0, err


ADDRESS_LIKE = st.one_of(
    st.text(alphabet="0123456789abcdefxyzABCDEF:./%- ", max_size=24),
    st.ip_addresses().map(str),
    st.builds(lambda ip, bits, tail: f"{ip}{bits}{tail}", st.ip_addresses().map(str),
              st.sampled_from(["", "/8", "/64", "/128"]), st.sampled_from(["", "%eth0", "%1", "x", "."])),
)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(ADDRESS_LIKE)
def test_destination_key_skips_only_what_could_never_parse(text: str) -> None:
    # The quick refusal of host names must answer exactly as parsing would.
    destination_key.cache_clear()
    try:
        net = network(text)
        want = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
    except ValueError:
        want = text
    assert destination_key(text) == want

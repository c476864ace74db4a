"""Addresses and hosts (``post_renderer/addresses.py``): one module parses every address
and CIDR, and a zone index (``fe80::1%eth0``) is refused wherever an address is read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from typer.testing import CliRunner

from post_renderer import addresses
from post_renderer.addresses import ZoneIndex, destination_key, excepts_for, host_covers, network
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


def test_excepts_are_the_forbidden_ranges_strictly_inside() -> None:
    assert [str(n) for n in excepts_for(network("169.254.0.0/16"))] == ["169.254.169.254/32"]
    assert excepts_for(network("169.254.169.254/32")) == []  # not strictly inside itself
    assert [str(n) for n in excepts_for(network("10.0.0.0/8"), (network("10.1.0.0/17"), network("10.1.128.0/17")))] \
        == ["10.1.0.0/16"]  # collapsed


def test_host_coverage_is_the_one_the_policy_and_sidecars_use() -> None:
    from post_renderer import destpolicy
    from post_renderer.kinds import sidecar

    assert destpolicy.host_covers is sidecar.host_covers is host_covers
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

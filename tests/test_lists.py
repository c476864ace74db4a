"""Lists (issue 20, item 2): Helm decodes any object with ``items`` as a List and creates
every item (``pkg/kube``, the resource builder's ``Flatten``), so every stage reads each item
as a document of its own: a workload inside a List gets its policy, an item a destination
policy forbids is refused, and the List itself is written back byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helmstream import split_documents
from post_renderer.cli import app

HEAD = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {app.kubernetes.io/instance: demo}}\n"
SE = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "evil"},
      "spec": {"hosts": ["evil.example.com"], "ports": [{"number": 443, "name": "t", "protocol": "TLS"}],
               "resolution": "DNS"}}
DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
          "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}}}}}
CILIUM = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "c"},
          "spec": {"endpointSelector": {}, "egress": [{"toFQDNs": [{"matchName": "evil.example.com"}]}]}}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}


def render(tmp_path: Path, stream: str) -> tuple[int, str, str]:
    (tmp_path / "v.yaml").write_text("istio:\n  egress: []\n")
    result = CliRunner().invoke(app, ["render", "-f", str(tmp_path / "v.yaml")], input=stream)
    return result.exit_code, result.stdout, result.stderr


def block(obj: dict[str, object]) -> str:
    return "".join(f"{k}: {json.dumps(v)}\n" for k, v in obj.items())


SPELLINGS = ["block", "json", "kindless-items", "nested", "items-only"]


def listed(item: dict[str, object], spelling: str) -> str:
    """A List holding ``item`` (second, after a ConfigMap), in one of the ways Helm reads as one."""
    lst: dict[str, object] = {"apiVersion": "v1", "kind": "List", "items": [CM, item]}
    if spelling == "kindless-items":
        bare = {k: v for k, v in item.items() if k not in ("kind", "apiVersion")}
        lst = {"apiVersion": item["apiVersion"], "kind": f"{item['kind']}List", "items": [bare]}
    elif spelling == "nested":
        lst = {"apiVersion": "v1", "kind": "List", "items": [CM, {"apiVersion": "v1", "kind": "List", "items": [item]}]}
    elif spelling == "items-only":
        lst = {"apiVersion": "v1", "kind": "Whatever", "items": [CM, item]}
    return "---\n" + (json.dumps(lst) + "\n" if spelling == "json" else block(lst))


def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text("allow:\n  - hosts: [api.example.com]\n    ports: [443]\n")
    return str(path)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_workload_inside_a_list_gets_its_policy_and_the_list_stays_as_it_came(tmp_path: Path,
                                                                               spelling: str) -> None:
    text = HEAD + listed(DEPLOY, spelling)
    code, out, err = render(tmp_path, text)
    assert code == 0, err
    kept = split_documents(out)
    assert all(original in kept for original in split_documents(text))  # the List too, byte for byte
    # Generated documents go before the List that holds the workload, as before a workload.
    assert out.index("name: web-egress") < out.index('"items"' if spelling == "json" else "items:")
    assert "name: web-egress" in out and "app: w" in out.split("name: web-egress")[1]


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("item", [SE, CILIUM], ids=["serviceentry", "cilium"])
def test_an_item_inside_a_list_is_judged_by_the_destination_policy(tmp_path: Path, spelling: str,
                                                                   item: dict[str, object]) -> None:
    (tmp_path / "v.yaml").write_text("istio:\n  egress: []\n")
    result = CliRunner().invoke(app, ["render", "-f", str(tmp_path / "v.yaml"), "--policy", policy_file(tmp_path),
                                      "--no-normalize"], input=HEAD + listed(item, spelling))
    assert (result.exit_code, result.stdout) == (1, ""), result.stderr
    assert "evil.example.com" in result.stderr and "document 1 (" in result.stderr


def test_an_item_that_needs_a_repair_is_refused_not_lost(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(SE))
    broken["spec"]["ports"][0]["protocol"] = "tls"  # normalize would upper-case it
    code, out, err = render(tmp_path, HEAD + listed(broken, "block"))
    assert (code, out) == (1, ""), err
    assert "this item of a List needs repairs" in err and "ServiceEntry/evil in items[1]" in err


def test_a_list_of_other_kinds_passes_through_byte_for_byte(tmp_path: Path) -> None:
    lst = "---\napiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: x}}  # kept\n"
    code, out, err = render(tmp_path, HEAD + lst)
    assert code == 0, err
    assert out.startswith(HEAD + lst)

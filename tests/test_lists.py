"""Lists (issue 20, item 2): Helm decodes any object with ``items`` as a List and creates
every item (``pkg/kube``, the resource builder's ``Flatten``), so an item of a kind some
stage reads must not escape it. Until the stages read into Lists, such a List is refused,
each item located; a List of other kinds passes through byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

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


@pytest.mark.parametrize("spelling", ["block", "json", "kindless-items", "nested", "items-only"])
@pytest.mark.parametrize("item", [SE, DEPLOY, CILIUM], ids=["serviceentry", "deployment", "cilium"])
def test_an_item_a_stage_reads_never_escapes_inside_a_list(tmp_path: Path, spelling: str, item: dict[str, object]) -> None:
    lst: dict[str, object] = {"apiVersion": "v1", "kind": "List", "items": [CM, item]}
    if spelling == "kindless-items":
        bare = {k: v for k, v in item.items() if k not in ("kind", "apiVersion")}
        lst = {"apiVersion": "v1", "kind": f"{item['kind']}List", "items": [bare, bare]}
    elif spelling == "nested":
        lst = {"apiVersion": "v1", "kind": "List", "items": [CM, {"apiVersion": "v1", "kind": "List", "items": [item]}]}
    elif spelling == "items-only":
        lst = {"apiVersion": "v1", "kind": "Whatever", "items": [item]}
    text = json.dumps(lst) + "\n" if spelling == "json" else block(lst)
    code, out, err = render(tmp_path, HEAD + "---\n" + text)
    assert (code, out) == (1, ""), err
    name = item["metadata"]["name"]  # type: ignore[index]
    assert f"document 1 (" in err and f"items[1]: {item['kind']}/{name}" in err or f"{item['kind']}/" in err
    assert "items[" in err


def test_a_list_of_other_kinds_passes_through_byte_for_byte(tmp_path: Path) -> None:
    lst = "---\napiVersion: v1\nkind: List\nitems:\n  - {apiVersion: v1, kind: ConfigMap, metadata: {name: x}}  # kept\n"
    code, out, err = render(tmp_path, HEAD + lst)
    assert code == 0, err
    assert out.startswith(HEAD + lst)

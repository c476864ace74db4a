"""How the stand-in splits a Helm command line (no Helm needed; the flag table itself is
checked against the real binaries in test_helm_wrapper.py)."""

from __future__ import annotations

import pytest

from post_renderer.helmwrap import parse


def _chart(argv: list[str]) -> str:
    cmd = parse(argv)
    return [argv[i] for i in cmd.positionals][-1]


@pytest.mark.parametrize("argv", [
    ["template", "demo", "./chart"],
    ["template", "-f", "a.yaml", "demo", "./chart"],
    ["template", "-fa.yaml", "demo", "./chart"],
    ["template", "-f=a.yaml", "demo", "./chart"],
    ["template", "--values=a.yaml", "demo", "./chart"],
    ["template", "--dry-run", "demo", "./chart"],  # a value only with `=`
    ["install", "--wait", "demo", "./chart", "--timeout", "5m"],
    ["upgrade", "--server-side", "auto", "demo", "./chart"],
    ["upgrade", "--server-side", "demo", "./chart"],
    ["upgrade", "-i", "demo", "./chart", "-n", "prod"],
    ["install", "-gf", "a.yaml", "./chart"],
    ["--kube-context", "ctx", "template", "demo", "./chart"],
    ["template", "demo", "--", "./chart"],
])
def test_the_chart_is_the_last_argument(argv: list[str]) -> None:
    assert _chart(argv) == "./chart"


def test_value_flags_keep_their_tokens_in_order() -> None:
    argv = ["template", "d", "c", "-f", "a.yaml", "--set", "x=1", "-fb.yaml", "--set-json=y=[1]", "--namespace", "n"]
    cmd = parse(argv)
    assert cmd.tokens(frozenset({"values", "set", "set-json"})) == ["-f", "a.yaml", "--set", "x=1", "-fb.yaml",
                                                                    "--set-json=y=[1]"]
    assert cmd.values("values") == ["a.yaml", "b.yaml"]
    assert cmd.values("namespace") == ["n"]

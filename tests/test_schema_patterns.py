"""Every `pattern` in the shipped JSON Schemas is an ECMA-262 regular expression.

Editors' YAML language servers and ajv compile patterns with JavaScript's RegExp (with the
`u` flag), Helm 3 with Go's RE2, helm-egress with Python's `re`. A pattern has to mean
the same in all of them, so no inline flags such as `(?i)` (Python and RE2 only):
case-insensitive enums are spelt with character classes. Node checks the patterns as
JavaScript does.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helmbin import REPO, node_binary
from post_renderer.model import PROTOCOLS, RESOLUTIONS

SCHEMAS = sorted((REPO / "post_renderer" / "schemas").glob("*.json"))

_NODE_CHECK = r"""
const patterns = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = patterns.map(([pattern, samples]) => {
  let re;
  try { re = new RegExp(pattern, "u"); } catch (e) { return {error: String(e)}; }
  return {matches: samples.map((s) => re.test(s))};
});
process.stdout.write(JSON.stringify(out));
"""


def _patterns(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield f"{where}/pattern", value
            elif key == "patternProperties" and isinstance(value, dict):
                yield from ((f"{where}/patternProperties", p) for p in value)
            yield from _patterns(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _patterns(item, f"{where}/{i}")


PATTERNS = [(f"{path.name}#{where}", pattern) for path in SCHEMAS
            for where, pattern in _patterns(json.loads(path.read_text(encoding="utf-8")), "")]


def _case_variants(word: str) -> list[str]:
    return [word, word.lower(), word.upper(), word.title(), word.swapcase(),
            "".join(c.lower() if i % 2 else c.upper() for i, c in enumerate(word))]


# Strings each pattern is run on, in both engines.
SAMPLES = [
    *(v for word in (*PROTOCOLS, *RESOLUTIONS) for v in _case_variants(word)),
    "", "HTTPX", "TLS ", " TLS", "TL", "HTTP_", "web-api", "Web", "a", "-a", "a-", "x" * 64,
    # Unicode letters Python's (?i) folded onto ASCII ones (ſ -> s, İ/ı -> i, K -> k).
    "tl\u017f", "stat\u0130c", "stat\u0131c", "\u212aafka", "caf\u00e9",
]


def test_schemas_have_patterns() -> None:
    assert len(PATTERNS) >= 3, PATTERNS  # name, resolution, protocol at least


@pytest.mark.parametrize(("where", "pattern"), PATTERNS, ids=[w for w, _ in PATTERNS])
def test_no_inline_flags(where: str, pattern: str) -> None:
    assert "(?" not in pattern, f"{where}: inline groups/flags are not ECMA-262: {pattern}"


def test_patterns_compile_and_match_alike_in_node_and_python() -> None:
    node = node_binary()
    request = [[pattern, SAMPLES] for _where, pattern in PATTERNS]
    done = subprocess.run([node, "-e", _NODE_CHECK], input=json.dumps(request), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for (where, pattern), answer in zip(PATTERNS, json.loads(done.stdout), strict=True):
        assert "error" not in answer, f"{where}: {pattern!r} is not a valid ECMA-262 RegExp: {answer.get('error')}"
        # jsonschema uses re.search, JavaScript RegExp.test: unanchored in both.
        python = [re.search(pattern, s) is not None for s in SAMPLES]
        differ = [s for s, js, py in zip(SAMPLES, answer["matches"], python, strict=True) if js != py]
        assert differ == [], f"{where}: node and Python disagree on {differ!r}"


@pytest.mark.parametrize(("field", "words"), [("protocol", PROTOCOLS), ("resolution", RESOLUTIONS)])
def test_enum_patterns_are_the_old_case_insensitive_ones_on_ascii(field: str, words: tuple[str, ...]) -> None:
    """The character-class spelling accepts exactly what `(?i)^(A|B)$` accepted on ASCII
    input, so no values file written for an earlier release changes verdict."""
    [pattern] = [p for where, p in PATTERNS if where.endswith(f"/{field}/pattern")]
    old = re.compile("(?i)^(" + "|".join(re.escape(w) for w in words) + ")$")
    ascii_samples = [s for s in SAMPLES if s.isascii()] + [w + "\n" for w in words]
    assert [bool(re.search(pattern, s)) for s in ascii_samples] == [bool(old.search(s)) for s in ascii_samples]
    # Look-alike letters outside ASCII are refused now, as they are by RE2 and ECMA
    # without (?i); before, "tlſ" passed and became "TLS", "statİc" became "STATİC".
    for sample in ("tl\u017f", "stat\u0130c", "stat\u0131c"):
        assert re.search(pattern, sample) is None

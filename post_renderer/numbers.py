"""Numbers as Kubernetes reads them.

Helm and kubectl read manifests with go-yaml v2 (through ``sigs.k8s.io/yaml``), whose
plain-scalar resolution is not YAML 1.2's: underscores are dropped anywhere, then
``strconv.ParseInt(s, 0, 64)`` decides (``0443`` is octal 291, ``0X1BB`` and ``0B1``
are numbers, ``+0x1b`` is 27), then ``ParseUint``, then ``ParseFloat`` for decimal
spellings only (``99999999999999999999`` is 1e20, a 5,000-digit number or ``1e400`` is a
string, ``0xFFFFFFFFFFFFFFFFFF`` is a string). Cilium reads its port strings with
``strconv.ParseUint(p, 0, 16)``. The table in tests/test_numbers.py holds what ``kubectl
kustomize`` printed for each spelling; README lists where YAML 1.2 differs.

Nothing here converts more than a few dozen digits: a number too large for 64 bits is
never built, so Python's limit on int-string conversion is never reached.
"""

from __future__ import annotations

import math
import re

HINT = frozenset("0123456789+-.")  # go-yaml tries a number only for these first characters
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_BASES = {"b": 2, "o": 8, "x": 16}
_DIGITS = {2: frozenset("01"), 8: frozenset("01234567"), 10: frozenset("0123456789"),
           16: frozenset("0123456789abcdefABCDEF")}
# Far beyond 64 bits in any base (64 binary digits), so the conversions stay cheap.
_MAX_DIGITS = 64
# The longest number text read at all (a 64-bit number with underscores, a long float);
# beyond it a number is refused, located.
MAX_CHARS = 400
INT64 = (-(1 << 63), (1 << 63) - 1)
UINT64 = (1 << 64) - 1


def _parse_uint(text: str) -> int | None:
    """``strconv.ParseUint(text, 0, 64)`` without the underscore rule: no sign."""
    base, digits = 10, text
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in _BASES:
        base, digits = _BASES[text[1].lower()], text[2:]
    elif len(text) >= 2 and text[0] == "0":
        base, digits = 8, text[1:]
    if not digits or not set(digits) <= _DIGITS[base]:
        return None
    digits = digits.lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        return None
    value = int(digits, base)
    return value if value <= UINT64 else None


def _parse_int(text: str) -> int | None:
    """``strconv.ParseInt(text, 0, 64)``, underscores already gone."""
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    value = _parse_uint(body)
    if value is None:
        return None
    value *= sign
    return value if INT64[0] <= value <= INT64[1] else None


def plain(text: str) -> int | float | None:
    """What go-yaml v2 reads the plain scalar ``text`` as, when a number; None when a
    string (or not a number: the caller's resolver decides)."""
    if not text or text[0] not in HINT:
        return None
    digits = text.replace("_", "")
    value = _parse_int(digits)
    if value is not None:
        return value
    if digits[:1] != "+" and digits[:1] != "-":  # ParseUint takes no sign
        unsigned = _parse_uint(digits)
        if unsigned is not None:
            return unsigned
    if _FLOAT.match(digits):
        number = float(digits)
        return None if math.isinf(number) else number  # ParseFloat's range error: a string
    return None


def _underscores_ok(text: str) -> bool:
    """Go's ``underscoreOK``: an underscore only between digits, or after a base prefix."""
    s = text[1:] if text[:1] in ("+", "-") else text
    saw, i, hexa = "^", 0, False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in _BASES:
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    for c in s[i:]:
        if c.isdigit() and c.isascii() or hexa and c.lower() in "abcdef":
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


def go_uint(text: str, bits: int = 16) -> int | None:
    """``strconv.ParseUint(text, 0, bits)``: how Cilium reads a port string; None when it
    does not parse (Cilium then takes it for a port name)."""
    if not text.isascii() or not _underscores_ok(text) or text[:1] in ("+", "-"):
        return None
    value = _parse_uint(text.replace("_", ""))
    return value if value is not None and value < (1 << bits) else None


def spelling_why(text: str) -> str:
    """Why Kubernetes reads ``text`` differently, for messages."""
    digits = text.replace("_", "").lstrip("+-")
    if len(digits) > _MAX_DIGITS:
        return "too many digits for a 64-bit number"
    if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
        return "YAML 1.1 octal"
    if len(digits) > 1 and digits[0] == "0" and digits[1] in "XBO":
        return "an upper-case base prefix"
    if "_" in text:
        return "underscores dropped"
    return "go-yaml's number rules"

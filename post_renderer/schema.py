"""The shipped JSON Schemas (``istio.egress``, the destination policy), applied with jsonschema."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Protocol

from post_renderer.errors import Location, Problem

SCHEMA_FILE = "istio-egress.schema.json"
PathItem = str | int
Locate = Callable[[Sequence[PathItem]], Location]
_CANONICAL_NODES = 100_000


class Verdicts(Protocol):
    """Remembers which subjects (a values file's bytes, canonical entries) passed a schema."""

    def known_valid(self, schema_file: str, subject: bytes) -> bool: ...

    def remember_valid(self, schema_file: str, subject: bytes) -> None: ...


@lru_cache(maxsize=None)
def schema_text(name: str = SCHEMA_FILE) -> str:
    # A plain read first: importlib.resources costs several ms to import, and the file
    # sits next to this module in every ordinary install.
    try:
        with open(os.path.join(os.path.dirname(__file__), "schemas", name), encoding="utf-8") as f:
            return f.read()
    except OSError:  # pragma: no cover - zipped or otherwise unusual installs
        from importlib import resources

        return resources.files("post_renderer").joinpath("schemas", name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _validator(name: str) -> Any:
    # jsonschema costs more to import than a small chart takes to render; inputs without
    # an egress block, or whose verdict is cached, never pay it.
    import json

    import jsonschema

    schema = json.loads(schema_text(name))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def render_path(base: str, path: Sequence[PathItem]) -> str:
    out = base
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def canonical(data: Any) -> bytes | None:
    """``data`` as canonical JSON, to key a verdict by; None when JSON cannot say it
    exactly (keys that are not strings, dates, NaN), and so no verdict is cached."""
    stack = [data]
    budget = _CANONICAL_NODES
    while stack:
        node = stack.pop()
        budget -= 1
        if budget < 0:  # too big to be worth it, or an alias cycle
            return None
        if isinstance(node, dict):
            if not all(isinstance(k, str) for k in node):
                return None
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif not (node is None or isinstance(node, (str, int, float))):
            return None
    import json

    try:
        text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return None
    return text.encode("utf-8", "surrogatepass")


def validate(
    data: Any,
    locate: Locate,
    schema_file: str = SCHEMA_FILE,
    *,
    verdicts: Verdicts | None = None,
    subject: bytes | None = None,
) -> list[Problem]:
    """Every violation of a shipped schema in ``data``, each located by ``locate(path)``.

    With ``verdicts`` and a ``subject`` standing for ``data``, a subject already known
    valid is not validated again, and one found valid is remembered. Invalid data is
    always validated, so its problems are the same with and without the cache.
    """
    return [problem for _, problem in violations(data, locate, schema_file, verdicts=verdicts, subject=subject)]


def violations(
    data: Any,
    locate: Locate,
    schema_file: str = SCHEMA_FILE,
    *,
    verdicts: Verdicts | None = None,
    subject: bytes | None = None,
) -> list[tuple[list[PathItem], Problem]]:
    """Every violation in ``data`` with the path of the instance it is about, so a caller
    can tell which entries and fields are broken without parsing messages."""
    if verdicts is not None and subject is not None and verdicts.known_valid(schema_file, subject):
        return []
    found: list[tuple[list[PathItem], Problem]] = []
    for error in _validator(schema_file).iter_errors(data):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # Point at the unexpected key itself, and name the ones that are allowed.
            allowed = sorted(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in error.schema.get("properties", {}):
                    found.append(([*path, key], Problem(
                        locate([*path, key]), f"unknown key {key!r} (allowed: {', '.join(allowed)})")))
            continue
        template = error.schema.get("x-message") if isinstance(error.schema, dict) else None
        if template and error.validator in ("pattern", "anyOf", "enum"):
            message = template.format(value=_shown(error.instance))
        elif error.validator in ("maxItems", "maxLength") and isinstance(error.instance, (list, str)):
            unit = "items" if isinstance(error.instance, list) else "characters"
            message = f"{len(error.instance)} {unit}, more than the {error.validator_value} allowed"
        else:
            # jsonschema quotes the whole value: a 10 MB list must not become a 10 MB line.
            message = error.message.replace(repr(error.instance), repr(_shown(error.instance)))
        found.append((path, Problem(locate(path), message)))
    found.sort(key=lambda f: (f[1].location.line or 0, f[1].location.path or ""))
    if not found and verdicts is not None and subject is not None:
        verdicts.remember_valid(schema_file, subject)
    return found


class _Shown(str):
    """A value as messages show it: ``repr``, cut short, formatting as itself under ``!r``."""

    def __repr__(self) -> str:
        return str(self)


def _shown(value: Any, limit: int = 80) -> Any:
    text = repr(value)
    if len(text) <= limit:
        return value
    if isinstance(value, (list, dict)):
        return _Shown(f"{text[:limit // 2]}... ({len(value)} {'items' if isinstance(value, list) else 'keys'})")
    return _Shown(f"{text[:limit]}...")

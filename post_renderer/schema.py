"""The ``istio.egress`` JSON Schema: shipped in the package, applied with jsonschema."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

from post_renderer.errors import Location, Problem

SCHEMA_FILE = "istio-egress.schema.json"
PathItem = str | int
Locate = Callable[[Sequence[PathItem]], Location]


def schema_text(name: str = SCHEMA_FILE) -> str:
    return resources.files("post_renderer").joinpath("schemas", name).read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _validator(name: str) -> Any:
    # jsonschema costs ~100 ms to import; inputs without an egress block never pay it.
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


def validate(data: Any, locate: Locate, schema_file: str = SCHEMA_FILE) -> list[Problem]:
    """Every violation of a shipped schema in ``data``, each located by ``locate(path)``."""
    problems: list[Problem] = []
    for error in _validator(schema_file).iter_errors(data):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # Point at the unexpected key itself, and name the ones that are allowed.
            allowed = sorted(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in error.schema.get("properties", {}):
                    problems.append(
                        Problem(locate([*path, key]), f"unknown key {key!r} (allowed: {', '.join(allowed)})")
                    )
            continue
        template = error.schema.get("x-message") if isinstance(error.schema, dict) else None
        if template and error.validator in ("pattern", "anyOf", "enum"):
            message = template.format(value=error.instance)
        else:
            message = error.message
        problems.append(Problem(locate(path), message))
    problems.sort(key=lambda p: (p.location.line or 0, p.location.path or ""))
    return problems

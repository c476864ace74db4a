"""Kubernetes object names that are valid, and stable when they must be shortened."""

from __future__ import annotations

import re

_INVALID = re.compile(r"[^a-z0-9-]+")


def dns_label(*parts: str, limit: int = 63) -> str:
    """``parts`` joined by '-' as a DNS-1123 name of at most ``limit`` characters.

    A name that has to be cut keeps a hash of the whole, so two long names that share a
    prefix never collide and the same input always gives the same name.
    """
    full = "-".join(p for p in parts if p)
    name = _INVALID.sub("-", full.lower()).strip("-") or "x"
    if len(name) <= limit and name == full:
        return name
    import hashlib  # only long names need it; hashlib loads OpenSSL

    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"

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
    return f"{name[: limit - 9].rstrip('-')}-{sha256_hex(full.encode())[:8]}"


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data``. CPython's own implementation when it has one: importing
    ``hashlib`` first loads OpenSSL, ~3 ms of a run that needs a few short digests."""
    # Only a module that is not there falls back: one that is there but cannot be loaded
    # (no memory left to map it) fails here, not in hashlib, which would log a traceback.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]  # CPython 3.11
    except ModuleNotFoundError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]  # 3.12+
        except ModuleNotFoundError:
            from hashlib import sha256  # type: ignore[assignment,unused-ignore]
    return str(sha256(data).hexdigest())


# Kubernetes' own syntax rules (apimachinery validation), for what helm-egress copies
# into documents it writes: a value that breaks them would be rejected by the API server.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")


def dns_label_problem(text: str, what: str = "name") -> str | None:
    """Why ``text`` is not a DNS-1123 label (a namespace, say), or None."""
    if len(text) > 63 or not _DNS1123_LABEL.match(text):
        return f"{text!r} is not a valid {what} (a DNS-1123 label: a-z, 0-9 and '-', at most 63 characters)"
    return None


def dns_subdomain_problem(text: str, what: str = "name", limit: int = 253) -> str | None:
    if len(text) > limit or not _DNS1123_SUBDOMAIN.match(text):
        return (f"{text!r} is not a valid {what} (lower-case DNS-1123 subdomain: a-z, 0-9, '-' and '.', "
                f"at most {limit} characters)")
    return None


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a label key (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or dns_subdomain_problem(prefix) is not None):
        return f"label key {key!r}: the prefix must be a DNS subdomain"
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (f"label key {key!r}: the name must be 1-63 characters, alphanumeric, '-', '_' or '.', "
                "starting and ending alphanumeric")
    return None


def label_value_problem(value: str) -> str | None:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return (f"label value {value!r} must be at most 63 characters, alphanumeric, '-', '_' or '.', "
                "starting and ending alphanumeric")
    return None

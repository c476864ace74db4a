"""Plan: which ServiceEntry serves each declared destination, in which namespace.

The chart's own ServiceEntries and the global allowlist serve first; a ServiceEntry is
written only for what neither does. Every output kind reads the answer (a Sidecar imports
a host from the namespace of the ServiceEntry that serves it; explain names it), so it is
computed once, before any kind is built, and handed on as one record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from post_renderer.addresses import destination_key, is_address
from post_renderer.dialled import endpoints, port_dials
from post_renderer.errors import Problems
from post_renderer.model import EgressEntry, Existing
from post_renderer.names import dns_label, sha256_hex
from post_renderer.normalize import invented_host
from post_renderer.settings import Settings
from post_renderer.synth import Claim, Claims, Wanted

ALLOWLIST_SOURCE = "the global allowlist"
# The ServiceEntry host of an address-only entry when Sidecars must import it: Istio's
# Sidecar rejects short names, and `.internal` is reserved for private use (ICANN, 2024).
ADDRESS_ONLY_DOMAIN = "egress.internal"


class Written(NamedTuple):
    """A ServiceEntry this run writes: the entry it serves, where, under which name."""

    wanted: Wanted
    name: str
    hosts: tuple[str, ...]


class Serving(NamedTuple):
    claims: Claims  # the chart's, the allowlist's, then ours, in that order; read-only here
    written: tuple[Written, ...]
    skipped: tuple[tuple[Wanted, Claim], ...]  # already served: no ServiceEntry of ours
    # Written although a chart ServiceEntry serves it, because Sidecars cannot import that one.
    doubled: tuple[tuple[Wanted, Claim], ...]


def existing_claims(se: Existing, home: str | None, passthrough: bool | None) -> list[Claim]:
    """What a ServiceEntry of the stream serves, in the namespaces it is exported to, and
    where its proxy connects for each (``passthrough``: see ``dialled.dials``)."""
    metadata = se.data.get("metadata") or {}
    spec = se.data.get("spec") or {}
    namespace = metadata.get("namespace") or home
    export_to = spec.get("exportTo")
    scope: frozenset[str | None] | None
    if not export_to or "*" in export_to:
        scope = None  # absent means every namespace, unless the mesh says otherwise
    else:
        scope = frozenset(namespace if e == "." else e for e in export_to if e != "~")
    # A ServiceEntry that resolves an invented host by DNS (left as is with --no-normalize)
    # sends its addresses' traffic nowhere: it serves no address, so an entry asking for
    # one still gets its own ServiceEntry.
    addresses = [] if invented_host(se.data) else spec.get("addresses") or []
    dests = [destination_key(str(d)) for d in [*(spec.get("hosts") or []), *addresses]]
    source = f"ServiceEntry {metadata.get('name')} (document {se.doc_index})"
    hosts = tuple(str(h) for h in spec.get("hosts") or [])
    labels = metadata.get("labels")
    bound = isinstance(labels, dict) and "istio.io/use-waypoint" in labels
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict) and isinstance(p.get("number"), int)]
    listed = endpoints(spec)
    dialled = [port_dials(spec, listed, p, passthrough) for p in ports]  # for a host, for an address
    return [
        Claim(d, int(p["number"]), str(p.get("protocol") or "").upper(), scope, source, str(metadata.get("name")),
              metadata.get("namespace") or home, hosts, bound, dialled[i][address])
        for d, address in ((d, is_address(d)) for d in dests)
        for i, p in enumerate(ports)
    ]


def allowlist_claims(entry: EgressEntry) -> list[Claim]:
    # The allowlist stands for cluster-wide ServiceEntries, exported everywhere.
    return [Claim(destination_key(d), p.number, p.protocol, None, f"{ALLOWLIST_SOURCE} ({entry.source})",
                  entry.name, "*", tuple(entry.hosts))
            for d in entry.hosts or entry.addresses for p in entry.ports]


def chart_claims(existing: Sequence[Existing], allowed: Sequence[EgressEntry], home: str | None,
                 problems: Problems, passthrough: bool | None) -> Claims:
    """What the chart's ServiceEntries and the allowlist serve; a protocol conflict between
    them (IST0177) is a problem."""
    claims = Claims()
    for se in existing:
        claims.register(existing_claims(se, home, passthrough), se.location, problems)
    for entry in allowed:
        claims.register(allowlist_claims(entry), entry.origin, problems)
    return claims


def serve(base: Claims, existing: Sequence[Existing], wanted: Sequence[Wanted], home: str | None,
          settings: Settings, problems: Problems) -> Serving:
    """``base`` (``chart_claims``), then one ServiceEntry per wanted entry that no earlier
    claim covers. A protocol conflict with an earlier claim (IST0177) is a problem."""
    claims = Claims(base)
    taken = {_name_of(se, home) for se in existing}  # two objects of one kind and name: Helm refuses
    written: list[Written] = []
    skipped: list[tuple[Wanted, Claim]] = []
    doubled: list[tuple[Wanted, Claim]] = []
    for w in wanted:
        entry = w.planned.entry
        pairs = [(destination_key(d), port) for d in (entry.hosts or entry.addresses) for port in entry.ports]
        scope = w.namespace or home  # an unnamed namespace is the release's
        name = w.name
        if (scope, name) in taken:
            name = dns_label(w.name, sha256_hex(entry.source.encode())[:6])
        hosts = tuple(entry.hosts) or (f"{name}.{ADDRESS_ONLY_DOMAIN}" if settings.sidecar else name,)
        mine = [Claim(d, port.number, port.protocol, frozenset({scope}), f"ServiceEntry {name} ({entry.source})", name,
                      scope, hosts)
                for d, port in pairs]
        found = [claims.covering(d, port.number, scope) for d, port in pairs]
        # Under --sidecar, a ServiceEntry known only by a short host cannot be imported, so
        # it leaves the destination to a ServiceEntry of ours (with an FQDN host).
        covering = [next((c for c in cs if not (settings.sidecar and c.short_named)), None) for cs in found]
        if pairs and all(c is not None and c.protocol == port.protocol for c, (_, port) in zip(covering, pairs)):
            first = covering[0]
            assert first is not None
            skipped.append((w, first))
            continue
        short = next((c for cs in found for c in cs if settings.sidecar and c.short_named), None)
        if not claims.register(mine, entry.origin, problems):
            continue
        taken.add((scope, name))
        if short is not None:
            doubled.append((w, short))
        written.append(Written(w, name, hosts))
    return Serving(claims, tuple(written), tuple(skipped), tuple(doubled))


def _name_of(se: Existing, home: str | None) -> tuple[str | None, str]:
    metadata = se.data.get("metadata") or {}
    return metadata.get("namespace") or home, str(metadata.get("name"))


def skipped_notes(serving: Serving) -> list[str]:
    return [f"{want.planned.entry.source}: already served by {claim.source}; no second ServiceEntry"
            for want, claim in serving.skipped]


def doubled_notes(serving: Serving) -> list[str]:
    return [f"{w.planned.entry.source}: {claim.source} serves it, but only under the short host(s) "
            f"{', '.join(claim.hosts)}, which a Sidecar cannot import; written once more with an FQDN host "
            "for the Sidecars" for w, claim in serving.doubled]

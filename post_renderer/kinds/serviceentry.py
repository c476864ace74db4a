"""Istio ServiceEntry: one per declared entry and namespace served, exported to that namespace only.

Destinations a ServiceEntry in the stream (or on the global allowlist) already serves get
no second one; declarations that disagree on a protocol are refused (IST0177).
"""

from __future__ import annotations

from typing import Any

from post_renderer.access import ADDRESS_ONLY_DOMAIN, Context
from post_renderer.addresses import destination_key
from post_renderer.synth import SOURCE_ANNOTATION, Claim, Generated, metadata, register
from post_renderer.names import dns_label, sha256_hex
from post_renderer.validate import serviceentry_problems

KIND = "ServiceEntry"
TEMPLATE = "templates/helm-egress-serviceentries.yaml"
check = serviceentry_problems


def build(ctx: Context) -> list[Generated]:
    """One ServiceEntry per wanted entry, minus those an existing one already covers.

    Every ServiceEntry written registers its claims in ``ctx.claims``; entries left out
    because a claim covers them go to ``ctx.skipped``.
    """
    out: list[Generated] = []
    settings = ctx.settings
    taken = set(ctx.reserved)  # (namespace, name) of ServiceEntries already in the stream
    for w in ctx.wanted:
        entry, resolution = w.planned.entry, w.planned.resolution
        pairs = [(destination_key(d), port) for d in (entry.hosts or entry.addresses) for port in entry.ports]
        scope = w.namespace or ctx.home  # an unnamed namespace is the release's
        name = w.name
        if (scope, name) in taken:
            # Two objects of one kind and name in a namespace: Helm would refuse the release.
            name = dns_label(w.name, sha256_hex(entry.source.encode())[:6])
        hosts = list(entry.hosts) or [f"{name}.{ADDRESS_ONLY_DOMAIN}" if settings.sidecar else name]
        mine = [Claim(d, port.number, port.protocol, frozenset({scope}), f"ServiceEntry {name} ({entry.source})", name,
                      scope, tuple(hosts))
                for d, port in pairs]
        found = [[c for c in ctx.claims if c.covers(d, port.number, scope)] for d, port in pairs]
        # Under --sidecar, a ServiceEntry known only by a short host cannot be imported, so
        # it leaves the destination to a ServiceEntry of ours (with an FQDN host).
        covering = [next((c for c in cs if not (settings.sidecar and c.short_named)), None) for cs in found]
        if pairs and all(c is not None and c.protocol == port.protocol for c, (_, port) in zip(covering, pairs)):
            first = covering[0]
            assert first is not None
            ctx.skipped.append((w, first))
            continue
        short = next((c for cs in found for c in cs if settings.sidecar and c.short_named), None)
        if not register(ctx.claims, mine, entry.origin, ctx.problems):
            continue
        taken.add((scope, name))
        if short is not None:
            ctx.doubled.append((w, short))
        spec: dict[str, Any] = {"hosts": hosts}
        if entry.addresses:
            spec["addresses"] = list(entry.addresses)
        spec["ports"] = [{"number": p.number, "name": p.name, "protocol": p.protocol} for p in entry.ports]
        spec["location"] = "MESH_EXTERNAL"
        spec["resolution"] = resolution.value
        spec["exportTo"] = ["."]
        body = {
            "apiVersion": settings.istio_api_version,
            "kind": KIND,
            "metadata": metadata(name, w.namespace, ctx.release, {SOURCE_ANNOTATION: entry.source}),
            "spec": spec,
        }
        out.append(Generated(KIND, name, w.namespace, body, entry.origin))
    return out


def notes(ctx: Context) -> list[str]:
    return [f"{w.planned.entry.source}: {claim.source} serves it, but only under the short host(s) "
            f"{', '.join(claim.hosts)}, which a Sidecar cannot import; written once more with an FQDN host "
            "for the Sidecars" for w, claim in ctx.doubled]

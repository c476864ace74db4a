"""The render job and what the operator commands learn from it. Pure: no I/O, no printing.

``analyse`` runs every stage once and returns the output stream (what ``render``
writes) together with what ``check`` warns about and what ``explain`` reports.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from post_renderer.addresses import destination_key, network
from post_renderer.annotations import read as read_intent
from post_renderer import stream as streams
from post_renderer.emit import emit
from post_renderer.errors import EgressError, Location, Problem, Problems
from post_renderer.model import EgressEntry, Existing, Workload
from post_renderer.names import dns_label, label_value_problem
from post_renderer.normalize import invented_host, normalize
from post_renderer.schema import Verdicts
from post_renderer.settings import Settings
from post_renderer import kinds
from post_renderer.access import Access, Context
from post_renderer.inmesh import InMesh
from post_renderer.inmesh import scan as scan_inmesh
from post_renderer.kinds import serviceentry
from post_renderer.kinds.cilium import fqdn_selectors
from post_renderer.synth import (
    Claim,
    Generated,
    Planned,
    Wanted,
    by_name,
    plan,
    policy_names,
    register,
)
from post_renderer.values import EgressValues, ValuesFile, load_egress
from post_renderer.workloads import release_from_labels, scan

if TYPE_CHECKING:
    from post_renderer.destpolicy import Policy

ALLOWLIST_SOURCE = "the global allowlist"


class Destination(NamedTuple):
    """One host or address and port a workload may reach, and why."""

    destination: str
    port: int
    protocol: str
    declared_in: str
    served_by: str | None  # the ServiceEntry (or allowlist) that lets the mesh route it
    allowed_by: str | None  # the NetworkPolicy or CiliumNetworkPolicy that lets the packets out
    approved: bool | None = None  # by the destination policy; None without one
    layers: tuple[str, ...] = ()  # every generated object that enforces it, and what each opens


class WorkloadReport(NamedTuple):
    workload: str  # Kind/name
    namespace: str | None
    policy: str | None  # the generated NetworkPolicy's (or CiliumNetworkPolicy's) name
    status: str  # why it has (no) policy
    destinations: tuple[Destination, ...]
    sidecar: str | None = None  # the generated Istio Sidecar's name


class Result:
    def __init__(self, chunks: list[streams.Chunk], notes: list[str] | None = None, generated: list[Generated] | None = None,
                 warnings: list[Problem] | None = None, workloads: list[WorkloadReport] | None = None,
                 violations: list[Problem] | None = None) -> None:
        self.chunks = chunks  # the output stream in pieces, as ``emit`` returns it
        self.notes: list[str] = notes if notes is not None else []
        self.generated: list[Generated] = generated if generated is not None else []
        self.warnings: list[Problem] = warnings if warnings is not None else []
        self.workloads: list[WorkloadReport] = workloads if workloads is not None else []
        # What the destination policy does not approve; render refuses, explain shows them.
        self.violations: list[Problem] = violations if violations is not None else []

    @property
    def output(self) -> str:
        return streams.text_of(self.chunks)


def analyse(
    text: str | bytes,
    values: Sequence[ValuesFile],
    settings: Settings,
    *,
    allowlist: ValuesFile | None = None,
    policy: Policy | None = None,
    verdicts: Verdicts | None = None,
    explain: bool = True,
) -> Result:
    """``text``: the stream, or its bytes, read as UTF-8 with undecodable bytes kept
    (surrogateescape). ``verdicts``: schema verdicts already known (see verdicts.py); None validates all.
    ``explain=False`` leaves ``Result.workloads`` empty: only ``explain`` prints it, and
    on large streams it costs as much as writing the new documents."""
    stream = streams.split(text) if isinstance(text, str) else streams.split_bytes(text)
    problems = Problems()
    egress = load_egress(values, settings, problems, verdicts=verdicts)
    allowed = load_egress([allowlist], settings, problems, verdicts=verdicts) if allowlist else None
    inventory = scan(stream, problems)
    if stream.is_empty:
        problems.raise_if_any()
        # Given back as it came: comments, blank lines, a BOM.
        return Result([text if isinstance(text, str) else text.decode("utf-8", errors="surrogateescape")],
                      [*inventory.notes, "the input holds no documents; nothing to add"])
    del text  # the documents hold it now
    notes = list(inventory.notes)
    warnings: list[Problem] = []

    if settings.normalize:
        normalized = normalize(stream, inventory.existing, settings, problems, notes)
        existing, replacements = normalized.serviceentries, normalized.replacements
        warnings.extend(normalized.warnings)
    else:
        existing, replacements = [e for e in inventory.existing if e.kind == "ServiceEntry"], {}
    # Where documents that name no namespace land: Helm's -n, which charts that do name one
    # almost always write as {{ .Release.Namespace }}.
    home = settings.namespace or _most_common_namespace(inventory.workloads)
    claims: list[Claim] = []
    for se in existing:
        register(claims, existing_claims(se, home), se.location, problems)
        warnings.extend(_existing_warnings(se))
    for entry in allowed.entries if allowed else ():
        # The allowlist stands for cluster-wide ServiceEntries, exported everywhere.
        register(claims, [Claim(destination_key(d), p.number, p.protocol, None, f"{ALLOWLIST_SOURCE} ({entry.source})",
                                entry.name, "*", tuple(entry.hosts))
                          for d in entry.hosts or entry.addresses for p in entry.ports], entry.origin, problems)

    intents = {
        w.doc_index: read_intent(w, stream.documents[w.doc_index], settings, problems, verdicts)
        for w in inventory.workloads
    }
    release_wide = plan(egress.entries, problems)
    own = {i: plan(intent.entries, problems) for i, intent in intents.items()}
    problems.raise_if_any()

    served: list[Workload] = []
    status: dict[int, str] = {}
    for w in inventory.workloads:
        intent = intents[w.doc_index]
        if w.hook is not None:
            status[w.doc_index] = f"Helm hook ({w.hook}): no policy"
            if intent.declared:
                notes.append(f"{w.location.render()}: Helm hook ({w.hook}): egress annotations not applied")
        elif intent.ignore:
            status[w.doc_index] = f"{settings.annotation_prefix}/ignore: no policy"
            notes.append(f"{w.location.render()}: {settings.annotation_prefix}/ignore: no egress policy")
            if egress.present:
                warnings.append(Problem(w.location, "values apply to the release, but no policy selects this "
                                                    f"workload ({settings.annotation_prefix}/ignore)"))
        elif egress.present or intent.declared:
            served.append(w)
            status[w.doc_index] = "policy" if settings.network_policy != "none" else "policies turned off"
            if settings.network_policy == "none" and egress.present:
                warnings.append(Problem(w.location, "values apply to the release, but no policy selects this "
                                                    "workload (--network-policy none)"))
        else:
            status[w.doc_index] = "no egress declared: no policy"
            if intent.sidecar_hosts or not intent.sidecar:
                notes.append(f"{w.location.render()}: {settings.annotation_prefix}/sidecar annotations apply only to a "
                             "workload with egress declared; this one gets no policy")

    release = settings.release or release_from_labels(stream)
    if settings.release is None and release is not None and label_value_problem(release) and (release_wide or served):
        # It becomes a label value and part of object names; --release is validated too.
        raise EgressError.one(Location(), f"the stream's app.kubernetes.io/instance label, {release!r}, is not a "
                                          "valid release name; pass --release NAME")
    if release is None and release_wide:
        raise EgressError.one(
            Location(),
            "cannot tell the release name: no document carries an app.kubernetes.io/instance "
            "label; pass --release NAME",
        )

    names = policy_names(served)
    access = [
        Access(
            workload=w,
            namespace=_namespace(w, settings),
            policy_name=names[w.doc_index],
            planned=tuple(_planned_for(w, release_wide, own, egress)),
            sources=tuple(([f"values:{_basename(egress.file)}"] if egress.file else [])
                          + ([f"annotations:{w.kind}/{w.name}"] if intents[w.doc_index].declared else [])),
            sidecar=settings.sidecar and intents[w.doc_index].sidecar,
            sidecar_hosts=intents[w.doc_index].sidecar_hosts,
        )
        for w in served
    ]
    needs_mesh = settings.sidecar or settings.network_policy == "cilium"
    ctx = Context(
        settings=settings, release=release, home=home, problems=problems, access=access,
        wanted=_wanted(release_wide, own, served, egress, release, settings), claims=claims,
        reserved={_name_of(se, home) for se in existing},
        inmesh=scan_inmesh(stream, inventory.generated, problems) if needs_mesh else InMesh(),
        workloads=list(inventory.workloads),
    )
    if needs_mesh:
        for a in access:
            if not a.workload.pod_labels and (a.sidecar or settings.network_policy == "cilium"):
                problems.add(a.workload.location, (
                    "the workload's pods have no labels, so no Sidecar or CiliumNetworkPolicy can select them alone; "
                    f'add labels, or exclude it with {settings.annotation_prefix}/ignore: "true"'))
    generated = serviceentry.build(ctx)
    problems.raise_if_any()
    problems.extend(kinds.errors(ctx))
    problems.raise_if_any()
    for want, claim in ctx.skipped:
        notes.append(f"{want.planned.entry.source}: already served by {claim.source}; no second ServiceEntry")
        if claim.source.startswith(ALLOWLIST_SOURCE):
            warnings.append(Problem(want.planned.entry.origin, f"already covered by {claim.source}; the declaration "
                                                            "only opens the workload's egress policies"))
    warnings.extend(_generated_warnings(generated))
    for kind in kinds.KINDS:
        if kind is not serviceentry:
            generated.extend(kind.build(ctx))
    warnings.extend(kinds.warnings(ctx))
    warnings.extend(_registry_only_warnings(ctx))
    notes.extend(kinds.notes(ctx))
    _check_generated(generated)
    violations: list[Problem] = []
    if policy is not None:
        from post_renderer import asked
        from post_renderer.destpolicy import judge

        # Where the release-wide ServiceEntries and policy rules land (as _wanted places them).
        opened = sorted({_namespace(w, settings) or home for w in served} or {settings.namespace or home},
                        key=lambda n: (n is not None, n or ""))
        requests = asked.from_entries(egress.entries, opened)
        requests += asked.from_entries(allowed.entries if allowed else (), opened)
        for w in served:
            requests += asked.from_entries(intents[w.doc_index].entries, [_namespace(w, settings) or home])
        for se in existing:
            requests += asked.from_serviceentry(se, home)
        for np in (e for e in inventory.existing if e.kind == "NetworkPolicy"):
            requests += asked.from_networkpolicy(np, home)
        chart = [doc for doc in stream.documents if doc.index not in inventory.generated]
        for doc in chart:
            if doc.kind in asked.CILIUM_KINDS:
                requests += asked.from_cilium(doc, home, problems)
            elif doc.kind == "Sidecar" and "allow_any" in doc.raw.lower():
                requests += asked.from_sidecar(doc, home, problems)
        requests += asked.from_services(chart, home, problems, settings.cluster_domain)
        requests += asked.from_workloadentries(chart, existing, home, problems)
        problems.raise_if_any()
        violations = judge(policy, requests)
    anchor = min((w.doc_index for w in inventory.workloads if w.hook is None), default=None)
    chunks = emit(stream, generated, drop=inventory.generated, anchor=anchor, replace=replacements)

    by_index = {a.workload.doc_index: a for a in access}
    reports = [_report(w, status[w.doc_index], by_index.get(w.doc_index), ctx, generated, policy)
               for w in inventory.workloads] if explain else []
    return Result(chunks, notes, generated, warnings, reports, violations)


def _wanted(
    release_wide: list[Planned],
    own: dict[int, list[Planned]],
    served: list[Workload],
    egress: EgressValues,
    release: str | None,
    settings: Settings,
) -> list[Wanted]:
    """The ServiceEntries to write: release-wide ones per namespace served, then each
    workload's own, named after the release or the workload."""
    wanted: list[Wanted] = []
    if release_wide:
        namespaces = sorted(
            {_namespace(w, settings) for w in served if egress.present} or {settings.namespace},
            key=lambda n: (n is not None, n or ""),
        )
        for namespace in namespaces:
            wanted += [Wanted(p, namespace, dns_label(release or "", p.entry.name)) for p in release_wide]
    for w in served:
        for p in own[w.doc_index]:
            name = p.entry.name if p.entry.name == dns_label(w.name) else dns_label(w.name, p.entry.name)
            wanted.append(Wanted(p, _namespace(w, settings), name))
    return wanted


def _planned_for(w: Workload, release_wide: list[Planned], own: dict[int, list[Planned]],
                 egress: EgressValues) -> list[Planned]:
    return (release_wide if egress.present else []) + own[w.doc_index]


def _name_of(se: Existing, home: str | None) -> tuple[str | None, str]:
    metadata = se.data.get("metadata") or {}
    return metadata.get("namespace") or home, str(metadata.get("name"))


def existing_claims(se: Existing, home: str | None) -> list[Claim]:
    """What a ServiceEntry of the stream serves, in the namespaces it is exported to."""
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
    return [
        Claim(d, int(p["number"]), str(p.get("protocol") or "").upper(), scope, source, str(metadata.get("name")),
              metadata.get("namespace") or home, hosts)
        for d in dests
        for p in spec.get("ports") or []
        if isinstance(p, dict) and isinstance(p.get("number"), int)
    ]


def _tcp_without_addresses(spec: dict[str, Any]) -> list[Any]:
    # Istio's IST0134 compares the protocol literally: unset or "TCP".
    if spec.get("addresses"):
        return []
    return [p.get("number") for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("protocol") in (None, "", "TCP")]


def _existing_warnings(se: Existing) -> list[Problem]:
    spec = se.data.get("spec") or {}
    out = []
    export_to = spec.get("exportTo")
    if not export_to or "*" in export_to:
        out.append(Problem(se.location.at("spec.exportTo"), "exported to every namespace (exportTo absent or '*'); "
                                                           "consider exportTo: [\".\"]"))
    for number in _tcp_without_addresses(spec):
        out.append(Problem(se.location.at("spec.ports"), f"TCP port {number} without addresses matches all traffic "
                                                        "on that port (IST0134)"))
    return out


def entry_warnings(entries: Sequence[EgressEntry]) -> list[Problem]:
    """IST0134 for declared entries, before any ServiceEntry exists (check --no-stream)."""
    out = []
    for entry in entries:
        spec = {"addresses": list(entry.addresses), "ports": [{"number": p.number, "protocol": p.protocol}
                                                              for p in entry.ports]}
        for number in _tcp_without_addresses(spec) if entry.hosts else []:
            out.append(Problem(entry.origin, f"TCP port {number} on a hostname without addresses matches all "
                                             "traffic on that port (IST0134); add addresses or use TLS/HTTP"))
    return out


def _generated_warnings(generated: Sequence[Generated]) -> list[Problem]:
    out = []
    for g in generated:
        for number in _tcp_without_addresses(g.body["spec"]):
            out.append(Problem(g.origin, f"TCP port {number} on a hostname without addresses: ServiceEntry {g.name} "
                                         "matches all traffic on that port (IST0134); add addresses or use TLS/HTTP"))
    return out


def _report(w: Workload, status: str, access: Access | None, ctx: Context,
            generated: Sequence[Generated], approval: Policy | None = None) -> WorkloadReport:
    settings = ctx.settings
    written = {(g.kind, g.namespace, g.name) for g in generated}
    policy = sidecar = None
    if access is not None:
        kind = {"kubernetes": "NetworkPolicy", "cilium": "CiliumNetworkPolicy"}.get(settings.network_policy)
        if kind and (kind, access.namespace, access.policy_name) in written:
            policy = access.policy_name
        if ("Sidecar", access.namespace, access.policy_name) in written:
            sidecar = access.policy_name
    rows = []
    for p in access.planned if access else ():
        entry: EgressEntry = p.entry
        for dest in [*entry.hosts, *entry.addresses]:
            for port in entry.ports:
                claim = ctx.serving(access, dest, port.number) if access else None
                network = _network(p, dest, port.number, settings)
                layers = [f"ServiceEntry {claim.name}" if claim and claim.namespace != "*" else
                          "ServiceEntry (global allowlist)" if claim else ""]
                if sidecar:
                    layers.append(f"Sidecar {sidecar}")
                if policy:
                    layers.append(f"{'CiliumNetworkPolicy' if settings.network_policy == 'cilium' else 'NetworkPolicy'} "
                                  f"{policy}: {network}")
                approved = None
                if approval is not None:
                    from post_renderer.destpolicy import Request

                    approved = approval.approves(Request(dest, dest in entry.addresses, (port.number, port.number),
                                                         ctx.scope(access) if access else ctx.home, entry.origin))
                rows.append(Destination(dest, port.number, port.protocol, _declared(entry),
                                        claim.source if claim else None, policy, approved,
                                        tuple(x for x in layers if x)))
    return WorkloadReport(f"{w.kind}/{w.name}", w.namespace or settings.namespace, policy, status, tuple(rows),
                          sidecar)


def _registry_only_warnings(ctx: Context) -> list[Problem]:
    """Once per workload whose hostnames no network layer names: only the mesh holds them."""
    flavour = ctx.settings.network_policy
    if flavour == "cilium":
        return []
    out = []
    if flavour == "kubernetes" and not any(c.prefixlen == 0 for c in ctx.settings.hostname_cidrs):
        return []  # --hostname-cidr narrowed the names to known ranges (a proxy, a NAT)
    for a in ctx.access:
        hosts = list(dict.fromkeys(h for p in a.planned if by_name(p) for h in p.entry.hosts))
        if not hosts:
            continue
        ports = sorted({port.number for p in a.planned if by_name(p) for port in p.entry.ports})
        layer = (f"its NetworkPolicy opens port(s) {', '.join(map(str, ports))} to any host" if flavour == "kubernetes"
                 else "no network policy is written (--network-policy none)")
        out.append(Problem(a.workload.location, (
            f"hostname egress ({', '.join(hosts[:3])}{', ...' if len(hosts) > 3 else ''}) rests on Istio's "
            f"REGISTRY_ONLY alone: {layer}, and a pod that bypasses its proxy reaches any host; "
            "--network-policy cilium enforces the names (toFQDNs)")))
    return out


def _network(p: Planned, dest: str, port: int, settings: Settings) -> str:
    """What the network layer opens for one destination of an entry."""
    is_host = dest in p.entry.hosts
    if settings.network_policy == "cilium":
        if is_host and by_name(p):
            selectors = fqdn_selectors(dest, settings.cilium_wildcard_depth)
            return "toFQDNs " + ", ".join(next(iter(sel.values())) for sel in selectors) + f" on port {port}"
    elif is_host and by_name(p):
        cidrs = ", ".join(str(c) for c in settings.hostname_cidrs)
        return f"any host on port {port} ({cidrs}; hostnames cannot be named in a NetworkPolicy)"
    nets = ", ".join(str(network(a)) for a in p.entry.addresses)
    return f"{nets} on port {port}" if not is_host else f"only its addresses {nets} on port {port}"


def _declared(entry: EgressEntry) -> str:
    """Where an entry was written, short enough for a table: file:line and path, or the
    annotation on the workload."""
    where = entry.origin
    m = re.search(r'annotations\["([^"]+)"\](?:: (.*))?', where.path or "")
    if m:
        rest = m.group(2) or ""
        return f"annotation {m.group(1)}{rest if rest.startswith('[') else ''} ({where.file}:{where.line})"
    return f"{where.file}:{where.line} {where.path}"


def _most_common_namespace(workloads: Sequence[Workload]) -> str | None:
    counts = Counter(w.namespace for w in workloads if w.namespace)
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None


def _namespace(w: Workload, settings: Settings) -> str | None:
    return w.namespace or settings.namespace


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _check_generated(generated: Sequence[Generated]) -> None:
    """Every generated document must pass Istio's and the API server's rules.

    A failure here means helm-egress itself is wrong, but it is reported like bad input,
    located at the declaration that produced the document, so nothing invalid reaches
    the cluster.
    """
    problems = Problems()
    for g in generated:
        for message in kinds.CHECKS[g.kind](g.body["spec"]):
            problems.add(g.origin, f"generated {g.kind} {g.name} would be rejected: {message}")
    problems.raise_if_any()

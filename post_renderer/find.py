"""Stage: find the workloads and what is asked for them.

Values, the global allowlist, the workloads and their annotations, the chart's own
ServiceEntries and NetworkPolicies (repaired when they would be refused) and, when an
output kind needs them, the chart's in-mesh objects. Every problem of this stage is
collected and raised together, so one run reports every bad value, document and
annotation at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from post_renderer.annotations import Intent
from post_renderer.annotations import read as read_intent
from post_renderer.dialled import forbidden_endpoints, passthrough_target_port
from post_renderer.errors import Problem, Problems
from post_renderer import inmesh
from post_renderer.inmesh import InMesh
from post_renderer.incluster import from_entries
from post_renderer.model import EgressEntry, Existing, InCluster, Workload
from post_renderer.normalize import normalize
from post_renderer.read import Documents
from post_renderer.schema import Verdicts
from post_renderer.serving import chart_claims
from post_renderer.settings import Settings
from post_renderer.synth import Claims, Planned, every_address_message, plan, tcp_without_addresses
from post_renderer.values import EgressValues, ValuesFile, load_egress, load_in_cluster
from post_renderer.workloads import Inventory, scan


class Found(NamedTuple):
    documents: Documents  # the stream, and what the reading stage parsed of it
    inventory: Inventory  # every workload, the chart's egress documents as read, our earlier output
    egress: EgressValues  # the values' istio.egress
    allowed: tuple[EgressEntry, ...]  # the global allowlist's entries
    # The chart's ServiceEntries, repaired (the safe copy), and the text of every chart
    # document rewritten by a repair, by document index.
    serviceentries: list[Existing]
    replacements: dict[int, str]
    intents: dict[int, Intent]  # by the workload's document index
    release_wide: list[Planned]  # the values' entries, with their resolutions
    own: dict[int, list[Planned]]  # each workload's annotated entries, by document index
    # Where documents that name no namespace land: Helm's -n, which charts that do name one
    # almost always write as {{ .Release.Namespace }}.
    home: str | None
    claims: Claims  # what the chart's ServiceEntries and the allowlist serve
    inmesh: InMesh
    notes: list[str]
    warnings: list[Problem]
    # The values' in-cluster destinations (istio.inCluster, and istio.egress entries that
    # name cluster Services), for every workload the values apply to.
    in_cluster: tuple[InCluster, ...] = ()


def find(documents: Documents, values: Sequence[ValuesFile], allowlist: ValuesFile | None, settings: Settings, *,
         verdicts: Verdicts | None, needs_mesh: bool) -> Found:
    """``needs_mesh``: an output kind reads the chart's in-mesh objects (then the reading
    stage was given ``inmesh.wants``)."""
    stream = documents.stream
    problems = Problems()
    egress = load_egress(values, settings, problems, verdicts=verdicts)
    external, in_cluster = from_entries(egress.entries, settings, problems)
    egress = egress._replace(entries=tuple(external))
    in_cluster = [*load_in_cluster(values, problems), *in_cluster]
    allowed = load_egress([allowlist], settings, problems, verdicts=verdicts).entries if allowlist else ()
    inventory = scan(documents, problems)
    notes = list(inventory.notes)
    if stream.is_empty:
        problems.raise_if_any()
        return Found(documents, inventory, egress, tuple(allowed), [], {}, {}, [], {}, settings.namespace, Claims(),
                     InMesh(), notes, [])
    warnings: list[Problem] = []
    if settings.normalize:
        normalized = normalize(stream, inventory.existing, settings, problems, notes)
        serviceentries, replacements = normalized.serviceentries, normalized.replacements
        warnings.extend(normalized.warnings)
    else:
        serviceentries, replacements = [e for e in inventory.existing if e.kind == "ServiceEntry"], {}
    home = settings.namespace or _most_common_namespace(inventory.workloads)
    claims = chart_claims(serviceentries, allowed, home, problems, passthrough_target_port(settings))
    warnings.extend(p for se in serviceentries for p in _existing_warnings(se))
    intents = {w.doc_index: _cluster_names_apart(read_intent(w, settings, problems, verdicts), settings, problems)
               for w in inventory.workloads}
    release_wide = plan(egress.entries, problems, settings.istio_minor)
    own = {i: plan(intent.entries, problems, settings.istio_minor) for i, intent in intents.items()}
    problems.raise_if_any()
    mesh = inmesh.scan(documents, problems) if needs_mesh else InMesh()
    problems.raise_if_any()
    return Found(documents, inventory, egress, tuple(allowed), serviceentries, replacements, intents, release_wide, own,
                 home, claims, mesh, notes, warnings, tuple(in_cluster))


def _cluster_names_apart(intent: Intent, settings: Settings, problems: Problems) -> Intent:
    """A workload's entries that name cluster Services are its in-cluster destinations."""
    external, in_cluster = from_entries(intent.entries, settings, problems)
    if not in_cluster:
        return intent
    return intent._replace(entries=tuple(external), in_cluster=(*intent.in_cluster, *in_cluster))


def _most_common_namespace(workloads: Sequence[Workload]) -> str | None:
    counts = Counter(w.namespace for w in workloads if w.namespace)
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counts else None


def _existing_warnings(se: Existing) -> list[Problem]:
    spec = se.data.get("spec") or {}
    out = []
    export_to = spec.get("exportTo")
    if not export_to or "*" in export_to:
        out.append(Problem(se.location.at("spec.exportTo"), "exported to every namespace (exportTo absent or '*'); "
                                                           "consider exportTo: [\".\"]"))
    for k, address in forbidden_endpoints(spec):
        out.append(Problem(se.location.at(f"spec.endpoints[{k}].address"), (
            f"{address} is link-local or a cloud metadata endpoint: no policy helm-egress writes opens it, so the "
            "proxy's connections to this endpoint are blocked")))
    for number, protocol in tcp_without_addresses(spec):
        port, why = every_address_message(number, protocol)
        out.append(Problem(se.location.at("spec.ports"), f"{port} without addresses matches all traffic on that "
                                                        f"port ({why})"))
    return out

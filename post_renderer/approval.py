"""Stage (with ``--policy``): what the output and the chart would open that the platform's
destination policy does not approve.

Everything that can open egress is asked about: the values, the allowlist, each served
workload's annotations, and the chart's own ServiceEntries, NetworkPolicies, Cilium
policies, ALLOW_ANY Sidecars, ExternalName Services and WorkloadEntries.
"""

from __future__ import annotations

from post_renderer import asked
from post_renderer.destpolicy import Policy, judge
from post_renderer.errors import Problem, Problems
from post_renderer.find import Found
from post_renderer.model import Workload
from post_renderer.settings import Settings


def violations(found: Found, served: list[Workload], settings: Settings, policy: Policy) -> list[Problem]:
    problems = Problems()
    home = found.home
    # Where the release-wide ServiceEntries and policy rules land (as the plan places them).
    opened = sorted({w.namespace or settings.namespace or home for w in served} or {settings.namespace or home},
                    key=lambda n: (n is not None, n or ""))
    requests = asked.from_entries(found.egress.entries, opened)
    requests += asked.from_entries(found.allowed, opened)
    for w in served:
        requests += asked.from_entries(found.intents[w.doc_index].entries, [w.namespace or settings.namespace or home])
    for se in found.serviceentries:
        requests += asked.from_serviceentry(se, home)
    for np in (e for e in found.inventory.existing if e.kind == "NetworkPolicy"):
        requests += asked.from_networkpolicy(np, home)
    requests += asked.from_chart(found.documents, found.serviceentries, home, problems, settings.cluster_domain)
    problems.raise_if_any()
    return judge(policy, requests)

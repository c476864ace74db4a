"""Stage (with ``--policy``): what the output and the chart would open that the platform's
destination policy does not approve.

Everything that can open egress is asked about: the values, the allowlist, each served
workload's annotations, and the chart's own ServiceEntries, NetworkPolicies, Cilium
policies, ALLOW_ANY Sidecars, ExternalName Services and WorkloadEntries. What opens egress
where no destination can be read (kinds helm-egress cannot judge, workloads whose pods
evade the proxy: ``bypass``) is refused unless the policy names it.
"""

from __future__ import annotations

from collections.abc import Callable

from post_renderer import asked, bypass
from post_renderer.destpolicy import Policy, judge
from post_renderer.errors import Problem, Problems
from post_renderer.find import Found
from post_renderer.model import Workload
from post_renderer.settings import Settings


def violations(found: Found, served: list[Workload], settings: Settings, policy: Policy,
               reach: Callable[[Workload], str] = lambda w: "") -> list[Problem]:
    """``reach``: what the network layer opens for a workload (``bypass.reach``)."""
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
    unjudged = bypass.unjudged(found.documents, problems)
    problems.raise_if_any()
    out = judge(policy, requests)
    out += [Problem(u.location, f"{u.text()}; not allowed by the policy {policy.file}: its kinds list does not "
                                f"name {u.kind}") for u in unjudged if not policy.allows_kind(u.group, u.kind)]
    # Every workload, hooks and ignored ones too: the proxy it evades is the platform's.
    for w in found.inventory.workloads:
        why = policy.bypass_refusal(w.kind, w.name, w.namespace or settings.namespace or home) \
            if w.evasions else None
        out += [Problem(e.location, f"{bypass.consequence(e, reach(w))}; not allowed by the policy {policy.file}: "
                                    f"{why}")
                for e in w.evasions if why is not None]
    return out

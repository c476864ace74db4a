"""What opens egress around everything a destination policy judges.

Two kinds of bypass, both refused under ``--policy`` unless its file allows them by name
(``kinds``, ``bypass``), and warned of by ``check`` without one:

- chart objects of kinds that can open egress but whose destinations helm-egress cannot
  read: Istio EnvoyFilters and WasmPlugins, the cluster-wide network policies of the
  network-policy API, other network plugins' policies (Calico, Antrea, ...) and the objects
  their rules select by label (address sets);
- workloads whose pods send traffic past the mesh's proxy (``evasions``): the proxy is not
  injected, or its capture leaves some traffic out, or a container can undo the capture.
  What such a pod reaches is what the network layer allows, which for a hostname under
  the kubernetes flavour is every address of the hostname CIDRs on the entry's ports.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from post_renderer.errors import Location, Problem, Problems
from post_renderer.model import Evasion, Workload
from post_renderer.read import Documents, Need
from post_renderer.stream import Document

if TYPE_CHECKING:
    from post_renderer.access import Context

# --- kinds ----------------------------------------------------------------------------

# Judged elsewhere (asked.py): never refused as a kind, whatever a policy file says.
JUDGED = frozenset({("networking.k8s.io", "NetworkPolicy"), ("cilium.io", "CiliumNetworkPolicy"),
                    ("cilium.io", "CiliumClusterwideNetworkPolicy")})
_CALICO = {
    "NetworkPolicy": "a Calico policy: its allow rules open egress",
    "GlobalNetworkPolicy": "a cluster-wide Calico policy: its allow rules open egress in every namespace",
    "NetworkSet": "its nets join every Calico policy rule that selects it by label",
    "GlobalNetworkSet": "its nets join every Calico policy rule that selects it by label",
}
_ANTREA = {
    "NetworkPolicy": "an Antrea policy: its Allow rules open egress (fqdn rules too)",
    "ClusterNetworkPolicy": "a cluster-wide Antrea policy: its Allow rules open egress in every namespace",
    "ClusterGroup": "its addresses join every Antrea policy rule that names the group",
    "Group": "its addresses join every Antrea policy rule that names the group",
}
_ADMIN = "a cluster-wide network policy: its Allow (Accept) rules open egress for pods of any namespace"
# API group -> its kinds that can open egress, and how. What is not listed cannot: an Istio
# VirtualService, DestinationRule or Gateway routes only to hosts of the mesh's registry
# (ServiceEntries and Services, judged), an AuthorizationPolicy only narrows.
UNJUDGED: dict[str, dict[str, str]] = {
    "networking.istio.io": {
        "EnvoyFilter": "it patches the proxies' configuration itself (a dynamic forward proxy or an "
                       "original-destination cluster passes traffic to any host)",
        "WorkloadGroup": "VMs that join through it become WorkloadEntries at addresses no stream holds",
    },
    "extensions.istio.io": {
        "WasmPlugin": "each proxy fetches its module from the url it names and runs it on the traffic",
    },
    "policy.networking.k8s.io": {
        "AdminNetworkPolicy": _ADMIN, "BaselineAdminNetworkPolicy": _ADMIN, "ClusterNetworkPolicy": _ADMIN,
    },
    "projectcalico.org": _CALICO,
    "crd.projectcalico.org": _CALICO,
    "crd.antrea.io": _ANTREA,
    # Antrea's API groups before v1beta1 of crd.antrea.io.
    "security.antrea.tanzu.vmware.com": _ANTREA,
    "core.antrea.tanzu.vmware.com": _ANTREA,
    "cilium.io": {
        "CiliumEnvoyConfig": "it adds listeners and clusters of its own to Cilium's Envoy",
        "CiliumClusterwideEnvoyConfig": "it adds listeners and clusters of its own to Cilium's Envoy",
        "CiliumCIDRGroup": "its CIDRs join every Cilium policy rule that selects the group",
    },
    "networking.gke.io": {"FQDNNetworkPolicy": "a GKE policy: its rules open egress to the names they match"},
    "k8s.ovn.org": {"EgressFirewall": "OVN-Kubernetes' egress firewall: its Allow rules open egress"},
    "networking.k8s.aws": {"PolicyEndpoint": "the AWS network policy agent enforces it as a resolved policy"},
    "vpcresources.k8s.aws": {"SecurityGroupPolicy": "it gives pods EC2 security groups, whose egress rules apply"},
}
# A kind of any other group named like this is some network plugin's policy.
_POLICY_SUFFIX = "NetworkPolicy"
KIND_NAMES = frozenset(k for kinds in UNJUDGED.values() for k in kinds)
CILIUM_POLICIES = ("CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy")


def unjudged_reason(group: str, kind: str) -> str | None:
    """How an object of ``kind`` in API ``group`` can open egress helm-egress cannot judge;
    None when it cannot (or is judged)."""
    if (group, kind) in JUDGED:
        return None
    why = UNJUDGED.get(group, {}).get(kind)
    if why is None and kind.endswith(_POLICY_SUFFIX) and group:
        why = "a network plugin's policy, whose rules helm-egress cannot read"
    return why


def refusable(kind: str, group: str | None) -> bool:
    """Whether a policy file's ``kinds`` entry names something helm-egress would refuse."""
    if group is not None:
        return unjudged_reason(group, kind) is not None
    # A bare NetworkPolicy is Calico's or Antrea's; Kubernetes' own is judged in any case.
    return kind in KIND_NAMES or (kind.endswith(_POLICY_SUFFIX) and kind not in CILIUM_POLICIES)


def wants(doc: Document) -> bool:
    """The documents read for ``unjudged``, picked by their kind's name (the group is in the
    parse). Cilium's own policies are judged by asked.py, and read for it."""
    kind = doc.kind
    return kind is not None and (kind in KIND_NAMES or (kind.endswith(_POLICY_SUFFIX) and kind not in CILIUM_POLICIES))


NEED = Need(wants)


class Unjudged(NamedTuple):
    group: str
    kind: str
    why: str
    location: Location

    def text(self) -> str:
        return f"{self.kind} ({self.group}) can open egress no destination policy can judge: {self.why}"


def unjudged(documents: Documents, problems: Problems | None) -> list[Unjudged]:
    """The chart's objects of kinds that can open egress helm-egress cannot judge. With
    ``problems``, a candidate that cannot be read is reported there (a policy cannot tell
    whether it allows it); without, it is passed over, as it always was."""
    out = []
    for parsed in documents.wanted(wants):
        data = parsed.use(problems) if problems is not None else parsed.data
        if not isinstance(data, dict):
            continue
        api, kind = data.get("apiVersion"), data.get("kind")
        if not isinstance(api, str) or not isinstance(kind, str):
            continue
        group = api.rpartition("/")[0]
        why = unjudged_reason(group, kind)
        if why is not None:
            out.append(Unjudged(group, kind, why, parsed.where))
    return out


# --- workloads that evade the proxy ------------------------------------------------------

INJECT = "sidecar.istio.io/inject"
HOST_NETWORK = "hostNetwork: true"
PROXY_ID = 1337  # the user and group Istio's capture rules let out untouched (istio-iptables)
_TRUTHY = ("y", "yes", "true", "on", "")  # istio pkg/kube/inject injectRequired; "" is the default
_CAPTURE = "traffic.sidecar.istio.io/"
_EXCLUDES = {
    "excludeOutboundIPRanges": "its pods' traffic to {v} leaves without the proxy",
    "excludeOutboundPorts": "its pods' traffic to port(s) {v} leaves without the proxy",
    "excludeInterfaces": "its pods' traffic through interface(s) {v} leaves without the proxy",
}
_CAP_WHY = {
    "NET_ADMIN": "can rewrite the pod's capture rules",
    "ALL": "holds every capability, NET_ADMIN among them, and can rewrite the pod's capture rules",
    # Istio captures TCP (and DNS): other protocols leave as they are.
    "NET_RAW": "can send raw packets (ICMP, any IP protocol), which the proxy never captures",
}


def evasions(where: Location, spec: dict[str, Any], spec_path: str, labels: dict[str, str], labels_path: str,
             annotations: dict[str, tuple[Any, int | None]], annotations_path: str) -> tuple[Evasion, ...]:
    """The settings of one pod template (``spec``, its labels and its own annotations, each
    with its key's line) that take its traffic past the proxy, each where it is written."""
    out: list[Evasion] = []

    def add(setting: str, why: str, path: str, line: int | None = None) -> None:
        out.append(Evasion(setting, why, where.at(path, line)))

    if spec.get("hostNetwork") is True:
        add(HOST_NETWORK, "its pods share the node's network namespace: Istio injects no proxy and no pod "
                                 "policy selects them", f"{spec_path}.hostNetwork")
    # The label wins over the annotation (istio pkg/kube/inject injectRequired).
    if INJECT in labels:
        inject: tuple[Any, str, int | None] | None = (labels[INJECT], f'{labels_path}["{INJECT}"]', None)
    elif INJECT in annotations:
        value, line = annotations[INJECT]
        inject = (value, f'{annotations_path}["{INJECT}"]', line)
    else:
        inject = None
    if inject is not None and str(inject[0]).lower() not in _TRUTHY:
        add(f"{INJECT} {_quoted(inject[0])}", "Istio injects no proxy into its pods", inject[1], inject[2])
    if str(labels.get("istio.io/dataplane-mode", "")).lower() == "none":
        add('istio.io/dataplane-mode "none"', "ambient mode leaves its pods out",
            f'{labels_path}["istio.io/dataplane-mode"]')

    def annotation(key: str) -> tuple[str, str, int | None] | None:
        if key not in annotations:
            return None
        value, line = annotations[key]
        return str(value), f'{annotations_path}["{key}"]', line

    for name, why in _EXCLUDES.items():
        found = annotation(_CAPTURE + name)
        if found and found[0].strip():
            add(f"{_CAPTURE}{name} {_quoted(found[0])}", why.format(v=found[0].strip()), found[1], found[2])
    found = annotation(_CAPTURE + "includeOutboundIPRanges")
    if found and found[0].strip() != "*":
        add(f"{_CAPTURE}includeOutboundIPRanges {_quoted(found[0])}",
            "only its pods' traffic to these ranges goes through the proxy", found[1], found[2])
    found = annotation("sidecar.istio.io/interceptionMode")
    if found and found[0].strip().upper() == "NONE":
        add(f"sidecar.istio.io/interceptionMode {_quoted(found[0])}", "the proxy captures none of its pods' traffic",
            found[1], found[2])
    _identity(_mapping(spec.get("securityContext")), f"{spec_path}.securityContext", "its pods run", add)
    for key in ("initContainers", "containers"):
        for i, container in enumerate(_list(spec.get(key))):
            container = _mapping(container)
            path = f"{spec_path}.{key}[{i}]"
            label = container.get("name")
            who = f"container {label}" if isinstance(label, str) else f"{key}[{i}]"
            context = _mapping(container.get("securityContext"))
            _identity(context, f"{path}.securityContext", f"{who} runs", add)
            if context.get("privileged") is True:
                add("privileged", f"{who} holds every capability, NET_ADMIN among them, and can rewrite the pod's "
                                  "capture rules", f"{path}.securityContext.privileged")
            for j, cap in enumerate(_list(_mapping(context.get("capabilities")).get("add"))):
                # The runtimes take a capability with or without its CAP_ prefix, in any case.
                bare = str(cap).upper().removeprefix("CAP_")
                if bare in _CAP_WHY:
                    add(str(cap), f"{who} {_CAP_WHY[bare]}", f"{path}.securityContext.capabilities.add[{j}]")
    return tuple(out)


def _identity(context: dict[str, Any], path: str, who: str, add: Callable[[str, str, str], None]) -> None:
    for key, what in (("runAsUser", "user"), ("runAsGroup", "group")):
        value = context.get(key)
        if value == PROXY_ID and not isinstance(value, bool):
            add(f"{key} {PROXY_ID}", f"{who} as the proxy's own {what}, whose traffic Istio's capture rules let "
                                     "out untouched", f"{path}.{key}")


def consequence(evasion: Evasion, reach: str) -> str:
    """What an evasion means, for a message: ``reach`` is what the network layer opens for
    the workload's hostnames, said where all of its traffic leaves without the proxy (not
    for hostNetwork, whose pods no NetworkPolicy selects, nor for the capture annotations,
    which let out only the ranges, ports or interfaces they name)."""
    if evasion.setting == HOST_NETWORK or evasion.setting.startswith(_CAPTURE):
        reach = ""
    return (f"{evasion.setting}: {evasion.why}; what leaves that way skips the mesh's checks (REGISTRY_ONLY, "
            f"AuthorizationPolicies) and reaches whatever the network layer allows{reach}")


def warnings(documents: Documents, workloads: Iterable[Workload], warned: Collection[int],
             reach: Callable[[Workload], str]) -> list[Problem]:
    """``check``'s warnings without a policy: each unjudged object and each evasion.
    ``warned``: workloads whose hostNetwork the plan has warned of already."""
    out = [Problem(u.location, f"{u.text()}; a --policy refuses it unless its kinds list names {u.kind}")
           for u in unjudged(documents, None)]
    for w in workloads:
        for e in w.evasions:
            if e.setting == HOST_NETWORK and w.doc_index in warned:
                continue
            out.append(Problem(e.location, f"{consequence(e, reach(w))}; a "
                                           f"--policy refuses it unless its bypass list names {w.kind}/{w.name}"))
    return out


def _quoted(value: Any) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def reach(ctx: Context) -> Callable[[Workload], str]:
    """What the network layer opens for a workload's hostnames, for a message about one of
    its evasions: under the kubernetes flavour, a hostname is every address of the hostname
    CIDRs on its ports, which only the proxy narrows to the name."""
    settings = ctx.settings
    if settings.network_policy != "kubernetes" or settings.mesh == "ambient":
        return lambda w: ""
    from post_renderer.synth import by_name, hostnames_by_name

    access = {a.workload.doc_index: a for a in ctx.access}

    def text(w: Workload) -> str:
        a = access.get(w.doc_index)
        hosts = hostnames_by_name(a.planned) if a is not None else []
        if a is None or not hosts:
            return ""
        ports = sorted({port.number for p in a.planned if by_name(p) for port in p.entry.ports})
        cidrs = ", ".join(str(c) for c in settings.hostname_cidrs)
        excepts = f" except {', '.join(str(c) for c in settings.hostname_excepts)}" if settings.hostname_excepts else ""
        named = ", ".join(hosts[:3]) + (", ..." if len(hosts) > 3 else "")
        listed = ", ".join(map(str, ports))
        return (f": its NetworkPolicy opens {cidrs}{excepts} on port(s) {listed} for {named}, which only the proxy "
                f"narrows to the name: any host on port(s) {listed}")

    return text

"""Source: the workloads of the stream, and the chart's own egress documents, from what the
reading stage parsed (``read.Documents.sources``).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from post_renderer import bypass, shape
from post_renderer.errors import Location, Problems
from post_renderer.model import Existing, Workload, per_release
from post_renderer.names import dns_label_problem, label_key_problem, label_value_problem
from post_renderer.read import GENERATED_BY, POLICY_KINDS, WORKLOAD_KINDS, Documents, Parsed
from post_renderer.stream import Stream

HOOK = "helm.sh/hook"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# Block or flow style; the first occurrence in a document is its metadata label in every
# chart seen, and one vote per document keeps selectors from counting twice.
_INSTANCE_KEY = b"app.kubernetes.io/instance"
_INSTANCE = re.compile(rb"""app\.kubernetes\.io/instance["']?:[ \t]*["']?([A-Za-z0-9][-A-Za-z0-9.]*)""")
_BEFORE_KEY = (b'"', b"'", b" ", b"\t", b"{", b",")


class Inventory:
    def __init__(self) -> None:
        self.workloads: list[Workload] = []
        self.generated: set[int] = set()  # indices of our own earlier output
        self.existing: list[Existing] = []  # the chart's own egress documents
        self.notes: list[str] = []


def scan(documents: Documents, problems: Problems) -> Inventory:
    """The workloads, the chart's own egress documents and our earlier output, in document
    order; a bad document's problems are collected, so one run reports every one."""
    inventory = Inventory()
    inventory.generated = set(documents.generated)
    for parsed in documents.sources:
        data = parsed.use(problems)
        if isinstance(data, dict) and parsed.doc.index not in documents.generated:
            _classify(parsed, data, inventory, problems)
    return inventory


def release_from_labels(stream: Stream) -> str | None:
    """The most common ``app.kubernetes.io/instance`` value, one vote per document."""
    votes: Counter[str] = Counter()
    for doc in stream.documents:
        # Substring search, then an anchored match: scanning whole CRDs with a regex is
        # slow, and most documents carry the label near the top. Searched as bytes (the
        # patterns are ASCII), so the documents kept as bytes, most, are never decoded.
        kept = doc.kept_bytes()
        if kept is None:
            encoded = doc.raw.encode("utf-8", "surrogateescape")
            kept = (encoded, 0, len(encoded))
        base, start, end = kept
        at = base.find(_INSTANCE_KEY, start, end)
        while at >= 0:
            found = _INSTANCE.match(base, at, end)
            # The byte before is never the previous document's: each starts a line.
            if found and base[at - 1 : at] in _BEFORE_KEY:
                votes[found.group(1).decode("ascii")] += 1
                break
            at = base.find(_INSTANCE_KEY, at + 1, end)
    if not votes:
        return None
    # Ties break by name so the choice never depends on document order.
    return min(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]


def _classify(parsed: Parsed, data: dict[str, Any], inventory: Inventory, problems: Problems) -> None:
    doc = parsed.doc
    kind = data.get("kind")
    metadata = _mapping(data.get("metadata"))
    name = metadata.get("name")
    annotations = _mapping(metadata.get("annotations"))
    api_version = data.get("apiVersion")
    group = api_version.rpartition("/")[0] if isinstance(api_version, str) else None
    if not isinstance(kind, str):
        return
    # The reading stage's location: a List's item is told by its List's index and its path.
    where = parsed.where._replace(kind=kind, name=parsed.where.name if parsed.where.doc_index != doc.index else (
        name if isinstance(name, str) else doc.name))
    if POLICY_KINDS.get(kind) == group:
        wrong = shape.check(shape.SERVICEENTRY if kind == "ServiceEntry" else shape.NETWORKPOLICY, data)
        for path, message in wrong:
            problems.add(where.at(path), message)
        if not wrong:
            inventory.existing.append(Existing(doc.index, kind, data, where))
        return
    if kind not in WORKLOAD_KINDS or group not in WORKLOAD_KINDS[kind]:
        return
    wrong = shape.check(shape.workload(kind), data)
    for path, message in wrong:
        problems.add(where.at(path), message)
    if wrong:
        return
    if not isinstance(name, str) or not name:
        problems.add(where.at("metadata.name"), "a workload without a name")
        return
    spec = _mapping(data.get("spec"))
    template, template_path = _pod_template(kind, spec)
    if kind == "Rollout" and template is None:
        inventory.notes.append(
            f"{where.render()}: Rollout without an inline template (workloadRef); "
            "the referenced workload gets the policy"
        )
        return
    hook = str(annotations[HOOK]) if annotations.get(HOOK) else None
    if hook:
        # Hooks run outside the release's lifetime and get no policy, so their pods need
        # not be selectable; their annotations are still checked for typos.
        selector: dict[str, Any] | None = {}
    else:
        selector = _pod_selector(kind, data, spec, template, where, template_path, problems)
    if selector is None:
        return
    template_meta = _mapping((template or {}).get("metadata"))
    pod_annotations = _mapping(template_meta.get("annotations"))
    lines = parsed.key_lines
    merged: dict[str, tuple[Any, str, int | None]] = {
        str(k): (v, "metadata.annotations", lines.get(("metadata", "annotations", k))) for k, v in annotations.items()}
    template_keys = tuple(template_path.split(".")) + ("metadata", "annotations")
    for key, value in pod_annotations.items():
        merged.setdefault(str(key), (value, f"{template_path}.metadata.annotations", lines.get((*template_keys, key))))
        if merged[str(key)][0] != value:
            problems.add(
                where.at(f"{template_path}.metadata.annotations"),
                f"annotation {key} differs between the workload ({merged[str(key)][0]!r}) and its pod "
                f"template ({value!r}); declare it once",
            )
    namespace = metadata.get("namespace")
    if namespace:
        # Copied into every document generated for the workload.
        why = dns_label_problem(namespace, "namespace")
        if why:
            problems.add(where.at("metadata.namespace"), why)
            return
    raw_labels = template_meta.get("labels") if template is not None else metadata.get("labels")
    pod_labels = {str(k): v for k, v in _mapping(raw_labels).items() if isinstance(v, str)}
    labels_path = f"{template_path}.metadata.labels" if template is not None else "metadata.labels"
    if hook or selector.get("matchLabels") != dict(sorted(pod_labels.items())):
        # The pods' own labels are copied too (Sidecar and Cilium selectors, the narrowing
        # of other workloads' policies), not only the selector checked above.
        wrong = _label_problems(pod_labels, labels_path)
        for path, why in wrong:
            problems.add(where.at(path), why)
        if wrong:
            return
    pod_spec = _mapping(data.get("spec")) if template is None else _mapping(template.get("spec"))
    # The pod's own annotations: Istio reads those, never the controller's.
    pod_meta = "metadata" if template is None else f"{template_path}.metadata"
    own_keys = (*pod_meta.split("."), "annotations")
    own = annotations if template is None else pod_annotations
    evasions = bypass.evasions(where, pod_spec, "spec" if template is None else f"{template_path}.spec", pod_labels,
                               labels_path, {str(k): (v, lines.get((*own_keys, k))) for k, v in own.items()},
                               f"{pod_meta}.annotations")
    # serviceAccount is the deprecated spelling the API server still copies across.
    account = pod_spec.get("serviceAccountName") or pod_spec.get("serviceAccount") or "default"
    if not isinstance(account, str):
        spec_path = "spec" if template is None else f"{template_path}.spec"
        problems.add(where.at(f"{spec_path}.serviceAccountName"), f"{account!r} is not a service account name")
        return
    automount = pod_spec.get("automountServiceAccountToken")
    wrong = shape.check(shape.Bool, automount, f"{'spec' if template is None else template_path + '.spec'}"
                                               ".automountServiceAccountToken")
    for path, why in wrong:
        problems.add(where.at(path), why)
    if wrong:
        return
    inventory.workloads.append(
        Workload(
            doc_index=doc.index,
            kind=kind,
            name=name,
            namespace=str(namespace) if namespace else None,
            pod_selector=selector,
            annotations=merged,
            location=where,
            hook=hook,
            pod_labels=pod_labels,
            service_account=account,
            stable_labels=_stable_labels(kind, spec, pod_labels),
            host_network=pod_spec.get("hostNetwork") is True,
            host_ports=_named_ports(pod_spec) if pod_spec.get("hostNetwork") is True else (),
            evasions=evasions,
            token=True if _projects_token(pod_spec.get("volumes")) else automount,
        )
    )


def _named_ports(pod_spec: dict[str, Any]) -> tuple[tuple[str, str, int], ...]:
    """The named container ports a Service's targetPort may name, (name, protocol, number):
    of its containers and its sidecar (restartPolicy: Always) init containers, as the
    endpoints controller looks them up (podutil.FindPort). What the API server would refuse
    is skipped: it never runs."""
    out: dict[tuple[str, str, int], None] = {}
    for key in ("containers", "initContainers"):
        containers = pod_spec.get(key)
        for container in containers if isinstance(containers, list) else ():
            if not isinstance(container, dict) or (key == "initContainers"
                                                   and container.get("restartPolicy") != "Always"):
                continue
            ports = container.get("ports")
            for port in ports if isinstance(ports, list) else ():
                if not isinstance(port, dict):
                    continue
                name, number, protocol = port.get("name"), port.get("containerPort"), port.get("protocol") or "TCP"
                if isinstance(name, str) and name and isinstance(number, int) and not isinstance(number, bool) \
                        and 1 <= number <= 65535 and protocol in ("TCP", "UDP", "SCTP"):
                    out[(name, str(protocol), number)] = None
    return tuple(out)


def _projects_token(volumes: Any) -> bool:
    """Whether a volume projects a service account token for the API server: one without an
    audience, which then carries the API server's own (charts that turn the automatic mount
    off and mount the token themselves). One for another audience (istio-ca, vault, a
    cloud's STS) is not a way to call the API server."""
    for volume in volumes if isinstance(volumes, list) else ():
        projected = volume.get("projected") if isinstance(volume, dict) else None
        sources = projected.get("sources") if isinstance(projected, dict) else None
        for source in sources if isinstance(sources, list) else ():
            token = source.get("serviceAccountToken") if isinstance(source, dict) else None
            if isinstance(token, dict) and not token.get("audience"):
                return True
    return False


def _stable_labels(kind: str, spec: dict[str, Any], pod_labels: dict[str, str]) -> dict[str, str]:
    """The labels every pod of the workload carries, whatever release or revision made it
    (``Workload.stable_labels``); empty when it has none."""
    selector = spec.get("selector") if kind not in ("Pod", "Job", "CronJob") else None
    # A Job's selector is the controller's controller-uid, unique per Job; a
    # ReplicationController's selector is a plain label map.
    match = selector if kind == "ReplicationController" else (
        selector.get("matchLabels") if isinstance(selector, dict) else None)
    if isinstance(match, dict):
        # The pods' own values: the shape check and the API server keep them equal.
        chosen = {k: pod_labels[k] for k in map(str, match) if k in pod_labels and not per_release(k)}
        if chosen:
            return dict(sorted(chosen.items()))
    # No selector to trust: the labels the chart gives every release's pods alike.
    return dict(sorted((k, v) for k, v in pod_labels.items() if not per_release(k)))


def _mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a mapping, else an empty one (absent or null; the shape check
    has refused every other type before this is used)."""
    return value if isinstance(value, dict) else {}


def _pod_template(kind: str, spec: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    if kind == "Pod":
        return None, ""
    if kind == "CronJob":
        job = spec.get("jobTemplate", {}).get("spec", {}) if isinstance(spec.get("jobTemplate"), dict) else {}
        template = job.get("template") if isinstance(job, dict) else None
        return (template if isinstance(template, dict) else None), "spec.jobTemplate.spec.template"
    template = spec.get("template")
    return (template if isinstance(template, dict) else None), "spec.template"


def _pod_selector(
    kind: str,
    data: dict[str, Any],
    spec: dict[str, Any],
    template: dict[str, Any] | None,
    where: Location,
    template_path: str,
    problems: Problems,
) -> dict[str, Any] | None:
    """The LabelSelector that picks exactly this workload's pods."""
    if kind == "Pod":
        labels, path = (data.get("metadata") or {}).get("labels"), "metadata.labels"
        return _lasting(_from_labels(labels, where, path, problems))
    selector = spec.get("selector")
    if kind in ("Job", "CronJob") or selector is None:
        # Jobs usually leave the selector to the controller (controller-uid), so the
        # template's own labels are what the pods carry.
        labels = ((template or {}).get("metadata") or {}).get("labels")
        return _lasting(_from_labels(labels, where, f"{template_path}.metadata.labels", problems))
    if kind == "ReplicationController":
        return _from_labels(selector, where, "spec.selector", problems)
    if not isinstance(selector, dict):
        problems.add(where.at("spec.selector"), "selector must be a mapping")
        return None
    out: dict[str, Any] = {}
    match_labels = selector.get("matchLabels")
    if match_labels:
        checked = _from_labels(match_labels, where, "spec.selector.matchLabels", problems)
        if checked is None:
            return None
        out.update(checked)
    expressions = selector.get("matchExpressions")
    if expressions:
        wrong = [(i, why) for i, e in enumerate(expressions) for why in _expression_problems(e)]
        for i, why in wrong:
            problems.add(where.at(f"spec.selector.matchExpressions[{i}]"), why)
        if wrong:
            return None
        out["matchExpressions"] = [_copy_expression(e) for e in expressions]
    if not out:
        problems.add(
            where.at("spec.selector"),
            "an empty selector would make the egress policy select every pod in the namespace; "
            "give the workload a pod selector, or exclude it",
        )
        return None
    return out


def _lasting(selector: dict[str, Any] | None) -> dict[str, Any] | None:
    """A selector made of pod labels, without those a release or revision changes: a Job
    still running from the previous release (a CronJob's, most often) carries the old chart
    and app version, and would go unselected, so unrestricted. Kept whole when nothing else
    is left."""
    if selector is None:
        return None
    lasting = {k: v for k, v in selector["matchLabels"].items() if not per_release(k)}
    return {"matchLabels": lasting} if lasting else selector


def _from_labels(labels: Any, where: Location, path: str, problems: Problems) -> dict[str, Any] | None:
    if not labels:
        problems.add(
            where.at(path),
            "the workload's pods have no labels, so no NetworkPolicy can select them alone; "
            "add labels, or exclude the workload",
        )
        return None
    # The shape check made this a mapping of strings to strings; the selector is copied
    # into the policy, so its syntax must be what the API server accepts.
    wrong = _label_problems(labels, path)
    for at, why in wrong:
        problems.add(where.at(at), why)
    return None if wrong else {"matchLabels": dict(sorted(labels.items()))}


def _label_problems(labels: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """(path, why) for every label the API server would reject."""
    return [(f"{path}.{key}", why) for key, value in labels.items()
            for why in (label_key_problem(key), label_value_problem(value)) if why]


def _expression_problems(expr: dict[str, Any]) -> list[str]:
    """Why a (shape-checked) label selector requirement would be rejected, if it would."""
    key, operator, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
    out = []
    if not key:
        out.append("key: required")
    elif label_key_problem(key):
        out.append(f"key: {label_key_problem(key)}")
    if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
        out.append(f"operator: {operator!r} is not In, NotIn, Exists or DoesNotExist")
    elif operator in ("In", "NotIn") and not values:
        out.append(f"values: {operator} needs at least one value")
    elif operator in ("Exists", "DoesNotExist") and values:
        out.append(f"values: {operator} takes no values")
    out += [f"values: {why}" for why in map(label_value_problem, values) if why]
    return out


def _copy_expression(expr: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"key": expr["key"], "operator": expr["operator"]}
    if expr.get("values"):
        out["values"] = list(expr["values"])
    return out

"""Source: egress intent declared on a workload through annotations.

Keys live under a prefix (default ``helm-egress.io``), on the workload's metadata or its
pod template's (``podAnnotations`` in most charts), merged:

- ``<prefix>/hosts``, ``<prefix>/addresses``, ``<prefix>/ports``: one entry named after
  the workload, values separated by commas and/or white space, ports ``NUMBER[/PROTOCOL]``
  (a bare number is ``TCP``);
- ``<prefix>/egress``: a YAML or JSON list of entries in the ``istio.egress`` schema;
- ``<prefix>/ignore``: ``"true"`` gives the workload no policy at all;
- ``<prefix>/sidecar``: ``"false"`` gives it no Istio Sidecar under ``--sidecar``;
- ``<prefix>/sidecar-hosts``: in-mesh hosts its Sidecar imports, ``namespace/dnsName``;
- ``<prefix>/apiserver``: ``"true"`` or ``"false"``: it reaches the Kubernetes API server,
  or not, whatever its RBAC and ``--apiserver-access`` say.
- ``<prefix>/in-cluster``: Services of the cluster it calls, ``NAMESPACE/SERVICE[:PORT,...]``
  (``incluster``).

Any other key under the prefix is an error: a typo must never silently open or close
egress. Entries pass the same schema and guardrails as values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from post_renderer import yamlio
from post_renderer.entries import checked_entries
from post_renderer.errors import EgressError, Location, Problems
from post_renderer.incluster import from_annotation
from post_renderer.model import EgressEntry, InCluster, SidecarHost, Workload
from post_renderer.names import dns_label
from post_renderer.schema import Verdicts
from post_renderer.settings import Settings
from post_renderer.validate import canonical_sidecar_host, sidecar_host_problem

COMPACT = ("hosts", "addresses", "ports")
KEYS = (*COMPACT, "egress", "ignore", "sidecar", "sidecar-hosts", "apiserver", "in-cluster")
DECLARING = (*COMPACT, "egress", "in-cluster")  # any of these asks for a policy
DEFAULT_PROTOCOL = "TCP"
MAX_ANNOTATION_BYTES = 256 * 1024
# ASCII only: a Unicode space inside a value is part of a (then refused) host, never a
# separator Kubernetes tooling would not see.
_SPLIT = re.compile(r"[\s,]+", re.ASCII)
_NUMBER = re.compile(r"[0-9]{1,5}\Z")  # str.isdigit() would take '²' and '٤٤٣'



class Intent(NamedTuple):
    ignore: bool
    entries: tuple[EgressEntry, ...]
    declared: bool  # any egress key present (an empty declaration still asks for a policy)
    sidecar: bool = True  # false: no Istio Sidecar for this workload
    sidecar_hosts: tuple[SidecarHost, ...] = ()
    apiserver: bool | None = None  # reaches the API server (or not), whatever its RBAC; None: not said
    in_cluster: tuple[InCluster, ...] = ()


def read(workload: Workload, settings: Settings, problems: Problems, verdicts: Verdicts | None = None) -> Intent:
    prefix = settings.annotation_prefix + "/"
    ours = {k[len(prefix):]: v for k, v in workload.annotations.items() if k.startswith(prefix)}
    if not ours:
        return Intent(ignore=False, entries=(), declared=False)

    def where(key: str) -> Location:
        _, path, line = workload.annotations[prefix + key]
        return workload.location.at(f'{path}["{prefix}{key}"]', line=line)

    for key in sorted(set(ours) - set(KEYS)):
        problems.add(
            where(key),
            f"unknown annotation {prefix}{key} (known: {', '.join(prefix + k for k in KEYS)})",
        )
    text: dict[str, str] = {}
    for key in sorted(set(ours) & set(KEYS)):
        value = ours[key][0]
        if not isinstance(value, str):
            problems.add(where(key), f"annotation values must be strings; quote {value!r}")
        elif not value.strip():
            problems.add(where(key), "empty annotation")
        elif len(value.encode("utf-8", "surrogateescape")) > MAX_ANNOTATION_BYTES:
            # The API server caps all of an object's annotations together at 256 KiB.
            problems.add(where(key), f"longer than {MAX_ANNOTATION_BYTES // 1024} KiB, more than Kubernetes "
                                     "stores for all annotations of an object")
        else:
            text[key] = value

    flags: dict[str, bool | None] = {}
    for key, default in (("ignore", False), ("sidecar", True), ("apiserver", None)):
        flags[key] = default
        if key in text:
            flag = text[key].strip().lower()
            if flag not in ("true", "false"):
                problems.add(where(key), f"{text[key]!r} is not \"true\" or \"false\"")
            flags[key] = flag == "true" if flag in ("true", "false") else default
    ignore, sidecar, apiserver = flags["ignore"] is True, flags["sidecar"] is not False, flags["apiserver"]
    sidecar_hosts: list[SidecarHost] = []
    for given in _SPLIT.split(text.get("sidecar-hosts", "").strip()) if "sidecar-hosts" in text else ():
        host = canonical_sidecar_host(given)
        why = sidecar_host_problem(host)
        if why:
            problems.add(where("sidecar-hosts"), f"{given}: {why}")
        elif host not in (h.host for h in sidecar_hosts):
            sidecar_hosts.append(SidecarHost(host, where("sidecar-hosts")))
    in_cluster = tuple(from_annotation(text["in-cluster"], where("in-cluster"), problems)) if "in-cluster" in text else ()

    raw: list[Any] = []
    origins: list[tuple[str, str]] = []  # per raw entry: (annotation key, path prefix)
    if any(k in text for k in COMPACT):
        compact = _compact_entry(workload, text, where, problems)
        if compact is not None:
            raw.append(compact)
            origins.append(("compact", ""))
    if "egress" in text:
        full = _full_entries(text["egress"], where("egress"), problems)
        if full is None:
            pass
        elif not isinstance(full, list):
            problems.add(where("egress"), "must be a YAML or JSON list of entries (name, hosts, addresses, ports)")
        else:
            for i in range(len(full)):
                origins.append(("egress", f"[{i}]"))
            raw.extend(full)
    if not raw:
        return Intent(ignore=ignore, entries=(), declared=any(k in ours for k in DECLARING),
                      sidecar=sidecar, sidecar_hosts=tuple(sidecar_hosts), apiserver=apiserver, in_cluster=in_cluster)

    def locate(path: Sequence[str | int]) -> Location:
        index = path[0] if path and isinstance(path[0], int) else None
        if index is None or index >= len(origins):
            return workload.location
        key, base = origins[index]
        rest = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
        if key == "compact":
            field = next((p for p in path[1:] if isinstance(p, str)), None)
            annotation = field if field in COMPACT else next(k for k in COMPACT if k in text)
            return where(annotation).at(f"{where(annotation).path}: {rest.lstrip('.')}" if rest else None)
        return where("egress").at(f"{where('egress').path}: {base}{rest}")

    source = f"annotations:{workload.kind}/{workload.name}"
    entries = checked_entries(raw, locate, source=source, settings=settings, problems=problems, verdicts=verdicts)
    return Intent(ignore=ignore, entries=tuple(entries), declared=True, sidecar=sidecar,
                  sidecar_hosts=tuple(sidecar_hosts), apiserver=apiserver, in_cluster=in_cluster)


def _compact_entry(workload: Workload, text: dict[str, str], where: Any, problems: Problems) -> dict[str, Any] | None:
    entry: dict[str, Any] = {"name": dns_label(workload.name)}
    for key in ("hosts", "addresses"):
        if key in text:
            entry[key] = [t for t in _SPLIT.split(text[key].strip()) if t]
    if "ports" not in text:
        problems.add(where(next(k for k in COMPACT if k in text)), "hosts and addresses need a ports annotation too")
        return None
    if "hosts" not in entry and "addresses" not in entry:
        problems.add(where("ports"), "ports need a hosts or addresses annotation too")
        return None
    ports = []
    for token in (t for t in _SPLIT.split(text["ports"].strip()) if t):
        number, slash, protocol = token.partition("/")
        if len(number) > 1 and number.startswith("0") and _NUMBER.match(number):
            problems.add(where("ports"), f"{token!r}: a leading zero is octal to Kubernetes ({number} is "
                                         f"{int(number, 8) if set(number) <= set('01234567') else 'not a number'} "
                                         f"there); write {int(number)}")
            return None
        if not _NUMBER.match(number) or (slash and not protocol):
            problems.add(where("ports"), f"{token!r} is not NUMBER or NUMBER/PROTOCOL (e.g. 443/TLS)")
            return None
        ports.append({"number": int(number), "protocol": protocol if slash else DEFAULT_PROTOCOL})
    entry["ports"] = ports
    return entry


def _full_entries(text: str, where: Location, problems: Problems) -> Any:
    try:
        # JSON is YAML, so one safe loader reads both.
        return yamlio.load(yamlio.safe_loader(strict_numbers=True), text, where.at(line=0))
    except EgressError as e:
        for p in e.problems:
            # The parser counts lines inside the annotation's value; point at the key.
            inner = f" (line {p.location.line} of the value)" if p.location.line else ""
            problems.add(where, p.message + inner)
        return None

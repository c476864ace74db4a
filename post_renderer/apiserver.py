"""Reach source: the Kubernetes API server, for the workloads the chart's own RBAC says call it.

A workload whose ServiceAccount a RoleBinding or ClusterRoleBinding of the stream binds
(as a ServiceAccount subject, as its user name ``system:serviceaccount:NS:NAME``, or
through the groups ``system:serviceaccounts`` and ``system:serviceaccounts:NS``) and whose
pods get a token is a controller, an operator, anything that watches: it calls the API
server, and a policy that leaves it out breaks it. It reaches:

- under Cilium, the ``kube-apiserver`` entity (Cilium >= 1.11): CIDR rules never select the
  API server's identity (cilium/cilium#14724, #20550), whatever its address;
- under NetworkPolicy, which names no entity, each ``--apiserver-cidr``: the addresses of
  the ``kubernetes`` Service's endpoints, which are not in any stream. Without them nothing
  is opened, and ``check`` warns;
- through a Sidecar, ``default/kubernetes.default.svc.<domain>``: under REGISTRY_ONLY the
  proxy sends a Service it does not import to the BlackHole.

Ports are ``--apiserver-port``: policies see the packet after the Service's DNAT, so the
endpoints' port (6443 on kubeadm, 443 on most managed clusters). A token the pods do not
get (``automountServiceAccountToken: false`` on the pod, else on its ServiceAccount, and no
projected token for the API server) opts a bound workload out; the ``<prefix>/apiserver``
annotation, then ``--apiserver-access all|none``, decide before its RBAC does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from post_renderer import shape, yamlio
from post_renderer.errors import Problem, Problems
from post_renderer.reach import Reach, Reached
from post_renderer.read import Documents, Need
from post_renderer.settings import Settings
from post_renderer.stream import Document

if TYPE_CHECKING:
    from post_renderer.access import Access
    from post_renderer.find import Found

RBAC_GROUP = "rbac.authorization.k8s.io"
BINDINGS = ("RoleBinding", "ClusterRoleBinding")
ENTITY = "kube-apiserver"
# The user and group names the API server gives service accounts (serviceaccount.MakeUsername,
# MakeNamespaceGroupName, AllServiceAccountsGroup in k8s.io/apiserver).
_USER_PREFIX = "system:serviceaccount:"
_ALL_GROUP = "system:serviceaccounts"


def wants(doc: Document) -> bool:
    # A ServiceAccount matters only when it turns the token off; most of a stream's do not
    # say, and are not parsed (a key spelled with an escape is).
    return doc.kind in BINDINGS or (doc.kind == "ServiceAccount" and (
        "automountServiceAccountToken" in doc.raw or "\\" in doc.raw))


NEED = Need(wants, {
    "apiVersion": yamlio.KEEP_ALL,
    "kind": yamlio.KEEP_ALL,
    "metadata": {"name": yamlio.KEEP_ALL, "namespace": yamlio.KEEP_ALL},
    "subjects": yamlio.KEEP_ALL,
    "automountServiceAccountToken": yamlio.KEEP_ALL,
})

_METADATA = shape.Map({"name": shape.Str, "namespace": shape.Str})
_BINDING = shape.Map({
    "apiVersion": shape.Str,
    "metadata": _METADATA,
    "subjects": shape.Seq(shape.Map({"kind": shape.Str, "name": shape.Str, "namespace": shape.Str,
                                     "apiGroup": shape.Str})),
})
_ACCOUNT = shape.Map({"apiVersion": shape.Str, "metadata": _METADATA, "automountServiceAccountToken": shape.Bool})

Account = tuple[str | None, str]  # (namespace, name); namespace None: the release's, unnamed


class Binding(NamedTuple):
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class Rbac:
    """What the stream's bindings and ServiceAccounts say about service accounts.

    A namespace None is one neither the document nor the run names (Helm's ``-n``, which
    the stream does not carry): it matches any, since a chart that leaves its workloads'
    namespace to Helm still writes ``{{ .Release.Namespace }}`` into its bindings'
    subjects, and a binding missed would cut a controller off its API server."""

    def __init__(self) -> None:
        self.accounts: dict[str, list[tuple[str | None, Binding]]] = {}  # by name, bound one by one
        self.namespaces: dict[str, Binding] = {}  # system:serviceaccounts:NS
        self.everyone: Binding | None = None  # system:serviceaccounts
        self.no_token: set[Account] = set()  # automountServiceAccountToken: false

    def binding(self, account: Account) -> Binding | None:
        namespace, name = account
        for bound, binding in self.accounts.get(name, ()):
            if bound is None or namespace is None or bound == namespace:
                return binding
        if namespace is None:
            return next(iter(self.namespaces.values()), None) or self.everyone
        return self.namespaces.get(namespace) or self.everyone

    def token(self, account: Account) -> bool:
        """Whether its ServiceAccount leaves the token mount on (the pod spec may decide instead)."""
        namespace, name = account
        return not any(n == name and (ns is None or namespace is None or ns == namespace) for ns, n in self.no_token)


def scan(documents: Documents, home: str | None, problems: Problems) -> Rbac:
    """The chart's bindings and ServiceAccounts (``wants``), a namespace a document leaves
    out read as Helm's (``home``)."""
    rbac = Rbac()
    for parsed in documents.wanted(wants):
        data = parsed.use(problems)
        if not isinstance(data, dict):
            continue
        kind, api_version = data.get("kind"), data.get("apiVersion")
        group = api_version.rpartition("/")[0] if isinstance(api_version, str) else None
        if kind == "ServiceAccount" and group == "":
            wrong = shape.check(_ACCOUNT, data)
            for path, message in wrong:
                problems.add(parsed.where.at(path), message)
            metadata = data.get("metadata") or {}
            if not wrong and isinstance(metadata.get("name"), str) \
                    and data.get("automountServiceAccountToken") is False:
                rbac.no_token.add((metadata.get("namespace") or home, metadata["name"]))
        elif kind in BINDINGS and group == RBAC_GROUP:
            wrong = shape.check(_BINDING, data)
            for path, message in wrong:
                problems.add(parsed.where.at(path), message)
            if not wrong:
                _bind(rbac, str(kind), data, home)
    return rbac


def _bind(rbac: Rbac, kind: str, data: dict[str, Any], home: str | None) -> None:
    metadata = data.get("metadata") or {}
    binding = Binding(kind, str(metadata.get("name") or ""))
    # A RoleBinding's ServiceAccount subject without a namespace is in the binding's own
    # (the authorizer's appliesToUser); a ClusterRoleBinding's must name one, and one that
    # does not is read as the release's rather than left unbound.
    own = (metadata.get("namespace") or home) if kind == "RoleBinding" else home
    for subject in data.get("subjects") or ():
        subject_kind, name = subject.get("kind"), subject.get("name") or ""
        if subject_kind == "ServiceAccount" and name:
            rbac.accounts.setdefault(name, []).append((subject.get("namespace") or own, binding))
        elif subject_kind == "User" and name.startswith(_USER_PREFIX):
            namespace, _, account = name[len(_USER_PREFIX):].partition(":")
            if namespace and account and ":" not in account:
                rbac.accounts.setdefault(account, []).append((namespace, binding))
        elif subject_kind == "Group" and name == _ALL_GROUP:
            rbac.everyone = rbac.everyone or binding
        elif subject_kind == "Group" and name.startswith(_ALL_GROUP + ":") and name != _ALL_GROUP + ":":
            rbac.namespaces.setdefault(name[len(_ALL_GROUP) + 1:], binding)


def reach(found: Found, access: Sequence[Access], settings: Settings) -> Reached:
    problems = Problems()
    rbac = scan(found.documents, found.home, problems)
    problems.raise_if_any()
    prefix = settings.annotation_prefix
    out: dict[int, list[Reach]] = {}
    warnings: list[Problem] = []
    notes: list[str] = []
    unopened: list[str] = []
    for a in access:
        w = a.workload
        account: Account = (a.namespace or found.home, w.service_account)
        said = found.intents[w.doc_index].apiserver
        binding = rbac.binding(account)
        why: str | None = None
        if said is not None:
            why = f"{prefix}/apiserver" if said else None
        elif settings.apiserver_access != "rbac":
            why = "--apiserver-access all" if settings.apiserver_access == "all" else None
        elif binding is not None:
            token = w.token if w.token is not None else rbac.token(account)
            if token:
                why = f"ServiceAccount {w.service_account} bound by {binding}"
            else:
                notes.append(f"{w.location.render()}: {binding} binds its ServiceAccount {w.service_account}, but its "
                             "pods get no token (automountServiceAccountToken: false), so the Kubernetes API server "
                             f'is not opened for it; annotate {prefix}/apiserver: "true" if it calls it')
        if why is None:
            continue
        out[w.doc_index] = [Reach("Kubernetes API server", imports=(
            f"default/kubernetes.default.svc.{settings.cluster_domain}",), entities=(ENTITY,),
            cidrs=settings.apiserver_cidrs, ports=settings.apiserver_ports, by=why)]
        if settings.network_policy == "kubernetes" and not settings.apiserver_cidrs:
            unopened.append(f"{w.kind}/{w.name}")
            warnings.append(Problem(w.location, (
                f"it calls the Kubernetes API server ({why}), but a NetworkPolicy can name the API server only by "
                "address and no --apiserver-cidr is given, so its NetworkPolicy drops those calls; pass the addresses "
                "of the kubernetes Service's endpoints (kubectl get endpointslices -n default -l "
                "kubernetes.io/service-name=kubernetes) with --apiserver-cidr")))
    if unopened:
        notes.append(f"the Kubernetes API server is not opened for {', '.join(unopened)}: a NetworkPolicy names it only "
                     "by address; pass --apiserver-cidr (the kubernetes Service's endpoint addresses)")
    return Reached(out, warnings, notes)

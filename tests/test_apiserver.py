"""The Kubernetes API server, from the chart's own RBAC: who may reach it, judged by the oracle.

Each stream is written here by hand: ServiceAccounts, RoleBindings and ClusterRoleBindings
and one Deployment per case, all with the same egress values. Which workload calls the API
server is the test's own expectation (``CALLS``), and what the output lets each reach is
answered by the independent evaluators in ``oracle``: NetworkPolicy semantics for an
address on the API server's ports, Cilium's ``kube-apiserver`` entity, Istio's Sidecar
imports of the ``kubernetes`` Service every cluster has.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner, Result

import oracle
from helmstream import split_documents
from post_renderer.cli import app

NAMESPACE = "prod"
P = "helm-egress.io"
APISERVER_IP = "172.18.0.2"
API_HOST = "kubernetes.default.svc.cluster.local"
VALUES = "istio:\n  egress:\n    - {name: github, hosts: [api.github.com], ports: [{number: 443, protocol: TLS}]}\n"


def account(name: str, automount: bool | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"name": name, "namespace": NAMESPACE}}
    if automount is not None:
        doc["automountServiceAccountToken"] = automount
    return doc


def binding(kind: str, name: str, subjects: list[dict[str, str]], namespace: str | None = None) -> dict[str, Any]:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind.replace("Binding", ""), "name": name},
            "subjects": subjects}


def sa(name: str, namespace: str | None = NAMESPACE) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, **({"namespace": namespace} if namespace else {})}


def deployment(name: str, account_name: str | None = None, pod: dict[str, Any] | None = None,
               annotations: dict[str, str] | None = None, namespace: str | None = NAMESPACE) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": "ops", "app.kubernetes.io/name": name}
    spec: dict[str, Any] = {**({"serviceAccountName": account_name} if account_name else {}), **(pod or {}),
                            "containers": [{"name": name, "image": f"example/{name}:1"}]}
    template: dict[str, Any] = {"metadata": {"labels": labels, **({"annotations": annotations} if annotations else {})},
                                "spec": spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {}), "labels": labels},
            "spec": {"selector": {"matchLabels": labels}, "template": template}}


def projected(audience: str | None = None) -> dict[str, Any]:
    token: dict[str, Any] = {"path": "token", **({"audience": audience} if audience else {})}
    return {"volumes": [{"name": "token", "projected": {"sources": [{"serviceAccountToken": token}]}}]}


def stream(docs: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    yaml = YAML()
    for doc in docs:
        out.write("---\n")
        yaml.dump(doc, out)
    return out.getvalue()


# The chart: who its RBAC binds, and how each workload's pods get (or lose) their token.
CHART: list[dict[str, Any]] = [
    account("ctrl"), account("rb"), account("user"), account("elsewhere"), account("podoff"),
    account("notoken", automount=False), account("podon", automount=False), account("projected", automount=False),
    account("audience", automount=False), account("optout"),
    binding("ClusterRoleBinding", "ctrl", [sa("ctrl"), sa("optout")]),
    # A RoleBinding's subject without a namespace is in the binding's namespace.
    binding("RoleBinding", "workers", [sa("rb", None), sa("notoken"), sa("podoff"), sa("podon"), sa("projected"),
                                       sa("audience")], NAMESPACE),
    binding("RoleBinding", "elsewhere", [sa("elsewhere", None)], "kube-system"),
    # Helm creates every item of a List; a service account's user name binds it too.
    {"apiVersion": "v1", "kind": "List", "items": [
        binding("ClusterRoleBinding", "user", [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io",
                                                "name": f"system:serviceaccount:{NAMESPACE}:user"}])]},
    deployment("ctrl", "ctrl"),
    deployment("rb", "rb"),
    deployment("user", "user"),
    deployment("elsewhere", "elsewhere"),
    deployment("plain"),
    deployment("notoken", "notoken"),
    deployment("podoff", "podoff", {"automountServiceAccountToken": False}),
    deployment("podon", "podon", {"automountServiceAccountToken": True}),
    deployment("projected", "projected", projected()),
    deployment("audience", "audience", projected("vault")),
    deployment("optin", annotations={f"{P}/apiserver": "true"}),
    deployment("optout", "optout", annotations={f"{P}/apiserver": "false"}),
]
CALLS = {"ctrl": True, "rb": True, "user": True, "elsewhere": False, "plain": False, "notoken": False,
         "podoff": False, "podon": True, "projected": True, "audience": False, "optin": True, "optout": False}


def clean_env() -> dict[str, str | None]:
    return {k: None for k in os.environ if k.startswith("HELM_EGRESS_")}


def run(args: Sequence[str], docs: Sequence[dict[str, Any]], tmp_path: Any) -> Result:
    values = tmp_path / "values.yaml"
    values.write_text(VALUES)
    return CliRunner().invoke(app, [args[0], "-f", str(values), *args[1:]], input=stream(docs), env=clean_env(),
                              catch_exceptions=False)


def parse(out: str) -> list[dict[str, Any]]:
    loader = YAML(typ="safe")
    return [d for d in (loader.load(t) for t in split_documents(out)) if isinstance(d, dict)]


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/instance": "ops", "app.kubernetes.io/name": name}


def generated(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [d for d in docs if f"{P}/generated-by" in ((d.get("metadata") or {}).get("annotations") or {})]
    for doc in out:
        assert oracle.problems(doc) == [], doc["metadata"]["name"]
    return out


def network_reaches(docs: list[dict[str, Any]], name: str, ip: str = APISERVER_IP, port: int = 6443) -> bool:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    return oracle.egress_allows(policies, labels(name), dest={"ip": ip, "port": port}, pod_namespace=NAMESPACE)


def cilium_reaches(docs: list[dict[str, Any]], name: str, port: int = 6443) -> bool:
    return oracle.cilium_allows(docs, labels(name), NAMESPACE, entity="kube-apiserver", port=port)


def mesh_reaches(docs: list[dict[str, Any]], name: str) -> bool:
    return oracle.mesh_allows(docs, labels(name), NAMESPACE, host=API_HOST, port=443)


def test_networkpolicy_opens_the_apiserver_cidr_to_the_workloads_the_rbac_binds(tmp_path: Any) -> None:
    result = run(["render", "--apiserver-cidr", f"{APISERVER_IP}/32"], CHART, tmp_path)
    assert result.exit_code == 0, result.stderr
    docs = generated(parse(result.stdout))
    for name, calls in CALLS.items():
        assert network_reaches(docs, name, port=6443) is calls, name
        assert network_reaches(docs, name, port=443) is calls, name
        # Nothing else: another address, another port.
        assert not network_reaches(docs, name, ip="172.18.0.3"), name
        assert not network_reaches(docs, name, port=8443), name
    # A bound workload left out for want of a token is named, so a user can opt it in.
    assert "Deployment/notoken" in result.stderr and "Deployment/podoff" in result.stderr


def test_cilium_opens_the_kube_apiserver_entity_and_the_sidecar_imports_its_service(tmp_path: Any) -> None:
    result = run(["render", "--network-policy", "cilium", "--cilium-wildcard-depth", "0", "--sidecar"], CHART, tmp_path)
    assert result.exit_code == 0, result.stderr
    docs = generated(parse(result.stdout))
    for name, calls in CALLS.items():
        assert cilium_reaches(docs, name) is calls, name
        assert cilium_reaches(docs, name, port=443) is calls, name
        assert not cilium_reaches(docs, name, port=10250), name
        assert mesh_reaches(docs, name) is calls, name
        # The entity is the API server, not a way out: no address is opened with it.
        assert not oracle.cilium_allows(docs, labels(name), NAMESPACE, ip=APISERVER_IP, port=6443), name


def test_without_apiserver_cidr_check_names_each_workload_that_calls_it(tmp_path: Any) -> None:
    result = run(["check", "--hostname-cidr", "203.0.113.0/24"], CHART, tmp_path)
    assert result.exit_code == 0, result.stdout
    warned = {line.split("(Deployment/")[1].split(")")[0] for line in result.stdout.splitlines()
              if line.startswith("warning:") and "--apiserver-cidr" in line}
    assert warned == {name for name, calls in CALLS.items() if calls}
    # Nothing is opened for it until the addresses are given.
    rendered = run(["render"], CHART, tmp_path)
    assert rendered.exit_code == 0 and "--apiserver-cidr" in rendered.stderr
    docs = generated(parse(rendered.stdout))
    assert not any(network_reaches(docs, name) for name in CALLS)


def test_under_cilium_no_cidr_is_needed_and_none_is_asked_for(tmp_path: Any) -> None:
    result = run(["check", "--network-policy", "cilium", "--cilium-wildcard-depth", "0"], CHART, tmp_path)
    assert result.exit_code == 0 and "--apiserver-cidr" not in result.stdout


@pytest.mark.parametrize("group, bound", [
    ("system:serviceaccounts", True),
    (f"system:serviceaccounts:{NAMESPACE}", True),
    ("system:serviceaccounts:kube-system", False),
    ("system:authenticated", False),  # every user: not a sign that the chart's workloads call it
])
def test_service_account_groups_bind_every_account_they_name(group: str, bound: bool, tmp_path: Any) -> None:
    docs = [binding("ClusterRoleBinding", "readers", [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io",
                                                      "name": group}]),
            deployment("a", "a"), deployment("b")]
    result = run(["render", "--apiserver-cidr", f"{APISERVER_IP}/32"], docs, tmp_path)
    assert result.exit_code == 0, result.stderr
    out = generated(parse(result.stdout))
    assert network_reaches(out, "a") is bound and network_reaches(out, "b") is bound


@pytest.mark.parametrize("access, expected", [
    ("all", {name: name != "optout" for name in CALLS}),
    ("none", {name: name == "optin" for name in CALLS}),  # the annotation still decides for its workload
])
def test_the_option_opts_every_workload_in_or_out(access: str, expected: dict[str, bool], tmp_path: Any) -> None:
    result = run(["render", "--apiserver-access", access, "--apiserver-cidr", f"{APISERVER_IP}/32"], CHART, tmp_path)
    assert result.exit_code == 0, result.stderr
    docs = generated(parse(result.stdout))
    assert {name: network_reaches(docs, name) for name in CALLS} == expected


def test_the_api_servers_ports_are_configurable(tmp_path: Any) -> None:
    result = run(["render", "--apiserver-cidr", f"{APISERVER_IP}/32", "--apiserver-port", "8443"], CHART, tmp_path)
    docs = generated(parse(result.stdout))
    assert network_reaches(docs, "ctrl", port=8443)
    assert not network_reaches(docs, "ctrl", port=6443) and not network_reaches(docs, "ctrl", port=443)


def test_a_namespace_left_to_helm_matches_the_subjects_namespace(tmp_path: Any) -> None:
    # The chart leaves its workloads' namespace to `helm -n`, but names it in the subject.
    docs = [binding("ClusterRoleBinding", "ctrl", [sa("ctrl")]), deployment("ctrl", "ctrl", namespace=None),
            deployment("plain", namespace=None)]
    result = run(["render", "--apiserver-cidr", f"{APISERVER_IP}/32"], docs, tmp_path)
    out = generated(parse(result.stdout))
    assert network_reaches(out, "ctrl") and not network_reaches(out, "plain")
    # Named, it must be the same namespace.
    result = run(["render", "--namespace", "staging", "--apiserver-cidr", f"{APISERVER_IP}/32"], docs, tmp_path)
    out = generated(parse(result.stdout))
    policies = [d for d in out if d["kind"] == "NetworkPolicy"]
    assert not oracle.egress_allows(policies, labels("ctrl"), dest={"ip": APISERVER_IP, "port": 6443},
                                    pod_namespace="staging")


def test_a_broad_apiserver_cidr_needs_allow_broad_cidrs_and_keeps_metadata_out(tmp_path: Any) -> None:
    result = run(["render", "--apiserver-cidr", "0.0.0.0/0", "--allow-broad-cidrs"], CHART, tmp_path)
    assert result.exit_code == 0, result.stderr
    docs = generated(parse(result.stdout))
    assert network_reaches(docs, "ctrl", ip="203.0.113.9")
    assert not network_reaches(docs, "ctrl", ip="169.254.169.254", port=443)


def test_the_token_is_read_from_every_kind_of_pod_spec(tmp_path: Any) -> None:
    # The pod spec sits in three places (a template, a CronJob's job template, a bare Pod);
    # a field the pruned read left out would read as unset, and the binding would decide.
    job = deployment("nightly", "ctrl", {"automountServiceAccountToken": False})
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": NAMESPACE},
            "spec": {"schedule": "0 1 * * *", "jobTemplate": {"spec": {"template": {
                **job["spec"]["template"], "spec": {**job["spec"]["template"]["spec"], "restartPolicy": "Never"}}}}}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": NAMESPACE,
                                                          "labels": labels("probe")},
           "spec": {"serviceAccountName": "quiet", **projected(), "containers": [{"name": "probe", "image": "x"}]}}
    docs = [account("quiet", automount=False), binding("ClusterRoleBinding", "ctrl", [sa("ctrl"), sa("quiet")]),
            cron, pod, deployment("ctrl", "ctrl")]
    result = run(["render", "--apiserver-cidr", f"{APISERVER_IP}/32"], docs, tmp_path)
    assert result.exit_code == 0, result.stderr
    out = generated(parse(result.stdout))
    assert not network_reaches(out, "nightly") and network_reaches(out, "probe") and network_reaches(out, "ctrl")


@pytest.mark.parametrize("spelling", [
    'automountServiceAccountToken: false',
    '"automount\\u0053erviceAccountToken": false',  # an escape: not found by the text, found by the parse
    '? automountServiceAccountToken\n: false',
])
def test_a_service_account_turning_the_token_off_is_read_however_it_is_spelled(spelling: str, tmp_path: Any) -> None:
    docs = [binding("ClusterRoleBinding", "ctrl", [sa("ctrl")]), deployment("ctrl", "ctrl")]
    text = stream(docs) + f"---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: ctrl, namespace: {NAMESPACE}}}\n{spelling}\n"
    values = tmp_path / "values.yaml"
    values.write_text(VALUES)
    result = CliRunner().invoke(app, ["render", "-f", str(values), "--apiserver-cidr", f"{APISERVER_IP}/32"],
                                input=text, env=clean_env(), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert not network_reaches(parse(result.stdout), "ctrl")
    unsaid = stream([*docs, account("ctrl")])
    result = CliRunner().invoke(app, ["render", "-f", str(values), "--apiserver-cidr", f"{APISERVER_IP}/32"],
                                input=unsaid, env=clean_env(), catch_exceptions=False)
    assert network_reaches(parse(result.stdout), "ctrl")

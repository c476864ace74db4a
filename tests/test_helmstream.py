"""Checks that tests/helmstream.py produces what Helm really sends.

Expectations come from Helm's source and tests, not from helmstream itself:
helm/helm pkg/releaseutil (v3) and pkg/release/util (v4) kind sorters,
``action.renderResources`` (v3), ``action.annotateAndMerge`` and its
``TestAnnotateAndMerge`` table (v4), and kyaml's ``AnnotationSetter``.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from helmstream import (
    FILENAME_ANNOTATION,
    HELM3_INSTALL_ORDER,
    HELM4_INSTALL_ORDER,
    HIDDEN_SECRET_LINE,
    HOOK_ANNOTATION,
    HelmStreamError,
    helm3_stream,
    helm4_stream,
    render_chart,
    split_documents,
    split_manifests,
    with_bom,
    with_comment_only_doc,
    with_crlf,
    with_end_markers,
)

REPO = Path(__file__).resolve().parent.parent
CHARTS = REPO / "fixtures" / "charts"
CORPUS = REPO / "fixtures" / "corpus"  # vendored from the shared corpus; see its SOURCES.md
RELEASE = "demo"
NAMESPACE = "prod"

SHOP_WORKLOADS = ("web", "api", "db", "agent", "report", "migrate", "debug", "canary")


def _annotated(component: str, **extra: Any) -> dict[str, Any]:
    return {
        "annotations": {"example.com/on": f"{component}-workload"},
        "podAnnotations": {"example.com/on": f"{component}-pod"},
        **extra,
    }


# Every optional workload on, each with both annotation maps set.
SHOP_ALL_ON: dict[str, Any] = {
    **{name: _annotated(name) for name in SHOP_WORKLOADS},
    "debug": _annotated("debug", enabled=True),
    "canary": _annotated("canary", enabled=True),
    "preUpgrade": {"annotations": {"example.com/on": "hook"}},
}


def _load_all(text: str) -> list[Any]:
    return list(YAML(typ="safe").load_all(text))


def _load(text: str) -> Any:
    return YAML(typ="safe").load(text)


def _objects(stream: str) -> list[dict[str, Any]]:
    return [doc for doc in _load_all(stream) if doc is not None]


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} matches"
    return matches[0]


def _seed_ci_values() -> dict[str, Any]:
    values: dict[str, Any] = _load((CHARTS / "seed-se" / "ci-values.yaml").read_text())
    return values


@pytest.fixture(scope="module")
def shop_default() -> dict[str, str]:
    return render_chart(CHARTS / "shop", None, release=RELEASE, namespace=NAMESPACE)


@pytest.fixture(scope="module")
def shop_all() -> dict[str, str]:
    return render_chart(CHARTS / "shop", SHOP_ALL_ON, release=RELEASE, namespace=NAMESPACE)


@pytest.fixture(scope="module")
def shop_all_h3(shop_all: dict[str, str]) -> str:
    return helm3_stream(shop_all)


@pytest.fixture(scope="module")
def shop_all_h4(shop_all: dict[str, str]) -> str:
    return helm4_stream(shop_all)


# --------------------------------------------------------------------------
# Rendering and the fixture charts


def test_render_returns_chart_prefixed_template_paths(shop_default: dict[str, str]) -> None:
    assert all(path.startswith("shop/templates/") for path in shop_default)
    assert "shop/templates/NOTES.txt" in shop_default
    assert "shop/templates/tests/test-connection.yaml" in shop_default
    # Partials are consumed by the engine, never returned as files.
    assert not any(Path(path).name.startswith("_") for path in shop_default)
    # Switched-off templates still come back, rendered to whitespace.
    assert shop_default["shop/templates/debug-pod.yaml"].strip() == ""


CHART_CASES = [
    pytest.param("minimal", None, id="minimal-default"),
    pytest.param("shop", None, id="shop-default"),
    pytest.param("shop", SHOP_ALL_ON, id="shop-all-on"),
    pytest.param("seed-se", None, id="seed-se-default"),
    pytest.param("seed-se", "ci-values", id="seed-se-ci-values"),
]


@pytest.mark.parametrize(("chart", "values"), CHART_CASES)
def test_every_chart_renders_into_both_streams(chart: str, values: Any) -> None:
    if values == "ci-values":
        values = _seed_ci_values()
    rendered = render_chart(CHARTS / chart, values, release=RELEASE, namespace=NAMESPACE)
    for stream in (helm3_stream(rendered), helm4_stream(rendered)):
        objects = _objects(stream)
        assert objects
        for obj in objects:
            assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"]
            assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
            if obj["kind"] not in {"ServiceEntry"}:
                assert obj["metadata"]["namespace"] == NAMESPACE


def test_shop_all_on_renders_every_workload_kind(shop_all_h4: str) -> None:
    objects = _objects(shop_all_h4)
    expected = {
        ("Deployment", "demo-shop-web"),
        ("Deployment", "demo-shop-api"),
        ("StatefulSet", "demo-shop-db"),
        ("DaemonSet", "demo-shop-agent"),
        ("CronJob", "demo-shop-report"),
        ("Job", "demo-shop-migrate"),
        ("Pod", "demo-shop-debug"),
        ("Rollout", "demo-shop-canary"),
        ("Job", "demo-shop-pre-upgrade"),
        ("Pod", "demo-shop-test-connection"),
        ("Service", "demo-shop-web"),
        ("Service", "demo-shop-api"),
        ("Service", "demo-shop-db"),
        ("ConfigMap", "demo-shop-config"),
        ("ServiceAccount", "demo-shop"),
        ("Secret", "demo-shop-db"),
    }
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} == expected
    rollout = _find(objects, "Rollout", "demo-shop-canary")
    assert rollout["apiVersion"] == "argoproj.io/v1alpha1"
    assert rollout["spec"]["template"]["spec"]["containers"]


def test_shop_defaults_leave_debug_pod_and_rollout_off(shop_default: dict[str, str]) -> None:
    kinds = {o["kind"] for o in _objects(helm4_stream(shop_default))}
    assert "Rollout" not in kinds
    names = {o["metadata"]["name"] for o in _objects(helm4_stream(shop_default))}
    assert "demo-shop-debug" not in names


@pytest.mark.parametrize("workload", ["web", "api", "db", "agent", "report", "migrate"])
def test_shop_workloads_switch_off(workload: str) -> None:
    rendered = render_chart(
        CHARTS / "shop", {workload: {"enabled": False}}, release=RELEASE, namespace=NAMESPACE
    )
    objects = {(o["kind"], o["metadata"]["name"]) for o in _objects(helm4_stream(rendered))}
    workloads = {key for key in POD_TEMPLATE_PATHS if key[1] == f"demo-shop-{workload}"}
    assert workloads and not workloads & objects


POD_TEMPLATE_PATHS = {
    ("Deployment", "demo-shop-web"): ("spec", "template"),
    ("Deployment", "demo-shop-api"): ("spec", "template"),
    ("StatefulSet", "demo-shop-db"): ("spec", "template"),
    ("DaemonSet", "demo-shop-agent"): ("spec", "template"),
    ("CronJob", "demo-shop-report"): ("spec", "jobTemplate", "spec", "template"),
    ("Job", "demo-shop-migrate"): ("spec", "template"),
    ("Rollout", "demo-shop-canary"): ("spec", "template"),
}


def test_shop_annotation_values_land_on_workload_and_pod_template(shop_all_h4: str) -> None:
    objects = _objects(shop_all_h4)
    for (kind, name), template_path in POD_TEMPLATE_PATHS.items():
        obj = _find(objects, kind, name)
        component = name.removeprefix("demo-shop-")
        assert obj["metadata"]["annotations"]["example.com/on"] == f"{component}-workload"
        template: Any = obj
        for key in template_path:
            template = template[key]
        assert template["metadata"]["annotations"] == {"example.com/on": f"{component}-pod"}
    debug = _find(objects, "Pod", "demo-shop-debug")
    # A bare Pod has no template: both maps merge into its metadata, and
    # sprig's merge lets the first map (annotations) win a clash.
    assert debug["metadata"]["annotations"]["example.com/on"] == "debug-workload"
    hook = _find(objects, "Job", "demo-shop-pre-upgrade")
    assert hook["metadata"]["annotations"][HOOK_ANNOTATION] == "pre-install,pre-upgrade"
    assert hook["metadata"]["annotations"]["example.com/on"] == "hook"


def test_seed_se_reproduces_the_seed_charts_bugs() -> None:
    rendered = render_chart(
        CHARTS / "seed-se", _seed_ci_values(), release=RELEASE, namespace=NAMESPACE
    )
    entries = {
        o["metadata"]["name"]: o["spec"]
        for o in _objects(helm3_stream(rendered))
        if o["kind"] == "ServiceEntry"
    }
    assert set(entries) == {
        "demo-seed-se-slack",
        "demo-seed-se-s3",
        "demo-seed-se-reporting-db",
        "demo-seed-se-pagerduty",
        "demo-seed-se-partner-vpn",
    }
    assert entries["demo-seed-se-s3"]["hosts"] == ["*.s3.amazonaws.com"]
    assert entries["demo-seed-se-s3"]["resolution"] == "DNS"
    assert entries["demo-seed-se-reporting-db"]["hosts"] == ["demo-seed-se-reporting-db"]
    assert entries["demo-seed-se-pagerduty"]["ports"] == [
        {"number": 443, "name": "tls-443", "protocol": "TLS"}
    ]
    assert entries["demo-seed-se-partner-vpn"]["resolution"] == "NONE"
    for spec in entries.values():
        assert spec["exportTo"] == ["."]
        assert spec["location"] == "MESH_EXTERNAL"


# --------------------------------------------------------------------------
# Helm 3 stream


def test_helm3_every_document_has_separator_and_source(
    shop_all: dict[str, str], shop_all_h3: str
) -> None:
    assert shop_all_h3.startswith("---\n# Source: ")
    chunks = shop_all_h3.split("---\n# Source: ")[1:]
    assert len(chunks) == len(split_documents(shop_all_h3))
    for chunk in chunks:
        path, body = chunk.split("\n", 1)
        assert path in shop_all
        # renderResources writes strings.TrimSpace(doc) + "\n": the body is a
        # verbatim slice of the rendered file.
        assert body.endswith("\n") and not body.endswith("\n\n")
        assert body.rstrip("\n") in shop_all[path]


def test_helm3_drops_hooks_notes_and_tests(shop_all_h3: str) -> None:
    assert HOOK_ANNOTATION not in shop_all_h3
    assert "NOTES.txt" not in shop_all_h3
    names = {o["metadata"]["name"] for o in _objects(shop_all_h3)}
    assert "demo-shop-pre-upgrade" not in names
    assert "demo-shop-test-connection" not in names
    assert "demo-shop-migrate" in names  # a plain Job is not a hook


def test_helm3_kind_order_follows_install_order(shop_all_h3: str) -> None:
    kinds = [o["kind"] for o in _objects(shop_all_h3)]
    rank = {kind: index for index, kind in enumerate(HELM3_INSTALL_ORDER)}
    known = [kind for kind in kinds if kind in rank]
    assert [rank[k] for k in known] == sorted(rank[k] for k in known)
    assert kinds[-1] == "Rollout"  # unknown kinds go last
    assert kinds[:4] == ["ServiceAccount", "Secret", "ConfigMap", "Service"]


def test_helm3_same_kind_keeps_file_order_not_name_order(shop_all_h3: str) -> None:
    services = [o["metadata"]["name"] for o in _objects(shop_all_h3) if o["kind"] == "Service"]
    # api.yaml < db-statefulset.yaml < web.yaml: the kind sort is stable in
    # every Helm 3 release (sort.Stable, then sort.SliceStable since PR #7499).
    assert services == ["demo-shop-api", "demo-shop-db", "demo-shop-web"]
    rendered = {
        "c/templates/a.yaml": "kind: ConfigMap\nmetadata:\n  name: zzz\n",
        "c/templates/b.yaml": "kind: ConfigMap\nmetadata:\n  name: aaa\n",
    }
    names = [o["metadata"]["name"] for o in _objects(helm3_stream(rendered))]
    assert names == ["zzz", "aaa"]


def test_helm3_unknown_kinds_sort_alphabetically_by_kind() -> None:
    # lessByKind: "if both are unknown then sort alphabetically by kind, keep
    # original order if same kind"; webhook configurations are unknown to v3.
    docs = [
        ("ServiceMonitor", "sm1"),
        ("ValidatingWebhookConfiguration", "vwc"),
        ("Alertmanager", "am"),
        ("Deployment", "dep"),
        ("ServiceMonitor", "sm2"),
        ("MutatingWebhookConfiguration", "mwc"),
    ]
    rendered = {
        f"c/templates/{index:02d}.yaml": f"kind: {kind}\nmetadata:\n  name: {name}\n"
        for index, (kind, name) in enumerate(docs)
    }
    order = [o["metadata"]["name"] for o in _objects(helm3_stream(rendered))]
    assert order == ["dep", "am", "mwc", "sm1", "sm2", "vwc"]
    order4 = [
        o["metadata"]["name"]
        for o in _objects(helm3_stream(rendered, install_order=HELM4_INSTALL_ORDER))
    ]
    assert order4 == ["dep", "mwc", "vwc", "am", "sm1", "sm2"]


def test_helm3_splits_like_split_manifests() -> None:
    content = (
        "\n\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\n"
        "---apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: glued\n"
        "---\ndata:\n  x: |\n    a\n    ---\n    b\n"
    )
    assert split_manifests(content) == [
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: glued",
        "data:\n  x: |\n    a\n    ---\n    b",
    ]


def test_helm3_keeps_a_second_separator_after_blank_lines() -> None:
    # `(?:^|\s*\n)---\s*` eats the blank lines after the first `---`, so the
    # second `---` has no newline before it left to match: Helm keeps it as
    # the start of the next document. A template whose conditional block
    # renders empty between two separators produces exactly this.
    content = "a: 1\n---\n\n---\nb: 2\n"
    assert split_manifests(content) == ["a: 1", "---\nb: 2"]
    assert helm3_stream({"c/templates/x.yaml": content}) == (
        "---\n# Source: c/templates/x.yaml\na: 1\n"
        "---\n# Source: c/templates/x.yaml\n---\nb: 2\n"
    )
    assert helm4_stream({"c/templates/x.yaml": content}, quote_filename=False) == (
        f"a: 1\nmetadata:\n  annotations:\n    {FILENAME_ANNOTATION}: c/templates/x.yaml\n---\n"
        f"b: 2\nmetadata:\n  annotations:\n    {FILENAME_ANNOTATION}: c/templates/x.yaml\n"
    )
    assert split_manifests("a: 1\n\n\n", trim_right=False) == ["a: 1\n\n\n"]


def test_helm3_skips_partials_empty_files_and_notes_keeps_comment_only_docs() -> None:
    rendered = {
        "c/templates/_partial.yaml": "kind: ConfigMap\nmetadata:\n  name: partial\n",
        "c/templates/empty.yaml": " \n\t\n",
        "c/templates/NOTES.txt": "kind: ConfigMap\nmetadata:\n  name: notes\n",
        "c/charts/sub/templates/NOTES.txt": "kind: ConfigMap\nmetadata:\n  name: subnotes\n",
        "c/templates/comment.yaml": "# only a comment\n",
        "c/templates/cm.yaml": "kind: ConfigMap\nmetadata:\n  name: real\n",
    }
    # A comment-only document parses to an empty SimpleHead: kind "" is an
    # unknown kind, sorted after the known ones.
    assert helm3_stream(rendered) == (
        "---\n# Source: c/templates/cm.yaml\nkind: ConfigMap\nmetadata:\n  name: real\n"
        "---\n# Source: c/templates/comment.yaml\n# only a comment\n"
    )


def test_helm3_drops_unknown_hook_types_too() -> None:
    rendered = {
        "c/templates/x.yaml": (
            "kind: ConfigMap\nmetadata:\n  name: odd\n  annotations:\n"
            "    helm.sh/hook: not-a-hook\n---\n"
            "kind: ConfigMap\nmetadata:\n  name: kept\n  annotations:\n    a: b\n"
        )
    }
    assert [o["metadata"]["name"] for o in _objects(helm3_stream(rendered))] == ["kept"]


@pytest.mark.parametrize("value", ["{a: b}", "[a]"])
def test_helm3_rejects_what_simplehead_cannot_decode(value: str) -> None:
    bad = f"kind: ConfigMap\nmetadata:\n  name: x\n  annotations:\n    weight: {value}\n"
    with pytest.raises(HelmStreamError, match="YAML parse error on c/templates/x.yaml"):
        helm3_stream({"c/templates/x.yaml": bad})


@pytest.mark.parametrize("value", ["5", "yes", "y", "true", "null", "1.5", "2001-01-01"])
def test_helm3_takes_any_scalar_as_an_annotation_string(value: str) -> None:
    # sigs.k8s.io/yaml turns a scalar headed for a Go string into that string
    # (seen with Helm v3.17.3), so none of these stop Helm 3.
    doc = f"kind: ConfigMap\nmetadata:\n  name: x\n  annotations:\n    weight: {value}\n"
    assert helm3_stream({"c/templates/x.yaml": doc}) == f"---\n# Source: c/templates/x.yaml\n{doc}"


def test_helm3_hide_secret_writes_comment_only_document(shop_all: dict[str, str]) -> None:
    stream = helm3_stream(shop_all, hide_secret=True)
    assert "---\n# Source: shop/templates/secret.yaml\n" + HIDDEN_SECRET_LINE + "\n" in stream
    assert "kind: Secret" not in stream


@pytest.mark.parametrize("chart", ["ingress-nginx", "prometheus"])
def test_helm3_matches_corpus_byte_for_byte(chart: str) -> None:
    corpus = (CORPUS / f"{chart}.helm3.yaml").read_text()
    files: dict[str, list[str]] = {}
    for doc in split_documents(corpus):
        source, body = doc.split("\n", 1)
        files.setdefault(source.removeprefix("# Source: "), []).append(body)
    rendered = {path: "---\n".join(bodies) for path, bodies in files.items()}
    assert helm3_stream(rendered) == corpus


# --------------------------------------------------------------------------
# Helm 4 stream


def test_helm4_has_no_leading_separator_and_no_source_comments(shop_all_h4: str) -> None:
    assert not shop_all_h4.startswith("---")
    assert "# Source:" not in shop_all_h4
    assert shop_all_h4.endswith("\n")
    separators = [line for line in shop_all_h4.splitlines() if line.startswith("---")]
    assert set(separators) == {"---"}


def test_helm4_every_document_carries_its_filename_in_file_order(
    shop_all: dict[str, str], shop_all_h4: str
) -> None:
    expected: list[str] = []
    for path in sorted(shop_all):
        if path.endswith("NOTES.txt"):
            continue
        expected += [path] * len([d for d in _load_all(shop_all[path]) if d is not None])
    objects = _objects(shop_all_h4)
    assert [o["metadata"]["annotations"][FILENAME_ANNOTATION] for o in objects] == expected
    for obj in objects:
        assert list(obj["metadata"]["annotations"])[-1] == FILENAME_ANNOTATION


def test_helm4_keeps_hooks_and_their_annotations_first(shop_all_h4: str) -> None:
    objects = _objects(shop_all_h4)
    hook = _find(objects, "Job", "demo-shop-pre-upgrade")
    assert list(hook["metadata"]["annotations"]) == [
        "helm.sh/hook",
        "helm.sh/hook-weight",
        "helm.sh/hook-delete-policy",
        "example.com/on",
        FILENAME_ANNOTATION,
    ]
    test_pod = _find(objects, "Pod", "demo-shop-test-connection")
    assert test_pod["metadata"]["annotations"][HOOK_ANNOTATION] == "test"


def test_helm4_documents_keep_their_data(shop_all: dict[str, str], shop_all_h4: str) -> None:
    originals = [
        doc
        for path in sorted(shop_all)
        if not path.endswith("NOTES.txt")
        for doc in _load_all(shop_all[path])
        if doc is not None
    ]
    reencoded = _objects(shop_all_h4)
    for obj in reencoded:
        annotations = obj["metadata"]["annotations"]
        del annotations[FILENAME_ANNOTATION]
        if not annotations:
            del obj["metadata"]["annotations"]
    assert reencoded == originals


def test_helm4_reencodes_like_yaml_v3(shop_all_h4: str) -> None:
    # Compact sequences, 2-space maps, quoting and flow style kept.
    assert "      containers:\n      - name: web\n" in shop_all_h4
    assert '        image: "registry.example.com/shop-web:1.4.2"\n' in shop_all_h4
    assert '    app.kubernetes.io/version: "1.4.2"\n' in shop_all_h4
    assert '    args: ["--listen=:9090", "--db-host=demo-shop-db"]\n' in shop_all_h4
    assert '    "helm.sh/hook": pre-install,pre-upgrade\n' in shop_all_h4
    assert "# Shared runtime settings for every shop component.\n" in shop_all_h4
    assert (
        f"    {FILENAME_ANNOTATION}: 'shop/templates/web.yaml'\n" in shop_all_h4
    )


def _cm(name: str, annotation_path: str) -> str:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n"
        f"    {FILENAME_ANNOTATION}: '{annotation_path}'\n"
    )


# Cases copied from helm/helm pkg/action/action_test.go TestAnnotateAndMerge.
ANNOTATE_AND_MERGE_CASES = [
    pytest.param({}, "", id="no files"),
    pytest.param(
        {
            "templates/configmap.yaml": "\napiVersion: v1\nkind: ConfigMap\nmetadata:\n"
            "  name: test-cm\ndata:\n  key: value",
            "templates/secret.yaml": "\napiVersion: v1\nkind: Secret\nmetadata:\n"
            "  name: test-secret\ndata:\n  password: dGVzdA==",
        },
        _cm("test-cm", "templates/configmap.yaml")
        + "data:\n  key: value\n---\n"
        + _cm("test-secret", "templates/secret.yaml").replace("ConfigMap", "Secret")
        + "data:\n  password: dGVzdA==\n",
        id="multiple files",
    ),
    pytest.param(
        {
            "templates/cm.yaml": "\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: test-cm1\n",
            "templates/_partial.tpl": '\n{{-define name}}\n  {{- "abracadabra"}}\n{{- end -}}',
            "templates/empty.yaml": "",
        },
        _cm("test-cm1", "templates/cm.yaml"),
        id="partials and empty files are removed",
    ),
    pytest.param(
        {
            "templates/mixed.yaml": "\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n"
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm2\n"
            "---apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm3\n"
        },
        "---\n".join(_cm(f"cm{i}", "templates/mixed.yaml") for i in (1, 2, 3)),
        id="mixed glued and proper separators",
    ),
    pytest.param(
        {
            "templates/configmap.yaml": "\napiVersion: v1\nkind: ConfigMap\nmetadata:\n"
            "  name: dashboard\ndata:\n  dashboard.json: |\n"
            '    {"options":{"---------":{"color":"#292929","text":"N/A"}}}\n'
        },
        _cm("dashboard", "templates/configmap.yaml")
        + 'data:\n  dashboard.json: |\n    {"options":{"---------":{"color":"#292929","text":"N/A"}}}\n',
        id="JSON with dashes in values is not corrupted",
    ),
]


@pytest.mark.parametrize(("files", "expected"), ANNOTATE_AND_MERGE_CASES)
def test_helm4_matches_helms_annotate_and_merge_tests(
    files: dict[str, str], expected: str
) -> None:
    assert helm4_stream(files) == expected


# (input chomping, trailing newlines) -> emitted header, from the same table.
@pytest.mark.parametrize(
    ("indicator", "tail", "emitted"),
    [
        ("|", "", "|-\n    hello\n"),
        ("|", "\n", "|\n    hello\n"),
        ("|", "\n\n", "|\n    hello\n"),
        ("|-", "\n\n", "|-\n    hello\n"),
        ("|+", "", "|-\n    hello\n"),
        ("|+", "\n", "|\n    hello\n"),
        ("|+", "\n\n", "|+\n    hello\n\n"),
    ],
)
def test_helm4_block_scalar_chomping_of_last_document(
    indicator: str, tail: str, emitted: str
) -> None:
    head = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: test\n"
    content = f"\n{head}data:\n  key: {indicator}\n    hello{tail}"
    assert helm4_stream({"templates/cm.yaml": content}) == (
        _cm("test", "templates/cm.yaml") + "data:\n  key: " + emitted
    )


def test_helm4_empty_annotations_are_recreated_at_end_of_metadata() -> None:
    content = (
        "kind: ConfigMap\nmetadata:\n  annotations: {}\n  name: a\n---\n"
        "kind: ConfigMap\nmetadata:\n  annotations:\n  name: b\n---\n"
        "kind: ConfigMap\n"
    )
    assert helm4_stream({"c/x.yaml": content}, quote_filename=False) == (
        "kind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n"
        f"    {FILENAME_ANNOTATION}: c/x.yaml\n---\n"
        "kind: ConfigMap\nmetadata:\n  name: b\n  annotations:\n"
        f"    {FILENAME_ANNOTATION}: c/x.yaml\n---\n"
        "kind: ConfigMap\nmetadata:\n  annotations:\n"
        f"    {FILENAME_ANNOTATION}: c/x.yaml\n"
    )


def test_helm4_drops_comment_only_and_null_documents() -> None:
    rendered = {
        "c/templates/a.yaml": "# just a comment\n---\nnull\n---\n~\n",
        "c/templates/b.yaml": "kind: ConfigMap\nmetadata:\n  name: b\n",
    }
    assert [o["metadata"]["name"] for o in _objects(helm4_stream(rendered))] == ["b"]


def test_helm4_drops_blank_lines_but_not_inside_block_scalars() -> None:
    """What `{{- include "ns" . | nindent 2 }}` of nothing leaves (a line of blanks), and
    blank lines after a value: yaml.v3 keeps none (checked with Helm 4.1.4 on the travel chart)."""
    source = "kind: ConfigMap\nmetadata:\n  name: x\n  \n  labels:\n    a: b\n\n\ndata:\n  k: |\n    l1\n\n    l2\n"
    out = helm4_stream({"c/templates/x.yaml": source})
    assert out.startswith("kind: ConfigMap\nmetadata:\n  name: x\n  labels:\n    a: b\n  annotations:\n")
    assert out.endswith("data:\n  k: |\n    l1\n\n    l2\n")
    assert helm3_stream({"c/templates/x.yaml": source}).endswith(source)


def test_helm4_rejects_duplicate_keys_like_yaml_v3() -> None:
    with pytest.raises(HelmStreamError, match="already defined"):
        helm4_stream({"c/x.yaml": "kind: A\nmetadata:\n  name: a\n  name: b\n"})


def test_helm4_reencoding_matches_corpus_documents() -> None:
    # The corpus's Helm 4 documents were produced from the same rendered files
    # as its Helm 3 ones; re-encode each Helm 3 document (already trimmed the
    # Helm 3 way) and compare, skipping documents that arrived with an
    # `annotations:` key: kyaml moves an empty one to the end, the corpus
    # does not.
    helm3 = (CORPUS / "ingress-nginx.helm3.yaml").read_text()
    helm4 = (CORPUS / "ingress-nginx.helm4.yaml").read_text()
    corpus_docs = set(split_documents(helm4))
    compared = 0
    for doc in split_documents(helm3):
        source, body = doc.split("\n", 1)
        if re.search(r"(?m)^  annotations:", body):
            continue
        mine = helm4_stream({source.removeprefix("# Source: "): body.rstrip("\n")}, quote_filename=False)
        assert mine in corpus_docs
        compared += 1
    assert compared >= 8


# --------------------------------------------------------------------------
# Hostile variants and split_documents


@pytest.fixture(scope="module", params=["helm3", "helm4"])
def stream(request: pytest.FixtureRequest, shop_all_h3: str, shop_all_h4: str) -> str:
    return shop_all_h3 if request.param == "helm3" else shop_all_h4


def test_split_documents_round_trips_both_shapes(shop_all_h3: str, shop_all_h4: str) -> None:
    docs3 = split_documents(shop_all_h3)
    assert "".join(f"---\n{doc}" for doc in docs3) == shop_all_h3
    assert all(doc.startswith("# Source: ") for doc in docs3)
    docs4 = split_documents(shop_all_h4)
    assert "---\n".join(docs4) == shop_all_h4
    assert len(docs4) == len(_objects(shop_all_h4))


def test_split_documents_separator_rules() -> None:
    text = "a: 1\n--- # comment\nb: |\n  ---\n--- \t\nc: '--- x'\n--- d: 2\n---\n\n---\n"
    assert split_documents(text) == ["a: 1\n", "b: |\n  ---\n", "c: '--- x'\n--- d: 2\n"]


def test_with_crlf_converts_every_line_ending(stream: str) -> None:
    variant = with_crlf(stream)
    assert variant.count("\r\n") == stream.count("\n")
    assert "\n" not in variant.replace("\r\n", "")
    assert [d.replace("\r\n", "\n") for d in split_documents(variant)] == split_documents(stream)
    assert with_crlf(variant) == variant


def test_with_bom_prefixes_byte_order_mark(stream: str) -> None:
    variant = with_bom(stream)
    assert variant.encode("utf-8").startswith(b"\xef\xbb\xbf")
    assert variant[1:] == stream
    assert split_documents(variant) == split_documents(stream)


def test_with_end_markers_closes_every_document(stream: str) -> None:
    variant = with_end_markers(stream)
    docs = split_documents(variant)
    assert len(docs) == len(split_documents(stream))
    assert all(doc.endswith("\n...\n") for doc in docs)
    assert variant.count("\n...\n") == len(docs)
    assert _load_all(variant) == _load_all(stream)


def test_with_comment_only_doc_inserts_a_document_of_comments(stream: str) -> None:
    variant = with_comment_only_doc(stream, position=2)
    before, after = split_documents(stream), split_documents(variant)
    assert len(after) == len(before) + 1
    assert after[:2] + after[3:] == before
    assert all(line.startswith("#") for line in after[2].splitlines())
    assert HIDDEN_SECRET_LINE in after[2]
    loaded = _load_all(variant)
    assert loaded[2] is None
    assert [d for d in loaded if d is not None] == _objects(stream)


def test_with_comment_only_doc_helm3_shape_has_source_line(shop_all_h3: str) -> None:
    variant = with_comment_only_doc(shop_all_h3, position=0)
    assert variant.startswith(
        f"---\n# Source: shop/templates/secret.yaml\n{HIDDEN_SECRET_LINE}\n---\n# Source: "
    )
    appended = with_comment_only_doc(shop_all_h3, position=10_000, comment_lines=["# a", "# b"])
    assert appended.endswith("---\n# Source: shop/templates/secret.yaml\n# a\n# b\n")


def test_variants_compose(shop_all_h4: str) -> None:
    variant = with_bom(with_crlf(with_end_markers(with_comment_only_doc(shop_all_h4))))
    assert variant.startswith("\ufeff")
    assert "\r\n...\r\n" in variant
    docs = split_documents(variant)
    assert len(docs) == len(split_documents(shop_all_h4)) + 1
    yaml = YAML(typ="safe")
    loaded = list(yaml.load_all(io.StringIO(variant.removeprefix("\ufeff"))))
    assert loaded[1] is None

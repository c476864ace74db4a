"""helm-egress under the real Helm 3 and Helm 4 binaries (`pytest -m helm`).

Everything else in the suite feeds helm-egress streams rebuilt by `helmstream.py`. These
tests run what users run -- pinned Helm v3.17.3 and v4.1.4 from `scripts/fetch_helm.py` --
so a change in how Helm splits, annotates or sorts the stream, loads plugins, shows a
post-renderer's errors or validates `values.schema.json` shows up here first:

* Helm 3: `helm template --post-renderer helm-egress --post-renderer-args ...`, the
  console script found on PATH as users install it;
* Helm 4: `helm plugin install` of this checkout into a private Helm home (once per
  session: its install hook builds `.plugin-venv` with pip), then `template` and
  `install --dry-run=client` through the plugin;
* bad values under both, the helmfile example's arguments as helmfile passes them,
  `helm-egress schema` inside a chart's `values.schema.json`;
* a recording post-renderer captures Helm's stdin, which must equal what `helmstream.py`
  builds for the same chart and values -- the proof that the rest of the suite tests
  the right input.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

import oracle
from cases.build_inputs import CASES as GOLDEN_CASES
from helmbin import REPO, helm_binary, run
from helmstream import HOOK_ANNOTATION, helm3_stream, helm4_stream, render_chart
from test_commands import Release, helmfile_releases

pytestmark = pytest.mark.helm

CHARTS = REPO / "fixtures" / "charts"
EXAMPLES = REPO / "examples"
SHOP_VALUES = EXAMPLES / "egress" / "shop-values.yaml"
VENV_BIN = Path(sys.executable).parent
RELEASE, NAMESPACE = "demo", "prod"
PLUGIN = "helm-egress"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job", "CronJob",
                  "Pod", "Rollout"}
GENERATED_BY = "helm-egress.io/generated-by"

BAD_VALUES = """\
istio:
  egress:
    - name: slack
      hosts: [hooks.slack.com]
      ports:
        - {number: 443, protocol: HTTPX}
"""
BAD_LINE = 6
BAD_MESSAGE = f"bad-values.yaml:{BAD_LINE}: istio.egress[0].ports[0].protocol: 'HTTPX' is not one of"

# Checkout content a plugin install needs; everything else is local state.
_NOT_THE_PLUGIN = shutil.ignore_patterns(
    ".git", ".venv", ".plugin-venv", ".helm-bin", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache",
    ".mypy_cache", "results",
)
_RECORDER = '#!/bin/sh\n# Keep what Helm pipes in, hand it back unchanged.\ncat > "$HELM_EGRESS_RECORD" && cat "$HELM_EGRESS_RECORD"\n'


# ----------------------------------------------------------------------------- environments


def _base_env(home: Path) -> dict[str, str]:
    """The caller's environment without Helm or helm-egress settings, with a private Helm home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "XDG_"))}
    for name in ("DATA", "CONFIG", "CACHE"):
        env[f"HELM_{name}_HOME"] = str(home / name.lower())
    env["XDG_STATE_HOME"] = str(home / "state")
    env["KUBECONFIG"] = str(home / "no-cluster.kubeconfig")  # never a real cluster
    # Helm 3 finds `--post-renderer helm-egress` on PATH, as after `pip install`.
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    return env


@dataclass(frozen=True)
class Helm:
    major: str
    binary: Path
    version: str
    env: Mapping[str, str]
    home: Path
    recorder: str  # what --post-renderer takes to record the stream

    def __call__(self, *args: str | os.PathLike[str], cwd: Path | None = None, env: Mapping[str, str] | None = None,
                 timeout: float = 180) -> Any:
        return run([self.binary, *args], env={**self.env, **(env or {})}, cwd=cwd, timeout=timeout)

    def error_log(self) -> Path:
        return Path(self.env["XDG_STATE_HOME"]) / "helm-egress" / "last-error.log"

    def post_renderer(self, *args: str) -> list[str]:
        """Flags that run helm-egress: Helm 3 the console script plus `render`; Helm 4 the plugin."""
        if self.major == "v3":
            return ["--post-renderer", "helm-egress", "--post-renderer-args", "render",
                    *(f"--post-renderer-args={a}" for a in args)]
        return ["--post-renderer", PLUGIN, *(f"--post-renderer-args={a}" for a in args)]


@pytest.fixture(scope="session")
def helm3(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary, version = helm_binary("v3")
    if not (VENV_BIN / "helm-egress").is_file():
        pytest.fail(f"{VENV_BIN / 'helm-egress'} missing: install the project (pip install -e '.[test]')")
    home = tmp_path_factory.mktemp("helm3-home")
    recorder = home / "record.sh"
    recorder.write_text(_RECORDER)
    recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    return Helm("v3", binary, version, _base_env(home), home, str(recorder))


@dataclass(frozen=True)
class PluginInstall:
    source: Path
    result: Any  # CompletedProcess of `helm plugin install`


@pytest.fixture(scope="session")
def helm4_with_plugin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Helm, PluginInstall]:
    """Helm 4 with helm-egress installed from (a copy of) this checkout, the real way.

    Helm symlinks a local directory and the install hook builds `.plugin-venv` in it, so
    the hook runs on a copy: the checkout stays clean and every session installs afresh.
    """
    binary, version = helm_binary("v4")
    home = tmp_path_factory.mktemp("helm4-home")
    helm = Helm("v4", binary, version, _base_env(home), home, "recorder")
    source = home / "src" / PLUGIN
    shutil.copytree(REPO, source, ignore=_NOT_THE_PLUGIN, symlinks=True)
    installed = helm("plugin", "install", source, timeout=900)
    recorder = home / "src" / "recorder"
    recorder.mkdir()
    (recorder / "plugin.yaml").write_text(
        "apiVersion: v1\ntype: postrenderer/v1\nname: recorder\nversion: \"1.0.0\"\nruntime: subprocess\n"
        "runtimeConfig:\n  platformCommand:\n    - command: \"${HELM_PLUGIN_DIR}/record.sh\"\n"
    )
    (recorder / "record.sh").write_text(_RECORDER)
    (recorder / "record.sh").chmod(0o755)
    recorded = helm("plugin", "install", recorder)
    assert recorded.returncode == 0, recorded.stderr
    return helm, PluginInstall(source, installed)


@pytest.fixture(scope="session")
def helm4(helm4_with_plugin: tuple[Helm, PluginInstall]) -> Helm:
    helm, install = helm4_with_plugin
    if install.result.returncode != 0:
        pytest.fail(f"helm plugin install failed:\n{install.result.stdout}\n{install.result.stderr}")
    return helm


@pytest.fixture(scope="session", params=["v3", "v4"])
def helm(request: pytest.FixtureRequest) -> Helm:
    fixture: Helm = request.getfixturevalue("helm3" if request.param == "v3" else "helm4")
    return fixture


# ----------------------------------------------------------------------------- reading output


def _yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe").load_all(text) if isinstance(d, dict)]


def manifest_of(stdout: str) -> str:
    """The MANIFEST section of `helm install --dry-run` output (`template` prints only that)."""
    if "\nMANIFEST:\n" not in stdout:
        return stdout
    manifest = stdout.split("\nMANIFEST:\n", 1)[1]
    return manifest.split("\nNOTES:\n", 1)[0]


def _name(doc: Mapping[str, Any]) -> str:
    return str((doc.get("metadata") or {}).get("name"))


def _is_hook(doc: Mapping[str, Any]) -> bool:
    return HOOK_ANNOTATION in ((doc.get("metadata") or {}).get("annotations") or {})


def assert_egress(manifest: str, values: Path, *, release: str = RELEASE, namespace: str = NAMESPACE,
                  annotated: Sequence[str] = ()) -> None:
    """What a user expects after rendering with `values`: a ServiceEntry per entry and per
    annotated workload, a NetworkPolicy per workload that is not a hook, all valid."""
    docs = _docs(manifest)
    generated = [d for d in docs if ((d["metadata"].get("annotations") or {}).get(GENERATED_BY))]
    workloads = [d for d in docs if d.get("kind") in WORKLOAD_KINDS and not _is_hook(d) and d not in generated]
    entries = YAML(typ="safe").load(values.read_text())["istio"]["egress"]
    service_entries = [d for d in generated if d["kind"] == "ServiceEntry"]
    policies = [d for d in generated if d["kind"] == "NetworkPolicy"]
    assert {_name(d) for d in service_entries} == {f"{release}-{e['name']}" for e in entries} | set(annotated)
    assert {_name(d) for d in policies} == {f"{_name(w)}-egress" for w in workloads}
    assert workloads, "the chart renders workloads"
    for doc in service_entries:
        assert oracle.serviceentry_problems(doc) == [], doc
        assert doc["metadata"]["namespace"] == namespace
    for doc in policies:
        assert oracle.networkpolicy_problems(doc) == [], doc


# ----------------------------------------------------------------------------- the binaries


def test_pinned_helm_versions(helm3: Helm, helm4: Helm) -> None:
    for helm in (helm3, helm4):
        result = helm("version", "--template", "{{.Version}}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == helm.version


# ----------------------------------------------------------------------------- Helm 3


def test_helm3_template_with_the_console_script(helm3: Helm, tmp_path: Path) -> None:
    result = helm3("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", SHOP_VALUES,
                   *helm3.post_renderer("-f", str(SHOP_VALUES)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_egress(result.stdout, SHOP_VALUES, annotated=["demo-shop-web"])


def test_helm3_show_only_finds_the_generated_documents(helm3: Helm, tmp_path: Path) -> None:
    """Helm 3 cuts the post-rendered stream at `# Source:` lines; ours name helm-egress files."""
    result = helm3("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", SHOP_VALUES,
                   "--show-only", "templates/helm-egress-networkpolicies.yaml",
                   *helm3.post_renderer("-f", str(SHOP_VALUES)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    docs = _docs(result.stdout)
    assert docs and {d["kind"] for d in docs} == {"NetworkPolicy"}


def test_helm3_cannot_load_the_helm4_plugin_file(helm3: Helm, tmp_path: Path) -> None:
    """README: never put plugin.yaml where Helm 3 loads plugins -- it breaks them all."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / PLUGIN).symlink_to(REPO, target_is_directory=True)
    result = helm3("plugin", "list", env={"HELM_PLUGINS": str(plugins)})
    assert result.returncode != 0
    assert 'unknown field "apiVersion"' in result.stderr


def test_helm3_bad_values_name_the_wrong_value_on_stderr(helm3: Helm, tmp_path: Path) -> None:
    (tmp_path / "bad-values.yaml").write_text(BAD_VALUES)
    result = helm3("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", "bad-values.yaml",
                   *helm3.post_renderer("-f", "bad-values.yaml"), cwd=tmp_path)
    assert result.returncode != 0
    assert "kind:" not in result.stdout
    # Helm 3 prints a failed post-renderer's stderr under "error output:".
    assert BAD_MESSAGE in result.stderr
    assert "Traceback" not in result.stderr


def test_helm3_hides_notes_of_a_successful_run(helm3: Helm, tmp_path: Path) -> None:
    """Helm 3 shows a post-renderer's stderr only when it fails: repairs (`note:` lines) of
    a chart's own ServiceEntries are not shown by `helm template`/`install`."""
    values = CHARTS / "seed-se" / "ci-values.yaml"
    args = ("-f", str(values), "--release", RELEASE)
    result = helm3("template", RELEASE, CHARTS / "seed-se", "-n", NAMESPACE, "-f", values,
                   *helm3.post_renderer(*args), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stderr
    stream = helm3_stream(render_chart(CHARTS / "seed-se", _yaml(values), release=RELEASE, namespace=NAMESPACE))
    direct = _run_with_input([VENV_BIN / "helm-egress", "render", *args], stream, helm3.env)
    assert direct.returncode == 0 and "note:" in direct.stderr, "the same run does print notes"


# ----------------------------------------------------------------------------- Helm 4


def test_helm4_plugin_install_builds_the_plugin_venv(helm4_with_plugin: tuple[Helm, PluginInstall]) -> None:
    helm, install = helm4_with_plugin
    out = install.result.stdout + install.result.stderr
    assert install.result.returncode == 0, out
    assert f"Installed plugin: {PLUGIN}" in out
    assert "helm-egress: ready: helm-egress 0.1.0" in out  # the install hook ran to the end
    listed = helm("plugin", "list")
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith(PLUGIN))
    assert row[:3] == [PLUGIN, "0.1.0", "postrenderer/v1"]
    venv_script = install.source / ".plugin-venv" / "bin" / "helm-egress"
    assert venv_script.is_file()
    version = run([venv_script, "--version"], env=helm.env)
    assert version.stdout.strip() == "helm-egress 0.1.0"


def test_helm4_template_through_the_plugin(helm4: Helm, tmp_path: Path) -> None:
    result = helm4("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", SHOP_VALUES,
                   *helm4.post_renderer("-f", str(SHOP_VALUES)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_egress(result.stdout, SHOP_VALUES, annotated=["demo-shop-web"])
    # Helm 4 sorts by kind after post-rendering and files generated documents under the
    # path helm-egress gave them, so --show-only finds them.
    only = helm4("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", SHOP_VALUES,
                 "--show-only", "templates/helm-egress-serviceentries.yaml",
                 *helm4.post_renderer("-f", str(SHOP_VALUES)), cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert {d["kind"] for d in _docs(only.stdout)} == {"ServiceEntry"}


def test_helm4_post_renderer_must_be_a_plugin_name(helm4: Helm, tmp_path: Path) -> None:
    """README: Helm 4 takes only a plugin name; the console script's path is refused."""
    result = helm4("template", RELEASE, CHARTS / "minimal", "--post-renderer", VENV_BIN / "helm-egress", cwd=tmp_path)
    assert result.returncode != 0
    assert "Type:postrenderer/v1} not found" in result.stderr


def test_helm4_install_dry_run_client_through_the_plugin(helm4: Helm, tmp_path: Path) -> None:
    result = helm4("install", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", SHOP_VALUES, "--dry-run=client",
                   *helm4.post_renderer("-f", str(SHOP_VALUES)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "STATUS: pending-install" in result.stdout
    assert_egress(manifest_of(result.stdout), SHOP_VALUES, annotated=["demo-shop-web"])


def test_helm4_bad_values_are_in_the_error_file(helm4: Helm, tmp_path: Path) -> None:
    (tmp_path / "bad-values.yaml").write_text(BAD_VALUES)
    log = helm4.error_log()
    result = helm4("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", "bad-values.yaml",
                   *helm4.post_renderer("-f", "bad-values.yaml"), cwd=tmp_path)
    assert result.returncode != 0
    assert "kind:" not in result.stdout
    # What Helm 4.1.4 shows: only that the plugin failed. It drops the plugin's stderr
    # (README: "Helm 4 never shows a post-renderer's stderr"), even with --debug.
    assert f'plugin "{PLUGIN}" exited with error' in result.stderr
    assert "HTTPX" not in result.stderr
    assert BAD_MESSAGE in log.read_text()
    # A good run afterwards clears the file, so it never shows a stale error.
    good = helm4("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", SHOP_VALUES,
                 *helm4.post_renderer("-f", str(SHOP_VALUES)), cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert not log.exists()


def test_helm4_error_file_option_through_post_renderer_args(helm4: Helm, tmp_path: Path) -> None:
    (tmp_path / "bad-values.yaml").write_text(BAD_VALUES)
    chosen = tmp_path / "egress-errors.txt"
    result = helm4("install", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", "bad-values.yaml", "--dry-run=client",
                   *helm4.post_renderer("-f", "bad-values.yaml", f"--error-file={chosen}"), cwd=tmp_path)
    assert result.returncode != 0
    assert BAD_MESSAGE in chosen.read_text()


# ----------------------------------------------------------------------------- helmfile


@pytest.mark.parametrize("release", list(helmfile_releases()), ids=lambda r: r.name)
def test_helmfile_example_arguments(helm: Helm, release: Release) -> None:
    """`helmfile template` runs, from the helmfile's directory, `helm template NAME CHART
    --namespace NS --values FILE --post-renderer R --post-renderer-args=ARG ...`."""
    args = list(release.args)
    if helm.major == "v4":
        # As examples/helmfile.yaml says: under Helm 4 the same name is the plugin, which
        # passes `render` itself.
        assert args[0] == "render"
        args = args[1:]
    values = [arg for v in release.values for arg in ("--values", v)]
    result = helm("template", release.name, release.chart, "--namespace", release.namespace, *values,
                  "--post-renderer", release.renderer, *(f"--post-renderer-args={a}" for a in args), cwd=EXAMPLES)
    assert result.returncode == 0, result.stderr
    given = [a.split("=", 1)[1] for a in args if a.startswith("--values=")]
    # the chart names objects <release>-<chart>-<component>, or <release>-<component> when
    # the release name already contains the chart name (release "shop")
    annotated = ["shop-web"] if release.name == "shop" else []
    assert_egress(result.stdout, EXAMPLES / given[-1], release=release.name, namespace=release.namespace,
                  annotated=annotated)


# ----------------------------------------------------------------------------- stream fidelity


def _fidelity_cases() -> list[tuple[str, dict[str, Any]]]:
    cases: dict[str, tuple[str, dict[str, Any]]] = {}
    for chart, values, _shape in GOLDEN_CASES.values():
        cases.setdefault(f"{chart}:{json.dumps(values, sort_keys=True)}", (chart, values))
    cases["yaml-shapes"] = ("yaml-shapes", {})
    return list(cases.values())


FIDELITY_CASES = _fidelity_cases()


@pytest.mark.parametrize(("chart", "values"), FIDELITY_CASES,
                         ids=[f"{c}-{i}" for i, (c, _v) in enumerate(FIDELITY_CASES)])
def test_helmstream_builds_what_helm_pipes(helm: Helm, tmp_path: Path, chart: str, values: dict[str, Any]) -> None:
    """What real Helm hands a post-renderer equals, byte for byte, what helmstream.py
    builds for the same chart and values -- the input every other test feeds helm-egress."""
    values_file = tmp_path / "values.json"  # JSON: no YAML 1.1 `yes`/`no` surprises on the way
    values_file.write_text(json.dumps(values))
    record = tmp_path / "stdin.yaml"
    result = helm("template", RELEASE, CHARTS / chart, "-n", NAMESPACE, "-f", values_file,
                  "--post-renderer", helm.recorder, env={"HELM_EGRESS_RECORD": str(record)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    recorded = record.read_bytes().decode("utf-8")
    rendered = render_chart(CHARTS / chart, values, release=RELEASE, namespace=NAMESPACE)
    built = helm3_stream(rendered) if helm.major == "v3" else helm4_stream(rendered)
    assert built == recorded


# ----------------------------------------------------------------------------- the seed's own chart


@pytest.mark.parametrize("values_name", ["values.yaml", "ci-values.yaml"])
def test_the_seed_chart_comes_out_working(helm: Helm, tmp_path: Path, values_name: str) -> None:
    """The seed's chart (lazy-helm-charts' `_service-entry.tpl`, bugs included) as real Helm
    hands it over: every ServiceEntry valid, the chart's own kept at the apiVersion it wrote,
    the address-only one repaired to reach its addresses, and `check` saying why."""
    values = CHARTS / "seed-se" / values_name
    record = tmp_path / "stdin.yaml"
    recorded = helm("template", RELEASE, CHARTS / "seed-se", "-n", NAMESPACE, "-f", values,
                    "--post-renderer", helm.recorder, env={"HELM_EGRESS_RECORD": str(record)}, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    chart_entries = {_name(d): d for d in _docs(record.read_text()) if d.get("kind") == "ServiceEntry"}
    for flavour in ([], ["--network-policy=cilium", "--sidecar"]):
        result = helm("template", RELEASE, CHARTS / "seed-se", "-n", NAMESPACE, "-f", values,
                      *helm.post_renderer("-f", str(values), *flavour), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        service_entries = [d for d in _docs(result.stdout) if d.get("kind") == "ServiceEntry"]
        assert {_name(d) for d in service_entries} >= set(chart_entries)
        for doc in service_entries:
            assert oracle.serviceentry_problems(doc) == [], doc
            if _name(doc) in chart_entries:
                assert doc["apiVersion"] == chart_entries[_name(doc)]["apiVersion"] == "networking.istio.io/v1beta1"
            if not any("." in h for h in doc["spec"]["hosts"]):  # an invented host: only the addresses mean anything
                assert doc["spec"]["resolution"] in ("NONE", "STATIC"), doc
    check = _run_with_input([VENV_BIN / "helm-egress", "check", "-f", str(values)], record.read_text(), helm.env)
    assert check.returncode == 0, check.stdout + check.stderr
    address_only = [n for n, d in chart_entries.items() if d["spec"]["hosts"] == [n] and d["spec"]["resolution"] == "DNS"]
    assert address_only or values_name == "values.yaml"
    for name in address_only:
        assert f"(ServiceEntry/{name}): spec.resolution: an address-only ServiceEntry resolved by DNS" in check.stdout


# ----------------------------------------------------------------------------- values.schema.json


GOOD_SCHEMA_VALUES = {
    "shop-values": SHOP_VALUES.read_text(),
    # The schema's enums ignore case, in Helm's engines too.
    "any-case": "istio:\n  egress:\n    - {name: a, hosts: [a.example.com], resolution: dns,"
                " ports: [{number: 443, protocol: tls}, {number: 80, protocol: Http}]}\n",
}
BAD_SCHEMA_VALUES = {
    "protocol": ("istio:\n  egress:\n    - {name: a, hosts: [a.example.com], ports: [{number: 443, protocol: HTTPX}]}\n",
                 "0.ports.0.protocol", "HTTPX"),
    "name": ("istio:\n  egress:\n    - {name: Payments, hosts: [a.example.com], ports: [{number: 443, protocol: TLS}]}\n",
             "0.name", "Payments"),
    "resolution": ("istio:\n  egress:\n    - {name: a, hosts: [a.example.com], resolution: dnsx,"
                   " ports: [{number: 443, protocol: TLS}]}\n", "0.resolution", "dnsx"),
    "port-number": ("istio:\n  egress:\n    - {name: a, hosts: [a.example.com], ports: [{number: 70000, protocol: TLS}]}\n",
                    "0.ports.0.number", "70,000"),
}


@pytest.fixture(scope="module")
def schema_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The minimal chart with `helm-egress schema` embedded in its values.schema.json, as README shows."""
    printed = run([VENV_BIN / "helm-egress", "schema"], env=dict(os.environ))
    assert printed.returncode == 0, printed.stderr
    chart = tmp_path_factory.mktemp("schema-chart") / "minimal"
    shutil.copytree(CHARTS / "minimal", chart)
    (chart / "values.schema.json").write_text(json.dumps({
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "properties": {"istio": {"type": "object", "properties": {"egress": json.loads(printed.stdout)}}},
    }, indent=2))
    return chart


@pytest.mark.parametrize("case", sorted(GOOD_SCHEMA_VALUES))
def test_values_schema_accepts_good_values(helm: Helm, schema_chart: Path, tmp_path: Path, case: str) -> None:
    (tmp_path / "values.yaml").write_text(GOOD_SCHEMA_VALUES[case])
    result = helm("template", RELEASE, schema_chart, "-f", "values.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", sorted(BAD_SCHEMA_VALUES))
def test_values_schema_refuses_bad_values(helm: Helm, schema_chart: Path, tmp_path: Path, case: str) -> None:
    text, path, value = BAD_SCHEMA_VALUES[case]
    (tmp_path / "values.yaml").write_text(text)
    result = helm("template", RELEASE, schema_chart, "-f", "values.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    # Helm 3 (gojsonschema) names the field as istio.egress.0.x; Helm 4 as /istio/egress/0/x
    # and also quotes the value.
    if helm.major == "v3":
        assert f"istio.egress.{path}" in result.stderr, result.stderr
    else:
        assert "/istio/egress/" + path.replace(".", "/") in result.stderr, result.stderr
        assert value in result.stderr


# ----------------------------------------------------------------------------- helpers


def _run_with_input(command: Sequence[str | os.PathLike[str]], stdin: str, env: Mapping[str, str]) -> Any:
    import subprocess

    return subprocess.run([str(c) for c in command], input=stdin, env=dict(env), capture_output=True, text=True,
                          timeout=60, check=False)


# ----------------------------------------------------------------------------- one argument form


@pytest.mark.parametrize("with_render", [True, False], ids=["with-render", "options-only"])
def test_the_same_post_renderer_args_work_in_helm3_and_helm4(helm: Helm, with_render: bool, tmp_path: Path) -> None:
    """Issue 21: one spelling for both majors. Helm 3 runs the console script with the
    user's arguments; the Helm 4 plugin puts its own `render` first."""
    user_args = [*(["render"] if with_render else []), "-f", str(SHOP_VALUES)]
    flags = [f"--post-renderer-args={a}" for a in user_args]
    renderer = "helm-egress" if helm.major == "v3" else PLUGIN
    result = helm("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE, "-f", SHOP_VALUES,
                  "--post-renderer", renderer, *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_egress(result.stdout, SHOP_VALUES, annotated=["demo-shop-web"])


def test_helm4_usage_error_replaces_the_error_log(helm4: Helm, tmp_path: Path) -> None:
    (tmp_path / "bad-values.yaml").write_text(BAD_VALUES)
    log = helm4.error_log()
    failed = helm4("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE,
                   *helm4.post_renderer("-f", "bad-values.yaml"), cwd=tmp_path)
    assert failed.returncode != 0 and BAD_MESSAGE in log.read_text()
    for mistake, message in ((["-f", "missing.yaml"], "'missing.yaml' does not exist"),
                             (["--network-policy=calico"], "'calico' is not kubernetes, cilium or none"),
                             (["--dns-port=abc"], "'abc' is not a whole number")):
        result = helm4("template", RELEASE, CHARTS / "shop", "-n", NAMESPACE, *helm4.post_renderer(*mistake),
                       cwd=tmp_path)
        assert result.returncode != 0
        report = log.read_text()
        assert message in report and BAD_MESSAGE not in report, report

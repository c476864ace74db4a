"""Values given once: `helm egress ...` and the `helm-egress-helm` stand-in, with the real
Helm 3.17.3 and 4.1.4 and helmfile 0.166.0 (`pytest -m helm`).

The proof of "exactly as Helm merges them": the test chart renders, beside its Deployment,
a ConfigMap holding `.Values.istio` as Helm's template engine saw it in that same run. The
ServiceEntries helm-egress adds must be exactly the entries of that ConfigMap, and the ones
each case names, for chart defaults, several -f, every --set kind, `null` deletion and
`-f -`. Without the merge (values not handed over, or only the -f files) they differ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

import oracle
from helmbin import REPO, helm_binary, helmfile_binary

pytestmark = pytest.mark.helm

VENV_BIN = Path(sys.executable).parent
WRAPPER = VENV_BIN / "helm-egress-helm"
GENERATED_BY = "helm-egress.io/generated-by"
RELEASE = "demo"

CHART_YAML = "apiVersion: v2\nname: merge\nversion: 0.1.0\n"
CHART_VALUES = """\
istio:
  egress:
    - name: default-api
      hosts: [api.default.example.com]
      ports: [{number: 443, protocol: TLS}]
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-app
  labels:
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/managed-by: Helm
spec:
  selector: {matchLabels: {app: merge}}
  template:
    metadata: {labels: {app: merge}}
    spec: {containers: [{name: app, image: "registry.example.com/app:1"}]}
"""
# What the chart itself saw, in the same render: the reference the ServiceEntries must match.
SEEN = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: {{ .Release.Name }}-seen}
data:
  istio: {{ toJson .Values.istio | quote }}
"""
BAD_PROTOCOL = "istio.egress[0].ports[0].protocol: 'HTTPX' is not one of"


def entry(name: str, host: str) -> str:
    return f"{{name: {name}, hosts: [{host}], ports: [{{number: 443, protocol: TLS}}]}}"


FILES = {
    "a.yaml": f"istio:\n  egress:\n    - {entry('a1', 'a1.example.com')}\n    - {entry('a2', 'a2.example.com')}\n",
    "b.yaml": f"istio:\n  egress:\n    - {entry('b1', 'b1.example.com')}\n",
    "null.yaml": "istio:\n  egress: null\n",
    "other.yaml": "replicas: 3\n",
    "host.txt": "file.example.com",
}
SET_PORT = ["--set", "istio.egress[0].ports[0].number=443", "--set", "istio.egress[0].ports[0].protocol=TLS"]


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    expected: frozenset[str]  # entry names
    stdin: str | None = None


CASES = {
    "chart-defaults": Case((), frozenset({"default-api"})),
    "unrelated-file": Case(("-f", "other.yaml"), frozenset({"default-api"})),
    "two-files-later-wins": Case(("-f", "a.yaml", "-f", "b.yaml"), frozenset({"b1"})),
    "comma-list": Case(("--values=b.yaml,a.yaml",), frozenset({"a1", "a2"})),
    "set-over-file": Case(("-f", "a.yaml", "--set", "istio.egress[0].name=viaset",
                           "--set", "istio.egress[0].hosts[0]=set.example.com", *SET_PORT),
                          frozenset({"viaset", "a2"})),  # --set edits the list from the file in place
    "set-string": Case(("--set-string", "istio.egress[0].name=str,istio.egress[0].hosts[0]=s.example.com",
                        *SET_PORT), frozenset({"str"})),
    "set-json": Case(("-f", "a.yaml", "--set-json",
                      'istio.egress=[{"name":"json","hosts":["j.example.com"],"ports":[{"number":443,"protocol":"TLS"}]}]'),
                     frozenset({"json"})),
    "set-file": Case(("--set", "istio.egress[0].name=viafile", "--set-file", "istio.egress[0].hosts[0]=host.txt",
                      *SET_PORT), frozenset({"viafile"})),
    "set-literal": Case(("--set-literal", "istio.egress[0].name=lit", "--set", "istio.egress[0].hosts[0]=l.example.com",
                         *SET_PORT), frozenset({"lit"})),
    "null-file-deletes-default": Case(("-f", "null.yaml"), frozenset()),
    "null-set-deletes-file": Case(("-f", "a.yaml", "--set", "istio.egress=null"), frozenset()),
    "values-from-stdin": Case(("-f", "-"), frozenset({"b1"}), stdin=FILES["b.yaml"]),
}


# ----------------------------------------------------------------------------- set-up


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "XDG_"))}
    for name in ("DATA", "CONFIG", "CACHE"):
        env[f"HELM_{name}_HOME"] = str(home / name.lower())
    env["XDG_STATE_HOME"] = str(home / "state")
    env["KUBECONFIG"] = str(home / "no-cluster.kubeconfig")
    env["TMPDIR"] = str(home / "tmp")  # the wrapper's temp files land here, and must not stay
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


@dataclass(frozen=True)
class Helm:
    major: str
    binary: Path
    env: dict[str, str]
    home: Path

    def run(self, argv: Sequence[str | os.PathLike[str]], *, cwd: Path, stdin: str | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in argv], cwd=cwd, env={**self.env, **(env or {})}, input=stdin or "",
                              capture_output=True, text=True, timeout=300, check=False)

    def wrapper(self, *args: str | os.PathLike[str], cwd: Path, stdin: str | None = None) -> Any:
        return self.run([WRAPPER, *args], cwd=cwd, stdin=stdin, env={"HELM_EGRESS_HELM": str(self.binary)})

    def helm(self, *args: str | os.PathLike[str], cwd: Path, stdin: str | None = None) -> Any:
        return self.run([self.binary, *args], cwd=cwd, stdin=stdin)

    def leftovers(self) -> list[str]:
        return sorted(os.listdir(self.env["TMPDIR"]))


@pytest.fixture(scope="session", params=["v3", "v4"])
def helm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary, _version = helm_binary(request.param)
    if not WRAPPER.is_file():
        pytest.fail(f"{WRAPPER} missing: install the project (pip install -e '.[test]')")
    home = tmp_path_factory.mktemp(f"wrap-{request.param}")
    return Helm(request.param, binary, _base_env(home), home)


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("merge-chart") / "merge"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text(CHART_YAML)
    (root / "values.yaml").write_text(CHART_VALUES)
    (root / "templates" / "deployment.yaml").write_text(DEPLOYMENT)
    (root / "templates" / "seen.yaml").write_text(SEEN)
    return root


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe").load_all(text) if isinstance(d, dict)]


def generated_entries(manifest: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs(manifest) if d.get("kind") == "ServiceEntry"
            and (d["metadata"].get("annotations") or {}).get(GENERATED_BY)}


def seen_entries(manifest: str, release: str = RELEASE) -> list[dict[str, Any]]:
    seen = next(d for d in docs(manifest) if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == f"{release}-seen")
    istio = json.loads(seen["data"]["istio"])
    return list((istio or {}).get("egress") or [])


def assert_matches_helm(manifest: str, expected: frozenset[str], *, release: str = RELEASE,
                        namespace: str | None = None) -> None:
    """The ServiceEntries are the chart's own view of istio.egress, entry for entry."""
    made = generated_entries(manifest)
    seen = seen_entries(manifest, release)
    assert {e["name"] for e in seen} == set(expected), "the case's expectation of Helm's merge"
    assert set(made) == {f"{release}-{e['name']}" for e in seen}
    for e in seen:
        doc = made[f"{release}-{e['name']}"]
        assert doc["spec"]["hosts"] == e["hosts"]
        assert [p["number"] for p in doc["spec"]["ports"]] == [p["number"] for p in e["ports"]]
        assert oracle.serviceentry_problems(doc) == [], doc
        if namespace is not None:
            assert doc["metadata"]["namespace"] == namespace


# ----------------------------------------------------------------------------- the stand-in


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_wrapper_gives_the_values_helm_merged(helm: Helm, chart: Path, workdir: Path, case: str) -> None:
    c = CASES[case]
    result = helm.wrapper("template", RELEASE, chart, "-n", "prod", *c.args, cwd=workdir, stdin=c.stdin)
    assert result.returncode == 0, result.stderr
    assert_matches_helm(result.stdout, c.expected, namespace="prod")
    assert helm.leftovers() == []


def test_without_the_wrapper_the_values_are_missed(helm: Helm, chart: Path, workdir: Path) -> None:
    """The control: the classic post-renderer call with only the -f files misses --set and
    the chart's defaults, so the comparison above can tell."""
    renderer = (["--post-renderer", str(VENV_BIN / "helm-egress"), "--post-renderer-args=render"] if helm.major == "v3"
                else None)
    if renderer is None:
        pytest.skip("Helm 4 needs the installed plugin for the classic call; Helm 3 shows the point")
    result = helm.helm("template", RELEASE, chart, "-f", "a.yaml", "--set", "istio.egress[0].name=viaset",
                       "--set", "istio.egress[0].hosts[0]=set.example.com", *SET_PORT, *renderer,
                       "--post-renderer-args=-f", "--post-renderer-args=a.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    with pytest.raises(AssertionError):
        assert_matches_helm(result.stdout, frozenset({"viaset", "a2"}))


def test_wrapper_install_dry_run(helm: Helm, chart: Path, workdir: Path) -> None:
    if helm.major == "v3":
        pytest.skip("Helm 3.17's install --dry-run=client still asks a cluster for its version")
    result = helm.wrapper("install", RELEASE, chart, "--namespace", "prod", "-f", "a.yaml", "--dry-run=client",
                          cwd=workdir)
    assert result.returncode == 0, result.stderr
    manifest = result.stdout.split("\nMANIFEST:\n", 1)[1]
    assert_matches_helm(manifest, frozenset({"a1", "a2"}), namespace="prod")


def test_wrapper_bad_values_show_a_message(helm: Helm, chart: Path, workdir: Path) -> None:
    """Helm 4 hides a post-renderer's stderr; the stand-in prints the error file instead."""
    result = helm.wrapper("template", RELEASE, chart, "--set", "istio.egress[0].name=x",
                          "--set", "istio.egress[0].hosts[0]=x.example.com",
                          "--set", "istio.egress[0].ports[0].number=443", "--set", "istio.egress[0].ports[0].protocol=HTTPX",
                          cwd=workdir)
    assert result.returncode != 0
    assert BAD_PROTOCOL in result.stderr
    assert "kind:" not in result.stdout
    assert helm.leftovers() == []


@pytest.mark.parametrize(("args", "message"), [
    (("-f", "missing.yaml"), "missing.yaml"),
    (("--set-json", "istio.egress=[oops"), "failed parsing --set-json data istio.egress=[oops"),
    (("--reuse-values",), "--reuse-values takes values from the last release"),
])
def test_wrapper_usage_mistakes_show_a_message(helm: Helm, chart: Path, workdir: Path, args: tuple[str, ...],
                                              message: str) -> None:
    result = helm.wrapper("upgrade" if "--reuse-values" in args else "template", RELEASE, chart, *args, cwd=workdir)
    assert result.returncode != 0
    assert message in result.stderr
    assert helm.leftovers() == []


def test_wrapper_passes_other_commands_through(helm: Helm, chart: Path, workdir: Path) -> None:
    for args in (("version", "--short"), ("show", "values", str(chart)), ("template", "--help")):
        through, direct = helm.wrapper(*args, cwd=workdir), helm.helm(*args, cwd=workdir)
        assert (through.returncode, through.stdout, through.stderr) == (direct.returncode, direct.stdout, direct.stderr)


def test_wrapper_named_helm_finds_the_real_one(helm: Helm, chart: Path, workdir: Path) -> None:
    """Argo CD's repo-server: the stand-in installed as `helm`, ahead of the real one on PATH."""
    first, real = workdir / "sbin", workdir / "bin"
    first.mkdir()
    real.mkdir()
    (first / "helm").symlink_to(WRAPPER)
    (real / "helm").symlink_to(helm.binary)
    path = os.pathsep.join([str(first), str(real), helm.env["PATH"]])
    result = helm.run(["helm", "template", RELEASE, chart, "-f", "b.yaml"], cwd=workdir, env={"PATH": path})
    assert result.returncode == 0, result.stderr
    assert_matches_helm(result.stdout, frozenset({"b1"}))


def test_argocd_command_line(helm: Helm, chart: Path, workdir: Path, tmp_path: Path) -> None:
    """What Argo CD's repo-server runs (argo-cd util/helm/cmd.go `template`): in the chart's
    folder, `.`, the release as --name-template, absolute --values, CRDs included."""
    app = tmp_path / "repo" / "merge"
    shutil.copytree(chart, app)
    result = helm.wrapper("template", ".", "--name-template", "shop", "--namespace", "prod", "--kube-version", "1.31.0",
                          "--set", "replicas=2", "--values", workdir / "a.yaml", "--values", workdir / "b.yaml",
                          "--api-versions", "networking.istio.io/v1", "--api-versions", "v1", "--include-crds", cwd=app)
    assert result.returncode == 0, result.stderr
    assert_matches_helm(result.stdout, frozenset({"b1"}), release="shop", namespace="prod")
    assert not (app / "Chart.lock").exists() and sorted(os.listdir(app)) == sorted(os.listdir(chart))


# ----------------------------------------------------------------------------- helmfile


def test_helmfile_with_the_stand_in_as_helm_binary(chart: Path, workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """helmfile 0.166.0 (Helm 3; it runs `helm version --client`, which Helm 4 removed) with
    `helmBinary` pointing at the stand-in: the release's values files and `set:` reach
    helm-egress through Helm's own merge."""
    helmfile, _version = helmfile_binary()
    binary, _v = helm_binary("v3")
    env = _base_env(tmp_path_factory.mktemp("helmfile-home"))
    env["HELM_EGRESS_HELM"] = str(binary)
    (workdir / "helmfile.yaml").write_text(
        f"helmBinary: {WRAPPER}\n"
        "releases:\n"
        f"  - name: shop\n    namespace: prod\n    chart: {chart}\n    values: [a.yaml, b.yaml]\n"
        "    set:\n      - {name: 'istio.egress[0].name', value: fromhelmfile}\n"
    )
    result = subprocess.run([str(helmfile), "--file", "helmfile.yaml", "template", "--skip-deps"], cwd=workdir,
                            env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_matches_helm(result.stdout, frozenset({"fromhelmfile"}), release="shop", namespace="prod")
    assert os.listdir(env["TMPDIR"]) == []


# ----------------------------------------------------------------------------- the plugin


@dataclass(frozen=True)
class Installed:
    helm: Helm
    plugins: Path


@pytest.fixture(scope="session")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "package_plugin.py"), "--dest", str(dest)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return dest


@pytest.fixture(scope="session")
def egress_plugin(archives: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Installed]:
    """The `egress` plugin installed the way README says, under both majors at once: Helm 4
    from the archive, Helm 3 from the unpacked archive (Helm 3 installs no local .tgz)."""
    started: dict[str, tuple[Helm, subprocess.Popen[str]]] = {}
    for major in ("v3", "v4"):
        binary, _version = helm_binary(major)
        home = tmp_path_factory.mktemp(f"egress-{major}")
        helm = Helm(major, binary, _base_env(home), home)
        if major == "v4":
            source, extra = archives / "egress-0.1.0.tgz", ["--verify=false"]
        else:
            with tarfile.open(archives / "egress-0.1.0.tgz") as tar:
                tar.extractall(home / "src", filter="data")
            source, extra = home / "src" / "egress", []
        started[major] = helm, subprocess.Popen([str(binary), "plugin", "install", str(source), *extra], env=helm.env,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    installed = {}
    for major, (helm, child) in started.items():
        out, _ = child.communicate(timeout=900)
        if child.returncode != 0:
            pytest.fail(f"{major}: helm plugin install failed:\n{out}")
        assert "helm-egress: ready: helm-egress 0.1.0" in out, out
        installed[major] = Installed(helm, Path(helm.env["HELM_DATA_HOME"]) / "plugins")
    return installed


@pytest.fixture(params=["v3", "v4"])
def plugin(request: pytest.FixtureRequest, egress_plugin: dict[str, Installed]) -> Installed:
    return egress_plugin[request.param]


@pytest.mark.parametrize("case", ["chart-defaults", "two-files-later-wins", "set-over-file", "null-set-deletes-file"])
def test_helm_egress_plugin_gives_the_values_helm_merged(plugin: Installed, chart: Path, workdir: Path, case: str) -> None:
    c = CASES[case]
    # -n before the plugin name: Helm takes it as a global flag, removes it and exports HELM_NAMESPACE.
    result = plugin.helm.helm("-n", "prod", "egress", "template", RELEASE, chart, *c.args, cwd=workdir, stdin=c.stdin)
    assert result.returncode == 0, result.stderr
    assert_matches_helm(result.stdout, c.expected, namespace="prod")
    assert plugin.helm.leftovers() == []


def test_helm_egress_plugin_mistakes_show_a_message(plugin: Installed, chart: Path, workdir: Path) -> None:
    bad = plugin.helm.helm("egress", "template", RELEASE, chart, "--set", "istio.egress[0].name=x",
                           "--set", "istio.egress[0].hosts[0]=x.example.com",
                           "--set", "istio.egress[0].ports[0].number=443",
                           "--set", "istio.egress[0].ports[0].protocol=HTTPX", cwd=workdir)
    assert bad.returncode != 0 and BAD_PROTOCOL in bad.stderr
    unknown = plugin.helm.helm("egress", "list", cwd=workdir)
    assert unknown.returncode != 0 and "helm egress runs install, upgrade or template, not 'list'" in unknown.stderr
    twice = plugin.helm.helm("egress", "template", RELEASE, chart, "--post-renderer", "x", cwd=workdir)
    assert twice.returncode != 0 and "helm egress adds --post-renderer itself" in twice.stderr
    helped = plugin.helm.helm("egress", "--help", cwd=workdir)
    assert helped.returncode == 0 and "helm egress template shop ./shop" in helped.stdout
    assert plugin.helm.leftovers() == []


def test_plugin_update_keeps_the_users_files(egress_plugin: dict[str, Installed], tmp_path: Path) -> None:
    """Installed from the archive, the plugin is a copy: `helm plugin update` (Helm 4.1.4) finds
    no git source and changes nothing -- the user's files in their checkout and in the plugin
    folder stay, and the plugin still runs."""
    installed = egress_plugin["v4"]
    folder = installed.plugins / "egress"
    (folder / "my-notes.txt").write_text("mine")
    update = installed.helm.helm("plugin", "update", "egress", cwd=tmp_path)
    assert update.returncode != 0 and "cannot get information about plugin source" in update.stderr
    assert (folder / "my-notes.txt").read_text() == "mine"
    assert (folder / ".plugin-venv" / "bin" / "helm-egress").is_file()
    assert installed.helm.helm("egress", "--help", cwd=tmp_path).returncode == 0


# ----------------------------------------------------------------------------- checkouts


def _checkout(tmp_path: Path, name: str, plugin_yaml: str, hook: str | None = None) -> Path:
    """A user's clone of a plugin repository (origin and clone both named `name`, as
    `helm plugin update` needs to find it), with untracked files of theirs."""
    origin = tmp_path / "origin" / name
    origin.mkdir(parents=True)
    (origin / "plugin.yaml").write_text(plugin_yaml)
    (origin / "pyproject.toml").write_text("[project]\nname = 'helm-egress'\n")
    (origin / "scripts").mkdir()
    script = origin / "scripts" / "install-plugin.sh"
    if hook is None:
        shutil.copy2(REPO / "scripts" / "install-plugin.sh", script)
    else:
        script.write_text(hook)
        script.chmod(0o755)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "init.defaultBranch=main"]
    for argv in (["init", "-q"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run([*git, *argv], cwd=origin, check=True, capture_output=True)
    clone = tmp_path / "user" / name
    subprocess.run([*git, "clone", "-q", str(origin), str(clone)], check=True, capture_output=True)
    (clone / "notes.txt").write_text("mine")
    (clone / ".venv").mkdir()
    (clone / ".venv" / "marker").write_text("mine")
    return clone


def _checkout_cases() -> list[tuple[str, str, str]]:
    return [("v4", "helm-egress", (REPO / "plugin.yaml").read_text()),
            ("v4", "egress", (REPO / "plugins" / "egress" / "plugin.yaml").read_text()),
            ("v3", "egress", (REPO / "plugins" / "egress" / "plugin.yaml").read_text())]


@pytest.mark.parametrize(("major", "name", "plugin_yaml"), _checkout_cases(), ids=lambda v: v[:12])
def test_install_hook_refuses_a_checkout(tmp_path: Path, major: str, name: str, plugin_yaml: str) -> None:
    binary, _version = helm_binary(major)
    helm = Helm(major, binary, _base_env(tmp_path / "home"), tmp_path / "home")
    clone = _checkout(tmp_path, name, plugin_yaml)
    install = helm.helm("plugin", "install", clone, cwd=tmp_path)
    out = install.stdout + install.stderr
    assert install.returncode != 0
    assert "is a git checkout" in out and "git clean -x -d -f -f" in out and "package_plugin.py" in out
    assert name not in helm.helm("plugin", "list", cwd=tmp_path).stdout.split()
    update = helm.helm("plugin", "update", name, cwd=tmp_path)
    assert update.returncode != 0
    assert (clone / "notes.txt").read_text() == "mine" and (clone / ".venv" / "marker").read_text() == "mine"


def test_the_danger_is_real_without_the_refusal(tmp_path: Path) -> None:
    """The control: the same checkout with a hook that does not refuse is cleaned by
    Helm 4.1.4's `helm plugin update` -- what the refusal above prevents."""
    binary, _version = helm_binary("v4")
    helm = Helm("v4", binary, _base_env(tmp_path / "home"), tmp_path / "home")
    clone = _checkout(tmp_path, "helm-egress", (REPO / "plugin.yaml").read_text(), hook="#!/bin/sh\nexit 0\n")
    assert helm.helm("plugin", "install", clone, cwd=tmp_path).returncode == 0
    update = helm.helm("plugin", "update", "helm-egress", cwd=tmp_path)
    assert update.returncode == 0, update.stderr
    assert not (clone / "notes.txt").exists() and not (clone / ".venv").exists()


# ----------------------------------------------------------------------------- Helm's flags


def _help_flags(binary: Path, *command: str) -> dict[str, bool]:
    """Every flag `--help` lists, and whether it takes the next argument as its value
    (a type, without pflag's `[=default]` for a value that may be left out)."""
    import re

    text = subprocess.run([str(binary), *command, "--help"], capture_output=True, text=True, check=True).stdout
    flags = {}
    for line in text.splitlines():
        m = re.match(r"^\s+(?:-\w, )?--([\w-]+)(?: (\S+))?\s", line + " ")
        if m:
            flags[m.group(1)] = bool(m.group(2)) and "[=" not in m.group(2)
    return flags


@pytest.mark.parametrize("major", ["v3", "v4"])
@pytest.mark.parametrize("command", ["install", "upgrade", "template"])
def test_the_flag_table_is_helms(major: str, command: str) -> None:
    """A flag the stand-in takes for a switch but Helm gives a value would swallow the chart
    argument; one read the other way would swallow the chart."""
    from post_renderer import helmwrap

    binary, _version = helm_binary(major)
    for name, takes_value in _help_flags(binary, command).items():
        if name in helmwrap.OPTIONAL_VALUES:
            continue
        assert (name in helmwrap.VALUE_FLAGS) == takes_value, f"{major} {command} --{name}"
    assert set(_help_flags(binary)) - {"help"} <= helmwrap.GLOBAL_FLAGS


# ----------------------------------------------------------------------------- the schema recipe


def test_a_schema_ref_to_a_file_beside_it_breaks_every_install(helm: Helm, chart: Path, tmp_path: Path) -> None:
    """Why README only pastes `helm-egress schema` into values.schema.json: the `$ref` recipe
    it used to give stops Helm 3 and Helm 4 alike, even with good values."""
    schema = subprocess.run([str(VENV_BIN / "helm-egress"), "schema"], capture_output=True, text=True, check=True).stdout
    referring = tmp_path / "merge"
    shutil.copytree(chart, referring)
    (referring / "egress.schema.json").write_text(schema)
    (referring / "values.schema.json").write_text(json.dumps({
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "properties": {"istio": {"type": "object", "properties": {"egress": {"$ref": "egress.schema.json"}}}}}))
    result = helm.helm("template", RELEASE, referring, cwd=tmp_path)
    assert result.returncode != 0
    assert ("must be canonical" if helm.major == "v3" else "egress.schema.json") in result.stderr, result.stderr

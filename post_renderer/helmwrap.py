"""`helm egress install|upgrade|template ...` and the `helm-egress-helm` stand-in for `helm`.

Helm hands a post-renderer the manifests and nothing else, so a user had to name the values
twice: once for Helm, once in `--post-renderer-args`. Here the user's command goes to the
real Helm unchanged, with `--post-renderer` added, and the post-renderer is given the
`istio.egress` that Helm itself merged from the chart's defaults and the command's value
flags (`-f`, `--set`, `--set-string`, `--set-json`, `--set-file`, `--set-literal`).

Helm computes the merge, not this module: a probe chart whose `values.yaml` is the user
chart's and whose one template prints `.Values.istio` as JSON is rendered with the user's
value flags. Helm's coalescing (later files win, `null` deletes a default, the fixed order
of the `--set*` kinds, `--set` parsing) is then Helm's own, in whichever version runs.

Two ways in:

* ``helm-egress-helm --plugin ARGS``: the `egress` Helm plugin (Helm 3 and 4 both load its
  legacy plugin.yaml as a CLI plugin). Helm removes the global flags from ARGS and exports
  them (``HELM_NAMESPACE``, ``HELM_KUBECONTEXT``, ...) along with ``HELM_BIN``; the real Helm
  run here reads them back from the environment.
* ``helm-egress-helm ARGS``: a `helm` stand-in for helmfile's `helmBinary` and Argo CD's
  repo-server. Commands other than install/upgrade/template go to the real Helm as they are.

Standard library only, and no import of the post-renderer: this runs before every Helm
command the stand-in sees.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import NamedTuple

POST_RENDERED = frozenset({"install", "upgrade", "template"})
PROBE_RELEASE = "helm-egress-probe"
# Set for the real Helm we start, so a stand-in found again on its way passes through.
WRAPPED_ENV = "HELM_EGRESS_WRAPPED"
REAL_HELM_ENV = "HELM_EGRESS_HELM"
POST_RENDERER_ENV = "HELM_EGRESS_BIN"
PLUGIN_NAME = "helm-egress"

# Flags of `helm install|upgrade|template` (Helm 3.17 and 4.1) and Helm's global flags that
# take a value from the next argument; every other flag is a switch. A switch read as taking
# a value would swallow the chart argument, so tests/test_helmwrap.py compares these sets
# with both binaries' --help.
VALUE_FLAGS = frozenset({
    "api-versions", "burst-limit", "ca-file", "cert-file", "color", "colour", "content-cache", "description",
    "history-max", "key-file", "keyring", "kube-apiserver", "kube-as-group", "kube-as-user", "kube-ca-file",
    "kube-context", "kube-tls-server-name", "kube-token", "kube-version", "kubeconfig", "labels", "name-template",
    "namespace", "output", "output-dir", "password", "post-renderer", "post-renderer-args", "qps",
    "registry-config", "repo", "repository-cache", "repository-config", "set", "set-file", "set-json",
    "set-literal", "set-string", "show-only", "timeout", "username", "values", "version",
})
# Helm 4's `upgrade --server-side` takes "true|false|auto"; `install --server-side` is a switch.
OPTIONAL_VALUES = {"server-side": frozenset({"true", "false", "auto"})}
SHORT_FLAGS = {"a": "api-versions", "f": "values", "g": "generate-name", "h": "help", "i": "install",
               "l": "labels", "n": "namespace", "o": "output", "s": "show-only"}
VALUE_SETTERS = frozenset({"values", "set", "set-string", "set-json", "set-file", "set-literal"})
# What `helm show values` needs to find the same chart the command installs.
CHART_FLAGS = frozenset({"version", "repo", "username", "password", "ca-file", "cert-file", "key-file", "keyring",
                         "devel", "insecure-skip-tls-verify", "plain-http", "pass-credentials", "verify"})
GLOBAL_FLAGS = frozenset({
    "burst-limit", "color", "colour", "content-cache", "debug", "kube-apiserver", "kube-as-group", "kube-as-user",
    "kube-ca-file", "kube-context", "kube-insecure-skip-tls-verify", "kube-tls-server-name", "kube-token",
    "kubeconfig", "namespace", "qps", "registry-config", "repository-cache", "repository-config",
})
# Values Helm would take from the last release, which only the cluster knows.
REUSING_FLAGS = frozenset({"reuse-values", "reset-then-reuse-values"})

PROBE_CHART = "apiVersion: v2\nname: helm-egress-probe\nversion: 0.0.0\n"
# One JSON line: `istio` as Helm merged it; toJson never writes a newline.
PROBE_TEMPLATE = '{{ dict "istio" .Values.istio | toJson }}\n'

USAGE = """\
usage: helm egress install|upgrade|template [HELM FLAGS] [NAME] CHART

Runs the Helm command as given, with helm-egress as its post-renderer. helm-egress gets
the istio.egress Helm merges from the chart's values.yaml and every -f/--values, --set,
--set-string, --set-json, --set-file and --set-literal, and the release and namespace.

  helm egress template shop ./shop -n prod -f values.yaml -f prod.yaml --set replicas=2
  helm egress upgrade --install shop ./shop -n prod -f values.yaml
  helm egress template shop ./shop --post-renderer-args=--network-policy=cilium

More helm-egress options: --post-renderer-args=--OPTION=VALUE, or HELM_EGRESS_<OPTION>
in the environment (see `helm-egress render --help`).
"""


class UsageError(Exception):
    pass


class Option(NamedTuple):
    name: str  # long name, without dashes
    value: str | None
    start: int  # index of its first token in argv
    end: int  # one past its last token


class Command:
    """A Helm command line, split the way Helm's flag parser (pflag) splits it."""

    # dataclasses would cost ~10 ms of imports on every Helm command the stand-in sees.
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.options: list[Option] = []
        self.positionals: list[int] = []  # indexes into argv

    def values(self, name: str) -> list[str]:
        return [o.value for o in self.options if o.name == name and o.value is not None]

    def has(self, name: str) -> bool:
        return any(o.name == name for o in self.options)

    def tokens(self, names: frozenset[str]) -> list[str]:
        return [t for o in self.options if o.name in names for t in self.argv[o.start:o.end]]


def parse(argv: Sequence[str]) -> Command:
    command = Command(list(argv))
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            command.positionals += range(i + 1, len(argv))
            break
        if token.startswith("--"):
            name, eq, value = token[2:].partition("=")
            if eq:
                command.options.append(Option(name, value, i, i + 1))
            elif name in VALUE_FLAGS and i + 1 < len(argv):
                command.options.append(Option(name, argv[i + 1], i, i + 2))
                i += 1
            elif name in OPTIONAL_VALUES and i + 1 < len(argv) and argv[i + 1] in OPTIONAL_VALUES[name]:
                command.options.append(Option(name, argv[i + 1], i, i + 2))
                i += 1
            else:
                command.options.append(Option(name, None, i, i + 1))
        elif token.startswith("-") and len(token) > 1:
            # pflag reads `-fvalues.yaml`, `-f=values.yaml`, `-f values.yaml` and `-gf x`.
            for j in range(1, len(token)):
                name = SHORT_FLAGS.get(token[j], token[j])
                if name in VALUE_FLAGS:
                    rest = token[j + 1:].removeprefix("=")
                    if rest:
                        command.options.append(Option(name, rest, i, i + 1))
                    elif i + 1 < len(argv):
                        command.options.append(Option(name, argv[i + 1], i, i + 2))
                        i += 1
                    break
                command.options.append(Option(name, None, i, i + 1))
        else:
            command.positionals.append(i)
        i += 1
    return command


# ----------------------------------------------------------------------------- finding programs


def _is_this_wrapper(path: str) -> bool:
    """A copy of, or link to, this stand-in: never the Helm to run."""
    if os.path.realpath(path) == os.path.realpath(sys.argv[0]):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    return head.startswith(b"#!") and b"post_renderer.helmwrap" in head


def real_helm(plugin: bool, env: Mapping[str, str]) -> str:
    """The Helm binary to run: HELM_EGRESS_HELM, else Helm's own HELM_BIN for the plugin,
    else the first `helm` on PATH that is not this stand-in."""
    chosen = env.get(REAL_HELM_ENV) or (env.get("HELM_BIN") if plugin else None)
    if chosen:
        found = shutil.which(chosen, path=env.get("PATH"))
        if found is None:
            raise UsageError(f"the Helm to run, {chosen!r}, is not an executable")
        return found
    for directory in env.get("PATH", os.defpath).split(os.pathsep):
        candidate = shutil.which("helm", path=directory or ".")
        if candidate and not _is_this_wrapper(candidate):
            return candidate
    raise UsageError(f"no helm on PATH besides this stand-in; set {REAL_HELM_ENV}=/path/to/helm")


def post_renderer_executable(env: Mapping[str, str]) -> str:
    """The helm-egress console script installed beside this one (same package, same version)."""
    if env.get(POST_RENDERER_ENV):
        return env[POST_RENDERER_ENV]
    name = "helm-egress.exe" if os.name == "nt" else "helm-egress"
    for directory in (Path(sys.argv[0]).resolve().parent, Path(sys.argv[0]).parent, Path(sys.executable).parent):
        if (directory / name).is_file():
            return str((directory / name).absolute())
    found = shutil.which("helm-egress", path=env.get("PATH"))
    if found is None:
        raise UsageError(f"the helm-egress post-renderer is not installed beside {sys.argv[0]} nor on PATH; "
                         f"set {POST_RENDERER_ENV}=/path/to/helm-egress")
    return os.path.abspath(found)


# ----------------------------------------------------------------------------- Helm's merge


def _probe_values(helm: str, cmd: Command, chart: str, workdir: Path, env: Mapping[str, str]) -> Path:
    """The chart's own values.yaml, as `helm show values` prints it, in the probe chart."""
    probe = workdir / "probe"
    (probe / "templates").mkdir(parents=True)
    (probe / "Chart.yaml").write_text(PROBE_CHART, encoding="utf-8")
    (probe / "templates" / "istio.yaml").write_text(PROBE_TEMPLATE, encoding="utf-8")
    # Helm looks a chart up as a local path first, and `show values` prints values.yaml raw:
    # a local chart folder needs no Helm run.
    if os.path.isdir(chart):
        own = Path(chart) / "values.yaml"
        if own.is_file():
            shutil.copyfile(own, probe / "values.yaml")
        return probe
    shown = _run_helm([helm, "show", "values", chart, *cmd.tokens(CHART_FLAGS | GLOBAL_FLAGS)], env)
    if shown.returncode != 0:
        raise HelmFailed(shown)
    (probe / "values.yaml").write_bytes(shown.stdout)
    return probe


class HelmFailed(Exception):
    def __init__(self, done: subprocess.CompletedProcess[bytes]) -> None:
        super().__init__(done.returncode)
        self.done = done


def _run_helm(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, env=dict(env), stdin=subprocess.DEVNULL, capture_output=True, check=False)


def merged_istio(helm: str, cmd: Command, chart: str, workdir: Path, env: Mapping[str, str]) -> object:
    """`.Values.istio` as Helm merges it for this command (None when unset)."""
    probe = _probe_values(helm, cmd, chart, workdir, env)
    done = _run_helm([helm, "template", PROBE_RELEASE, str(probe), *cmd.tokens(VALUE_SETTERS | GLOBAL_FLAGS)], env)
    if done.returncode != 0:
        raise HelmFailed(done)
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith('{"istio":'):
            istio: object = json.loads(line)["istio"]
            return istio
    raise UsageError(f"the values probe printed no values: {done.stdout[:200]!r}")


def egress_values_file(istio: object, workdir: Path, sources: Sequence[str]) -> Path | None:
    """A values file holding only the merged istio.egress, or None when Helm has none."""
    if not isinstance(istio, dict) or istio.get("egress") is None:
        return None
    path = workdir / "istio-egress.merged.yaml"
    header = ("# istio.egress as Helm merged it for this command (chart values.yaml, then "
              + (", ".join(sources) or "no value flags") + "); removed after the run\n")
    # JSON is YAML, and indented JSON keeps one line per value, so error lines stay readable.
    path.write_text(header + json.dumps({"istio": {"egress": istio["egress"]}}, indent=2) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the post-renderer


class Asked:
    """A short Helm query started now and read later, so it runs while the probe renders."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.argv = argv
        self.child = subprocess.Popen(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)

    def answer(self) -> str:
        out, err = self.child.communicate()
        if self.child.returncode != 0:
            raise HelmFailed(subprocess.CompletedProcess(self.argv, self.child.returncode, out, err))
        return out.decode("utf-8", "replace").strip()


def helm_major(asked: Asked) -> str:
    version = asked.answer()
    if not version.startswith("v"):
        raise UsageError(f"{asked.argv[0]} reports version {version!r}, not v3 or v4")
    return version[1:].split(".", 1)[0]


def _helm4_plugin(workdir: Path, executable: str) -> Path:
    """A `postrenderer/v1` plugin for this run: Helm 4 takes only plugin names.

    The command is a link in the plugin's folder because Helm splits `command` on spaces
    before it expands ${HELM_PLUGIN_DIR}, and an install path may hold spaces."""
    plugins = workdir / "plugins"
    plugin = plugins / PLUGIN_NAME
    plugin.mkdir(parents=True)
    (plugin / "helm-egress").symlink_to(executable)
    (plugin / "plugin.yaml").write_text(
        "apiVersion: v1\ntype: postrenderer/v1\nname: " + PLUGIN_NAME + "\nversion: \"0.0.0\"\n"
        "runtime: subprocess\nruntimeConfig:\n  platformCommand:\n"
        "    - command: \"${HELM_PLUGIN_DIR}/helm-egress\"\n      args: [\"render\"]\n",
        encoding="utf-8",
    )
    return plugins


class Plan(NamedTuple):
    argv: list[str]
    env: dict[str, str]
    error_file: Path | None  # Helm 4 hides a post-renderer's stderr: shown from here on failure


def plan(helm: str, cmd: Command, at: int, workdir: Path, env: Mapping[str, str], *, namespace: str | None) -> Plan:
    """The real Helm command: the user's, with the post-renderer flags after the subcommand
    (at index `at`), so a `--` further on cannot turn them into arguments."""
    positionals = [cmd.argv[i] for i in cmd.positionals if i > at]
    if not positionals:
        raise UsageError("no chart given: helm egress " + cmd.argv[at] + " [NAME] CHART [flags]")
    chart = positionals[-1]
    version = Asked([helm, "version", "--template", "{{.Version}}"], env)
    # Helm 4 only, and only when unset: the plugin folders the command would search anyway.
    plugin_dirs = None if env.get("HELM_PLUGINS") else Asked([helm, "env", "HELM_PLUGINS"], env)
    try:
        istio = merged_istio(helm, cmd, chart, workdir, env)
        major = helm_major(version)
        others = env.get("HELM_PLUGINS") or (plugin_dirs.answer() if plugin_dirs else "")
    finally:
        for asked in (version, plugin_dirs):
            if asked is not None and asked.child.returncode is None:
                asked.child.kill()
                asked.child.wait()
    sources = [cmd.argv[o.start] + ("" if o.end - o.start == 1 else " " + cmd.argv[o.end - 1])
               for o in cmd.options if o.name in VALUE_SETTERS]
    values = egress_values_file(istio, workdir, sources)
    args: list[str] = []
    if values is not None:
        args += ["-f", str(values)]
    # Argo CD names the release with --name-template (a Go template in general; a plain
    # name as Argo CD writes it).
    templates = [t for t in cmd.values("name-template") if "{{" not in t]
    release = positionals[0] if len(positionals) >= 2 else (templates[-1] if templates else None)
    if release:
        args += ["--release", release]
    if namespace:
        args += ["--namespace", namespace]
    child_env = {**env, WRAPPED_ENV: "1"}
    executable = post_renderer_executable(env)
    error_file: Path | None = None
    if major == "3":
        flags = ["--post-renderer", executable, "--post-renderer-args=render"]
    else:
        error_file = workdir / "errors.log"
        args += ["--error-file", str(error_file)]
        plugins = _helm4_plugin(workdir, executable)
        child_env["HELM_PLUGINS"] = os.pathsep.join(p for p in (str(plugins), others) if p)
        flags = ["--post-renderer", PLUGIN_NAME]
    flags += [f"--post-renderer-args={a}" for a in args]
    argv = [helm, *cmd.argv[:at + 1], *flags, *cmd.argv[at + 1:]]
    return Plan(argv, child_env, error_file)


# ----------------------------------------------------------------------------- running


def _stdin_values(cmd: Command, workdir: Path) -> Command:
    """`-f -` reads values from stdin, which the probe and the real run cannot both read: both
    get a file with what stdin held."""
    if "-" not in cmd.values("values"):
        return cmd
    saved = workdir / "stdin-values.yaml"
    saved.write_bytes(sys.stdin.buffer.read())
    argv = list(cmd.argv)
    for option in cmd.options:
        if option.name == "values" and option.value == "-":
            token = argv[option.end - 1]
            argv[option.end - 1] = token[:len(token) - 1] + str(saved)
    return parse(argv)


def run(helm: str, argv: list[str], env: Mapping[str, str]) -> int:
    """Run the real Helm in the foreground; a SIGTERM meant for us reaches it too, and our
    clean-up still runs after it exits."""
    child = subprocess.Popen(argv, env=dict(env))

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def passthrough(helm: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
    if os.name == "nt":
        return subprocess.run([helm, *argv], env=dict(env), check=False).returncode
    os.execve(helm, [helm, *argv], dict(env))


def _say(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def _show_errors(error_file: Path | None) -> None:
    if error_file is None or not error_file.is_file():
        return
    lines = error_file.read_text(encoding="utf-8", errors="replace").splitlines()[1:]  # [0] is the file's stamp
    for line in lines:
        _say(f"helm-egress: {line}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    plugin = bool(args) and args[0] == "--plugin"
    if plugin:
        args = args[1:]
    env = dict(os.environ)
    try:
        helm = real_helm(plugin, env)
        cmd = parse(args)
        at = cmd.positionals[0] if cmd.positionals else None
        subcommand = args[at] if at is not None else None
        if plugin and (subcommand not in POST_RENDERED or cmd.has("help")):
            if subcommand is None or cmd.has("help"):
                sys.stdout.write(USAGE)
                return 0 if cmd.has("help") else 2
            raise UsageError(f"helm egress runs install, upgrade or template, not {subcommand!r}")
        if not plugin and (subcommand not in POST_RENDERED or cmd.has("help") or env.get(WRAPPED_ENV)):
            return passthrough(helm, args, env)
        assert at is not None
        if cmd.has("post-renderer"):
            if not plugin:
                # Set up by hand (an older helmfile recipe): Helm runs it as given.
                return passthrough(helm, args, env)
            raise UsageError("helm egress adds --post-renderer itself; pass helm-egress options with "
                             "--post-renderer-args=--OPTION=VALUE")
        reusing = [o for o in cmd.options if o.name in REUSING_FLAGS]
        if reusing:
            raise UsageError(f"--{reusing[0].name} takes values from the last release, which helm-egress cannot "
                             "see: give the values again with -f/--set instead")
        namespaces = cmd.values("namespace")
        namespace = namespaces[-1] if namespaces else env.get("HELM_NAMESPACE") or None
        workdir = Path(tempfile.mkdtemp(prefix="helm-egress-"))
        try:
            cmd = _stdin_values(cmd, workdir)
            planned = plan(helm, cmd, at, workdir, env, namespace=namespace)
            status = run(helm, planned.argv, planned.env)
            if status != 0:
                _show_errors(planned.error_file)
            return status
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    except HelmFailed as e:
        sys.stderr.buffer.write(e.done.stderr)
        sys.stderr.flush()
        return e.done.returncode or 1
    except UsageError as e:
        _say(f"helm-egress: error: {e}")
        if plugin:
            _say("usage: helm egress install|upgrade|template [HELM FLAGS] [NAME] CHART (helm egress --help)")
        return 2
    except OSError as e:
        _say(f"helm-egress: error: {e}")
        return 1


def console() -> None:
    sys.exit(main())

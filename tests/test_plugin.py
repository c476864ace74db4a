"""plugin.yaml is checked the way Helm 4 loads it; the install scripts are checked statically
and run against a fake Python.

No Helm binary is needed. `helm_loader_problems` mirrors helm/helm (v4.2, main):

* ``internal/plugin/loader.go``: loadMetadata peeks `apiVersion`; "" means a legacy
  plugin, which can never be a post-renderer. loadMetadataV1 decodes with
  ``KnownFields(true)``.
* ``internal/plugin/metadata_v1.go``: the MetadataV1 fields and ``Validate()``.
* ``internal/plugin/metadata.go``: ``isValidSemver`` = Masterminds ``semver.StrictNewVersion``;
  fromMetadataV1 / convertMetadataRuntimeConfig.
* ``internal/plugin/config.go``: unmarshalConfig decodes `config` strictly into the type's
  struct; ``ConfigPostRendererV1`` is empty, so any key is an error.
* ``internal/plugin/plugin.go``: ``validPluginName``.
* ``internal/plugin/subprocess_commands.go``: getPlatformCommand / PrepareCommands.

`project_policy_problems` adds this project's own rules on top, such as "commands live in
the plugin dir" and "no `config`". Those rules are stricter than Helm.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

REPO = Path(__file__).resolve().parent.parent
PLUGIN_YAML = REPO / "plugin.yaml"
SCRIPTS = REPO / "scripts"

# internal/plugin/metadata_v1.go: the yaml tags of MetadataV1, in declaration order.
METADATA_V1_FIELDS = ("apiVersion", "name", "type", "runtime", "version", "sourceURL", "config", "runtimeConfig")
# internal/plugin/plugin_type_registry.go
KNOWN_PLUGIN_TYPES = ("test/v1", "cli/v1", "getter/v1", "postrenderer/v1")
# internal/plugin/metadata.go convertMetadataRuntimeConfig
KNOWN_RUNTIMES = ("subprocess", "extism/v1")
# internal/plugin/plugin.go
VALID_PLUGIN_NAME = re.compile(r"[A-Za-z0-9_-]+")
# RuntimeConfigSubprocess / PlatformCommand / PlatformHooks yaml tags
RUNTIME_CONFIG_SUBPROCESS_FIELDS = ("platformCommand", "platformHooks", "protocolCommands")
PLATFORM_COMMAND_FIELDS = ("os", "arch", "command", "args")
HOOK_EVENTS = ("install", "update", "delete")
PLUGIN_DIR_VAR = "${HELM_PLUGIN_DIR}"

# --------------------------------------------------------------- Helm's SemVer check

_SEMVER_ALLOWED = re.compile(r"[0-9A-Za-z-]+")
_SEMVER_NUM = re.compile(r"[0-9]+")
_MAX_VERSION_LEN = 256  # Masterminds/semver MaxVersionLen


def is_strict_semver(version: str) -> bool:
    """Masterminds/semver/v3 StrictNewVersion, as Helm's isValidSemver uses it.

    Exactly MAJOR.MINOR.PATCH, with no "v" and no leading zeros, each part fitting in
    uint64. That is followed by an optional `-prerelease` and an optional `+metadata`:
    dot-separated, non-empty [0-9A-Za-z-] identifiers, with no leading zeros on numeric
    prerelease identifiers.
    """
    if not version or len(version) > _MAX_VERSION_LEN:
        return False
    parts = version.split(".", 2)
    if len(parts) != 3:
        return False
    major, minor, rest = parts
    rest, plus, metadata = rest.partition("+")
    if plus and not _valid_identifiers(metadata):
        return False
    patch, dash, prerelease = rest.partition("-")
    if dash:
        if not _valid_identifiers(prerelease):
            return False
        if any(_SEMVER_NUM.fullmatch(p) and len(p) > 1 and p[0] == "0" for p in prerelease.split(".")):
            return False
    for number in (major, minor, patch):
        if _SEMVER_NUM.fullmatch(number) is None or (len(number) > 1 and number[0] == "0"):
            return False
        if int(number) >= 2**64:
            return False
    return True


def _valid_identifiers(text: str) -> bool:
    return all(_SEMVER_ALLOWED.fullmatch(part) for part in text.split("."))


# ------------------------------------------------------ Helm 4's plugin.yaml loader


def load_yaml(text: str) -> Any:
    # yaml.v3 rejects duplicate mapping keys; ruamel's safe loader does too.
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


def helm_loader_problems(text: str) -> list[str]:
    """What would make Helm 4 fail to load this plugin.yaml as a v1 post-renderer."""
    try:
        data = load_yaml(text)
    except YAMLError as e:
        return [f"yaml: {e}"]
    if not isinstance(data, Mapping):
        return ["plugin.yaml is not a mapping"]
    api_version = data.get("apiVersion")
    if api_version in (None, ""):
        return ["no apiVersion: Helm 4 loads this as a legacy plugin (cli/v1 or getter/v1), never a post-renderer"]
    if api_version != "v1":
        return [f"invalid plugin apiVersion: {api_version!r}"]

    problems = [f"field {key} not found in type plugin.MetadataV1" for key in data if key not in METADATA_V1_FIELDS]
    for key in ("apiVersion", "name", "type", "runtime", "version", "sourceURL"):
        if key in data and not isinstance(data[key], str):
            # yaml.v3 would stringify some scalars; quoting them is our convention anyway.
            problems.append(f"{key}: must be a string, got {data[key]!r}")
    for key in ("config", "runtimeConfig"):
        if data.get(key) is not None and not isinstance(data[key], Mapping):
            problems.append(f"{key}: must be a mapping")
    if problems:
        return problems

    # MetadataV1.Validate
    if VALID_PLUGIN_NAME.fullmatch(data.get("name") or "") is None:
        problems.append("invalid plugin `name`")
    version = data.get("version") or ""
    if version == "":
        problems.append("plugin `version` is required")
    elif not is_strict_semver(version):
        problems.append(f"invalid plugin `version` {version!r}: must be valid semver")
    if not data.get("type"):
        problems.append("`type` missing")
    if not data.get("runtime"):
        problems.append("`runtime` missing")
    if problems:
        return problems

    # fromMetadataV1: the config must fit the type's struct exactly; the runtime must exist.
    if data["type"] not in KNOWN_PLUGIN_TYPES:
        problems.append(f"unknown plugin type {data['type']!r}")
    elif data["type"] == "postrenderer/v1":
        problems += [
            f"config: field {key} not found in type schema.ConfigPostRendererV1" for key in (data.get("config") or {})
        ]
    if data["runtime"] not in KNOWN_RUNTIMES:
        problems.append(f"unsupported plugin runtime type: {data['runtime']!r}")
    return problems


def project_policy_problems(text: str) -> list[str]:
    """This project's rules for its plugin.yaml, on top of what Helm accepts."""
    data = load_yaml(text)
    problems: list[str] = []
    if data.get("type") != "postrenderer/v1":
        problems.append("type must be postrenderer/v1")
    if data.get("runtime") != "subprocess":
        problems.append("runtime must be subprocess")
    if data.get("name") != "helm-egress":
        problems.append("name must be helm-egress (what users pass to --post-renderer)")
    if "config" in data:
        problems.append("config must be omitted (any key breaks loading)")
    runtime_config = data.get("runtimeConfig") or {}
    # Helm decodes runtimeConfig leniently and would silently drop a misspelt key.
    problems += [f"runtimeConfig: unknown key {k!r}" for k in runtime_config if k not in RUNTIME_CONFIG_SUBPROCESS_FIELDS]

    commands = runtime_config.get("platformCommand") or []
    if not commands:
        problems.append("runtimeConfig.platformCommand: at least one command is required")
    for i, entry in enumerate(commands):
        problems += _platform_command_problems(entry, f"platformCommand[{i}]", hook=False)
    hooks = runtime_config.get("platformHooks") or {}
    problems += [f"platformHooks: unknown event {e!r}" for e in hooks if e not in HOOK_EVENTS]
    for event in ("install", "update"):
        if not hooks.get(event):
            problems.append(f"platformHooks.{event}: missing (the hook builds the plugin's venv)")
    for event, entries in hooks.items():
        for i, entry in enumerate(entries or []):
            problems += _platform_command_problems(entry, f"platformHooks.{event}[{i}]", hook=True)
    return problems


def _platform_command_problems(entry: Any, where: str, *, hook: bool) -> list[str]:
    if not isinstance(entry, Mapping):
        return [f"{where}: must be a mapping"]
    problems = [f"{where}: unknown key {k!r}" for k in entry if k not in PLATFORM_COMMAND_FIELDS]
    command = entry.get("command")
    if not isinstance(command, str) or not command.startswith(PLUGIN_DIR_VAR):
        # cmd.Dir is never set, so anything else resolves against the user's cwd or PATH.
        problems.append(f"{where}.command: must start with {PLUGIN_DIR_VAR}, got {command!r}")
    elif " " in command:
        problems.append(f"{where}.command: Helm splits commands on spaces; put arguments in args")
    args = entry.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        problems.append(f"{where}.args: must be a list of strings")
    elif hook and any("$" in a for a in args):
        # v1 hooks are prepared with expandArgs=false (expandHookArgs is set only for legacy plugins).
        problems.append(f"{where}.args: Helm 4 does not expand variables in v1 hook args")
    return problems


# --------------------------------------------- Helm 4's command selection and expansion


def get_platform_command(cmds: Sequence[Mapping[str, Any]], goos: str, goarch: str) -> tuple[list[str], list[str]]:
    """subprocess_commands.go getPlatformCommand."""
    command: list[str] = []
    args: list[str] = []
    found = found_os = False
    for c in cmds:
        c_os, c_arch = (c.get("os") or ""), (c.get("arch") or "")
        if c_os.lower() == goos and c_arch.lower() == goarch:
            return c["command"].split(" "), list(c.get("args") or [])
        if (c_os and c_os.lower() != goos) or c_arch:
            continue
        if not found_os and c_os and c_os.lower() == goos:
            command, args, found, found_os = c["command"].split(" "), list(c.get("args") or []), True, True
        elif not found:
            command, args, found = c["command"].split(" "), list(c.get("args") or []), True
    return command, args


def _go_expand(text: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{([^}]*)\}|\$([A-Za-z0-9_]+)", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def prepare_commands(
    cmds: Sequence[Mapping[str, Any]],
    goos: str,
    goarch: str,
    *,
    env: Mapping[str, str],
    extra_args: Sequence[str] = (),
    expand_args: bool = True,
) -> tuple[str, list[str]]:
    """subprocess_commands.go PrepareCommands: the main command is always expanded."""
    parts, args = get_platform_command(cmds, goos, goarch)
    if not parts or parts[0] == "":
        raise ValueError("no plugin command is applicable")
    rest = [_go_expand(p, env) if expand_args else p for p in parts[1:]]
    rest += [_go_expand(a, env) if expand_args else a for a in args]
    return _go_expand(parts[0], env), rest + list(extra_args)


# ------------------------------------------------------------------------ the tests


@pytest.fixture(scope="module")
def plugin_text() -> str:
    return PLUGIN_YAML.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def plugin(plugin_text: str) -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(plugin_text)
    return data


def test_plugin_yaml_loads_in_helm4(plugin_text: str) -> None:
    assert helm_loader_problems(plugin_text) == []


def test_plugin_yaml_follows_project_policy(plugin_text: str) -> None:
    assert project_policy_problems(plugin_text) == []


def test_plugin_yaml_uses_only_metadata_v1_fields(plugin: dict[str, Any]) -> None:
    assert set(plugin) <= set(METADATA_V1_FIELDS)
    assert plugin["apiVersion"] == "v1"
    assert plugin["version"] == "0.1.0"


def test_plugin_version_matches_the_package(plugin: dict[str, Any]) -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.M)
    assert match is not None
    assert plugin["version"] == match.group(1)


_GOOD = """\
apiVersion: v1
type: postrenderer/v1
name: helm-egress
version: "0.1.0"
runtime: subprocess
runtimeConfig:
  platformCommand:
    - command: "${HELM_PLUGIN_DIR}/.plugin-venv/bin/helm-egress"
      args: ["render"]
  platformHooks:
    install:
      - command: "${HELM_PLUGIN_DIR}/scripts/install-plugin.sh"
    update:
      - command: "${HELM_PLUGIN_DIR}/scripts/install-plugin.sh"
"""


def _variant(old: str, new: str) -> str:
    assert old in _GOOD
    return _GOOD.replace(old, new, 1)


def test_reference_variant_is_clean() -> None:
    assert helm_loader_problems(_GOOD) == []
    assert project_policy_problems(_GOOD) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (_GOOD + "usage: post-render\n", "field usage not found in type plugin.MetadataV1"),
        (_GOOD + 'command: "$HELM_PLUGIN_DIR/run"\n', "field command not found"),
        (_GOOD + "hooks:\n  install: ./install.sh\n", "field hooks not found"),
        (_GOOD + "platformCommand: []\n", "field platformCommand not found"),
        (_variant('version: "0.1.0"', 'version: "0.1"'), "must be valid semver"),
        (_variant('version: "0.1.0"', 'version: "v1.0.0"'), "must be valid semver"),
        (_variant('version: "0.1.0"', 'version: "../../../tmp/evil"'), "must be valid semver"),
        (_variant('version: "0.1.0"\n', ""), "plugin `version` is required"),
        (_variant('version: "0.1.0"', "version: 0.1"), "must be a string"),
        (_GOOD + "config:\n  x: 1\n", "field x not found in type schema.ConfigPostRendererV1"),
        (_variant("name: helm-egress", "name: helm egress"), "invalid plugin `name`"),
        (_variant("name: helm-egress", "name: helm/egress"), "invalid plugin `name`"),
        (_variant("name: helm-egress", 'name: ""'), "invalid plugin `name`"),
        (_variant("apiVersion: v1\n", ""), "legacy plugin"),
        (_variant("apiVersion: v1", "apiVersion: v2"), "invalid plugin apiVersion"),
        (_variant("type: postrenderer/v1", "type: postrender/v1"), "unknown plugin type"),
        (_variant("runtime: subprocess", "runtime: wasm"), "unsupported plugin runtime type"),
        (_variant("runtime: subprocess\n", ""), "`runtime` missing"),
        (_GOOD + "name: again\n", "yaml:"),  # duplicate key
    ],
)
def test_loader_check_rejects_bad_variants(text: str, fragment: str) -> None:
    problems = helm_loader_problems(text)
    assert any(fragment in p for p in problems), f"expected {fragment!r} in {problems}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (_variant("type: postrenderer/v1", "type: cli/v1"), "type must be postrenderer/v1"),
        (_GOOD + "config: {}\n", "config must be omitted"),
        (_variant('"${HELM_PLUGIN_DIR}/.plugin-venv/bin/helm-egress"', "helm-egress"), "must start with ${HELM_PLUGIN_DIR}"),
        (_variant(".plugin-venv/bin/helm-egress\"", ".plugin-venv/bin/helm-egress render\""), "splits commands on spaces"),
        (
            _variant(
                '      - command: "${HELM_PLUGIN_DIR}/scripts/install-plugin.sh"\n    update:',
                '      - command: "${HELM_PLUGIN_DIR}/x"\n'
                '        args: ["${HELM_PLUGIN_DIR}/scripts/install-plugin.sh"]\n'
                "    update:",
            ),
            "does not expand variables in v1 hook args",
        ),
        (_variant("  platformHooks:", "  platformHook:"), "unknown key 'platformHook'"),
        (
            _variant('    update:\n      - command: "${HELM_PLUGIN_DIR}/scripts/install-plugin.sh"\n', ""),
            "platformHooks.update: missing",
        ),
        (_variant("      args: [\"render\"]", "      arg: [\"render\"]"), "unknown key 'arg'"),
    ],
)
def test_policy_check_rejects_bad_variants(text: str, fragment: str) -> None:
    problems = project_policy_problems(text)
    assert any(fragment in p for p in problems), f"expected {fragment!r} in {problems}"


@pytest.mark.parametrize(
    "version",
    [
        "0.1.0", "1.0.0", "10.20.30", "1.2.3-alpha.1", "1.2.3+build.123", "1.2.3-alpha.1+build.123",
        "1.0.0-0.3.7", "1.0.0-x-y-z.--",
    ],
)  # fmt: skip
def test_semver_accepts(version: str) -> None:
    assert is_strict_semver(version)


@pytest.mark.parametrize(
    "version",
    [
        "", "0.1", "1", "v1.0.0", "V1.0.0", "1.0.0.0", "01.0.0", "1.02.0", "1.0.00", "1.0.0-01",
        "1.0.0-", "1.0.0+", "1.0.0-a..b", "1.0.0+a..b", "1.0.0-a_b", " 1.0.0", "1.0.0\n",
        "../../../../tmp/evil", "not-a-version", "18446744073709551616.0.0", "1." + "0" * 300 + ".0",
    ],
)  # fmt: skip
def test_semver_rejects(version: str) -> None:
    assert not is_strict_semver(version)


@pytest.mark.parametrize(
    ("goos", "goarch", "expected"),
    [
        ("linux", "amd64", "${HELM_PLUGIN_DIR}/.plugin-venv/bin/helm-egress"),
        ("linux", "arm64", "${HELM_PLUGIN_DIR}/.plugin-venv/bin/helm-egress"),
        ("darwin", "arm64", "${HELM_PLUGIN_DIR}/.plugin-venv/bin/helm-egress"),
        ("freebsd", "amd64", "${HELM_PLUGIN_DIR}/.plugin-venv/bin/helm-egress"),
        ("windows", "amd64", "${HELM_PLUGIN_DIR}\\.plugin-venv\\Scripts\\helm-egress.exe"),
        ("windows", "arm64", "${HELM_PLUGIN_DIR}\\.plugin-venv\\Scripts\\helm-egress.exe"),
    ],
)
def test_every_platform_gets_the_venv_console_script(plugin: dict[str, Any], goos: str, goarch: str, expected: str) -> None:
    command, args = get_platform_command(plugin["runtimeConfig"]["platformCommand"], goos, goarch)
    assert command == [expected]
    assert args == ["render"]


def test_post_renderer_args_follow_render(plugin: dict[str, Any]) -> None:
    # Helm 4 appends --post-renderer-args after the plugin's own args, so users pass options only.
    plugin_dir = "/home/me/Library/helm plugins/helm-egress"  # spaces in the dir are fine
    main, argv = prepare_commands(
        plugin["runtimeConfig"]["platformCommand"],
        "linux",
        "amd64",
        env={"HELM_PLUGIN_DIR": plugin_dir},
        extra_args=["--network-policy=none", "-f", "egress.yaml"],
    )
    assert main == f"{plugin_dir}/.plugin-venv/bin/helm-egress"
    assert argv == ["render", "--network-policy=none", "-f", "egress.yaml"]


def test_render_is_the_cli_subcommand_the_plugin_calls(plugin: dict[str, Any]) -> None:
    args = plugin["runtimeConfig"]["platformCommand"][0]["args"]
    result = subprocess.run(
        [sys.executable, "-m", "post_renderer", *args, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("event", ["install", "update"])
@pytest.mark.parametrize(
    ("goos", "script"),
    [("linux", "install-plugin.sh"), ("darwin", "install-plugin.sh"), ("windows", "install-plugin.cmd")],
)
def test_hooks_run_an_existing_script(plugin: dict[str, Any], event: str, goos: str, script: str) -> None:
    hooks = plugin["runtimeConfig"]["platformHooks"][event]
    main, argv = prepare_commands(hooks, goos, "amd64", env={"HELM_PLUGIN_DIR": str(REPO)}, expand_args=False)
    assert argv == []
    path = Path(main.replace("\\", "/"))
    assert path == SCRIPTS / script
    assert path.is_file()
    if script.endswith(".sh"):
        # Helm execs the hook directly, so the executable bit must be set (and committed).
        assert os.access(path, os.X_OK), f"chmod +x {path}"
        assert path.read_text(encoding="utf-8").startswith("#!/usr/bin/env bash\n")


# ------------------------------------------------------------- the install scripts

INSTALL_SH = SCRIPTS / "install-plugin.sh"
INSTALL_PS1 = SCRIPTS / "install-plugin.ps1"
INSTALL_CMD = SCRIPTS / "install-plugin.cmd"


def test_install_sh_syntax() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run([bash, "-n", str(INSTALL_SH)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_install_sh_static_properties() -> None:
    text = INSTALL_SH.read_text(encoding="utf-8")
    assert "\r" not in text
    assert "set -euo pipefail" in text
    assert "HELM_EGRESS_PYTHON" in text
    assert '-m venv' in text and '-m pip install' in text
    assert '"$plugin_dir/.plugin-venv"' in text.replace("${plugin_dir}", "$plugin_dir")
    assert "sudo" not in text and "curl" not in text and "wget" not in text
    assert (INSTALL_SH.stat().st_mode & stat.S_IXUSR) != 0


def test_windows_scripts_static_properties() -> None:
    cmd = INSTALL_CMD.read_bytes()
    assert cmd.count(b"\r\n") == cmd.count(b"\n"), "cmd.exe scripts want CRLF line endings"
    cmd_text = cmd.decode("ascii")
    assert '-File "%~dp0install-plugin.ps1"' in cmd_text
    assert "-ExecutionPolicy Bypass" in cmd_text and "exit /b %ERRORLEVEL%" in cmd_text
    ps1 = INSTALL_PS1.read_text(encoding="utf-8")
    assert "$ErrorActionPreference = 'Stop'" in ps1
    assert "HELM_EGRESS_PYTHON" in ps1
    assert "'venv'" in ps1 and "pip install" in ps1 and "Scripts\\helm-egress.exe" in ps1



# A stand-in for python3, so the install flow can run without creating a real venv or
# touching a package index. It logs every call, creates the venv layout on
# `-m venv`, and writes a helm-egress console script on `-m pip install`.
FAKE_PYTHON = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$FAKE_PY_LOG"
case "$1 ${2:-}" in
  "-c "*) [[ "$2" == *sys.exit* ]] && exit "${FAKE_PY_TOO_OLD:-0}"; echo 3.12.1; exit 0 ;;
  "-m venv") dir="${!#}"; mkdir -p "$dir/bin"; cp "$0" "$dir/bin/python"; exit 0 ;;
  "-m pip")
    [[ "${3:-}" == --version ]] && { echo "pip 24.0"; exit 0; }
    [[ -n "${FAKE_PIP_FAIL:-}" ]] && { echo "ERROR: no index" >&2; exit 1; }
    bin="$(dirname "$0")"
    printf '#!/bin/sh\necho "helm-egress 0.1.0"\n' > "$bin/helm-egress"; chmod +x "$bin/helm-egress"
    exit 0 ;;
esac
exit 2
"""


@pytest.fixture
def fake_plugin(tmp_path: Path) -> dict[str, Any]:
    plugin_dir = tmp_path / "plugins" / "helm-egress"
    plugin_dir.mkdir(parents=True)
    (plugin_dir / "pyproject.toml").write_text("[project]\nname = 'helm-egress'\n", encoding="utf-8")
    fake = tmp_path / "fake-python3"
    fake.write_text(FAKE_PYTHON, encoding="utf-8")
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "HELM_PLUGIN_DIR": str(plugin_dir),
        "HELM_EGRESS_PYTHON": str(fake),
        "FAKE_PY_LOG": str(log),
    }
    return {"dir": plugin_dir, "env": env, "log": log}


def _run_install(env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL_SH)], env=dict(env), capture_output=True, text=True, timeout=60)


def test_install_sh_builds_the_venv_then_reuses_it(fake_plugin: dict[str, Any]) -> None:
    plugin_dir: Path = fake_plugin["dir"]
    first = _run_install(fake_plugin["env"])
    assert first.returncode == 0, first.stderr
    assert "creating" in first.stdout and "ready: helm-egress 0.1.0" in first.stdout
    assert (plugin_dir / ".plugin-venv" / "bin" / "helm-egress").is_file()
    calls = fake_plugin["log"].read_text(encoding="utf-8").splitlines()
    assert f"-m venv --clear {plugin_dir}/.plugin-venv" in calls
    assert any(c.startswith("-m pip install") and c.endswith(str(plugin_dir)) for c in calls)

    second = _run_install(fake_plugin["env"])  # what `helm plugin update` does
    assert second.returncode == 0, second.stderr
    assert "reusing" in second.stdout and "creating" not in second.stdout


def test_install_sh_error_paths(fake_plugin: dict[str, Any], tmp_path: Path) -> None:
    env = dict(fake_plugin["env"])

    missing = _run_install({**env, "HELM_EGRESS_PYTHON": str(tmp_path / "no-such-python")})
    assert missing.returncode != 0 and "is not an executable" in missing.stderr

    too_old = _run_install({**env, "FAKE_PY_TOO_OLD": "1"})
    assert too_old.returncode != 0 and "is not Python >= 3.11" in too_old.stderr

    pip_fails = _run_install({**env, "FAKE_PIP_FAIL": "1"})
    assert pip_fails.returncode != 0 and "pip could not install helm-egress" in pip_fails.stderr

    not_a_plugin = _run_install({**env, "HELM_PLUGIN_DIR": str(tmp_path)})
    assert not_a_plugin.returncode != 0 and "has no pyproject.toml" in not_a_plugin.stderr
    assert not (tmp_path / ".plugin-venv").exists()

"""How a run ends when something goes wrong outside the manifests (issue 20 items 6-11,
issue 21's command-line items): it never blocks on a file that is not a regular one, every
failure (usage errors included) replaces the error-file report, a signal stops it between
documents, a user's file is never touched, running out of memory is one line and exit 1.

Most tests run the installed executable, as Helm does: the one place the whole exit path
(argv, signals, the error file, the final flush) runs as it does for a user.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from post_renderer import __version__
from post_renderer.cli import app

EXE = shutil.which("helm-egress", path=str(Path(sys.executable).parent)) or shutil.which("helm-egress")
pytestmark = pytest.mark.skipif(EXE is None, reason="the package is not installed as an executable")

LABELS = "  labels: {app.kubernetes.io/instance: r}\n"
WORKLOAD = ("---\n# Source: c/templates/w.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\n"
            + LABELS + "spec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n")
VALUES = "istio:\n  egress:\n    - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}\n"
BAD_VALUES = "istio:\n  egress:\n    - name: api\n"
TIMEOUT = 20


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The caller's environment with private XDG folders and no Helm plugin settings."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("HELM_", "XDG_"))}
    out["XDG_STATE_HOME"] = str(tmp_path / "state")
    out["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    out["HOME"] = str(tmp_path / "home")
    return out


@pytest.fixture
def plugin_env(env: dict[str, str]) -> dict[str, str]:
    """As Helm 4 runs its postrenderer/v1 plugin."""
    return {**env, "HELM_PLUGIN_NAME": "helm-egress", "HELM_PLUGIN_DIR": "/nonexistent"}


@pytest.fixture
def values(tmp_path: Path) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(VALUES)
    return path


def run(*args: str | os.PathLike[str], env: dict[str, str], stdin: bytes = WORKLOAD.encode(),
        cwd: Path | None = None, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    assert EXE is not None
    return subprocess.run([EXE, *map(str, args)], input=stdin, capture_output=True, env=env, cwd=cwd,
                          timeout=TIMEOUT, check=False, **kwargs)  # type: ignore[call-overload]


def error_log(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "helm-egress" / "last-error.log"


# ----------------------------------------------------------------------------- item 6: never block


def test_a_fifo_where_a_cache_entry_should_be_does_not_block(env: dict[str, str], values: Path) -> None:
    first = run("render", "-f", values, env=env)
    assert first.returncode == 0, first.stderr
    folder = Path(env["XDG_CACHE_HOME"]) / "helm-egress" / "schema-verdicts-v1"
    entries = [p for p in folder.iterdir() if len(p.name) == 64]
    assert entries
    for entry in entries:
        entry.unlink()
        os.mkfifo(entry)
    again = run("render", "-f", values, env=env)  # blocked forever before
    assert (again.returncode, again.stdout) == (0, first.stdout), again.stderr


@pytest.mark.parametrize("option", ["-f", "--policy", "--global-allowlist"])
def test_a_named_pipe_nobody_writes_is_refused_not_waited_on(option: str, env: dict[str, str],
                                                              tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    result = run("render", option, fifo, env=env)
    assert (result.returncode, result.stdout) == (1, b"")
    assert f"{fifo}: " in result.stderr.decode() and "no writer" in result.stderr.decode()


def test_a_pipe_the_user_names_is_read(env: dict[str, str], values: Path) -> None:
    """`-f <(sops -d values.yaml)`: the shell hands over /dev/fd/N, a pipe with a writer."""
    read, write = os.pipe()
    writer = subprocess.Popen(["sh", "-c", "sleep 0.5; cat \"$1\"", "sh", str(values)], stdout=write)
    os.close(write)
    try:
        result = run("render", "-f", f"/dev/fd/{read}", env=env, pass_fds=(read,))
    finally:
        os.close(read)
        writer.wait(timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert b"kind: ServiceEntry" in result.stdout


def test_a_fifo_as_the_error_file_is_neither_opened_blocking_nor_replaced(env: dict[str, str], tmp_path: Path,
                                                                          values: Path) -> None:
    fifo = tmp_path / "errors.fifo"
    os.mkfifo(fifo)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_VALUES)
    failed = run("render", "-f", bad, "--error-file", fifo, env=env)
    assert failed.returncode == 1
    assert f"errors not written to {fifo}: it is not a regular file" in failed.stderr.decode()
    assert run("render", "-f", values, "--error-file", fifo, env=env).returncode == 0
    assert fifo.is_fifo()


# ----------------------------------------------------------------------------- item 7: every failure is reported


USAGE_MISTAKES = {
    "missing-values-file": (["-f", "missing.yaml"], "'missing.yaml' does not exist"),
    "missing-policy-file": (["--policy", "missing.yaml"], "'missing.yaml' does not exist"),
    "unknown-option": (["--no-such-option"], "No such option: --no-such-option"),
    "bad-flavour": (["--network-policy=calico"], "'calico' is not kubernetes, cilium or none"),
    "bad-number": (["--dns-port=abc"], "'abc' is not a whole number"),
    "other-command-after-render": (["check"], "the plugin only renders"),
}


@pytest.mark.parametrize("args, message", USAGE_MISTAKES.values(), ids=USAGE_MISTAKES.keys())
def test_under_helm4_a_usage_error_replaces_a_stale_report(args: list[str], message: str,
                                                           plugin_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_VALUES)
    # As plugin.yaml runs it: `render`, then the user's --post-renderer-args.
    assert run("render", "-f", bad, env=plugin_env, cwd=tmp_path).returncode == 1
    log = error_log(plugin_env)
    assert "'ports' is a required property" in log.read_text()  # the earlier failure's report
    result = run("render", *args, env=plugin_env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, b"")
    err = result.stderr.decode()
    assert err.endswith(f"helm-egress: errors written to {log}\n"), err
    report = log.read_text()
    assert message in report and message in err
    assert "'ports' is a required property" not in report  # the stale diagnosis is gone
    assert report.startswith(f"# helm-egress {__version__} failed at ")


def test_a_usage_error_goes_to_the_chosen_error_file_too(env: dict[str, str], tmp_path: Path) -> None:
    chosen = tmp_path / "errors.txt"
    result = run("render", "--dns-port=abc", f"--error-file={chosen}", env=env)
    assert result.returncode == 2
    assert "'abc' is not a whole number" in chosen.read_text()
    from_env = run("render", "--dns-port=abc", env={**env, "HELM_EGRESS_ERROR_FILE": str(chosen)})
    assert from_env.returncode == 2 and "--dns-port" in chosen.read_text()


def test_without_helm4_or_an_error_file_a_usage_error_writes_nothing(env: dict[str, str]) -> None:
    result = run("render", "--dns-port=abc", env=env)
    assert result.returncode == 2
    assert "errors written" not in result.stderr.decode()
    assert not Path(env["XDG_STATE_HOME"]).exists()


def test_a_crash_replaces_the_report_too(plugin_env: dict[str, str], tmp_path: Path) -> None:
    log = error_log(plugin_env)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_VALUES)
    assert run("render", "-f", bad, env=plugin_env).returncode == 1
    script = ("import sys\nfrom post_renderer import pipeline\n"
              "def bug(*a, **k): raise TypeError('boom')\n"
              "pipeline.analyse = bug\nsys.argv = ['helm-egress', 'render']\n"
              "from post_renderer.__main__ import main\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", script], input=WORKLOAD.encode(), capture_output=True,
                          env=plugin_env, timeout=TIMEOUT, check=False)
    assert proc.returncode == 3
    assert "unexpected error: TypeError: boom" in log.read_text()
    assert proc.stderr.decode().endswith(f"helm-egress: errors written to {log}\n")


# ----------------------------------------------------------------------------- one argument form (issue 21)


def test_options_alone_run_render_as_helm3_is_called(env: dict[str, str], values: Path) -> None:
    """Helm 3: `--post-renderer helm-egress --post-renderer-args=-f ...`, no `render`."""
    with_command = run("render", "-f", values, env=env)
    without = run("-f", values, env=env)
    assert without.returncode == 0, without.stderr
    assert without.stdout == with_command.stdout and b"kind: ServiceEntry" in without.stdout


def test_render_given_twice_is_one_render_as_the_helm4_plugin_is_called(plugin_env: dict[str, str],
                                                                        values: Path) -> None:
    """Helm 4: plugin.yaml's `render`, then the user's `--post-renderer-args=render ...`."""
    result = run("render", "render", "-f", values, env=plugin_env)
    assert result.returncode == 0, result.stderr
    assert b"kind: ServiceEntry" in result.stdout


def test_no_arguments_with_a_stream_on_stdin_render(env: dict[str, str]) -> None:
    result = run(env=env)
    assert (result.returncode, result.stdout) == (0, WORKLOAD.encode()), result.stderr


@pytest.mark.parametrize("args, hint", [
    (["values.yaml"], "'values.yaml' is not a command"),
    (["rendr", "-f", "values.yaml"], "'rendr' is not a command"),
    (["render -f values.yaml"], "one --post-renderer-args per argument"),
    (["-f values.yaml"], "one --post-renderer-args per argument"),
])
def test_a_wrong_spelling_says_what_to_write(args: list[str], hint: str, env: dict[str, str], values: Path) -> None:
    result = run(*args, env=env, cwd=values.parent)
    assert (result.returncode, result.stdout) == (2, b"")
    err = result.stderr.decode()
    assert hint in err, err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- item 8: signals


def _big_stream(documents: int = 400) -> bytes:
    data = "x" * 2000
    return "".join(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  a: {data}\n"
                   for i in range(documents)).encode()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_writing_stops_between_documents(signum: int, env: dict[str, str]) -> None:
    stream = _big_stream()
    assert EXE is not None
    with subprocess.Popen([EXE, "render"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(stream)
        proc.stdin.close()
        head = proc.stdout.read(100)  # the writing has begun; the pipe fills and the writer waits
        time.sleep(0.3)
        proc.send_signal(signum)
        rest = proc.stdout.read()
        code = proc.wait(timeout=TIMEOUT)
        err = proc.stderr.read().decode()
    out = head + rest
    assert code == 128 + signum
    assert len(out) < len(stream)  # stopped early
    assert stream.startswith(out)
    assert out.endswith(b"x\n") and stream[len(out):].startswith(b"---\n"), out[-200:]  # whole documents only
    name = signal.Signals(signum).name
    assert err == f"helm-egress: stopped by {name}; the output is incomplete\n", err


def test_a_signal_before_any_output_writes_nothing(env: dict[str, str]) -> None:
    assert EXE is not None
    proc = subprocess.Popen([EXE, "render"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    time.sleep(1)  # waiting for stdin
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, out) == (143, b"")
    assert err.decode() == "helm-egress: stopped by SIGTERM; nothing was written\n"


# ----------------------------------------------------------------------------- item 9: a user's file


@pytest.mark.parametrize("content", [
    f"# helm-egress {__version__} failed at 2024-01-01T00:00:00+0000\nmy own notes\n",
    "# helm-egress 9.9 failed at 2024\nerror: looks like ours\n",
    f"# helm-egress {__version__} failed at 2024-01-01T00:00:00+0000\n",
    f"# helm-egress {__version__} failed at 2024-01-01T00:00:00+0000\nerror: x\n\nmore notes\n",
])
def test_a_file_that_only_resembles_a_report_is_never_touched(content: str, env: dict[str, str], tmp_path: Path,
                                                               values: Path) -> None:
    mine = tmp_path / "notes.log"
    mine.write_text(content)
    assert run("render", "-f", values, "--error-file", mine, env=env).returncode == 0
    assert mine.read_text() == content
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_VALUES)
    failed = run("render", "-f", bad, "--error-file", mine, env=env)
    assert failed.returncode == 1 and "is not a helm-egress error file" in failed.stderr.decode()
    assert mine.read_text() == content


def test_a_report_of_an_earlier_version_is_still_replaced(env: dict[str, str], tmp_path: Path, values: Path) -> None:
    report = tmp_path / "last-error.log"
    report.write_text("# helm-egress 0.0.9 failed at 2024-01-01T00:00:00+0100\nerror: x.yaml:3: bad\n")
    assert run("render", "-f", values, "--error-file", report, env=env).returncode == 0
    assert not report.exists()


# ----------------------------------------------------------------------------- item 10: Sidecar hosts


def test_a_sidecar_host_option_is_written_canonical(env: dict[str, str], values: Path) -> None:
    result = run("render", "-f", values, "--sidecar", "--sidecar-host", "payments/API.Payments.svc.Cluster.Local.",
                 env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "payments/api.payments.svc.cluster.local\n" in out
    assert "API" not in out and "local." not in out


def test_a_sidecar_hosts_annotation_is_written_canonical(env: dict[str, str], values: Path) -> None:
    stream = WORKLOAD.replace("metadata: {labels: {app: w}}",
                              "metadata:\n      labels: {app: w}\n      annotations:\n"
                              "        helm-egress.io/sidecar-hosts: 'payments/Api.Payments.SVC.cluster.local.'")
    result = run("render", "-f", values, "--sidecar", env=env, stdin=stream.encode())
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "- payments/api.payments.svc.cluster.local\n" in out
    assert "Api." not in out.split("kind: Sidecar", 1)[1].split("---")[0]


# ----------------------------------------------------------------------------- item 11


def test_an_error_file_that_cannot_be_created_says_why(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    target = blocker / "last-error.log"
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_VALUES)
    result = run("render", "-f", bad, "--error-file", target, env=env)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "not a helm-egress error file" not in err
    assert f"helm-egress: errors not written to {target}: {blocker}: Not a directory\n" in err, err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_an_error_file_in_a_folder_without_permission_says_why(env: dict[str, str], tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_VALUES)
    result = run("render", "-f", bad, "--error-file", locked / "last-error.log", env=env)
    assert "Permission denied" in result.stderr.decode()


def test_a_relative_xdg_state_home_is_ignored(plugin_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_VALUES)
    result = run("render", "-f", bad, env={**plugin_env, "XDG_STATE_HOME": "relative"}, cwd=tmp_path)
    assert result.returncode == 1
    log = Path(plugin_env["HOME"]) / ".local" / "state" / "helm-egress" / "last-error.log"
    assert "'ports' is a required property" in log.read_text()
    assert not (tmp_path / "relative").exists()


def _limited(megabytes: float) -> None:
    limit = int(megabytes * 1024 * 1024)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="address-space limits as Linux applies them")
def test_running_out_of_memory_is_one_line_and_exit_1(env: dict[str, str], values: Path) -> None:
    seen = set()
    for megabytes in range(14, 41):
        assert EXE is not None
        try:
            proc = subprocess.run([EXE, "render", "-f", str(values)], input=WORKLOAD.encode(), capture_output=True,
                                  env=env, timeout=TIMEOUT if megabytes > 16 else 5, check=False,
                                  preexec_fn=lambda m=megabytes: _limited(m))  # noqa: PLW1509
        except subprocess.TimeoutExpired:
            # At the edge of what the interpreter needs to start, glibc's malloc can spin
            # on a failing mmap inside an import of typer's, before any helm-egress code
            # runs (seen at 15 MB with compiled bytecode, with py-spy); nothing of ours
            # can answer there. Above it, a hang is a failure.
            assert megabytes <= 16, f"hung at {megabytes} MB"
            continue
        err = proc.stderr.decode(errors="replace")
        seen.add(proc.returncode)
        if proc.returncode == 0:
            continue
        if proc.returncode == 1 and (not err or err.startswith(("Fatal Python error", "Could not find platform"))):
            continue  # the interpreter itself could not start: nothing of ours ran
        assert proc.returncode == 1, (megabytes, proc.returncode, err)
        assert proc.stdout == b""
        assert err == "helm-egress: out of memory; raise the memory limit (ulimit -v) and run it again\n", \
            (megabytes, err)
    assert 0 in seen


# ----------------------------------------------------------------------------- issue 21: help, check, hint


def test_help_names_no_internal_type_and_cuts_no_summary() -> None:
    top = CliRunner().invoke(app, ["--help"])
    assert top.exit_code == 0
    commands = top.stdout.split("Commands:", 1)[1]
    assert "..." not in commands, commands
    assert "Examples:" in top.stdout
    render = CliRunner().invoke(app, ["render", "--help"])
    assert render.exit_code == 0
    assert not re.search(r"<_\w+>", render.stdout), render.stdout
    assert "--dns-port <port>" in render.stdout
    assert "Examples:" in render.stdout and "--post-renderer helm-egress" in render.stdout


def test_check_no_stream_with_nothing_to_check_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["check", "--no-stream"])
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    assert "no values files to check" in result.stderr


@pytest.mark.parametrize("host", ["169.254.169.254", "0xa9fea9fe", "fd00:ec2::254", "169.254.10.1"])
def test_a_metadata_host_is_not_told_to_move_to_addresses(host: str, tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(f"istio:\n  egress:\n    - {{name: m, hosts: ['{host}'], ports: [{{number: 80, protocol: HTTP}}]}}\n")
    result = CliRunner().invoke(app, ["render", "-f", str(path)], input=WORKLOAD)
    assert (result.exit_code, result.stdout) == (1, "")
    assert "move it to addresses" not in result.stderr
    assert "link-local or a cloud metadata endpoint" in result.stderr
    assert "IP addresses are not hosts" in result.stderr


def test_an_ordinary_address_host_is_still_told_to_move(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("istio:\n  egress:\n    - {name: m, hosts: ['10.1.2.3'], ports: [{number: 80, protocol: HTTP}]}\n")
    result = CliRunner().invoke(app, ["render", "-f", str(path)], input=WORKLOAD)
    assert result.exit_code == 1 and "move it to addresses" in result.stderr


def test_a_chart_serviceentry_with_a_metadata_host_is_not_told_to_move_it() -> None:
    entry = ("---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\nspec:\n"
             "  hosts: ['169.254.169.254']\n  ports: [{number: 80, name: http, protocol: HTTP}]\n")
    result = CliRunner().invoke(app, ["render"], input=entry + WORKLOAD)
    assert (result.exit_code, result.stdout) == (1, "")
    assert "belongs in addresses" not in result.stderr
    assert "spec.hosts[0]: '169.254.169.254' is an IP address, link-local or a cloud metadata endpoint" in result.stderr

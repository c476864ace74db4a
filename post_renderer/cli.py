"""The command line: the typer app, its commands, and the one way they all run the pipeline.

Options and their checks are in ``options``, stdin/stdout and the values files in
``terminal``, the error file and the crash log in ``errorlog``.

Exit status: 0 success, 1 bad input (every problem printed, located, nothing on stdout),
2 usage, 3 an unexpected failure (one line naming the file that holds the traceback; never
a traceback on stderr).
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
# typer ships click inside itself; its errors are what a usage mistake raises.
from typer._click.exceptions import ClickException, UsageError

from post_renderer import OUT_OF_MEMORY, __version__, starved
from post_renderer.errorlog import clear_error_file, crash_line, fail, keep_notes, report
from post_renderer.errors import EgressError, Problem
from post_renderer.options import Shared, error_file_argument, with_shared
from post_renderer.terminal import (
    Interrupted,
    catch_signals,
    interrupted_line,
    output_torn,
    print_notes,
    read_stdin,
    read_values,
    say,
    write_stdout,
)

if TYPE_CHECKING:
    from post_renderer.destpolicy import Policy
    from post_renderer.pipeline import Result
    from post_renderer.values import ValuesFile
    from post_renderer.verdicts import VerdictCache

# Start-up is most of a small chart's render time, so every module beyond typer, the
# settings and the command line's own is imported where it is first needed: --version and
# --help read no YAML, and only a command that validates values loads jsonschema (and only
# on a cache miss).

# \\b keeps click from re-wrapping the lines. Helm 3 and the Helm 4 plugin take the same
# --post-renderer-args.
_EXAMPLES = """\
  helm template shop ./shop -f values.yaml | helm-egress -f values.yaml
  helm upgrade --install shop ./shop -f values.yaml --post-renderer helm-egress \\
      --post-renderer-args=-f --post-renderer-args=values.yaml"""

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    # Rendered manifests can hold Secret data: never print locals.
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Give any Helm chart correct Istio egress configuration, as a post-renderer. Options alone run render.",
    epilog=f"""Examples:

\b
{_EXAMPLES}
  helm-egress check --no-stream values.yaml      # pre-commit: the values files alone
  helm template shop ./shop | helm-egress explain -f values.yaml
""",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"helm-egress {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Read rendered manifests on stdin; write them, augmented, on stdout."""


@app.command(short_help="Add ServiceEntries and egress policies to the manifest stream.",
             epilog=f"Examples:\n\n\b\n{_EXAMPLES}\n")
@with_shared
def render(*, shared: Shared) -> None:
    """Add ServiceEntry and egress policy (NetworkPolicy or CiliumNetworkPolicy, Sidecar) documents to the stream."""
    with _failing(shared) as verdicts:
        result = _analyse(shared, verdicts)
        if result.violations:
            raise EgressError(result.violations)
    print_notes(result.notes, shared.quiet)
    write_stdout(result.chunks)
    clear_error_file(shared.error_file)
    keep_notes([] if shared.quiet else result.notes, shared.error_file)


@app.command(short_help="Validate as render does, plus warnings; print only findings.")
@with_shared
def check(
    files: Annotated[
        Optional[list[Path]],
        typer.Argument(help="More values files (as -f); with --no-stream each is checked on its own.",
                       exists=True, dir_okay=False, show_default=False),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
    output_format: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Check values files only; read no manifests (pre-commit).")
    ] = False,
    *,
    shared: Shared,
) -> None:
    """Every validation render does, plus warnings for a reviewer; prints findings, never manifests."""
    if output_format not in ("text", "json"):
        raise typer.BadParameter(f"{output_format!r} is not text or json", param_hint="--format")
    if no_stream and not shared.values and not files:
        # "ok" for nothing checked would pass a pre-commit hook that was given no files.
        raise typer.BadParameter("no values files to check; name them (check --no-stream values.yaml) or pass -f",
                                 param_hint="--no-stream")
    from post_renderer import report

    shared = shared._replace(values=[*shared.values, *(files or ())], stdin_is_stream=not no_stream)
    errors: list[Problem] = []
    warnings: list[Problem] = []
    notes: list[str] = []
    with _verdicts() as verdicts:
        # Bad input is a finding here, not a failure.
        try:
            # First: without its policy, nothing can be judged.
            policy = _policy(shared, verdicts)
            if no_stream:
                warnings, errors = _check_values_files(shared, policy, verdicts)
            else:
                result = _analyse(shared, verdicts, data=read_stdin(), policy=policy)
                warnings, notes, errors = result.warnings, result.notes, result.violations
        except EgressError as e:
            errors = e.problems
    failed = bool(errors) or (strict and bool(warnings))
    write_stdout(report.findings(errors, warnings, [] if shared.quiet else notes, output_format, failed))
    raise typer.Exit(1 if failed else 0)


@app.command(short_help="Show what render would change, as a unified diff.")
@with_shared
def diff(
    color: Annotated[str, typer.Option(help="auto (on a terminal), always or never.")] = "auto",
    *,
    shared: Shared,
) -> None:
    """Show what render would change: a unified diff of the stream before and after.

    Exit status as diff(1): 0 no change, 1 changes, 2 trouble (bad input or usage).
    """
    if color not in ("auto", "always", "never"):
        raise typer.BadParameter(f"{color!r} is not auto, always or never", param_hint="--color")
    from post_renderer import report

    with _failing(shared, 2) as verdicts:
        data = read_stdin()  # read here: the patch is taken against it
        result = _analyse(shared, verdicts, data=data)
        if result.violations:
            raise EgressError(result.violations)
    print_notes(result.notes, shared.quiet)
    # stdout may be closed (None): write_stdout then reports it, exit 1, rather than crash here.
    colour = color == "always" or (color == "auto" and sys.stdout is not None and sys.stdout.isatty())
    patch = report.unified_diff(data.decode("utf-8", errors="surrogateescape"), result.output, colour=colour)
    write_stdout(patch)
    raise typer.Exit(1 if patch else 0)


@app.command(short_help="Show what each workload may reach, who declared it, and why.")
@with_shared
def explain(
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")] = "table",
    *,
    shared: Shared,
) -> None:
    """For every workload: what it may reach, who declared it, which objects allow it."""
    if output not in ("table", "json", "yaml"):
        raise typer.BadParameter(f"{output!r} is not table, json or yaml", param_hint="--output")
    from post_renderer import report

    with _failing(shared) as verdicts:
        result = _analyse(shared, verdicts, explain=True)
    print_notes(result.notes, shared.quiet)
    violations = result.violations if shared.policy is not None else None
    write_stdout(report.explain(result.workloads, output, violations))


@app.command(short_help="Print the JSON Schema of istio.egress, for values.schema.json.")
def schema() -> None:
    """Print the JSON Schema of the istio.egress list (for a chart's values.schema.json)."""
    from post_renderer.schema import schema_text

    write_stdout(schema_text())


def _analyse(shared: Shared, verdicts: VerdictCache | None, *, data: bytes | None = None,
             policy: Policy | None = None, explain: bool = False) -> Result:
    """Run the pipeline on the command's inputs, the one path every command takes.

    The inputs are read in one order, values files and allowlist, then the policy, then
    the stream, since the first unreadable one is the error reported; a command that needs
    the stream or the policy earlier passes it in."""
    from post_renderer.pipeline import analyse

    values, allowlist = _inputs(shared)
    if policy is None:
        policy = _policy(shared, verdicts)
    # No local keeps the input alive: analyse drops it once split, which matters for
    # peak memory on multi-MB streams.
    return analyse(read_stdin() if data is None else data, values, shared.settings, allowlist=allowlist,
                   policy=policy, verdicts=verdicts, explain=explain)


def _inputs(shared: Shared) -> tuple[list[ValuesFile], ValuesFile | None]:
    def read(path: Path) -> ValuesFile:
        return read_values(path, stdin_is_stream=shared.stdin_is_stream)

    return [read(p) for p in shared.values], read(shared.allowlist) if shared.allowlist else None


def _policy(shared: Shared, verdicts: VerdictCache | None) -> Policy | None:
    if shared.policy is None:
        return None
    # Imported only here: checking the file needs jsonschema, which plain renders skip.
    from post_renderer.destpolicy import load

    file = read_values(shared.policy, "policy file", stdin_is_stream=shared.stdin_is_stream)
    return load(file.text, file.name, verdicts)


def _check_values_files(shared: Shared, policy: Policy | None,
                        verdicts: VerdictCache | None) -> tuple[list[Problem], list[Problem]]:
    """``check --no-stream``: each values file on its own; (warnings, errors) of them all."""
    from post_renderer import report

    warnings: list[Problem] = []
    errors: list[Problem] = []
    for path in shared.values:
        try:
            found, refused = report.check_values(read_values(path, stdin_is_stream=False), shared.settings,
                                                 policy, verdicts)
            warnings.extend(found)
            errors.extend(refused)
        except EgressError as e:
            errors.extend(e.problems)
    return warnings, errors


@contextlib.contextmanager
def _verdicts() -> Iterator[VerdictCache | None]:
    """The schema-verdict cache for one command; what it learnt is saved even when a later
    stage fails, since those verdicts still hold."""
    from post_renderer import verdicts

    cache = verdicts.from_environment()
    try:
        yield cache
    finally:
        if cache is not None:
            cache.save()


@contextlib.contextmanager
def _failing(shared: Shared, exit_code: int = 1) -> Iterator[VerdictCache | None]:
    """The verdict cache, for a command that fails on bad input: every problem printed,
    nothing on stdout, exit ``exit_code``."""
    with _verdicts() as cache:
        try:
            yield cache
        except EgressError as e:
            raise fail(e, shared.error_file, exit_code) from None


def main() -> None:
    """The console entry point: run one command, then end the process at once.

    A post-renderer lives for one stream. The cyclic garbage collector's passes over every
    imported module and parsed document find nothing worth freeing, and the interpreter's
    teardown frees each object one by one: together about 15 ms of a small chart's 70,
    and more on large streams. So the collector is off, and once the output is flushed
    the process exits without the teardown.
    """
    gc.disable()
    code = invoke()
    # What is left of a document cut off by a failure stays unwritten.
    for stream in (sys.stderr,) if output_torn() else (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass  # the reader went away; the exit status still says how it went
    os._exit(code)


def invoke() -> int:
    """Run the command line in ``sys.argv``; the exit status.

    Every failure ends here or in ``fail``, and each one's lines also replace the error
    file's report (Helm 4 shows none of stderr): usage errors, a signal, a crash."""
    catch_signals()
    everything = app.registered_commands
    args = sys.argv[1:]
    try:
        args = _arguments(args, [name for c in everything if (name := _command_name(c))])
        # Typer builds a click command, every option included, for each registered command
        # on every run (~3.5 ms of five). When the first argument names one, only it is
        # built; anything else (--help, --version) sees them all.
        called = [c for c in everything if args and args[0] == _command_name(c)]
        app.registered_commands = called or everything
        code: object = app(args=args, standalone_mode=False)
        return code if isinstance(code, int) else 0
    except ClickException as e:
        return _usage_error(e, args)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        say(str(e.code))
        return 1
    except Interrupted as e:
        return _failed([interrupted_line(e.signum)], args, 128 + e.signum)
    except MemoryError:
        pass  # answered below, once the frames that filled the memory are gone
    except Exception as e:  # noqa: BLE001 - the one place unexpected failures become exit 3
        if not starved(e):
            return _failed([crash_line(e)], args, 3)
    finally:
        app.registered_commands = everything
    return _failed([OUT_OF_MEMORY], args, 1)


def _failed(lines: list[str], args: list[str], code: int) -> int:
    for line in lines:
        say(line)
    try:
        report(lines, error_file_argument(args))
    except MemoryError:
        pass  # the lines are on stderr; the exit status says the rest
    return code


# Commands Helm 3 users have always written (`--post-renderer-args render`) and the Helm 4
# plugin, whose plugin.yaml passes `render` itself, must both work with the same
# --post-renderer-args; so must the same list without `render`.
_ROOT_OPTIONS = ("--help", "--version")
_GLUED = re.compile(r"(?:-[A-Za-z]|--[a-z][-a-z0-9]*|render|check|diff|explain|schema)\s")


def _arguments(args: list[str], commands: list[str]) -> list[str]:
    """``args`` with the command made explicit: options alone, or nothing at all with a
    stream on stdin, run ``render``; ``render render`` (the plugin's and the user's) is
    one. A first argument that is no command is a usage error that says what to write."""
    if not args:
        return ["render"] if sys.stdin is not None and not sys.stdin.isatty() else args
    first = args[0]
    if first in _ROOT_OPTIONS:
        return args
    if first.startswith("-"):
        return ["render", *args]
    if first == "render" and len(args) > 1 and args[1] in commands:
        if args[1] == "render":
            return args[1:]
        raise UsageError(
            f"{args[1]!r} cannot follow render: the plugin only renders (its plugin.yaml passes render); "
            f"run '{args[1]}' with the helm-egress executable itself")
    if first not in commands:
        raise UsageError(
            f"{first!r} is not a command ({', '.join(commands)}); options alone run render, and a values file "
            f"goes after -f: helm-egress -f values.yaml (under Helm: --post-renderer-args=-f "
            "--post-renderer-args=values.yaml)")
    return args


def _usage_error(error: ClickException, args: list[str]) -> int:
    """Print a usage error as click does, with a hint when an argument shows how it went
    wrong, and keep both in the error file."""
    try:
        error.show()
    except (OSError, ValueError):
        pass  # stderr is closed: the error file and the exit status remain
    lines = [f"error: {error.format_message()}"]
    glued = next((a for a in args if _GLUED.match(a)), None)
    if glued is not None:
        hint = (f"hint: {glued!r} reached helm-egress as one argument: Helm passes each --post-renderer-args "
                "value as one, so give one --post-renderer-args per argument (--post-renderer-args=-f "
                "--post-renderer-args=values.yaml)")
        say(hint)
        lines.append(hint)
    try:
        report(lines, error_file_argument(args))
    except MemoryError:
        pass
    return error.exit_code


def _command_name(command: typer.models.CommandInfo) -> str | None:
    """The name typer gives a registered command (its function's, dashed, by default)."""
    if command.name:
        return command.name
    return command.callback.__name__.lower().replace("_", "-") if command.callback else None

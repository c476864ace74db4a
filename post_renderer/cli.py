"""The command line: the only place that reads files and stdin, prints, and exits.

Exit status: 0 success, 1 bad input (every problem printed, located, nothing on stdout),
2 usage, 3 an unexpected failure (one line, never a traceback).
"""

from __future__ import annotations

import functools
import gc
import inspect
import os
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple, Optional

import typer

from post_renderer import __version__
from post_renderer.addresses import IPNetwork, collapse, inside, network, overlaps_forbidden, strictly_inside
from post_renderer.errorlog import clear_error_file, fail
from post_renderer.errors import EgressError, Problem
from post_renderer.names import dns_label_problem, dns_subdomain_problem, label_key_problem, label_value_problem
from post_renderer.settings import (
    ISTIO_API_VERSIONS,
    NETWORK_POLICY_FLAVOURS,
    NetworkPolicyFlavour,
    PeerSelector,
    Settings,
)
from post_renderer.terminal import print_notes, read_stdin, read_values, say, write_stdout

if TYPE_CHECKING:
    from post_renderer.destpolicy import Policy
    from post_renderer.pipeline import Result
    from post_renderer.values import ValuesFile
    from post_renderer.verdicts import VerdictCache

# Start-up is most of a small chart's render time, so every module beyond typer and the
# settings is imported where it is first needed: --version and --help read no YAML, and
# only a command that validates values loads jsonschema (and only on a cache miss).

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    # Rendered manifests can hold Secret data: never print locals.
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Give any Helm chart correct Istio egress configuration, as a post-renderer.",
)

ENV = "HELM_EGRESS_"
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


def _labels(text: str, hint: str) -> dict[str, str]:
    """A pod selector, checked as the API server checks the policy it is copied into."""
    labels: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise typer.BadParameter(f"{part!r}: expected key=value[,key=value]", param_hint=hint)
        why = label_key_problem(key) or label_value_problem(value)
        if why:
            raise typer.BadParameter(why, param_hint=hint)
        labels[key] = value
    if not labels:
        raise typer.BadParameter("at least one key=value label is needed", param_hint=hint)
    return labels


def _cidr(text: str, hint: str) -> IPNetwork:
    try:
        return network(text.strip(), strict=True)
    except ValueError as e:
        raise typer.BadParameter(f"{text!r} is not a canonical CIDR ({e})", param_hint=hint) from e


def _dns_label(text: str | None, hint: str, what: str) -> str | None:
    why = dns_label_problem(text, what) if text is not None else None
    if why:
        raise typer.BadParameter(why, param_hint=hint)
    return text


def _ascii_int(value: Any) -> int:
    """An integer option: ASCII digits only (Python's int() also reads '٥٣' and '²'-free
    Unicode digits, which would silently become another number)."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[-+]?[0-9]+", text):
        raise typer.BadParameter(f"{value!r} is not a whole number (ASCII digits 0-9)")
    return int(text)


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise typer.BadParameter(f"{value} is not a port number 1..65535")
    return value


def _shared_options(
    values: Annotated[
        Optional[list[Path]],
        typer.Option(
            "-f", "--values", help="Helm values file with an istio.egress list; repeat to merge (later wins).",
            exists=True, dir_okay=False, readable=True,
        ),
    ] = None,
    release: Annotated[
        Optional[str],
        typer.Option(help="Release name for ServiceEntry names [default: the stream's app.kubernetes.io/instance].",
                     envvar=ENV + "RELEASE"),
    ] = None,
    namespace: Annotated[
        Optional[str],
        typer.Option(help="Namespace for generated documents whose workload names none [default: Helm's].",
                     envvar=ENV + "NAMESPACE"),
    ] = None,
    network_policy: Annotated[
        str,
        typer.Option(help="Egress policy flavour: kubernetes (NetworkPolicy; hostnames as CIDRs), cilium "
                          "(CiliumNetworkPolicy; hostnames by name, toFQDNs), or none.",
                     envvar=ENV + "NETWORK_POLICY"),
    ] = "kubernetes",
    cilium_wildcard_depth: Annotated[
        int,
        typer.Option(help="cilium: 0 writes **.example.com for *.example.com (Cilium >= 1.19); N writes the "
                          "ladder *.example.com ... N labels deep, for older Cilium.",
                     envvar=ENV + "CILIUM_WILDCARD_DEPTH", parser=_ascii_int),
    ] = 0,
    sidecar: Annotated[
        bool,
        typer.Option("--sidecar/--no-sidecar", help="Also write one Istio Sidecar per workload, importing only "
                                                    "what it declared and the release's Services.",
                     envvar=ENV + "SIDECAR"),
    ] = False,
    sidecar_host: Annotated[
        Optional[list[str]],
        typer.Option(help="In-mesh host every Sidecar imports, NAMESPACE/FQDN (e.g. "
                          "payments/api.payments.svc.cluster.local); repeatable.", envvar=ENV + "SIDECAR_HOST"),
    ] = None,
    cluster_domain: Annotated[
        str, typer.Option(help="The cluster's DNS domain, for the release's Services in Sidecars.",
                          envvar=ENV + "CLUSTER_DOMAIN"),
    ] = "cluster.local",
    dns_namespace: Annotated[str, typer.Option(help="Namespace of the cluster DNS pods.", envvar=ENV + "DNS_NAMESPACE")] = "kube-system",
    dns_selector: Annotated[str, typer.Option(help="Labels of the cluster DNS pods, k=v[,k=v].", envvar=ENV + "DNS_SELECTOR")] = "k8s-app=kube-dns",
    dns_port: Annotated[int, typer.Option(help="DNS pod port, allowed over UDP and TCP (OpenShift: 5353).", envvar=ENV + "DNS_PORT",
                                                parser=_ascii_int)] = 53,
    istiod_namespace: Annotated[str, typer.Option(help="Namespace of istiod.", envvar=ENV + "ISTIOD_NAMESPACE")] = "istio-system",
    istiod_selector: Annotated[str, typer.Option(help="Labels of the istiod pods, k=v[,k=v].", envvar=ENV + "ISTIOD_SELECTOR")] = "app=istiod",
    istiod_port: Annotated[int, typer.Option(help="istiod xDS and CA port (TCP).", envvar=ENV + "ISTIOD_PORT",
                                                                                                    parser=_ascii_int)] = 15012,
    same_namespace: Annotated[
        bool, typer.Option("--same-namespace/--no-same-namespace", help="Allow egress to every pod of the workload's own namespace.",
                           envvar=ENV + "SAME_NAMESPACE"),
    ] = True,
    hostname_cidr: Annotated[
        Optional[list[str]],
        typer.Option(help="CIDR that stands in for hostname destinations (NetworkPolicy cannot name hosts); "
                          "repeatable [default: 0.0.0.0/0 and ::/0, cloud metadata and link-local excepted].",
                     envvar=ENV + "HOSTNAME_CIDR"),
    ] = None,
    hostname_except: Annotated[
        Optional[list[str]],
        typer.Option(help="CIDR to carve out of the hostname CIDRs too (e.g. 10.0.0.0/8); repeatable.",
                     envvar=ENV + "HOSTNAME_EXCEPT"),
    ] = None,
    allow_broad_cidrs: Annotated[
        bool, typer.Option(help="Allow addresses such as 0.0.0.0/0 (the metadata endpoints stay excepted).",
                           envvar=ENV + "ALLOW_BROAD_CIDRS"),
    ] = False,
    istio_api_version: Annotated[
        str, typer.Option(help=f"apiVersion of generated ServiceEntries: {', '.join(ISTIO_API_VERSIONS)}.",
                          envvar=ENV + "ISTIO_API_VERSION"),
    ] = ISTIO_API_VERSIONS[0],
    annotation_prefix: Annotated[
        str, typer.Option(help="Prefix of the workload annotations that declare egress (<prefix>/hosts, ...).",
                          envvar=ENV + "ANNOTATION_PREFIX"),
    ] = "helm-egress.io",
    global_allowlist: Annotated[
        Optional[Path],
        typer.Option(help="File with an istio.egress list of cluster-wide ServiceEntries: covered entries get no "
                          "ServiceEntry, but policies still allow them.", exists=True, dir_okay=False,
                     envvar=ENV + "GLOBAL_ALLOWLIST"),
    ] = None,
    policy: Annotated[
        Optional[Path],
        typer.Option(help="The platform's destination policy: every host, address and port the output would open "
                          "must be approved by one of its rules, or nothing is written.", exists=True,
                     dir_okay=False, envvar=ENV + "POLICY"),
    ] = None,
    normalize: Annotated[
        bool, typer.Option("--normalize/--no-normalize",
                           help="Repair the ServiceEntry and egress NetworkPolicy documents the chart renders itself.",
                           envvar=ENV + "NORMALIZE"),
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print no notes; errors are always printed.",
                                        envvar=ENV + "QUIET")] = False,
    error_file: Annotated[
        Optional[Path],
        typer.Option(help="Also write errors to this file. Helm 4 hides a post-renderer's stderr; as a Helm 4 plugin "
                          "the default is $XDG_STATE_HOME/helm-egress/last-error.log.", envvar=ENV + "ERROR_FILE"),
    ] = None,
) -> Shared:
    """The options every stream command takes; typer sees them through ``_with_shared``."""
    if network_policy not in NETWORK_POLICY_FLAVOURS:
        raise typer.BadParameter(f"{network_policy!r} is not kubernetes, cilium or none", param_hint="--network-policy")
    if not 0 <= cilium_wildcard_depth <= 16:
        raise typer.BadParameter(f"{cilium_wildcard_depth} is not 0 (Cilium >= 1.19: any depth) or a depth 1..16",
                                 param_hint="--cilium-wildcard-depth")
    for host in sidecar_host or ():
        from post_renderer.validate import sidecar_host_problem

        why = sidecar_host_problem(host)
        if why:
            raise typer.BadParameter(f"{host!r}: {why}", param_hint="--sidecar-host")
    if dns_subdomain_problem(cluster_domain) is not None:
        raise typer.BadParameter(f"{cluster_domain!r} is not a DNS domain", param_hint="--cluster-domain")
    if istio_api_version not in ISTIO_API_VERSIONS:
        raise typer.BadParameter(f"{istio_api_version!r} is not one of {', '.join(ISTIO_API_VERSIONS)}",
                                 param_hint="--istio-api-version")
    cidrs = tuple(_cidr(c, "--hostname-cidr") for c in hostname_cidr) if hostname_cidr else Settings().hostname_cidrs
    for net in cidrs:
        if overlaps_forbidden(net)[0]:
            raise typer.BadParameter(f"{net} is link-local or a metadata endpoint", param_hint="--hostname-cidr")
    excepts = tuple(_cidr(c, "--hostname-except") for c in hostname_except or ())
    for net in excepts:
        # A NetworkPolicy except must lie strictly inside its cidr; one that does not would
        # be dropped, and the range the user meant to close would stay open.
        if not any(strictly_inside(net, c) for c in cidrs):
            raise typer.BadParameter(
                f"{net} is not strictly inside any hostname CIDR ({', '.join(map(str, cidrs))}); a NetworkPolicy "
                "except must be, so it could not be excluded", param_hint="--hostname-except")
    for cidr in cidrs:
        # Excepts that together cover a whole hostname CIDR merge into one equal to it,
        # which the API server rejects: the user asked for that CIDR not to be opened.
        covered = [n for n in excepts if inside(n, cidr)]
        if covered and collapse(covered) == [cidr]:
            raise typer.BadParameter(
                f"{', '.join(map(str, covered))} together cover the whole hostname CIDR {cidr}; drop that "
                "--hostname-cidr instead", param_hint="--hostname-except")
    if release is not None:
        # Helm's own rule for release names; the name lands in labels and object names.
        why = dns_subdomain_problem(release, "release name", limit=53)
        if why:
            raise typer.BadParameter(why, param_hint="--release")
    _dns_label(namespace, "--namespace", "namespace")
    _dns_label(dns_namespace, "--dns-namespace", "namespace")
    _dns_label(istiod_namespace, "--istiod-namespace", "namespace")
    if dns_subdomain_problem(annotation_prefix) is not None:
        raise typer.BadParameter(f"{annotation_prefix!r} is not a DNS subdomain (e.g. egress.example.com)",
                                 param_hint="--annotation-prefix")
    flavour: NetworkPolicyFlavour = next(f for f in NETWORK_POLICY_FLAVOURS if f == network_policy)
    settings = Settings(
        release=release,
        namespace=namespace,
        network_policy=flavour,
        dns=PeerSelector(dns_namespace, _labels(dns_selector, "--dns-selector"),
                         (("UDP", _port(dns_port)), ("TCP", _port(dns_port)))),
        istiod=PeerSelector(istiod_namespace, _labels(istiod_selector, "--istiod-selector"),
                            (("TCP", _port(istiod_port)),)),
        allow_same_namespace=same_namespace,
        hostname_cidrs=cidrs,
        hostname_excepts=excepts,
        allow_broad_cidrs=allow_broad_cidrs,
        istio_api_version=istio_api_version,
        annotation_prefix=annotation_prefix,
        normalize=normalize,
        cilium_wildcard_depth=cilium_wildcard_depth,
        sidecar=sidecar,
        sidecar_hosts=tuple(dict.fromkeys(sidecar_host or ())),
        cluster_domain=cluster_domain,
    )
    return Shared(settings, list(values or ()), global_allowlist, quiet, error_file, policy)


class Shared(NamedTuple):
    settings: Settings
    values: list[Path]
    allowlist: Path | None
    quiet: bool
    error_file: Path | None
    policy: Path | None = None
    stdin_is_stream: bool = True  # False for `check --no-stream`, where -f /dev/stdin is fine

    def inputs(self) -> tuple[list[ValuesFile], ValuesFile | None]:
        read = functools.partial(read_values, stdin_is_stream=self.stdin_is_stream)
        return [read(p) for p in self.values], read(self.allowlist) if self.allowlist else None

    def destination_policy(self, verdicts: VerdictCache | None = None) -> Policy | None:
        if self.policy is None:
            return None
        # Imported only here: checking the file needs jsonschema, which plain renders skip.
        from post_renderer.destpolicy import load

        file = read_values(self.policy, "policy file", stdin_is_stream=self.stdin_is_stream)
        return load(file.text, file.name, verdicts)


@functools.lru_cache(maxsize=None)
def _resolved(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    # Annotations are strings here (postponed evaluation); typer needs the objects.
    hints = typing.get_type_hints(fn, include_extras=True)
    return [p.replace(annotation=hints[p.name], kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(fn).parameters.values() if p.name != "shared"]


def _with_shared(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the shared options: typer reads the combined signature, the
    command receives them built into one ``Shared`` as ``shared``."""
    own, common = _resolved(command), _resolved(_shared_options)

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        shared = _shared_options(**{p.name: kwargs.pop(p.name) for p in common})
        command(shared=shared, **kwargs)

    wrapper.__signature__ = inspect.Signature([*own, *common])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *common]}
    return wrapper


@app.command()
@_with_shared
def render(*, shared: Shared) -> None:
    """Add ServiceEntry and egress policy (NetworkPolicy or CiliumNetworkPolicy, Sidecar) documents to the stream."""
    result = _analyse(shared, explain=False)
    if result.violations:
        raise fail(EgressError(result.violations), shared.error_file)
    print_notes(result.notes, shared.quiet)
    write_stdout(result.chunks)
    clear_error_file(shared.error_file)


@app.command()
@_with_shared
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
    from post_renderer import report

    extra = list(files or ())
    errors: list[Problem] = []
    warnings: list[Problem] = []
    notes: list[str] = []
    verdicts = _verdict_cache()
    policy = None
    if no_stream:
        shared = shared._replace(stdin_is_stream=False)
    try:
        policy = shared.destination_policy(verdicts)
    except EgressError as e:
        errors.extend(e.problems)
    if errors:
        pass  # without its policy, nothing can be judged
    elif no_stream:
        for path in [*shared.values, *extra]:
            try:
                found, refused = report.check_values(read_values(path, stdin_is_stream=False), shared.settings,
                                                     policy, verdicts)
                warnings.extend(found)
                errors.extend(refused)
            except EgressError as e:
                errors.extend(e.problems)
    else:
        shared = shared._replace(values=[*shared.values, *extra])
        from post_renderer.pipeline import analyse

        try:
            data = read_stdin()
            values, allowlist = shared.inputs()
            result = analyse(data, values, shared.settings, allowlist=allowlist, policy=policy, verdicts=verdicts,
                             explain=False)
            warnings, notes, errors = result.warnings, result.notes, result.violations
        except EgressError as e:
            errors = e.problems
    if verdicts is not None:
        verdicts.save()
    failed = bool(errors) or (strict and bool(warnings))
    write_stdout(report.findings(errors, warnings, [] if shared.quiet else notes, output_format, failed))
    raise typer.Exit(1 if failed else 0)


@app.command()
@_with_shared
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

    try:
        data = read_stdin()
    except EgressError as e:
        raise fail(e, shared.error_file, 2) from None
    result = _analyse(shared, data=data, exit_code=2, explain=False)
    text = data.decode("utf-8", errors="surrogateescape")
    if result.violations:
        raise fail(EgressError(result.violations), shared.error_file, 2)
    print_notes(result.notes, shared.quiet)
    colour = color == "always" or (color == "auto" and sys.stdout.isatty())
    patch = report.unified_diff(text, result.output, colour=colour)
    write_stdout(patch)
    raise typer.Exit(1 if patch else 0)


@app.command()
@_with_shared
def explain(
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml.")] = "table",
    *,
    shared: Shared,
) -> None:
    """For every workload: what it may reach, who declared it, which objects allow it."""
    if output not in ("table", "json", "yaml"):
        raise typer.BadParameter(f"{output!r} is not table, json or yaml", param_hint="--output")
    from post_renderer import report

    result = _analyse(shared)
    print_notes(result.notes, shared.quiet)
    violations = result.violations if shared.policy is not None else None
    write_stdout(report.explain(result.workloads, output, violations))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the istio.egress list (for a chart's values.schema.json)."""
    from post_renderer.schema import schema_text

    write_stdout(schema_text())


def _analyse(shared: Shared, *, data: bytes | None = None, exit_code: int = 1, explain: bool = True) -> Result:
    from post_renderer.pipeline import analyse

    verdicts = _verdict_cache()
    try:
        values, allowlist = shared.inputs()
        policy = shared.destination_policy(verdicts)
        # No local keeps the input alive: analyse drops it once split, which matters for
        # peak memory on multi-MB streams.
        return analyse(read_stdin() if data is None else data, values, shared.settings, allowlist=allowlist,
                       policy=policy, verdicts=verdicts, explain=explain)
    except EgressError as e:
        raise fail(e, shared.error_file, exit_code) from None
    finally:
        # Verdicts learnt before a later stage failed still hold.
        if verdicts is not None:
            verdicts.save()


def _verdict_cache() -> VerdictCache | None:
    from post_renderer import verdicts

    return verdicts.from_environment()


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
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass  # the reader went away; the exit status still says how it went
    os._exit(code)


def invoke() -> int:
    """Run the command line in ``sys.argv``; the exit status."""
    everything = app.registered_commands
    # Typer builds a click command, every option included, for each registered command on
    # every run (~3.5 ms of five). When the first argument names one, only it is built;
    # anything else (--help, --version, a misspelt command) sees them all.
    called = [c for c in everything if len(sys.argv) > 1 and sys.argv[1] == _command_name(c)]
    try:
        app.registered_commands = called or everything
        app()
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        say(str(e.code))
        return 1
    except KeyboardInterrupt:
        say("helm-egress: interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - the one place unexpected failures become exit 3
        say(f"helm-egress: unexpected error: {type(e).__name__}: {e}")
        return 3
    finally:
        app.registered_commands = everything
    return 0


def _command_name(command: typer.models.CommandInfo) -> str | None:
    """The name typer gives a registered command (its function's, dashed, by default)."""
    if command.name:
        return command.name
    return command.callback.__name__.lower().replace("_", "-") if command.callback else None

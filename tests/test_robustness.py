"""Regressions for the fuzzing campaign's root causes (issue 10): every malformed input is
refused with a located message, exit 1, nothing on stdout; options are checked like the
fields they fill (exit 2); what succeeds is idempotent and keeps every input document."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from post_renderer.cli import app

EXE = shutil.which("helm-egress", path=str(Path(sys.executable).parent)) or shutil.which("helm-egress")
LABELS = "  labels: {app.kubernetes.io/instance: r}\n"
HEAD = "---\n# Source: c/templates/w.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\n" + LABELS
POD = "spec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n"
WORKLOAD = HEAD + POD
VALUES = "istio:\n  egress:\n    - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}\n"


def serviceentry(spec: str, name: str = "se") -> str:
    return f"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\nspec:\n{spec}"


def networkpolicy(spec: str) -> str:
    return f"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: np\nspec:\n{spec}"


def annotated(annotations: dict[str, str]) -> str:
    lines = "".join(f"        {k}: {v!r}\n" for k, v in annotations.items())
    return HEAD + ("spec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata:\n"
                   "      labels: {app: w}\n      annotations:\n" + lines)


def pod_template(expression: str) -> str:
    return HEAD + ("spec:\n  selector: {matchExpressions: [" + expression + "]}\n"
                   "  template:\n    metadata: {labels: {app: w}}\n")


@pytest.fixture
def values(tmp_path: Path) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(VALUES)
    return str(path)


def render(stdin: str | bytes, *args: str) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(app, ["render", *args], input=stdin)
    return result.exit_code, result.stdout_bytes, result.stderr


TLS = "  ports: [{number: 443, name: tls, protocol: TLS}]\n"
BAD_INPUT = {
    # Exit 3 before: a value of the wrong type used before it was checked.
    "exportTo-5": (serviceentry("  hosts: [a.example.com]\n  exportTo: 5\n" + TLS) + WORKLOAD,
                   "document 0 (ServiceEntry/se): spec.exportTo: expected a list"),
    "metadata-x": ("---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: x\nspec:\n"
                   "  hosts: [a.example.com]\n" + TLS + WORKLOAD, "document 0 (ServiceEntry): metadata: expected a mapping"),
    "addresses-5": (serviceentry("  hosts: [a.example.com]\n  addresses: 5\n" + TLS) + WORKLOAD,
                    "spec.addresses: expected a list"),
    "endpoints-5": (serviceentry("  hosts: [a.example.com]\n  resolution: STATIC\n  endpoints: 5\n" + TLS) + WORKLOAD,
                    "spec.endpoints: expected a list"),
    "port-name-list": (serviceentry("  hosts: [a.example.com]\n  ports: [{number: 443, name: [a], protocol: TLS}]\n")
                       + WORKLOAD, "spec.ports[0].name: expected a string, found a list"),
    "egress-ports-5": (networkpolicy("  podSelector: {}\n  egress: [{ports: 5}]\n") + WORKLOAD,
                       "document 0 (NetworkPolicy/np): spec.egress[0].ports: expected a list"),
    "except-5": (networkpolicy("  podSelector: {}\n  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: 5}}]}]\n")
                 + WORKLOAD, "spec.egress[0].to[0].ipBlock.except: expected a list"),
    "matchExpressions-values-5": (pod_template("{key: app, operator: In, values: 5}"),
                                  "spec.selector.matchExpressions[0].values: expected a list"),
    "label-key-not-a-string": (HEAD + "spec:\n  selector: {matchLabels: {1: w, app: x}}\n"
                               "  template:\n    metadata: {labels: {app: w}}\n",
                               "spec.selector.matchLabels.1: keys must be strings"),
    "job-template-metadata-x": ("---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\n" + LABELS
                                + "spec:\n  template:\n    metadata: x\n",
                                "document 0 (Job/j): spec.template.metadata: expected a mapping"),
    "full-annotation-without-protocol-mixed": (annotated({
        "helm-egress.io/hosts": "x.example.com", "helm-egress.io/ports": "443/TLS",
        "helm-egress.io/egress": "[{name: a, hosts: [a.example.com], ports: [{number: 443}]}]"}),
        "\"helm-egress.io/egress\"]: [0].ports[0]: 'protocol' is a required property"),
    "ports-superscript-two": (annotated({"helm-egress.io/hosts": "a.example.com", "helm-egress.io/ports": "²"}),
                              "'²' is not NUMBER or NUMBER/PROTOCOL"),
    # Limits before parsing (a segmentation fault at about 30,000 levels before).
    "stream-nested-30000": (WORKLOAD + "  deep: " + "[" * 30000 + "]" * 30000 + "\n", "nested more than 200 levels"),
    "stream-block-nested-30000": (WORKLOAD + "  deep:\n    " + "- " * 30000 + "x\n", "nested more than 200 levels"),
    "annotation-nested-30000": (annotated({"helm-egress.io/egress": "[" * 30000 + "]" * 30000}),
                                "nested more than 200 levels"),
    # Invalid output before: copied into generated documents unchecked.
    "workload-namespace": (HEAD.replace("  name: w\n", "  name: w\n  namespace: Bad_NS\n") + POD,
                           "metadata.namespace: 'Bad_NS' is not a valid namespace"),
    "matchExpressions-key": (pod_template("{key: 'a b', operator: In, values: [x]}"),
                             "matchExpressions[0]: key: label key 'a b'"),
    "matchExpressions-operator": (pod_template("{key: app, operator: Maybe, values: [x]}"),
                                  "operator: 'Maybe' is not In, NotIn, Exists or DoesNotExist"),
    "matchExpressions-in-without-values": (pod_template("{key: app, operator: In}"), "In needs at least one value"),
    "label-value": (HEAD + "spec:\n  selector: {matchLabels: {app: 'a b'}}\n  template:\n    metadata: {}\n",
                    "label value 'a b'"),
    # Silently wrong before.
    "arabic-indic-port": (annotated({"helm-egress.io/hosts": "a.example.com", "helm-egress.io/ports": "٤٤٣/TLS"}),
                          "'٤٤٣/TLS' is not NUMBER or NUMBER/PROTOCOL"),
    "kelvin-sign-host": (annotated({"helm-egress.io/hosts": "\u212a.com", "helm-egress.io/ports": "443/TLS"}),
                         "hosts must be ASCII DNS names; the IDNA (punycode) form of this one is 'k.com'"),
    "idna-host": (annotated({"helm-egress.io/hosts": "bücher.de", "helm-egress.io/ports": "443/TLS"}),
                  "'xn--bcher-kva.de'"),
    "long-s-protocol": (annotated({"helm-egress.io/egress": "[{name: a, hosts: [a.example.com], "
                                                            "ports: [{number: 443, protocol: HTTP\u017f}]}]"}),
                        "is not one of TCP"),
    "chart-serviceentry-non-ascii-host": (serviceentry("  hosts: [\u212a.com]\n" + TLS) + WORKLOAD,
                                          "spec.hosts[0]: '\u212a.com': hosts must be ASCII"),
}
METADATA_SPELLINGS = ["64:ff9b::a9fe:a9fe", "64:ff9b::169.254.169.254", "::169.254.169.254", "::a9fe:a9fe",
                      "::ffff:169.254.169.254", "64:ff9b:1::a9fe:a9fe", "64:ff9b:1:a9fe:a9::", "2002:a9fe:a9fe::1",
                      "::ffff:0:169.254.169.254", "::ffff:0:a9fe:a9fe",
                      "fd00:ec2::254%eth0", "fe80::1%eth0", "169.254.169.254", "fd00:ec2::254"]


@pytest.mark.parametrize(("stdin", "message"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_malformed_input_is_a_located_error(stdin: str, message: str, values: str) -> None:
    code, out, err = render(stdin, "-f", values)
    assert (code, out) == (1, b""), err
    assert err.startswith("error: stdin:"), err
    assert message in err
    assert "Traceback" not in err and "unexpected" not in err


@pytest.mark.parametrize("address", METADATA_SPELLINGS)
def test_every_spelling_of_the_metadata_endpoint_is_refused(address: str, values: str) -> None:
    code, out, err = render(annotated({"helm-egress.io/addresses": address, "helm-egress.io/ports": "443/TLS"}),
                            "-f", values)
    assert (code, out) == (1, b""), err
    assert '"helm-egress.io/addresses"]: addresses[0]' in err
    assert "metadata endpoint" in err or "zone index" in err


def test_metadata_spellings_are_excepted_from_hostname_cidrs(values: str) -> None:
    code, out, err = render(WORKLOAD, "-f", values)
    assert code == 0, err
    for spelling in ("'::a9fe:0/112'", "'::ffff:a9fe:0/112'", "'::ffff:0:a9fe:0/112'", "'64:ff9b::a9fe:0/112'",
                     "'64:ff9b:1::/48'"):
        assert spelling in out.decode()


def test_every_ist0177_conflict_is_reported(values: str) -> None:
    first = serviceentry("  hosts: [a.example.com, b.example.com]\n  exportTo: ['.']\n  resolution: NONE\n" + TLS, "one")
    second = serviceentry("  hosts: [a.example.com, b.example.com]\n  exportTo: ['.']\n  resolution: NONE\n"
                          "  ports: [{number: 443, name: https, protocol: HTTPS}]\n", "two")
    code, out, err = render(first + second + WORKLOAD, "-f", values)
    assert (code, out) == (1, b"")
    conflicts = [line for line in err.splitlines() if "IST0177" in line]
    assert len(conflicts) == 2, err
    assert "a.example.com:443" in conflicts[0] and "b.example.com:443" in conflicts[1]


# --------------------------------------------------------------------------- limits


def test_values_file_that_never_ends_is_refused(tmp_path: Path) -> None:
    result = subprocess.run([EXE, "render", "-f", "/dev/zero"], input=WORKLOAD.encode(), capture_output=True,
                            timeout=20)
    assert (result.returncode, result.stdout) == (1, b"")
    assert result.stderr.decode() == "error: /dev/zero: larger than 16 MiB; not a values file\n"


def test_values_nested_too_deep_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("istio:\n  egress: " + "[" * 30000 + "]" * 30000 + "\n")
    code, out, err = render(WORKLOAD, "-f", str(deep))
    assert (code, out) == (1, b"")
    assert err == f"error: {deep}:2: nested more than 200 levels deep; refusing it\n"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_one_line_and_exit_1(values: str) -> None:
    with open("/dev/full", "wb") as full:
        result = subprocess.run([EXE, "render", "-f", values], input=WORKLOAD.encode(), stdout=full,
                                stderr=subprocess.PIPE, timeout=20)
    assert result.returncode == 1
    assert result.stderr.decode() == "helm-egress: cannot write the output: No space left on device\n"


@pytest.mark.parametrize("command", ["render", "diff", "explain"])
def test_a_closed_stdout_is_one_line_and_exit_1(values: str, command: str) -> None:
    # diff asked a closed stdout whether it is a terminal, and exited 3.
    result = subprocess.run(f'"{EXE}" {command} -f "{values}" >&-', shell=True, input=WORKLOAD.encode(),
                            stderr=subprocess.PIPE, timeout=20)
    assert result.returncode == 1
    assert result.stderr.decode() == "helm-egress: cannot write the output: stdout is closed\n"


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--release", "Bad_Release"], "Invalid value for --release"),
        (["--release", "a" * 54], "Invalid value for --release"),
        (["--namespace", "NS!"], "Invalid value for --namespace"),
        (["--dns-namespace", "Kube"], "Invalid value for --dns-namespace"),
        (["--istiod-namespace", "x_y"], "Invalid value for --istiod-namespace"),
        (["--dns-selector", "k8s-app=kube dns"], "Invalid value for --dns-selector"),
        (["--istiod-selector", "a b=c"], "Invalid value for --istiod-selector"),
        (["--istiod-selector", "-x=c"], "Invalid value for --istiod-selector"),
        (["--hostname-cidr", "10.0.0.0/8%eth0"], "zone index"),
        (["--hostname-except", "0.0.0.0/0"], "not strictly inside any hostname CIDR"),
        (["--hostname-cidr", "10.0.0.0/8", "--hostname-except", "10.0.0.0/8"], "not strictly inside"),
        (["--hostname-cidr", "10.0.0.0/8", "--hostname-except", "11.0.0.0/8"], "not strictly inside"),
        (["--apiserver-cidr", "169.254.169.254/32"], "metadata endpoint"),
        (["--apiserver-cidr", "0.0.0.0/0"], "too broad"),
        (["--apiserver-cidr", "10.0.0.1/8"], "not a canonical CIDR"),
        (["--apiserver-cidr", "kubernetes"], "not a canonical CIDR"),
        (["--node-cidr", "169.254.0.0/16"], "metadata endpoint"),
        (["--node-cidr", "::/0"], "too broad"),
        (["--node-cidr", "10.0.0.7/24"], "not a canonical CIDR"),
        (["--node-cidr", "nodes"], "Invalid value for --node-cidr"),
        (["--apiserver-access", "maybe"], "is not rbac, all or none"),
        (["--apiserver-port", "0"], "Invalid value for --apiserver-port"),
        (["--apiserver-port", "65536"], "Invalid value for --apiserver-port"),
    ],
)
def test_options_are_checked_like_the_fields_they_fill(args: list[str], message: str, values: str) -> None:
    code, out, err = render(WORKLOAD, "-f", values, *args)
    assert (code, out) == (2, b"")
    assert message in err


def test_hostname_except_inside_a_hostname_cidr_is_excepted(values: str) -> None:
    code, out, err = render(WORKLOAD, "-f", values, "--hostname-except", "10.0.0.0/8")
    assert code == 0, err
    assert "- '10.0.0.0/8'" in out.decode()


def test_an_invalid_instance_label_is_not_used_as_release(values: str) -> None:
    stream = WORKLOAD.replace("instance: r}", "instance: " + "r" * 70 + "}")
    code, out, err = render(stream, "-f", values)
    assert (code, out) == (1, b"")
    assert "pass --release NAME" in err


# --------------------------------------------------------------------------- --error-file


def test_error_file_never_touches_a_file_it_did_not_write(tmp_path: Path, values: str) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("mine\n")
    assert render(WORKLOAD, "-f", values, "--error-file", str(precious))[0] == 0
    assert precious.read_text() == "mine\n"  # a success removes only helm-egress's own report
    code, _, err = render(WORKLOAD + "  x: [\n", "-f", values, "--error-file", str(precious))
    assert code == 1
    assert precious.read_text() == "mine\n"  # and a failure never overwrites it
    assert "not a helm-egress error file" in err


def test_error_file_is_written_replaced_and_cleared(tmp_path: Path, values: str) -> None:
    report = tmp_path / "state" / "last-error.log"
    assert render(WORKLOAD + "  x: [\n", "-f", values, "--error-file", str(report))[0] == 1
    first = report.read_text()
    assert first.startswith("# helm-egress ") and "invalid YAML" in first
    assert render(WORKLOAD.replace("name: w", "name: v") + "  y: {\n", "-f", values, "--error-file", str(report))[0] == 1
    assert "Deployment/v" in report.read_text()
    assert render(WORKLOAD, "-f", values, "--error-file", str(report))[0] == 0
    assert not report.exists()


# --------------------------------------------------------------------------- line breaks and kinds


CONFIGMAP = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n"
ODD_STREAMS = {
    "ends-in-bare-cr": CONFIGMAP.rstrip("\n") + "\r",
    "workload-ends-in-bare-cr": WORKLOAD + "  x: 1\r",
    "doubled-bom": "\ufeff\ufeff" + WORKLOAD,
    "nel-in-source-comment": WORKLOAD.replace("# Source: c/templates/w.yaml", "# Source: c/templates/w.yaml\x85"),
    "lone-cr-line-ends": WORKLOAD.replace("\n", "\r"),
    "line-separators": WORKLOAD.replace("\n", "\u2028"),
    "nel-before-marker": WORKLOAD + "\x85---\n" + CONFIGMAP,
    "cr-before-marker": CONFIGMAP.rstrip("\n") + "\r---\r" + WORKLOAD,
}


@pytest.mark.parametrize("stdin", ODD_STREAMS.values(), ids=ODD_STREAMS.keys())
def test_odd_line_breaks_render_idempotently_and_keep_the_input(stdin: str, values: str) -> None:
    code, out, err = render(stdin.encode(), "-f", values, "--release", "r")
    assert code == 0, err
    text = out.decode()
    assert b"kind: ServiceEntry" in out
    assert text.startswith("\ufeff\ufeff") == stdin.startswith("\ufeff\ufeff")
    for piece in stdin.lstrip("\ufeff").split("---"):
        assert piece in text  # every input document, byte for byte
    again = render(out, "-f", values, "--release", "r")
    assert again[:2] == (0, out), again[2]


def test_a_kind_line_inside_a_quoted_scalar_does_not_hide_the_workload(values: str) -> None:
    stream = ("---\napiVersion: apps/v1\nmetadata:\n  name: w\n" + LABELS + "  annotations:\n"
              '    note: "a\n\nkind: ConfigMap\n\n  b"\nkind: Deployment\n' + POD)
    code, out, err = render(stream, "-f", values)
    assert code == 0, err
    assert out.decode().count("kind: NetworkPolicy") == 1
    assert "name: w-egress" in out.decode()


def test_the_chart_name_in_generated_source_lines_is_a_name(values: str) -> None:
    stream = WORKLOAD.replace("# Source: c/templates/w.yaml", "# Source: c\u2028x: y/templates/w.yaml")
    code, out, err = render(stream, "-f", values)
    assert code == 0, err
    assert "# Source: c/templates/helm-egress-" not in out.decode()
    assert "# Source: helm-egress/templates/helm-egress-serviceentries.yaml" in out.decode()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_notes_that_cannot_be_written_do_not_fail_the_render(tmp_path: Path) -> None:
    """stderr on a full disk: the manifests were written, so the render still succeeds."""
    case = Path(__file__).parent / "cases" / "normalize-seed-ci-helm3"
    out = tmp_path / "out.yaml"
    with open("/dev/full", "wb") as full, out.open("wb") as sink, (case / "input.yaml").open("rb") as stdin:
        result = subprocess.run([EXE, "render", "-f", str(case / "values.yaml")], stdin=stdin, stdout=sink,
                                stderr=full, timeout=20)
    assert result.returncode == 0
    assert out.read_bytes() == (case / "expected.yaml").read_bytes()


def test_a_four_space_indented_workload_is_read_in_linear_time(values: str) -> None:
    """Found by the property suite: the best-effort name reader matched each indented line
    in as many ways as it had leading blanks, so a workload indented by four spaces (or any
    document with many indented metadata lines and no two-space `name:`) never finished."""
    labels = "".join(f"      l{i}: v{i}\n" for i in range(40))
    stream = ("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n    name: w\n    labels:\n"
              "      app.kubernetes.io/instance: r\n" + labels + "spec:\n    selector:\n        matchLabels:\n"
              "            app: w\n    template:\n        metadata:\n            labels:\n                app: w\n")
    started = time.monotonic()
    code, out, err = render(stream, "-f", values)
    assert code == 0, err
    assert time.monotonic() - started < 5
    assert "name: w-egress" in out.decode()
    bad = stream.replace("    selector:", "    selector: [")
    started = time.monotonic()
    code, out, err = render(bad, "-f", values)
    assert (code, out) == (1, b"")
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- acceptance probes (review of issue 10)


def helm4(stream: str) -> str:
    """The same documents as Helm 4 hands them over: no `# Source:` lines, the filename annotation."""
    docs = [d.split("\n", 1)[1] if d.startswith("# Source:") else d for d in stream.split("---\n") if d]
    return "---\n".join(d.replace("metadata:\n", "metadata:\n  annotations:\n"
                                  "    postrenderer.helm.sh/postrender-filename: 'c/templates/w.yaml'\n", 1)
                        for d in docs)


TEMPLATE_LABELS = HEAD + "spec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w, %s}}\n"
MORE_BAD_INPUT = {
    # Pod-template labels the selector does not check are copied into Sidecar and Cilium
    # selectors (and into the narrowing of other workloads' policies).
    "template-label-key": (TEMPLATE_LABELS % "'a b': x", "spec.template.metadata.labels.a b: label key 'a b'"),
    "template-label-value": (TEMPLATE_LABELS % ("x: " + "v" * 64), "spec.template.metadata.labels.x: label value"),
    # Legacy IPv4 spellings resolvers read as 169.254.169.254 are addresses, not hosts.
    "decimal-ipv4-host": (annotated({"helm-egress.io/hosts": "2852039166", "helm-egress.io/ports": "443/TLS"}),
                          "'2852039166': IP addresses are not hosts"),
    "hex-ipv4-host": (annotated({"helm-egress.io/hosts": "0xa9fea9fe", "helm-egress.io/ports": "443/TLS"}),
                      "'0xa9fea9fe': IP addresses are not hosts"),
    "chart-serviceentry-hex-ipv4-host": (serviceentry("  hosts: ['0xa9fea9fe']\n" + TLS) + WORKLOAD,
                                         "spec.hosts[0]: '0xa9fea9fe' is an IP address"),
    # Two top-level kinds once YAML's line breaks count (NEL or a lone CR in a comment):
    # classified by the reader, which refuses the duplicate key instead of skipping the workload.
    "nel-starts-a-kind-line": (WORKLOAD.replace("w.yaml\n", "w.yaml\x85kind: ConfigMap\n"), "duplicate key"),
    "cr-starts-a-kind-line": (WORKLOAD.replace("w.yaml\n", "w.yaml\rkind: Secret\n"), "duplicate key"),
    # A chart's egress NetworkPolicy port with no repair is refused, not "repaired" and left invalid.
    "networkpolicy-arabic-indic-port": (networkpolicy("  podSelector: {}\n  egress: [{ports: [{port: '٤٤٣'}]}]\n")
                                        + WORKLOAD, "spec.egress[0].ports[0].port: '٤٤٣' is not a port number or name"),
    "networkpolicy-port-out-of-range": (networkpolicy("  podSelector: {}\n  egress: [{ports: [{port: 70000}]}]\n")
                                        + WORKLOAD, "spec.egress[0].ports[0].port: 70000 is not 1..65535"),
    "networkpolicy-end-port-below-port": (networkpolicy("  podSelector: {}\n  egress: [{ports: [{port: 443, endPort: 10}]}]\n")
                                          + WORKLOAD, "endPort: 10 must be between port and 65535"),
    "networkpolicy-protocol": (networkpolicy("  podSelector: {}\n  egress: [{ports: [{port: 443, protocol: XTCP}]}]\n")
                               + WORKLOAD, "protocol: 'XTCP' is not TCP, UDP or SCTP"),
    "serviceentry-address-not-an-ip": (serviceentry("  hosts: [a.example.com]\n  addresses: ['169.254.169.254%eth0']\n"
                                                    + TLS) + WORKLOAD,
                                       "spec.addresses[0]: '169.254.169.254%eth0' is not an IP address or CIDR"),
    "serviceentry-legacy-ipv4-address": (serviceentry("  hosts: [a.example.com]\n  addresses: ['0251.0376.0251.0376']\n"
                                                      + TLS) + WORKLOAD, "is not an IP address or CIDR"),
    "serviceentry-endpoints-under-none": (serviceentry("  hosts: [a.example.com]\n  endpoints: [{address: 10.0.0.9}]\n"
                                                       + TLS) + WORKLOAD,
                                          "spec.endpoints: endpoints need resolution STATIC or DNS"),
    "serviceentry-unknown-resolution": (serviceentry("  hosts: [a.example.com]\n  resolution: DNSX\n" + TLS) + WORKLOAD,
                                        "spec.resolution: 'DNSX' is not one of NONE"),
    "serviceentry-port-out-of-range": (serviceentry("  hosts: [a.example.com]\n  ports: [{number: 70000, protocol: TLS}]\n")
                                       + WORKLOAD, "spec.ports[0].number: 70000 is not a port number 1..65535"),
}


# Helm 4 writes no `# Source:` comment, where these hide their kind line.
SOURCE_COMMENT_ONLY = {"nel-starts-a-kind-line", "cr-starts-a-kind-line"}


@pytest.mark.parametrize(
    ("stdin", "message", "shape"),
    [pytest.param(stdin, message, shape, id=f"{name}-{shape}") for name, (stdin, message) in MORE_BAD_INPUT.items()
     for shape in ("helm3", "helm4") if shape == "helm3" or name not in SOURCE_COMMENT_ONLY],
)
def test_more_malformed_input_is_a_located_error(stdin: str, message: str, shape: str, values: str) -> None:
    for extra in ([], ["--network-policy", "cilium", "--sidecar"]):
        code, out, err = render(stdin if shape == "helm3" else helm4(stdin), "-f", values, *extra)
        assert (code, out) == (1, b""), err
        assert err.startswith("error: stdin:") and "document 0 (" in err, err
        assert message in err, err


def test_hosts_that_only_look_numeric_are_names(values: str) -> None:
    stream = annotated({"helm-egress.io/hosts": "0xfoo.example.com, 1.example.com", "helm-egress.io/ports": "443/TLS"})
    code, out, err = render(stream, "-f", values)
    assert code == 0, err
    assert "0xfoo.example.com" in out.decode().split("kind: ServiceEntry", 1)[1]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--dns-port", "٥٣"], {}, "'٥٣' is not a whole number (ASCII digits 0-9)"),
        (["--istiod-port", "١٥٠١٢"], {}, "ASCII digits"),
        (["--cilium-wildcard-depth", "٣"], {}, "ASCII digits"),
        ([], {"HELM_EGRESS_DNS_PORT": "٥٣"}, "ASCII digits"),
        (["--hostname-cidr", "10.0.0.0/8", "--hostname-except", "10.0.0.0/9", "--hostname-except", "10.128.0.0/9"], {},
         "together cover the whole hostname CIDR 10.0.0.0/8"),
        ([], {"HELM_EGRESS_HOSTNAME_CIDR": "10.0.0.0/8", "HELM_EGRESS_HOSTNAME_EXCEPT": "10.0.0.0/8"},
         "not strictly inside"),
    ],
)
def test_option_values_and_their_environment_forms_are_checked(args: list[str], env: dict[str, str], message: str,
                                                              values: str) -> None:
    result = subprocess.run([EXE, "render", "-f", values, *args], input=WORKLOAD.encode(), capture_output=True,
                            env={**os.environ, **env}, timeout=20)
    assert (result.returncode, result.stdout) == (2, b""), result.stderr
    assert message in result.stderr.decode()


def test_hostname_options_are_read_from_the_environment(values: str) -> None:
    env = {**os.environ, "HELM_EGRESS_HOSTNAME_CIDR": "10.0.0.0/8 192.168.0.0/16", "HELM_EGRESS_HOSTNAME_EXCEPT": "10.1.0.0/16"}
    result = subprocess.run([EXE, "render", "-f", values], input=WORKLOAD.encode(), capture_output=True, env=env, timeout=20)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "cidr: '192.168.0.0/16'" in out and "- '10.1.0.0/16'" in out and "0.0.0.0/0" not in out


def test_a_reader_that_goes_away_is_one_line_and_exit_1(values: str) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([EXE, "render", "-f", values], input=WORKLOAD.encode(), stdout=write,
                                stderr=subprocess.PIPE, timeout=20)
    finally:
        os.close(write)
    assert result.returncode == 1
    assert result.stderr.decode() == "helm-egress: cannot write the output: the reader closed the pipe\n"


def test_a_user_file_that_starts_like_a_report_is_not_removed(tmp_path: Path, values: str) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# helm-egress notes\nmine\n")
    assert render(WORKLOAD, "-f", values, "--error-file", str(notes))[0] == 0
    assert notes.read_text() == "# helm-egress notes\nmine\n"
    code, _, err = render(WORKLOAD + "  x: [\n", "-f", values, "--error-file", str(notes))
    assert code == 1 and "not a helm-egress error file" in err
    assert notes.read_text() == "# helm-egress notes\nmine\n"


def test_a_policy_host_with_a_kelvin_sign_is_refused_not_folded(tmp_path: Path, values: str) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("allow: [{hosts: ['\u212aube.example.com', api.example.com], ports: [443]}]\n", encoding="utf-8")
    code, out, err = render(WORKLOAD, "-f", values, "--policy", str(policy))
    assert (code, out) == (1, b""), err
    assert "allow[0].hosts[0]: '\u212aube.example.com': hosts must be ASCII DNS names" in err
    assert "'kube.example.com'" in err


def test_a_lower_case_resolution_is_repaired(values: str) -> None:
    code, out, err = render(serviceentry("  hosts: [a.example.com]\n  resolution: dns\n" + TLS) + WORKLOAD, "-f", values)
    assert code == 0, err
    assert "repaired: resolution dns -> DNS" in err
    assert "  resolution: DNS\n" in out.decode()


def test_a_chart_cilium_port_in_other_digits_is_a_name_not_a_number(tmp_path: Path, values: str) -> None:
    """'٤٤٣' is no port number (Cilium would read it as a port name): judged as every port,
    never as 443."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("allow: [{hosts: [api.example.com], ports: [443]}, {addresses: [10.0.0.0/8], ports: [443]}]\n")
    cilium = ("---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: c\nspec:\n"
              "  endpointSelector: {}\n  egress:\n    - toCIDR: [10.0.0.0/8]\n"
              "      toPorts: [{ports: [{port: '\u0664\u0664\u0663', protocol: TCP}]}]\n")
    code, out, err = render(cilium + WORKLOAD, "-f", values, "--policy", str(policy))
    assert (code, out) == (1, b""), err
    assert "spec.egress[0].toCIDR[0]: 10.0.0.0/8 on every port is not approved" in err
    same = cilium.replace("'\u0664\u0664\u0663'", "'443'")
    assert render(same + WORKLOAD, "-f", values, "--policy", str(policy))[0] == 0


@pytest.mark.parametrize("option", ["-f", "--global-allowlist", "--policy"])
def test_a_file_option_naming_stdin_is_refused(option: str, values: str) -> None:
    """Under Helm, `-f /dev/stdin` would read the manifests as values and render nothing."""
    args = [option, "/dev/stdin"] + (["-f", values] if option != "-f" else [])
    result = subprocess.run(f"cat | {EXE} render {' '.join(args)}", shell=True, input=WORKLOAD.encode(),
                            capture_output=True, timeout=20)
    assert (result.returncode, result.stdout) == (1, b""), result.stderr
    assert b"/dev/stdin: the " in result.stderr and b"is stdin, which carries the manifests" in result.stderr


def test_check_without_a_stream_reads_values_from_stdin() -> None:
    result = subprocess.run([EXE, "check", "--no-stream", "-f", "/dev/stdin"], input=VALUES.encode(),
                            capture_output=True, timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_closed_stdin_is_a_usage_error_even_with_a_values_file(values: str) -> None:
    """With stdin closed, the values file opens as descriptor 0: it is still no stdin."""
    result = subprocess.run(f"{EXE} render -f {values} <&-", shell=True, capture_output=True, timeout=20)
    assert (result.returncode, result.stdout) == (2, b""), result.stderr
    assert b"pipe the rendered manifests into stdin" in result.stderr


def test_output_is_written_whole_when_the_descriptor_takes_less_than_it_is_given() -> None:
    """Unbuffered (PYTHONUNBUFFERED, python -u), stdout's buffer is the descriptor itself,
    and a write may take only part of what it is given, or nothing for now."""
    from post_renderer import terminal

    class Stingy:
        def __init__(self) -> None:
            self.got = bytearray()
            self.calls = 0

        def write(self, data: memoryview) -> int | None:
            self.calls += 1
            if self.calls % 3 == 0:
                return None  # would block
            self.got += bytes(data[:5])
            return min(5, len(data))

        def fileno(self) -> int:
            return sys.__stdout__.fileno()  # select() only asks whether it can be written

    sink = Stingy()
    payload = b"kind: ConfigMap\n" * 50
    terminal.write_all(sink, memoryview(payload))
    assert bytes(sink.got) == payload


def test_a_large_render_is_written_whole_unbuffered(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parent.parent
    stream = (repo / "fixtures/corpus/kube-prometheus-stack.helm3.yaml").read_bytes()
    values = str(repo / "fixtures/values/egress-values.yaml")
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    runs = [subprocess.run([sys.executable, *flags, "-m", "post_renderer", "render", "-f", values, "--release", "demo"],
                           input=stream, capture_output=True, cwd=tmp_path, env=buffered, check=False)
            for flags in ([], ["-u"])]
    assert runs[0].returncode == runs[1].returncode == 0, runs[1].stderr
    assert runs[0].stdout == runs[1].stdout
    assert len(runs[1].stdout) > len(stream)


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 3 * (1 << 20) + 7])
def test_reading_a_file_or_a_pipe_gives_all_of_it(size: int, tmp_path: Path) -> None:
    from post_renderer import terminal

    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    path = tmp_path / "in.yaml"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert terminal.read_bounded(f, 16 << 20) == data  # a regular file: read in one go
    with open(path, "rb") as f:
        f.read(min(size, 10))  # part already read: the rest
        assert terminal.read_bounded(f, 16 << 20) == data[min(size, 10):]
    read_end, write_end = os.pipe()
    writer = subprocess.Popen(["cat", str(path)], stdout=write_end)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        assert terminal.read_bounded(pipe, 16 << 20) == data
    writer.wait()


def test_reading_stops_past_the_limit_for_files_and_pipes(tmp_path: Path) -> None:
    from post_renderer import terminal

    path = tmp_path / "in.yaml"
    path.write_bytes(b"a" * 5000)
    with open(path, "rb") as f:
        assert terminal.read_bounded(f, 5000) == b"a" * 5000
    with open(path, "rb") as f:
        assert terminal.read_bounded(f, 4999) is None
    with open("/dev/zero", "rb") as endless:  # not a regular file, never ends
        assert terminal.read_bounded(endless, 3 << 20) is None

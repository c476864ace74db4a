"""Numbers read as Kubernetes reads them (issue 20, items 3 and 4).

``KUBERNETES`` is the oracle: what ``kubectl kustomize`` (go-yaml through sigs.k8s.io/yaml,
as Helm and kubectl read a manifest) printed for each plain spelling, next to what a YAML
1.2 reader (ruamel, what helm-egress used) makes of it. ``test_the_table_is_what_kubectl_reads``
checks the table against kubectl itself where it is installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from post_renderer import numbers, yamlio
from post_renderer.asked import _single
from post_renderer.cli import app
from post_renderer.errors import EgressError, Location

# spelling: (Kubernetes reads, YAML 1.2 reads); a str is a string.
KUBERNETES: dict[str, tuple[object, object]] = {
    "443": (443, 443),
    "0443": (291, 443),  # YAML 1.1 octal
    "00443": (291, 443),
    "-0443": (-291, -443),
    "+0443": (291, 443),
    "0_443": (291, 443),  # underscores dropped, then octal
    "0o443": (291, 291),
    "0O17": (15, "0O17"),  # upper-case base prefixes
    "0X1BB": (443, "0X1BB"),
    "0B1": (1, "0B1"),
    "0x1bb": (443, 443),
    "0b101": (5, 5),
    "+0x1b": (27, 27),
    "0x_1b": (27, 27),
    "4_43": (443, 443),
    "1__0": (10, 10),
    "1_": (1, 1),
    "_1": ("_1", "_1"),
    "08": (8.0, 8),  # not octal: ParseFloat reads it
    "0999": (999.0, 999),
    "0443.0": (443.0, 443.0),
    "1:30": ("1:30", "1:30"),  # no sexagesimal in either
    "1:30:00": ("1:30:00", "1:30:00"),
    "9223372036854775807": (9223372036854775807, 9223372036854775807),
    "9223372036854775808": (9223372036854775808, 9223372036854775808),  # ParseUint
    "18446744073709551616": (1.8446744073709552e19, 18446744073709551616),  # past 64 bits: a float
    "99999999999999999999": (1e20, 99999999999999999999),
    "0xFFFFFFFFFFFFFFFFFF": ("0xFFFFFFFFFFFFFFFFFF", 0xFFFFFFFFFFFFFFFFFF),  # past 64 bits: a string
    "1e400": ("1e400", float("inf")),  # ParseFloat's range error: a string
    "1" * 5000: ("1" * 5000, "too long"),
    "0x1B.5": ("0x1B.5", "0x1B.5"),
    "0b2": ("0b2", "0b2"),
    "1e": ("1e", "1e"),
    "-0": (0, 0),
    ".5": (0.5, 0.5),
    "4.43e2": (443.0, 443.0),
}


def kube(text: str) -> object:
    return yamlio.load(yamlio.safe_loader(), f"p: {text}\n", Location(file="t"))["p"]


@pytest.mark.parametrize("text", sorted(KUBERNETES))
def test_chart_documents_read_numbers_as_kubernetes(text: str) -> None:
    expected = KUBERNETES[text][0]
    assert kube(text) == expected and type(kube(text)) is type(expected)
    pruned, _ = yamlio.load_pruned(yamlio.safe_loader(), f"p: {text}\n", Location(file="t"), {"p": True})
    assert pruned["p"] == expected


@pytest.mark.parametrize("text", sorted(KUBERNETES))
def test_what_only_helm_egress_reads_is_refused_when_readers_disagree(text: str) -> None:
    k8s, yaml12 = KUBERNETES[text]
    loader = yamlio.safe_loader(strict_numbers=True)
    if k8s == yaml12 and type(k8s) is type(yaml12):
        assert yamlio.load(loader, f"a: 1\np: {text}\n", Location(file="v.yaml")) == {"a": 1, "p": k8s}
        return
    with pytest.raises(EgressError) as e:
        yamlio.load(loader, f"a: 1\np: {text}\n", Location(file="v.yaml"))
    assert str(e.value).startswith("v.yaml:2: ")
    assert "Kubernetes" in str(e.value) or "at most" in str(e.value)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_the_table_is_what_kubectl_reads(tmp_path: Path) -> None:
    spellings = [t for t in KUBERNETES if len(t) < 100]
    body = "".join(f"  k{i}: {t}\n" for i, t in enumerate(spellings))
    (tmp_path / "kustomization.yaml").write_text("resources: [r.yaml]\n")
    (tmp_path / "r.yaml").write_text("apiVersion: v1\nkind: Foo\nmetadata: {name: s}\nspec:\n" + body)
    out = subprocess.run(["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    printed = yamlio.load(yamlio.safe_loader(), out, Location(file="k"))["spec"]
    for i, text in enumerate(spellings):
        # kubectl prints JSON-converted values: 443.0 as 443.
        assert printed[f"k{i}"] == KUBERNETES[text][0], text


@pytest.mark.parametrize(("port", "reads"), [
    ("443", 443), ("0443", 291), ("0x1bb", 443), ("0o17", 15), ("0b1", 1), ("4_43", 443), ("0_443", 291),
    ("_443", None), ("443_", None), ("4__43", None), ("+443", None), ("65536", None), ("٤٤٣", None),
    ("https", None), ("9" * 5000, None),
])
def test_cilium_port_strings_read_as_cilium_reads_them(port: str, reads: int | None) -> None:
    """``strconv.ParseUint(p, 0, 16)``; what does not parse is a port name."""
    assert numbers.go_uint(port) == reads
    assert _single(port) == ((reads, reads) if reads else None)


HEAD = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w\n  labels: {app.kubernetes.io/instance: r}\n"
POD = "spec:\n  selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n"
CILIUM = ("---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: c}\nspec:\n"
          "  endpointSelector: {}\n  egress: [{toFQDNs: [{matchName: api.example.com}], "
          "toPorts: [{ports: [{port: '%s'}]}]}]\n")


def run(tmp_path: Path, stream: str, values: str, policy: str | None = None) -> tuple[int, str, str]:
    (tmp_path / "v.yaml").write_text(values)
    args = ["render", "-f", str(tmp_path / "v.yaml")]
    if policy is not None:
        (tmp_path / "p.yaml").write_text(policy)
        args += ["--policy", str(tmp_path / "p.yaml")]
    result = CliRunner().invoke(app, args, input=stream)
    return result.exit_code, result.stdout, result.stderr


VALUES = "istio:\n  egress:\n    - {name: api, hosts: [api.example.com], ports: [{number: %s, protocol: TLS}]}\n"
POLICY = "allow:\n  - hosts: [api.example.com]\n    ports: [%s]\n"


def test_a_cilium_port_the_policy_did_not_approve_is_refused(tmp_path: Path) -> None:
    code, out, err = run(tmp_path, HEAD + POD + CILIUM % "0443", VALUES % 443, POLICY % 443)
    assert (code, out) == (1, "")
    assert "document 1 (CiliumNetworkPolicy" in err and "port 291" in err


def test_a_chart_serviceentry_port_is_the_port_kubernetes_opens(tmp_path: Path) -> None:
    se = ("---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n"
          "  hosts: [api.example.com]\n  exportTo: ['.']\n  resolution: DNS\n"
          "  ports: [{number: 0443, name: tls, protocol: TLS}]\n")
    code, out, err = run(tmp_path, HEAD + POD + se, VALUES % 443, POLICY % 443)
    assert (code, out) == (1, "")
    assert "port 291" in err


@pytest.mark.parametrize("where", ["values", "policy"])
def test_an_octal_looking_number_in_our_own_inputs_is_refused(tmp_path: Path, where: str) -> None:
    code, out, err = run(tmp_path, HEAD + POD, VALUES % ("0443" if where == "values" else "443"),
                         POLICY % ("0443" if where != "values" else "443"))
    assert (code, out) == (1, "")
    assert "0443 reads as 291 in Kubernetes (YAML 1.1 octal)" in err and "write 443" in err
    assert err.startswith(f"error: {tmp_path / ('v.yaml' if where == 'values' else 'p.yaml')}:3")


HUGE = "9" * 5000


@pytest.mark.parametrize("case", ["values", "policy", "policy-range", "serviceentry", "annotation", "workload-label",
                                  "cilium-port"])
def test_huge_integers_are_a_located_error_never_a_crash(tmp_path: Path, case: str) -> None:
    stream, values, policy = HEAD + POD, VALUES % 443, POLICY % 443
    if case == "values":
        values = VALUES % HUGE
    elif case == "policy":
        policy = POLICY % HUGE
    elif case == "policy-range":
        policy = POLICY % f"'1-{HUGE}'"
    elif case == "serviceentry":
        stream += ("---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se}\nspec:\n"
                   f"  hosts: [api.example.com]\n  ports: [{{number: {HUGE}, name: x, protocol: TLS}}]\n")
    elif case == "annotation":
        stream = HEAD + f"  annotations:\n    egress.helm-egress.io/egress: '[{{name: a, hosts: [a.example.com], " \
                        f"ports: [{{number: {HUGE}}}]}}]'\n" + POD
    elif case == "workload-label":
        stream = HEAD + f"  namespace: {HUGE}\n" + POD
    else:
        stream += CILIUM % HUGE
    code, out, err = run(tmp_path, stream, values, policy)
    assert code in (0, 1), err
    if code == 1:
        assert out == "" and err.startswith("error: ") and ":" in err.split()[1], err
    assert "Traceback" not in err and "unexpected error" not in err

"""Values files: Helm's merge rules, the schema, the guardrails, located messages."""

from __future__ import annotations

import textwrap

import pytest

from post_renderer.errors import EgressError
from post_renderer.settings import Settings
from post_renderer.synth import choose_resolution
from post_renderer.errors import Problems
from post_renderer.values import EgressValues, ValuesFile, load_egress


def load(files: list[ValuesFile], settings: Settings = Settings()) -> EgressValues:
    problems = Problems()
    egress = load_egress(files, settings, problems)
    problems.raise_if_any()
    return egress


def vf(name: str, text: str) -> ValuesFile:
    return ValuesFile(name, textwrap.dedent(text))


def problems_of(*files: ValuesFile, settings: Settings = Settings()) -> list[str]:
    with pytest.raises(EgressError) as e:
        load(list(files), settings)
    return [p.render() for p in e.value.problems]


STRIPE = """
    istio:
      egress:
        - name: stripe
          hosts: [API.Stripe.com., api.stripe.com]
          ports:
            - {number: 443, protocol: tls}
"""


def test_entry_is_canonical() -> None:
    egress = load([vf("v.yaml", STRIPE)], Settings())
    (entry,) = egress.entries
    assert entry.hosts == ("api.stripe.com",)
    assert [(p.number, p.protocol, p.name) for p in entry.ports] == [(443, "TLS", "tls-443")]
    assert entry.source == "values:v.yaml#stripe"
    assert entry.origin.render() == "v.yaml:4: istio.egress[0]"


def test_no_egress_key_means_nothing_applies() -> None:
    assert load([vf("v.yaml", "image: {tag: x}\nistio: {enabled: true}\n")], Settings()).present is False
    assert load([], Settings()).present is False
    assert load([vf("v.yaml", "istio: {egress: []}\n")], Settings()).present is True


def test_later_file_replaces_the_list_and_null_deletes() -> None:
    other = vf("prod.yaml", "istio:\n  egress:\n    - name: s3\n      hosts: ['*.s3.amazonaws.com']\n"
                            "      ports: [{number: 443, protocol: HTTPS}]\n")
    merged = load([vf("v.yaml", STRIPE), other], Settings())
    assert [e.name for e in merged.entries] == ["s3"] and merged.file == "prod.yaml"
    assert load([vf("v.yaml", STRIPE), vf("off.yaml", "istio:\n  egress: null\n")], Settings()).present is False
    # A file that does not mention istio.egress leaves the earlier list in force.
    kept = load([vf("v.yaml", STRIPE), vf("img.yaml", "istio: {mtls: true}\n")], Settings())
    assert [e.name for e in kept.entries] == ["stripe"]


def test_schema_problems_are_located_by_file_line_and_path() -> None:
    bad = vf("values.yaml", """
        istio:
          egress:
            - name: stripe
              hosts: [api.stripe.com]
              ports:
                - {number: 443, protocol: HTTPX}
            - name: db
              addresses: [10.0.0.1]
              ports: [{number: 0, protocol: TCP}]
              extra: 1
            - name: nohost
              ports: [{number: 80, protocol: HTTP}]
    """)
    assert problems_of(bad) == [
        "values.yaml:7: istio.egress[0].ports[0].protocol: 'HTTPX' is not one of TCP, UDP, GRPC, GRPC-Web, "
        "HTTP, HTTP_PROXY, HTTP2, HTTPS, TLS, Mongo, Redis, MySQL (any case)",
        "values.yaml:10: istio.egress[1].ports[0].number: 0 is less than the minimum of 1",
        "values.yaml:11: istio.egress[1].extra: unknown key 'extra' (allowed: addresses, hosts, name, ports, resolution)",
        "values.yaml:12: istio.egress[2]: needs at least one of hosts or addresses",
    ]


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("*", "bare '*'"),
        ("*foo.com", "partial wildcards"),
        ("api.*.com", "only allowed as the whole first label"),
        ("10.0.0.1", "move it to addresses"),
        ("2001:db8::1", "move it to addresses"),
        ("https://api.stripe.com", "not URLs"),
        ("bad_label.com", "not a valid DNS label"),
        ("foo.123", "all digits"),
    ],
)
def test_host_guardrails(host: str, why: str) -> None:
    text = f"istio:\n  egress:\n    - name: x\n      hosts: [{host!r}]\n      ports: [{{number: 443, protocol: TLS}}]\n"
    (problem,) = problems_of(vf("v.yaml", text))
    assert problem.startswith("v.yaml:4: istio.egress[0].hosts[0]: ") and why in problem


@pytest.mark.parametrize(
    ("address", "why", "broad_ok"),
    [
        ("169.254.169.254", "metadata", False),
        ("169.254.0.0/16", "link-local", False),
        ("169.254.10.0/24", "link-local", False),
        ("fd00:ec2::254", "metadata", False),
        ("fe80::1", "link-local", False),
        ("0.0.0.0/0", "too broad", True),
        ("::/0", "too broad", True),
        ("160.0.0.0/4", "too broad", True),
        ("10.0.0.300", "not an IP address", False),
    ],
)
def test_address_guardrails(address: str, why: str, broad_ok: bool) -> None:
    text = f"istio:\n  egress:\n    - name: x\n      addresses: [{address!r}]\n      ports: [{{number: 80, protocol: TCP}}]\n"
    (problem,) = problems_of(vf("v.yaml", text))
    assert problem.startswith("v.yaml:4: istio.egress[0].addresses[0]: ") and why in problem
    allowed = Settings(allow_broad_cidrs=True)
    if broad_ok:
        assert load([vf("v.yaml", text)], allowed).entries[0].addresses == (address,)
    else:
        assert problems_of(vf("v.yaml", text), settings=allowed) == [problem]


def test_addresses_are_canonical() -> None:
    text = "istio:\n  egress:\n    - name: x\n      addresses: [10.1.2.3/16, 10.40.0.15, '2001:DB8::1']\n      ports: [{number: 80, protocol: TCP}]\n"
    assert load([vf("v.yaml", text)], Settings()).entries[0].addresses == ("10.1.0.0/16", "10.40.0.15", "2001:db8::1")


def test_duplicates_are_refused() -> None:
    text = """
        istio:
          egress:
            - name: a
              hosts: [a.example.com]
              ports: [{number: 443, protocol: TLS}, {number: 443, protocol: HTTP}]
            - name: a
              hosts: [b.example.com]
              ports: [{number: 443, protocol: TLS}]
    """
    assert problems_of(vf("v.yaml", text)) == [
        "v.yaml:6: istio.egress[0].ports[1]: port 443 is declared twice, as TLS and HTTP; "
        "Istio allows one protocol per port number",
        "v.yaml:7: istio.egress[1].name: duplicate name 'a' (also entry 0)",
    ]


def resolution_of(entry_yaml: str) -> str:
    egress = load([vf("v.yaml", "istio:\n  egress:\n" + textwrap.indent(textwrap.dedent(entry_yaml), "    "))], Settings())
    problems = Problems()
    chosen = choose_resolution(egress.entries[0], problems)
    if chosen is None:
        return "refused: " + problems.items[0].render()
    return chosen.value


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("- {name: a, hosts: [api.stripe.com], ports: [{number: 443, protocol: TLS}]}", "DNS"),
        ("- {name: a, hosts: ['*.s3.amazonaws.com'], ports: [{number: 443, protocol: HTTPS}]}", "NONE"),
        ("- {name: a, addresses: [10.0.0.1], ports: [{number: 5432, protocol: TCP}]}", "NONE"),
        ("- {name: a, hosts: [db.example.com], addresses: [10.0.0.0/8], ports: [{number: 5432, protocol: TCP}]}", "NONE"),
        ("- {name: a, hosts: [a.example.com, b.example.com], ports: [{number: 443, protocol: TLS}]}", "DNS"),
        ("- {name: a, hosts: [a.example.com, b.example.com], ports: [{number: 9092, protocol: TCP}]}", "NONE"),
        ("- {name: a, hosts: [a.example.com], ports: [{number: 9092, protocol: TCP}], resolution: dns_round_robin}", "DNS_ROUND_ROBIN"),
        ("- {name: a, hosts: ['*.example.com'], ports: [{number: 80, protocol: HTTP}], resolution: DYNAMIC_DNS}", "DYNAMIC_DNS"),
        # Istio 1.28, the oldest with DYNAMIC_DNS, admits HTTP ports only.
        ("- {name: a, hosts: ['*.example.com'], ports: [{number: 443, protocol: TLS}], resolution: DYNAMIC_DNS}",
         "refused: v.yaml:3: istio.egress[0].resolution: resolution DYNAMIC_DNS is not valid here: Istio 1.28, the "
         "oldest with DYNAMIC_DNS (pass --istio-version for a newer one's) allows only HTTP ports with DYNAMIC_DNS, "
         "not TLS (1.28 HTTP, 1.29 HTTP/TLS, 1.30 HTTP/TLS/GRPC/HTTP2; HTTPS never: declare TLS)"),
        ("- {name: a, hosts: ['*.example.com'], ports: [{number: 443, protocol: TLS}], resolution: DNS}",
         "refused: v.yaml:3: istio.egress[0].resolution: resolution DNS is not valid here: wildcard hosts cannot be resolved by DNS; use NONE (or omit resolution)"),
        ("- {name: a, addresses: [10.0.0.0/8], ports: [{number: 443, protocol: TLS}], resolution: DNS}",
         "refused: v.yaml:3: istio.egress[0].resolution: resolution DNS is not valid here: an entry with only addresses has no host to resolve; use NONE (or omit resolution)"),
        ("- {name: a, hosts: [a.example.com], addresses: [10.0.0.0/8], ports: [{number: 443, protocol: TLS}], resolution: DNS}",
         "refused: v.yaml:3: istio.egress[0].resolution: resolution DNS is not valid here: CIDR addresses are only allowed with NONE or STATIC"),
        ("- {name: a, hosts: [a.example.com, b.example.com], ports: [{number: 5432, protocol: TCP}], resolution: DNS}",
         "refused: v.yaml:3: istio.egress[0].resolution: resolution DNS is not valid here: several hosts with a port that is neither HTTP nor TLS need NONE"),
    ],
)
def test_resolution(entry: str, expected: str) -> None:
    assert resolution_of(entry) == expected


def test_yaml_problems_in_values_are_located() -> None:
    assert problems_of(vf("v.yaml", "istio:\n  egress: [\n")) [0].startswith("v.yaml:3: invalid YAML")
    dup = problems_of(vf("v.yaml", "istio:\n  egress: []\nistio: {}\n"))
    assert dup[0].startswith("v.yaml:3: invalid YAML") and "duplicate key" in dup[0]
    assert "could not determine a constructor" in problems_of(vf("v.yaml", "a: !!python/object/apply:os.system ['true']\n"))[0]

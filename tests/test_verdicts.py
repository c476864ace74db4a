"""The schema-verdict cache: it may only ever save time, never change an answer."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import startup_probe
from post_renderer import verdicts
from post_renderer.cli import app

REPO = Path(__file__).resolve().parent.parent
CHART = (REPO / "fixtures/corpus/ingress-nginx.helm3.yaml").read_bytes()
VALUES = REPO / "fixtures/values/egress-values.yaml"
CASES = sorted(p for p in (REPO / "tests/cases").iterdir() if (p / "args").is_file())
GOOD = "istio:\n  egress:\n    - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}\n"
# Schema errors (a port out of range, an unknown key) and a guardrail error (metadata
# endpoint), each located by line.
BAD = (
    "istio:\n  egress:\n"
    "    - name: api\n      hosts: [api.example.com]\n      ports: [{number: 70000, protocol: TLS}]\n"
    "    - name: db\n      adresses: [10.0.0.1]\n      ports: [{number: 5432, protocol: TCP}]\n"
)
SCHEMA = "istio-egress.schema.json"
GUARDRAIL = "istio:\n  egress:\n    - {name: meta, addresses: [169.254.169.254], ports: [{number: 80, protocol: HTTP}]}\n"


def entries(cache: Path) -> list[Path]:
    folder = cache / verdicts.FOLDER / verdicts.SUBFOLDER
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def render(values: Path, cache: Path | None, monkeypatch: pytest.MonkeyPatch, *, off: bool = False,
           stdin: bytes = CHART) -> tuple[int, bytes, str]:
    if cache is not None:
        monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    if off:
        monkeypatch.setenv(verdicts.ENV_DISABLE, "1")
    else:
        monkeypatch.delenv(verdicts.ENV_DISABLE, raising=False)
    result = CliRunner().invoke(app, ["render", "-f", str(values), "--release", "demo"], input=stdin)
    return result.exit_code, result.stdout_bytes, result.stderr


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    return path


def test_a_valid_file_is_remembered_and_the_answer_is_the_same(good: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = render(good, cache, monkeypatch)
    assert first[0] == 0, first[2]
    assert len(entries(cache)) == 1
    assert render(good, cache, monkeypatch) == first
    assert render(good, cache, monkeypatch, off=True) == first
    assert len(entries(cache)) == 1


@pytest.mark.parametrize("text", [BAD, GUARDRAIL, "istio:\n  egress: {name: x}\n"], ids=["schema", "guardrail", "shape"])
def test_bad_values_give_the_same_errors_with_and_without_the_cache(text: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    values = tmp_path / "v.yaml"
    values.write_text(text)
    cache = tmp_path / "cache"
    off = render(values, cache, monkeypatch, off=True)
    cold = render(values, cache, monkeypatch)
    warm = render(values, cache, monkeypatch)
    assert off[0] == 1 and off[1] == b"" and off[2].startswith("error: ")
    assert cold == warm == off


def test_bad_values_are_never_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = tmp_path / "v.yaml"
    values.write_text(BAD)
    cache = tmp_path / "cache"
    for _ in range(2):
        assert render(values, cache, monkeypatch)[0] == 1
        assert entries(cache) == []
    # The schema-valid file failing a guardrail is remembered as schema-valid only: the
    # guardrails run every time, so the error stays.
    values.write_text(GUARDRAIL)
    for _ in range(2):
        code, _, err = render(values, cache, monkeypatch)
        assert code == 1 and "metadata endpoint" in err
    assert len(entries(cache)) == 1


def test_an_edited_file_is_validated_again(good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    assert render(good, cache, monkeypatch)[0] == 0
    good.write_text(BAD)
    code, out, err = render(good, cache, monkeypatch)
    assert (code, out) == (1, b"")
    assert "70000" in err and "adresses" in err


@pytest.mark.parametrize("content", [b"", b"garbage", b"helm-egress schema verdict v1\n" + b"0" * 64 + b"\nvalid\n"],
                         ids=["empty", "garbage", "another-key"])
def test_a_corrupt_or_mismatched_entry_is_ignored_and_replaced(content: bytes, good: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = render(good, cache, monkeypatch)
    [entry] = entries(cache)
    intact = entry.read_bytes()
    entry.write_bytes(content)
    store = verdicts.VerdictCache(str(entry.parent))
    subject = b"values\0istio.egress\0" + GOOD.encode()
    assert not store.known_valid(SCHEMA, subject)
    assert render(good, cache, monkeypatch) == first
    assert entry.read_bytes() == intact
    assert verdicts.VerdictCache(str(entry.parent)).known_valid(SCHEMA, subject)


def test_an_entry_only_counts_for_the_same_version_and_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def known(schema_file: str = SCHEMA, subject: bytes = b"subject") -> bool:
        return verdicts.VerdictCache(str(tmp_path / "v")).known_valid(schema_file, subject)

    store = verdicts.VerdictCache(str(tmp_path / "v"))
    store.remember_valid(SCHEMA, b"subject")
    store.save()
    assert known()
    assert not known(subject=b"subject2")
    assert not known(schema_file="destination-policy.schema.json")
    monkeypatch.setattr(verdicts, "__version__", "99.0.0")
    assert not known()
    monkeypatch.undo()
    from post_renderer import schema

    monkeypatch.setattr(schema, "schema_text", lambda name=SCHEMA: '{"type": "array"}')
    assert not known()


def test_a_verdict_is_found_whichever_sha256_computed_its_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys use CPython's own SHA-256 where it exists (cheaper to load than hashlib's
    OpenSSL) and hashlib elsewhere: both must name the same entry."""
    store = verdicts.VerdictCache(str(tmp_path / "v"))
    store.remember_valid(SCHEMA, b"subject")
    store.save()
    for private in ("_sha256", "_sha2"):
        monkeypatch.setitem(sys.modules, private, None)  # import now fails: hashlib is used
    assert verdicts.VerdictCache(str(tmp_path / "v")).known_valid(SCHEMA, b"subject")
    assert not verdicts.VerdictCache(str(tmp_path / "v")).known_valid(SCHEMA, b"other")


def test_shortened_names_are_the_same_whichever_sha256_computed_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from post_renderer.names import dns_label

    long = "a-very-long-release-name-" * 4
    builtin = dns_label(long, "egress")
    for private in ("_sha256", "_sha2"):
        monkeypatch.setitem(sys.modules, private, None)
    assert dns_label(long, "egress") == builtin
    assert builtin.endswith(hashlib.sha256(f"{long}-egress".encode()).hexdigest()[:8])


def test_an_unwritable_cache_folder_is_harmless(good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    off = render(good, None, monkeypatch, off=True)
    assert render(good, blocker, monkeypatch) == off
    assert blocker.read_text().startswith("a file")
    if os.geteuid() != 0:  # root writes through permission bits
        readonly = tmp_path / "ro"
        readonly.mkdir(mode=0o500)
        assert render(good, readonly, monkeypatch) == off
        assert list(readonly.iterdir()) == []


def test_a_folder_others_can_write_to_is_not_trusted(good: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = render(good, cache, monkeypatch)
    [entry] = entries(cache)
    entry.parent.chmod(0o777)
    store = verdicts.VerdictCache(str(entry.parent))
    assert not store.known_valid(SCHEMA, b"values\0istio.egress\0" + GOOD.encode())
    assert render(good, cache, monkeypatch) == first


def test_no_cache_env_writes_nothing_and_validates(good: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache), verdicts.ENV_DISABLE: "1"}
    args = ["render", "-f", str(good), "--release", "demo"]
    for _ in range(2):
        probe = startup_probe.run(args, tmp_path, stdin=CHART, env=env)
        assert probe.code == 0, probe.stderr
        assert probe.imported("jsonschema")
    assert not cache.exists()


def test_cache_location_follows_xdg() -> None:
    assert verdicts.cache_dir({"XDG_CACHE_HOME": "/x/cache"}) == f"/x/cache/{verdicts.FOLDER}/{verdicts.SUBFOLDER}"
    home = os.path.expanduser("~")
    relative = verdicts.cache_dir({"XDG_CACHE_HOME": "relative/dir"})  # the spec: ignore a relative path
    assert relative == os.path.join(home, ".cache", verdicts.FOLDER, verdicts.SUBFOLDER)
    assert verdicts.from_environment({verdicts.ENV_DISABLE: "1"}) is None
    assert verdicts.from_environment({verdicts.ENV_DISABLE: "0", "XDG_CACHE_HOME": "/x"}) is not None


def test_check_no_stream_uses_the_same_cache(good: Path, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = startup_probe.run(["check", "--no-stream", str(good)], tmp_path, env=env)
    second = startup_probe.run(["check", "--no-stream", str(good)], tmp_path, env=env)
    assert first.code == second.code == 0, first.stdout
    assert first.imported("jsonschema") and not second.imported("jsonschema")
    assert first.stdout == second.stdout


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_every_golden_case_answers_the_same_cold_warm_and_off(case: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(case)
    args = (case / "args").read_text().splitlines()
    stdin = (case / "input.yaml").read_bytes()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runs = []
    for off in (False, False, True):
        if off:
            monkeypatch.setenv(verdicts.ENV_DISABLE, "1")
        result = CliRunner().invoke(app, args, input=stdin)
        runs.append((result.exit_code, result.stdout_bytes, result.stderr))
    assert runs[0] == runs[1] == runs[2]


def test_the_cache_stays_bounded_and_keeps_what_it_just_learnt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "v"
    monkeypatch.setattr(verdicts, "MAX_ENTRIES", 20)
    store = verdicts.VerdictCache(str(folder))
    for i in range(20):
        store.remember_valid(SCHEMA, f"old {i}".encode())
    store.save()
    for n, entry in enumerate(sorted(folder.iterdir())):
        os.utime(entry, (1_000_000 + n, 1_000_000 + n))  # clearly older than anything new
    store.remember_valid(SCHEMA, b"new")
    store.save()
    assert len(list(folder.iterdir())) == 15
    assert verdicts.VerdictCache(str(folder)).known_valid(SCHEMA, b"new")

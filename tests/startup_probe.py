"""Run helm-egress in a fresh interpreter and report which modules it imported.

Start-up cost is what imports cost, so tests assert on ``sys.modules`` of a real process:
an in-process run would see whatever earlier tests imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_PROBE = r"""
import json, sys
args, report, watch = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
built = []
if watch:
    # Only for runs that read YAML anyway: record every comment-preserving reader built.
    from ruamel.yaml.constructor import RoundTripConstructor
    original = RoundTripConstructor.__init__
    def spy(self, *a, **k):
        built.append("RoundTripConstructor")
        original(self, *a, **k)
    RoundTripConstructor.__init__ = spy
sys.argv = ["helm-egress", *args]
from post_renderer.cli import invoke  # main() would end the process before the report
code = invoke()
sys.stdout.flush()
with open(report, "w") as f:
    json.dump({"modules": sorted(sys.modules), "roundtrip": built, "code": code}, f)
sys.exit(code)
"""


@dataclass(frozen=True)
class Probe:
    code: int
    stdout: bytes
    stderr: str
    modules: frozenset[str]
    roundtrip_built: bool

    def imported(self, package: str) -> bool:
        return any(m == package or m.startswith(package + ".") for m in self.modules)


def run(args: list[str], tmp_path: Path, *, stdin: bytes | None = None, watch_roundtrip: bool = False,
        env: dict[str, str] | None = None, cwd: Path | None = None) -> Probe:
    report = tmp_path / f"probe-{os.getpid()}-{len(list(tmp_path.iterdir()))}.json"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), str(report), "1" if watch_roundtrip else "0"],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
        check=False,
    )
    data = json.loads(report.read_text())
    assert data["code"] == proc.returncode, proc.stderr
    return Probe(proc.returncode, proc.stdout, proc.stderr.decode(), frozenset(data["modules"]),
                 bool(data["roundtrip"]))

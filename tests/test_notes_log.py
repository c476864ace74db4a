"""Under Helm 4 a post-renderer's stderr is hidden, so a successful run's notes (the
Sidecars' namespace fallback, say) are kept in last-notes.log beside the error log;
a run without notes removes an earlier one, and no file of the user's is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXE = str(Path(sys.executable).parent / "helm-egress")
STREAM = """---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app.kubernetes.io/instance: demo}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {helm-egress.io/hosts: api.example.com, helm-egress.io/ports: 443/TLS}
    spec: {containers: []}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
"""


def run(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HELM_PLUGIN_NAME": "helm-egress", "XDG_STATE_HOME": str(state)}
    env.pop("HELM_EGRESS_ERROR_FILE", None)
    return subprocess.run([EXE, "render", *args], input=STREAM, text=True, capture_output=True, env=env, timeout=20)


def test_a_successful_runs_notes_reach_the_log_and_a_quiet_one_clears_them(tmp_path: Path) -> None:
    notes = tmp_path / "helm-egress" / "last-notes.log"
    first = run(tmp_path, "--sidecar")
    assert first.returncode == 0, first.stderr
    text = notes.read_text()
    assert text.startswith("# helm-egress ") and " notes at " in text.splitlines()[0]
    assert "note: the stream does not say which namespace the release's Services are in" in text
    second = run(tmp_path, "--sidecar", "--namespace", "shop")
    assert second.returncode == 0, second.stderr
    assert not notes.exists()


def test_a_users_file_named_like_it_is_left_alone(tmp_path: Path) -> None:
    notes = tmp_path / "helm-egress" / "last-notes.log"
    notes.parent.mkdir(parents=True)
    mine = "# helm-egress 0.1.0 notes at 2026-01-01T00:00:00+0000\nmy own words\n"
    notes.write_text(mine)
    for args in (["--sidecar"], ["--sidecar", "--namespace", "shop"]):
        assert run(tmp_path, *args).returncode == 0
        assert notes.read_text() == mine

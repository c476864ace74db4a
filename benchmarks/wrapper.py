#!/usr/bin/env python3
"""What `helm-egress-helm` (the stand-in behind `helm egress` and helmfile/Argo CD) adds to a
render: `helm template` of a small chart through the stand-in against the same command
with `--post-renderer` given by hand, under Helm 3 and Helm 4.

    .venv/bin/python benchmarks/wrapper.py [--runs 15] [--chart fixtures/charts/minimal]

The stand-in's extra work is its own start (stdlib only), the probe render of
`.Values.istio` with `helm version` beside it, and, under Helm 4, a throwaway plugin
folder (plus `helm env HELM_PLUGINS` when HELM_PLUGINS is unset; it is set here, as Helm
sets it for a plugin). Median wall time of each; no warm-up beyond one discarded run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def median_ms(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()}")
        if i:
            times.append(elapsed * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--chart", type=Path, default=REPO / "fixtures" / "charts" / "minimal")
    parser.add_argument("--values", type=Path, default=REPO / "fixtures" / "values" / "egress-values.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plugins = Path(tmp) / "plugins"
        (plugins / "helm-egress").mkdir(parents=True)
        (plugins / "helm-egress" / "plugin.yaml").write_text(
            'apiVersion: v1\ntype: postrenderer/v1\nname: helm-egress\nversion: "0.1.0"\nruntime: subprocess\n'
            f'runtimeConfig:\n  platformCommand:\n    - command: "{BIN / "helm-egress"}"\n      args: ["render"]\n')
        env = {**os.environ, "HELM_PLUGINS": str(plugins), "HELM_DATA_HOME": tmp, "HELM_CACHE_HOME": tmp,
               "HELM_CONFIG_HOME": tmp}
        common = ["template", "demo", str(args.chart), "-n", "prod", "-f", str(args.values)]
        for major in ("v3", "v4"):
            helm = str(REPO / ".helm-bin" / major / "helm")
            by_hand = ["--post-renderer", str(BIN / "helm-egress"), "--post-renderer-args=render"] if major == "v3" \
                else ["--post-renderer", "helm-egress"]
            plain = median_ms([helm, *common, *by_hand, "--post-renderer-args=-f", f"--post-renderer-args={args.values}",
                               "--post-renderer-args=--namespace=prod"], env, args.runs)
            bare = median_ms([helm, *common], env, args.runs)
            wrapped = median_ms([str(BIN / "helm-egress-helm"), *common], {**env, "HELM_EGRESS_HELM": helm}, args.runs)
            print(f"{major}: helm template alone {bare:.0f} ms; with --post-renderer by hand {plain:.0f} ms; "
                  f"through helm-egress-helm {wrapped:.0f} ms (+{wrapped - plain:.0f} ms, {wrapped / plain:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

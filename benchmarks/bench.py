#!/usr/bin/env python3
"""Compare helm-egress with `kubectl kustomize` as Helm post-renderers: speed and memory.

What it measures
    Both tools do their post-renderer job on the same rendered manifest stream:

    * helm-egress: ``helm-egress render -f VALUES --release demo < STREAM > /dev/null``.
    * kustomize:   ``kubectl kustomize DIR > /dev/null``, where DIR holds the stream as
      ``all.yaml`` next to a ``kustomization.yaml`` listing it -- what the classic
      kustomize post-renderer script does. Writing that directory is done before the
      clock starts (headline number), and is also timed separately ("+copy" column).

    For each input the two tools are run alternately, ``--repeat`` times after one
    uncounted warm-up run (whose output is checked to be non-empty). Reported per tool:
    the median wall time and the peak resident set size (largest ``ru_maxrss`` from
    ``os.wait4`` over the counted runs).

    helm-egress's fixed cost is timed the same way, to split its time into startup and
    work: ``helm-egress --version`` (interpreter and CLI imports) and ``render`` of an
    empty stream (which adds the render imports, reading values and loading schemas).
    Work is render time minus the empty-stream time; the linearity check uses it.

Inputs
    large    a multi-MB stream (default ``../shared/corpus/bench-prometheus-community.helm3.yaml``
             relative to the repo root; if missing, ``fixtures/corpus/*.helm3.yaml``
             concatenated until it is ~5 MB);
    small    one chart, ``fixtures/corpus/ingress-nginx.helm3.yaml``;
    large×4  the large stream four times, to check time grows linearly with input.

    Concatenated copies get a ``-xN`` suffix on ``metadata.name``, because kustomize
    rejects two resources with the same kind, namespace and name.

Run (from the repo root)
    .venv/bin/python benchmarks/bench.py [--repeat 7] [--json results.json]

It is a report, not a test: it exits 0 even when a target is missed, and 1 only when a
command fails or produces no output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LARGE = REPO.parent / "shared/corpus/bench-prometheus-community.helm3.yaml"
DEFAULT_SMALL = REPO / "fixtures/corpus/ingress-nginx.helm3.yaml"
DEFAULT_VALUES = REPO / "fixtures/values/egress-values.yaml"
FALLBACK_BYTES = 5_000_000
KUSTOMIZATION = "resources:\n- all.yaml\n"
MIB = 1024 * 1024

class BenchError(Exception):
    """A benchmarked command failed; the run cannot be reported."""


@dataclass(frozen=True)
class Run:
    wall_s: float
    maxrss_kib: int


@dataclass
class Series:
    """Counted runs of one command on one input."""

    samples_s: list[float] = field(default_factory=list)
    peak_rss_kib: int = 0

    def add(self, run: Run) -> None:
        self.samples_s.append(run.wall_s)
        self.peak_rss_kib = max(self.peak_rss_kib, run.maxrss_kib)

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def peak_mb(self) -> float:
        return self.peak_rss_kib / 1024

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "median_s": self.median_s}


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    limit: float
    higher_is_better: bool = False

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


@dataclass
class Result:
    label: str
    path: Path
    size_bytes: int
    helm_egress: Series = field(default_factory=Series)
    kustomize: Series = field(default_factory=Series)
    kustomize_with_copy: Series = field(default_factory=Series)

    @property
    def size_mb(self) -> float:
        return self.size_bytes / MIB

    @property
    def speed_ratio(self) -> float:
        return self.kustomize.median_s / self.helm_egress.median_s

    @property
    def memory_ratio(self) -> float:
        return self.helm_egress.peak_rss_kib / self.kustomize.peak_rss_kib


def run(argv: list[str], stdin: Path | None = None, stdout: IO[bytes] | None = None) -> Run:
    """Run argv to completion; return its wall time and peak RSS. Raise if it fails."""
    with open(stdin or os.devnull, "rb") as fin, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=fin, stdout=stdout or subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace").strip()[-2000:]
            raise BenchError(f"`{shlex.join(argv)}` exited {proc.returncode}:\n{message}")
    return Run(wall, usage.ru_maxrss)  # ru_maxrss is in KiB on Linux


def run_checked(argv: list[str], stdin: Path | None = None) -> Run:
    """Like run, but also require a non-empty stdout."""
    with tempfile.TemporaryFile() as out:
        result = run(argv, stdin, out)
        if os.fstat(out.fileno()).st_size == 0:
            raise BenchError(f"`{shlex.join(argv)}` exited 0 but wrote nothing to stdout")
    return result


def copy_renamed(src: IO[str], out: IO[str], suffix: str) -> None:
    """Copy a stream, appending suffix to each document's metadata.name.

    Line-based (Helm output is regular) and streaming, so this process stays small: a
    child's ru_maxrss is never less than the peak RSS of the process that spawned it.
    """
    in_metadata, child_indent = False, 0
    for line in src:
        stripped = line.strip()
        if line.startswith("---"):
            in_metadata = False
        elif line.rstrip() == "metadata:":
            in_metadata, child_indent = True, 0
        elif suffix and in_metadata and stripped and not stripped.startswith("#"):
            indent = len(line) - len(line.lstrip(" "))
            child_indent = child_indent or indent
            if indent == 0:
                in_metadata = False
            elif indent == child_indent and stripped.startswith("name:"):
                value = stripped[len("name:"):].split(" #")[0].strip()
                quote = value[-1] if value[:1] in ("'", '"') else ""
                line = f"{' ' * indent}name: {value[: len(value) - len(quote)]}{suffix}{quote}\n"
                in_metadata = False
        out.write(line if line.endswith("\n") else line + "\n")


def concatenate(parts: list[Path], dest: Path, tag: str) -> Path:
    """Write parts one after another to dest, renaming every part after the first (kustomize
    rejects two resources with the same kind, namespace and name)."""
    with dest.open("w") as out:
        for n, part in enumerate(parts):
            with part.open() as src:
                copy_renamed(src, out, f"-{tag}{n}" if n else "")
    return dest


def fallback_large(tmp: Path) -> Path:
    corpus = sorted((REPO / "fixtures/corpus").glob("*.helm3.yaml"))
    if not corpus:
        raise BenchError("no large stream: neither the default file nor fixtures/corpus/*.helm3.yaml exist")
    rounds = -(-FALLBACK_BYTES // sum(p.stat().st_size for p in corpus))
    print(f"note: {DEFAULT_LARGE} is missing; the large input is fixtures/corpus/*.helm3.yaml "
          f"({len(corpus)} files) concatenated {rounds} times")
    return concatenate(corpus * rounds, tmp / "large.yaml", "r")


def write_kustomize_dir(stream: Path, directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    shutil.copyfile(stream, directory / "all.yaml")
    (directory / "kustomization.yaml").write_text(KUSTOMIZATION)


def bench_input(result: Result, helm_egress: list[str], kubectl: str, kz_dir: Path, repeat: int) -> Result:
    """Warm up once (checking output), then alternate the two tools `repeat` times."""
    kustomize = [kubectl, "kustomize", str(kz_dir)]
    write_kustomize_dir(result.path, kz_dir)
    run_checked(helm_egress, result.path)
    run_checked(kustomize)
    for _ in range(repeat):
        result.helm_egress.add(run(helm_egress, result.path))
        start = time.perf_counter()
        write_kustomize_dir(result.path, kz_dir)
        copy_s = time.perf_counter() - start
        kz = run(kustomize)
        result.kustomize.add(kz)
        result.kustomize_with_copy.add(Run(copy_s + kz.wall_s, kz.maxrss_kib))
    return result


def find_cli(explicit: str | None) -> str:
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "helm-egress"  # the venv's, without resolving symlinks
    found = str(beside) if beside.exists() else shutil.which("helm-egress")
    if not found:
        raise BenchError("helm-egress not found next to this Python or on PATH; pass --cli PATH")
    return found


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=Path, help=f"multi-MB rendered stream [default: {DEFAULT_LARGE}]")
    parser.add_argument("--small", type=Path, default=DEFAULT_SMALL, help="a small chart's rendered stream")
    parser.add_argument("--values", type=Path, default=DEFAULT_VALUES, help="values file passed as -f")
    parser.add_argument("--cli", help="helm-egress executable [default: next to this Python, else PATH]")
    parser.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl", help="kubectl executable")
    parser.add_argument("--repeat", type=int, default=7, help="counted runs per command (plus 1 warm-up)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def measure(cli: str, kubectl: str, large: Path | None, small: Path, values: Path, repeat: int,
            ) -> tuple[dict[str, Series], list[Result]]:
    """Time helm-egress's fixed costs, then both tools on the large, small and 4x inputs."""
    helm_egress = [cli, "render", "-f", str(values), "--release", "demo"]
    with tempfile.TemporaryDirectory(prefix="helm-egress-bench-") as tmp_name:
        tmp = Path(tmp_name)
        large = large or (DEFAULT_LARGE if DEFAULT_LARGE.exists() else fallback_large(tmp))
        inputs = {"large": large, "small": small, "large x4": concatenate([large] * 4, tmp / "large4.yaml", "x")}
        fixed = {"--version": Series(), "empty stream": Series()}
        run_checked([cli, "--version"])
        for _ in range(repeat):
            fixed["--version"].add(run([cli, "--version"]))
            fixed["empty stream"].add(run(helm_egress, Path(os.devnull)))
        results = []
        for n, (label, path) in enumerate(inputs.items()):
            print(f"running {label} ({path}) ...", file=sys.stderr, flush=True)
            result = Result(label, path, path.stat().st_size)
            results.append(bench_input(result, helm_egress, kubectl, tmp / f"kz{n}", repeat))
    return fixed, results


def print_table(results: list[Result]) -> None:
    header = ("input", "size MB", "h-e s", "kust s", "kust+copy s", "speed x",
              "h-e peak MB", "kust peak MB", "mem ratio")
    rows = [(r.label, f"{r.size_mb:.2f}", f"{r.helm_egress.median_s:.3f}", f"{r.kustomize.median_s:.3f}",
             f"{r.kustomize_with_copy.median_s:.3f}", f"{r.speed_ratio:.2f}", f"{r.helm_egress.peak_mb:.1f}",
             f"{r.kustomize.peak_mb:.1f}", f"{r.memory_ratio:.2f}") for r in results]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, tuple("-" * w for w in widths), *rows):
        cells = (cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        print("  ".join(cells))
    print("\nspread (min-max s):")
    for r in results:
        print(f"  {r.label:<9} h-e {min(r.helm_egress.samples_s):.3f}-{max(r.helm_egress.samples_s):.3f}, "
              f"kust {min(r.kustomize.samples_s):.3f}-{max(r.kustomize.samples_s):.3f}")


def main() -> int:
    args = parse_args()
    load_before = os.getloadavg()
    print(f"load avg: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} ({os.cpu_count()} CPUs), "
          f"repeat: {args.repeat} (+1 warm-up)")
    try:
        cli = find_cli(args.cli)
        print(f"helm-egress: {cli}\nkubectl: {args.kubectl}\n", flush=True)
        fixed, results = measure(cli, args.kubectl, args.large, args.small, args.values, args.repeat)
    except (BenchError, OSError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    load_after = os.getloadavg()

    large, small, large4 = results
    start_s = fixed["empty stream"].median_s
    work_1x = large.helm_egress.median_s - start_s
    linearity = {
        "helm_egress_wall": large4.helm_egress.median_s / large.helm_egress.median_s,
        # nan when the large input is too small to take measurable work
        "helm_egress_work": (large4.helm_egress.median_s - start_s) / work_1x if work_1x > 0 else math.nan,
        "kustomize_wall": large4.kustomize.median_s / large.kustomize.median_s,
    }
    targets = [
        Target("large: kustomize time / helm-egress time >= 10", large.speed_ratio, 10, higher_is_better=True),
        Target("large: helm-egress peak / kustomize peak <= 1/3", large.memory_ratio, 1 / 3),
        Target("helm-egress work time (minus empty stream) 4x / 1x <= 4.6", linearity["helm_egress_work"], 4.6),
        Target("small: helm-egress time / kustomize time <= 2", 1 / small.speed_ratio, 2),
    ]
    # Linux starts a vforked child's ru_maxrss at its parent's peak RSS, so a reading at or
    # below this script's own peak is only an upper bound.
    floor_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    at_floor = any(x.peak_rss_kib <= floor_kib for r in results for x in (r.helm_egress, r.kustomize))

    print_table(results)
    print("\nhelm-egress fixed cost: " + ", ".join(
        f"{name} {series.median_s:.3f} s (peak {series.peak_mb:.1f} MB)" for name, series in fixed.items()))
    print("helm-egress work (minus empty stream): "
          + ", ".join(f"{r.label} {r.helm_egress.median_s - start_s:.3f} s" for r in results))
    print(f"linearity 4x/1x (ideal 4): helm-egress wall {linearity['helm_egress_wall']:.2f}, "
          f"work {linearity['helm_egress_work']:.2f}; kustomize wall {linearity['kustomize_wall']:.2f}")
    print("\ntargets:")
    for t in targets:
        print(f"  {'PASS' if t.passed else 'MISS'}  {t.name}  (measured {t.value:.2f})")
    print(f"\nRSS floor (this script's peak): {floor_kib / 1024:.1f} MB; "
          + ("WARNING: some peaks are at the floor, so overstated" if at_floor else "all peaks are above it"))
    print(f"load avg (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")

    if args.json:
        args.json.write_text(json.dumps({
            "environment": {"helm_egress": cli, "kubectl": args.kubectl, "python": platform.python_version(),
                            "cpus": os.cpu_count(), "repeat": args.repeat, "rss_floor_kib": floor_kib,
                            "loadavg_before": load_before, "loadavg_after": load_after},
            "fixed_cost": {name: series.as_json() for name, series in fixed.items()},
            "inputs": [{"label": r.label, "path": str(r.path), "size_mb": r.size_mb,
                        "helm_egress": r.helm_egress.as_json(), "kustomize": r.kustomize.as_json(),
                        "kustomize_with_copy": r.kustomize_with_copy.as_json(),
                        "speed_ratio": r.speed_ratio, "memory_ratio": r.memory_ratio} for r in results],
            "linearity": linearity,
            "targets": [{**asdict(t), "passed": t.passed} for t in targets],
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

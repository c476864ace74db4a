#!/usr/bin/env python3
"""Compare helm-egress with `kubectl kustomize` as Helm post-renderers: speed, memory, start-up.

What it measures
    Both tools do their post-renderer job on the same rendered manifest stream:

    * helm-egress: ``helm-egress render -f VALUES --release demo < STREAM > /dev/null``,
      cold (an empty schema-verdict cache: the values are validated with jsonschema) and
      warm (the verdict cached by an earlier run, as on every Helm run after the first);
    * kustomize:   ``kubectl kustomize DIR > /dev/null``, where DIR holds the stream as
      ``all.yaml`` next to a ``kustomization.yaml`` listing it -- what the classic
      kustomize post-renderer script does. DIR is written before the clock starts.

    Per input the three commands run alternately, ``--repeat`` times after one uncounted
    warm-up each (whose output must be non-empty). Reported: the median wall time, the
    speed ratio (kustomize time / helm-egress time, above 1 is faster), the median CPU time
    (user + system, with the children each waited for: helm-egress forks one to read half
    the workloads of a large stream, kustomize runs Go threads), the peak resident
    set size (largest ``ru_maxrss`` of the counted runs, from ``os.wait4``), and where
    helm-egress's start-up goes: one warm run under ``python -X importtime``, its total
    import time and the ten modules that cost most themselves.

    Before measuring, the package is byte-compiled with the CLI's own interpreter, as
    ``pip install`` does; an editable checkout under ``PYTHONDONTWRITEBYTECODE`` would
    otherwise compile every module from source on every run.

Inputs (built in a temporary folder)
    small        one chart, ``fixtures/corpus/ingress-nginx.helm3.yaml`` (13 KB);
    crd-heavy    ~1.9 MB led by large CustomResourceDefinitions, the shape of argo-cd:
                 the biggest CRDs of the bench stream up to 1.5 MB, its first 13
                 workloads, then its other documents in order;
    mixed        ~3.7 MB: the bench stream (43 real charts) less its largest CRDs;
    mixed x4     mixed four times (14.7 MB), to check that time grows linearly.

    The bench stream is ``../shared/corpus/bench-prometheus-community.helm3.yaml`` next to
    the repo (``--corpus`` to choose another). Without it the larger inputs are cut from
    ``fixtures/corpus/*.helm3.yaml`` repeated, which holds no CRDs; the output says so.
    Repeated copies get a ``-xN`` suffix on ``metadata.name``, because kustomize rejects
    two resources with the same kind, namespace and name.

Run (from the repo root)
    .venv/bin/python benchmarks/bench.py [--repeat 5] [--json out.json] [--readme README.md]

``--readme`` rewrites the table between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``.
It is a report, not a test: it exits 0 even when a target is missed, and 1 only when a
command fails or produces no output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO.parent / "shared/corpus/bench-prometheus-community.helm3.yaml"
DEFAULT_SMALL = REPO / "fixtures/corpus/ingress-nginx.helm3.yaml"
DEFAULT_VALUES = REPO / "fixtures/values/egress-values.yaml"
KUSTOMIZATION = "resources:\n- all.yaml\n"
MB = 1_000_000
MIB = 1024 * 1024
CRD_BYTES, CRD_HEAVY_BYTES, CRD_HEAVY_WORKLOADS, MIXED_BYTES = 1_500_000, 1_900_000, 13, 3_680_000
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
README_BEGIN, README_END = "<!-- bench:begin -->", "<!-- bench:end -->"


class BenchError(Exception):
    """A benchmarked command failed; the run cannot be reported."""


@dataclass(frozen=True)
class Run:
    wall_s: float
    maxrss_kib: int
    cpu_s: float = 0.0  # user + system, the process and the children it waited for


@dataclass
class Series:
    """Counted runs of one command on one input."""

    samples_s: list[float] = field(default_factory=list)
    peak_rss_kib: int = 0
    cpu_samples_s: list[float] = field(default_factory=list)

    def add(self, run: Run) -> None:
        self.samples_s.append(run.wall_s)
        self.cpu_samples_s.append(run.cpu_s)
        self.peak_rss_kib = max(self.peak_rss_kib, run.maxrss_kib)

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(self.cpu_samples_s)

    @property
    def peak_mb(self) -> float:
        return self.peak_rss_kib / 1024

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "median_s": self.median_s, "median_cpu_s": self.median_cpu_s}


@dataclass(frozen=True)
class Imports:
    """One run under ``python -X importtime``: total and the costliest modules (self time)."""

    total_ms: float
    top: list[tuple[str, float]]


@dataclass
class Result:
    label: str
    path: Path
    size_bytes: int
    cold: Series = field(default_factory=Series)
    warm: Series = field(default_factory=Series)
    kustomize: Series = field(default_factory=Series)
    imports_cold: Imports | None = None
    imports_warm: Imports | None = None

    @property
    def size_mb(self) -> float:
        return self.size_bytes / MB

    def speed(self, series: Series) -> float:
        return self.kustomize.median_s / series.median_s

    @property
    def memory_ratio(self) -> float:
        return max(self.cold.peak_rss_kib, self.warm.peak_rss_kib) / self.kustomize.peak_rss_kib


@dataclass(frozen=True)
class Target:
    name: str
    value: float
    limit: float
    higher_is_better: bool = True

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit


# --- running commands ---------------------------------------------------------------


def run(argv: list[str], stdin: Path | None = None, stdout: IO[bytes] | None = None,
        env: dict[str, str] | None = None, stderr: IO[bytes] | None = None) -> Run:
    """Run argv to completion; return its wall time and peak RSS. Raise if it fails."""
    with open(stdin or os.devnull, "rb") as fin, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=fin, stdout=stdout or subprocess.DEVNULL, stderr=stderr or err,
                                env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace").strip()[-2000:]
            raise BenchError(f"`{shlex.join(argv)}` exited {proc.returncode}:\n{message}")
    # ru_maxrss is in KiB on Linux. Both include the children the process waited for
    # (helm-egress forks one on large streams; kustomize's Go runtime runs threads).
    return Run(wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)


def run_checked(argv: list[str], stdin: Path | None = None, env: dict[str, str] | None = None) -> Run:
    """Like run, but also require a non-empty stdout."""
    with tempfile.TemporaryFile() as out:
        result = run(argv, stdin, out, env)
        if os.fstat(out.fileno()).st_size == 0:
            raise BenchError(f"`{shlex.join(argv)}` exited 0 but wrote nothing to stdout")
    return result


def interpreter_of(cli: str) -> str:
    """The Python a console script runs with (its shebang), else this one."""
    try:
        with open(cli, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return sys.executable
    if first.startswith("#!") and "python" in first:
        return first[2:].strip().split()[0]
    return sys.executable


def byte_compile(python: str) -> str:
    """Byte-compile the installed post_renderer package, as pip does on install."""
    code = ("import compileall, os, post_renderer; d = os.path.dirname(post_renderer.__file__); "
            "compileall.compile_dir(d, quiet=1); print(d)")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"cannot byte-compile post_renderer with {python}: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip()


def import_times(python: str, cli: str, args: list[str], stdin: Path, env: dict[str, str]) -> Imports:
    with tempfile.TemporaryFile() as err:
        run([python, "-X", "importtime", cli, *args], stdin, env=env, stderr=err)
        err.seek(0)
        lines = err.read().decode(errors="replace").splitlines()
    own: list[tuple[str, float]] = []
    total = 0.0
    for line in lines:
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m:
            self_us = int(m.group(1))
            total += self_us
            own.append((m.group(4), self_us / 1000))
    own.sort(key=lambda kv: -kv[1])
    return Imports(total / 1000, own[:10])


# --- inputs -------------------------------------------------------------------------


def documents(path: Path) -> Iterator[str]:
    """The documents of a Helm-rendered stream, each with its leading `---` line."""
    doc: list[str] = []
    with path.open(encoding="utf-8", errors="surrogateescape", newline="") as f:
        for line in f:
            if line.startswith("---") and doc:
                yield "".join(doc)
                doc = []
            doc.append(line)
    if doc:
        yield "".join(doc)


def kind_of(doc: str) -> str | None:
    m = re.search(r"^kind:[ \t]*['\"]?([A-Za-z0-9]+)", doc, re.MULTILINE)
    return m.group(1) if m else None


def write_docs(docs: list[str], dest: Path) -> Path:
    with dest.open("w", encoding="utf-8", errors="surrogateescape", newline="") as out:
        for doc in docs:
            out.write(doc if doc.endswith("\n") else doc + "\n")
    return dest


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


def build_inputs(corpus: Path | None, small: Path, tmp: Path) -> tuple[dict[str, Path], list[str]]:
    notes: list[str] = []
    source = corpus or (DEFAULT_CORPUS if DEFAULT_CORPUS.exists() else None)
    if source is None:
        fixtures = sorted((REPO / "fixtures/corpus").glob("*.helm3.yaml"))
        rounds = -(-(MIXED_BYTES + 1) // sum(p.stat().st_size for p in fixtures))
        source = concatenate(fixtures * rounds, tmp / "fixtures.yaml", "r")
        notes.append(f"{DEFAULT_CORPUS} is missing: larger inputs are fixtures/corpus/*.helm3.yaml repeated "
                     f"{rounds} times, with no CRDs (crd-heavy is not CRD-heavy)")
    docs = list(documents(source))
    crds = sorted((d for d in docs if kind_of(d) == "CustomResourceDefinition"), key=len, reverse=True)
    heavy: list[str] = []
    for doc in crds:
        if sum(map(len, heavy)) >= CRD_BYTES:
            break
        heavy.append(doc)
    # argo-cd renders 13 workloads (its pod specs are most of what helm-egress reads),
    # then ConfigMaps, RBAC and Services.
    rest = [d for d in docs if kind_of(d) != "CustomResourceDefinition"]
    heavy += [d for d in rest if kind_of(d) in WORKLOAD_KINDS][:CRD_HEAVY_WORKLOADS]
    for doc in rest:
        if sum(map(len, heavy)) >= CRD_HEAVY_BYTES:
            break
        if doc not in heavy:
            heavy.append(doc)
    # The whole stream, less its largest CRDs until it is down to the size.
    mixed = list(docs)
    for doc in crds:
        if sum(map(len, mixed)) <= MIXED_BYTES * 1.02:
            break
        mixed.remove(doc)
    size = sum(map(len, mixed))
    if size < MIXED_BYTES:
        notes.append(f"{source} holds only {size / MB:.1f} MB; mixed is all of it")
    mixed_path = write_docs(mixed, tmp / "mixed.yaml")
    inputs = {
        "small": small,
        "crd-heavy": write_docs(heavy, tmp / "crd-heavy.yaml"),
        "mixed": mixed_path,
        "mixed x4": concatenate([mixed_path] * 4, tmp / "mixed-x4.yaml", "x"),
    }
    return inputs, notes


def build_inputs_in_child(corpus: Path | None, small: Path, tmp: Path) -> tuple[dict[str, Path], list[str]]:
    """build_inputs in a child process: holding the corpus here would raise this script's
    peak RSS, which every child's ru_maxrss starts from."""
    argv = [sys.executable, __file__, "--build-into", str(tmp), "--small", str(small)]
    if corpus:
        argv += ["--corpus", str(corpus)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"building the inputs failed: {proc.stderr.strip()[-2000:]}")
    built = json.loads(proc.stdout)
    return {label: Path(path) for label, path in built["inputs"].items()}, built["notes"]


def write_kustomize_dir(stream: Path, directory: Path) -> None:
    directory.mkdir(exist_ok=True)
    shutil.copyfile(stream, directory / "all.yaml")
    (directory / "kustomization.yaml").write_text(KUSTOMIZATION)


# --- measuring ----------------------------------------------------------------------


def bench_input(result: Result, cli: str, python: str, values: Path, kubectl: str, tmp: Path, n: int,
                repeat: int) -> Result:
    argv = [cli, "render", "-f", str(values), "--release", "demo"]
    kz_dir = tmp / f"kz{n}"
    write_kustomize_dir(result.path, kz_dir)
    kustomize = [kubectl, "kustomize", str(kz_dir)]
    warm_env = {**os.environ, "XDG_CACHE_HOME": str(tmp / f"cache-warm{n}")}
    warm_env.pop("HELM_EGRESS_NO_CACHE", None)

    def cold_env(i: int) -> dict[str, str]:
        return {**warm_env, "XDG_CACHE_HOME": str(tmp / f"cache-cold{n}-{i}")}

    run_checked(argv, result.path, cold_env(-1))
    run_checked(argv, result.path, warm_env)  # fills the warm cache
    run_checked(kustomize)
    for i in range(repeat):
        result.cold.add(run(argv, result.path, env=cold_env(i)))
        result.warm.add(run(argv, result.path, env=warm_env))
        result.kustomize.add(run(kustomize))
    args = argv[1:]
    result.imports_cold = import_times(python, cli, args, result.path, cold_env(repeat))
    result.imports_warm = import_times(python, cli, args, result.path, warm_env)
    return result


def find_cli(explicit: str | None) -> str:
    if explicit:
        return explicit
    beside = Path(sys.executable).parent / "helm-egress"  # the venv's, without resolving symlinks
    found = str(beside) if beside.exists() else shutil.which("helm-egress")
    if not found:
        raise BenchError("helm-egress not found next to this Python or on PATH; pass --cli PATH")
    return found


def measure_fixed(cli: str, values: Path, tmp: Path, repeat: int) -> dict[str, Series]:
    """helm-egress's fixed costs: interpreter and CLI imports (--version), and a render of
    an empty stream (render imports, values read, verdict looked up)."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "cache-fixed")}
    render = [cli, "render", "-f", str(values), "--release", "demo"]
    run_checked([cli, "--version"])
    run(render, Path(os.devnull), env=env)
    fixed = {"--version": Series(), "empty stream, warm": Series()}
    for _ in range(repeat):
        fixed["--version"].add(run([cli, "--version"]))
        fixed["empty stream, warm"].add(run(render, Path(os.devnull), env=env))
    return fixed


# --- reporting ----------------------------------------------------------------------


def table(results: list[Result]) -> list[str]:
    header = ("input", "MB", "cold s", "warm s", "kustomize s", "speed cold", "speed warm",
              "cpu warm s", "kust. cpu s", "peak MB", "kust. peak MB", "mem ratio")
    rows = [(r.label, f"{r.size_mb:.2f}", f"{r.cold.median_s:.3f}", f"{r.warm.median_s:.3f}",
             f"{r.kustomize.median_s:.3f}", f"{r.speed(r.cold):.2f}x", f"{r.speed(r.warm):.2f}x",
             f"{r.warm.median_cpu_s:.3f}", f"{r.kustomize.median_cpu_s:.3f}",
             f"{max(r.cold.peak_mb, r.warm.peak_mb):.1f}", f"{r.kustomize.peak_mb:.1f}", f"{r.memory_ratio:.2f}")
            for r in results]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
            for row in (header, tuple("-" * w for w in widths), *rows)]


def readme_table(results: list[Result], load: tuple[float, float], repeat: int, fixed: dict[str, Series],
                 linearity: dict[str, float]) -> str:
    lines = [
        README_BEGIN,
        f"Measured by `benchmarks/bench.py` on the {os.cpu_count()}-CPU development VM (median of {repeat} "
        f"alternating runs, load average {load[0]:.1f} before / {load[1]:.1f} after, Python "
        f"{platform.python_version()}); warm = the values' schema verdict cached, as on every run after the first:",
        "",
        "| input | helm-egress cold | warm | kustomize | speed (warm) | CPU time (warm) | peak memory |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fast = r.speed(r.warm)
        verdict = f"{fast:.1f}× faster" if fast >= 1 else f"{1 / fast:.1f}× slower"
        lines.append(f"| {r.label}, {_size(r.size_bytes)} | {r.cold.median_s:.3f} s | {r.warm.median_s:.3f} s | "
                     f"{r.kustomize.median_s:.3f} s | {verdict} | {r.warm.median_cpu_s:.3f} s vs "
                     f"{r.kustomize.median_cpu_s:.3f} s | {max(r.cold.peak_mb, r.warm.peak_mb):.0f} MB vs "
                     f"{r.kustomize.peak_mb:.0f} MB ({r.memory_ratio:.2f}) |")
    lines.append("")
    lines.append(f"Fixed cost: `helm-egress --version` {fixed['--version'].median_s:.3f} s, a warm render of an empty "
                 f"stream {fixed['empty stream, warm'].median_s:.3f} s. Warm import time "
                 + ", ".join(f"{r.label} {r.imports_warm.total_ms:.0f} ms" for r in results if r.imports_warm)
                 + " (`python -X importtime`).")
    if linearity:
        lines.append(f"Four times the input takes {linearity['helm_egress_wall']:.2f}× the time "
                     f"({_times(linearity['helm_egress_work'])} without the fixed cost; kustomize "
                     f"{linearity['kustomize_wall']:.2f}×).")
    lines.append(README_END)
    return "\n".join(lines)


def _times(ratio: float) -> str:
    return "n/a" if ratio != ratio else f"{ratio:.2f}×"  # nan: see helm_egress_work


def _size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n / 1000:.0f} KB"


def update_readme(path: Path, block: str) -> None:
    text = path.read_text()
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        raise BenchError(f"{path} has no {README_BEGIN} ... {README_END} block")
    path.write_text(text[:start] + block + text[end + len(README_END):])


# --- scale: render time linear in workloads x destinations -----------------------------

# (label, workloads, hosts per workload, pod labels shared by every workload, render flags).
# Each shape once more at a quarter of its workloads: linear work takes 4x as long at full
# size, quadratic 16x. Both shapes were quadratic once (issue 20): 3,000 workloads that
# share their first pod label (every workload tested against all) and 300 workloads with 60
# hosts each (every claim scanned per destination).
SCALE_SHAPES = [
    ("shared-label", 3000, 1, {"app.kubernetes.io/part-of": "shop"}, ["--network-policy", "cilium", "--sidecar"]),
    ("many-hosts", 300, 60, {}, []),
]


def write_scale_stream(path: Path, workloads: int, hosts: int, shared: dict[str, str]) -> Path:
    with path.open("w") as out:
        for i in range(workloads):
            labels = {**shared, "app": f"w{i}"}
            declared = ",".join(f"h{j}.w{i}.example.com" for j in range(hosts))
            out.write("---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: w%d\n  labels:\n"
                      "    app.kubernetes.io/instance: demo\nspec:\n  selector:\n    matchLabels:\n" % i)
            out.write("".join(f"      {k}: {v}\n" for k, v in labels.items()))
            out.write("  template:\n    metadata:\n      labels:\n")
            out.write("".join(f"        {k}: {v}\n" for k, v in labels.items()))
            out.write(f'      annotations:\n        helm-egress.io/hosts: "{declared}"\n'
                      '        helm-egress.io/ports: "443/TLS"\n')
            out.write("    spec:\n      containers: [{name: c, image: x}]\n")
    return path


def measure_scale(cli: str, tmp: Path, repeat: int, start_s: float) -> list[dict[str, Any]]:
    """Each shape and its quarter; ``start_s`` (the empty-stream run) is taken off both
    before the ratio, so it compares the work alone. Without the verdict cache: its 1,000
    entries hold the quarter's annotations but not the full shape's, which would pass
    for superlinear work."""
    env = {**os.environ, "HELM_EGRESS_NO_CACHE": "1"}
    out = []
    for label, workloads, hosts, shared, flags in SCALE_SHAPES:
        argv = [cli, "render", "-q", "--release", "demo", *flags]
        times = {}
        for n in (workloads // 4, workloads):
            print(f"running scale {label} ({n} workloads x {hosts} host(s)) ...", file=sys.stderr, flush=True)
            stream = write_scale_stream(tmp / f"scale-{label}-{n}.yaml", n, hosts, shared)
            series = Series()
            for i in range(repeat + 1):
                result = run(argv, stdin=stream, env=env)
                if i:
                    series.add(result)
            times[n] = series.median_s
        quarter, full = times[workloads // 4], times[workloads]
        ratio = (full - start_s) / (quarter - start_s) if quarter > start_s else float("nan")
        out.append({"label": label, "workloads": workloads, "hosts": hosts, "quarter_s": quarter, "full_s": full,
                    "work_ratio": ratio})
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help=f"multi-MB rendered stream to cut inputs from [default: {DEFAULT_CORPUS}]")
    parser.add_argument("--small", type=Path, default=DEFAULT_SMALL, help="a small chart's rendered stream")
    parser.add_argument("--values", type=Path, default=DEFAULT_VALUES, help="values file passed as -f")
    parser.add_argument("--cli", help="helm-egress executable [default: next to this Python, else PATH]")
    parser.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl", help="kubectl executable")
    parser.add_argument("--repeat", type=int, default=5, help="counted runs per command (plus 1 warm-up)")
    parser.add_argument("--only", action="append", help="run only this input, or 'scale' (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    parser.add_argument("--readme", type=Path, help="rewrite the bench block of this README with the results")
    parser.add_argument("--build-into", type=Path, help=argparse.SUPPRESS)  # internal: see build_inputs_in_child
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    if args.build_into:
        args.build_into.mkdir(parents=True, exist_ok=True)
        inputs, notes = build_inputs(args.corpus, args.small, args.build_into)
        print(json.dumps({"inputs": {label: str(path) for label, path in inputs.items()}, "notes": notes}))
        return 0
    load_before = os.getloadavg()
    print(f"load avg: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} ({os.cpu_count()} CPUs), "
          f"repeat: {args.repeat} (+1 warm-up)")
    try:
        cli = find_cli(args.cli)
        python = interpreter_of(cli)
        compiled = byte_compile(python)
        print(f"helm-egress: {cli} (Python {python}; byte-compiled {compiled})\nkubectl: {args.kubectl}\n", flush=True)
        with tempfile.TemporaryDirectory(prefix="helm-egress-bench-") as tmp_name:
            tmp = Path(tmp_name)
            inputs, notes = build_inputs_in_child(args.corpus, args.small, tmp)
            for note in notes:
                print(f"note: {note}")
            fixed = measure_fixed(cli, args.values, tmp, args.repeat)
            results = []
            for n, (label, path) in enumerate(inputs.items()):
                if args.only and label not in args.only:
                    continue
                print(f"running {label} ({path.stat().st_size / MB:.2f} MB) ...", file=sys.stderr, flush=True)
                result = Result(label, path, path.stat().st_size)
                results.append(bench_input(result, cli, python, args.values, args.kubectl, tmp, n, args.repeat))
            # Once more after the inputs: a burst of other work on the machine during one
            # of the two measurements must not pass for start-up cost.
            again = measure_fixed(cli, args.values, tmp, args.repeat)
            fixed = {name: min(series, again[name], key=lambda x: x.median_s) for name, series in fixed.items()}
            scale = (measure_scale(cli, tmp, args.repeat, fixed["empty stream, warm"].median_s)
                     if not args.only or "scale" in args.only else [])
    except (BenchError, OSError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    load_after = os.getloadavg()

    print("\n".join(table(results)))
    print("\nspread (min-max s):")
    for r in results:
        print(f"  {r.label:<10} cold {min(r.cold.samples_s):.3f}-{max(r.cold.samples_s):.3f}, "
              f"warm {min(r.warm.samples_s):.3f}-{max(r.warm.samples_s):.3f}, "
              f"kustomize {min(r.kustomize.samples_s):.3f}-{max(r.kustomize.samples_s):.3f}")
    print("\nhelm-egress fixed cost: " + ", ".join(
        f"{name} {series.median_s:.3f} s (peak {series.peak_mb:.1f} MB)" for name, series in fixed.items()))
    print("\nimport time (python -X importtime, one run; the ten modules costing most themselves):")
    for r in results:
        assert r.imports_cold is not None and r.imports_warm is not None
        print(f"  {r.label}: cold {r.imports_cold.total_ms:.1f} ms, warm {r.imports_warm.total_ms:.1f} ms; warm top ten: "
              + ", ".join(f"{name} {ms:.1f}" for name, ms in r.imports_warm.top))
        extra = sorted({m for m, _ in r.imports_cold.top} - {m for m, _ in r.imports_warm.top})
        if extra:
            print(f"    only cold: {', '.join(extra)}")

    by_label = {r.label: r for r in results}
    targets: list[Target] = []
    if "small" in by_label:
        small = by_label["small"]
        targets.append(Target("small, warm: speed vs kustomize >= 0.5 (stretch 1.0)", small.speed(small.warm), 0.5))
    if "crd-heavy" in by_label:
        heavy = by_label["crd-heavy"]
        targets.append(Target("crd-heavy (argo-cd shape), warm: speed >= 10", heavy.speed(heavy.warm), 10))
    if "mixed x4" in by_label:
        big = by_label["mixed x4"]
        targets.append(Target("mixed x4 (14.7 MB), warm: speed >= 30", big.speed(big.warm), 30))
    for r in results:
        if r.size_bytes >= MB:
            targets.append(Target(f"{r.label}: peak memory / kustomize's <= 1/3", r.memory_ratio, 1 / 3,
                                  higher_is_better=False))
    linearity: dict[str, float] = {}
    if "mixed" in by_label and "mixed x4" in by_label:
        one, four = by_label["mixed"], by_label["mixed x4"]
        start = fixed["empty stream, warm"].median_s
        linearity = {
            "helm_egress_wall": four.warm.median_s / one.warm.median_s,
            # nan when the fixed cost measured no lower than the whole run on mixed (load).
            "helm_egress_work": ((four.warm.median_s - start) / (one.warm.median_s - start)
                                 if one.warm.median_s > start else float("nan")),
            "kustomize_wall": four.kustomize.median_s / one.kustomize.median_s,
        }
        targets.append(Target("4x the input: <= 4.4x the time (wall, warm)", linearity["helm_egress_wall"], 4.4,
                              higher_is_better=False))
        print(f"\nlinearity 4x/1x (ideal 4): helm-egress wall {linearity['helm_egress_wall']:.2f}, work (minus the "
              f"empty-stream run) {_times(linearity['helm_egress_work'])}; kustomize wall {linearity['kustomize_wall']:.2f}")
    if scale:
        print("\nscale (no verdict cache; work = time minus the empty-stream run; 4x the workloads, ideal 4, "
              "quadratic 16):")
        for sc in scale:
            print(f"  {sc['label']:<13} {sc['workloads'] // 4:>5} -> {sc['workloads']:>5} workloads x {sc['hosts']} "
                  f"host(s): {sc['quarter_s']:.3f} s -> {sc['full_s']:.3f} s, work {_times(sc['work_ratio'])}")
            targets.append(Target(f"scale {sc['label']}: 4x the workloads <= 6x the work", sc["work_ratio"], 6,
                                  higher_is_better=False))
    print("\ntargets:")
    for t in targets:
        print(f"  {'PASS' if t.passed else 'MISS'}  {t.name}  (measured {t.value:.2f})")
    # Linux starts a vforked child's ru_maxrss at its parent's peak RSS, so a reading at or
    # below this script's own peak is only an upper bound.
    floor_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    at_floor = any(x.peak_rss_kib <= floor_kib for r in results for x in (r.cold, r.warm, r.kustomize))
    print(f"\nRSS floor (this script's peak): {floor_kib / 1024:.1f} MB; "
          + ("WARNING: some peaks are at the floor, so overstated" if at_floor else "all peaks are above it"))
    print(f"load avg (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f}")

    if args.readme:
        update_readme(args.readme, readme_table(results, (load_before[0], load_after[0]), args.repeat, fixed,
                                                linearity))
        print(f"updated {args.readme}")
    if args.json:
        args.json.write_text(json.dumps({
            "environment": {"helm_egress": cli, "python": python, "kubectl": args.kubectl,
                            "python_version": platform.python_version(), "cpus": os.cpu_count(),
                            "repeat": args.repeat, "rss_floor_kib": floor_kib,
                            "loadavg_before": load_before, "loadavg_after": load_after},
            "fixed_cost": {name: series.as_json() for name, series in fixed.items()},
            "inputs": [{"label": r.label, "size_bytes": r.size_bytes, "cold": r.cold.as_json(),
                        "warm": r.warm.as_json(), "kustomize": r.kustomize.as_json(),
                        "speed_cold": r.speed(r.cold), "speed_warm": r.speed(r.warm),
                        "memory_ratio": r.memory_ratio,
                        "imports_cold": asdict(r.imports_cold) if r.imports_cold else None,
                        "imports_warm": asdict(r.imports_warm) if r.imports_warm else None} for r in results],
            "linearity": linearity,
            "scale": scale,
            "targets": [{**asdict(t), "passed": t.passed} for t in targets],
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

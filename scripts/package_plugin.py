#!/usr/bin/env python3
"""Build the Helm plugin archives users install, from this checkout.

    python3 scripts/package_plugin.py               # -> dist/helm-egress-0.1.0.tgz, dist/egress-0.1.0.tgz
    python3 scripts/package_plugin.py --dest DIR

* ``helm-egress-<version>.tgz``: the ``postrenderer/v1`` plugin (root plugin.yaml), Helm 4 only:
  ``--post-renderer helm-egress``.
* ``egress-<version>.tgz``: the ``helm egress install|upgrade|template`` plugin
  (plugins/egress/plugin.yaml), Helm 3 and Helm 4.

Each archive is one top folder named after the plugin, holding what ``.helmignore`` lets
through (a few hundred KB: no .git, .venv, .helm-bin, tests) with that plugin's plugin.yaml.
An archive is installed as a copy, so ``helm plugin update`` never runs ``git clean`` in a
checkout of yours. Helm 4 installs the .tgz itself (``--verify=false``: no .prov is made
here); Helm 3 installs only folders and URLs, so unpack it first.

Standard library only; the archive is reproducible (sorted, fixed times and owners).
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import io
import re
import sys
import tarfile
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
PLUGINS = {"helm-egress": REPO / "plugin.yaml", "egress": REPO / "plugins" / "egress" / "plugin.yaml"}
# Files the install hook cannot do without; an archive missing one is refused.
REQUIRED = ("plugin.yaml", "pyproject.toml", "README.md", "post_renderer/__init__.py", "scripts/install-plugin.sh")


def helmignore(root: Path) -> list[str]:
    path = root / ".helmignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def ignored(rel: PurePosixPath, is_dir: bool, patterns: list[str]) -> bool:
    """Helm's .helmignore rules as far as this project uses them: `name` and `*.ext` match a
    base name at any depth, `dir/` only folders, a pattern with a slash the path from the root."""
    for pattern in patterns:
        if pattern.endswith("/"):
            if not is_dir:
                continue
            pattern = pattern[:-1]
        target = rel.as_posix() if "/" in pattern.lstrip("/") or pattern.startswith("/") else rel.name
        if fnmatch.fnmatchcase(target, pattern.lstrip("/")):
            return True
    return False


def files(root: Path) -> list[PurePosixPath]:
    patterns = helmignore(root)
    kept: list[PurePosixPath] = []

    def walk(folder: Path) -> None:
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            rel = PurePosixPath(entry.relative_to(root).as_posix())
            if ignored(rel, entry.is_dir(), patterns):
                continue
            if entry.is_dir() and not entry.is_symlink():
                walk(entry)
            elif entry.is_file():
                kept.append(rel)

    walk(root)
    return kept


def plugin_version(plugin_yaml: str) -> str:
    match = re.search(r'^version:\s*"?([^"\s]+)"?\s*$', plugin_yaml, re.M)
    if match is None:
        raise SystemExit("package_plugin: error: no version in plugin.yaml")
    return match.group(1)


def build(name: str, plugin_yaml: Path, dest: Path) -> Path:
    text = plugin_yaml.read_text(encoding="utf-8")
    members = [f for f in files(REPO) if f.as_posix() != "plugin.yaml"]
    missing = [r for r in REQUIRED if r != "plugin.yaml" and PurePosixPath(r) not in members]
    if missing:
        raise SystemExit(f"package_plugin: error: {', '.join(missing)} left out by .helmignore; the install hook needs them")
    archive = dest / f"{name}-{plugin_version(text)}.tgz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(rel: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))

        add("plugin.yaml", text.encode("utf-8"), 0o644)
        for rel in members:
            source = REPO / rel
            add(rel.as_posix(), source.read_bytes(), 0o755 if source.stat().st_mode & 0o100 else 0o644)
    dest.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".tgz.part")
    with gzip.GzipFile(partial, "wb", mtime=0) as gz:
        gz.write(buffer.getvalue())
    partial.replace(archive)
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the helm-egress plugin archives.")
    parser.add_argument("--dest", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
    args = parser.parse_args(argv)
    for name, plugin_yaml in PLUGINS.items():
        archive = build(name, plugin_yaml, args.dest.resolve())
        print(f"package_plugin: {archive} ({archive.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

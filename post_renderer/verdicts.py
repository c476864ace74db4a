"""A cache of schema verdicts, so a values file already judged valid skips jsonschema.

Importing jsonschema and building its validator costs more than rendering a small chart,
and Helm runs the post-renderer once per release with the same values files again and
again. So a "valid" verdict is remembered on disk, under ``$XDG_CACHE_HOME/helm-egress``
(``~/.cache/helm-egress`` by default), one small file per verdict:

- the key is the sha256 of helm-egress's version, the name and sha256 of the shipped
  schema applied, ruamel.yaml's version (it turns the bytes into the data that is validated) and the
  subject: a values file's bytes (with the YAML path validated), or an annotation's
  entries as canonical JSON;
- an entry's file holds its key again: a file whose content is anything else (a torn
  write, a stray edit, another version's layout) is ignored and replaced;
- only "valid" is ever stored, so bad values always go through jsonschema and the user
  sees the same located errors with and without the cache;
- entries are written atomically (a temporary file, then ``os.replace``); a folder that
  cannot be created, read or written means no cache, never an error;
- the folder is used only when it belongs to the current user and nobody else can write
  to it, since a planted entry would skip the schema check;
- ``HELM_EGRESS_NO_CACHE=1`` turns it off.

Lookups happen while the pipeline runs (the cache object is handed in by the CLI); new
verdicts are kept in memory and written by ``save``, which the CLI calls afterwards.
"""

from __future__ import annotations

import os
import stat

from post_renderer import __version__
from post_renderer.names import sha256_hex
from post_renderer.xdg import base_dir

ENV_DISABLE = "HELM_EGRESS_NO_CACHE"
FOLDER = "helm-egress"
SUBFOLDER = "schema-verdicts-v1"
MAX_ENTRIES = 1000  # past this, the oldest quarter is removed when a new verdict is written
_MAGIC = "helm-egress schema verdict v1"
_NO_WAIT = (getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
            | getattr(os, "O_CLOEXEC", 0))


def cache_dir(environ: os._Environ[str] | dict[str, str] = os.environ) -> str | None:
    """Where verdicts live, per the XDG base directory spec; None when there is no home."""
    base = base_dir("XDG_CACHE_HOME", ".cache", environ)
    return os.path.join(base, FOLDER, SUBFOLDER) if base else None


def from_environment(environ: os._Environ[str] | dict[str, str] = os.environ) -> VerdictCache | None:
    """The cache the environment asks for, or None when it is turned off."""
    if environ.get(ENV_DISABLE, "").strip().lower() in ("1", "true", "yes", "on"):
        return None
    directory = cache_dir(environ)
    return VerdictCache(directory) if directory else None


class VerdictCache:
    """Schema verdicts kept on disk. Implements ``schema.Verdicts``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._salts: dict[str, bytes] = {}
        self._pending: dict[str, str] = {}
        self._usable: bool | None = None

    def known_valid(self, schema_file: str, subject: bytes) -> bool:
        if not self._trusted():
            return False
        key = self._key(schema_file, subject)
        expected = _entry(key).encode()
        try:
            # Without waiting, and only a regular file: a FIFO or device planted where an
            # entry belongs must neither block the run nor be read.
            fd = os.open(os.path.join(self.directory, key), os.O_RDONLY | _NO_WAIT)
        except OSError:
            return False
        try:
            return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, len(expected) + 1) == expected
        except OSError:
            return False
        finally:
            os.close(fd)

    def remember_valid(self, schema_file: str, subject: bytes) -> None:
        key = self._key(schema_file, subject)
        self._pending[key] = _entry(key)

    def save(self) -> None:
        """Write the verdicts learnt in this run; any failure leaves the cache as it was."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError:
            return
        self._usable = None  # the folder may have just been created
        if not self._trusted():
            return
        for key, content in pending.items():
            # A name of our own with O_EXCL, as tempfile.mkstemp would make it: tempfile
            # imports random and so hashlib, whose import logs a traceback on stderr when
            # there is no memory left to load OpenSSL.
            tmp = os.path.join(self.directory, f".tmp-{os.getpid()}-{os.urandom(8).hex()}")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_WAIT, 0o600)
            except OSError:
                return
            try:
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(content)
                os.replace(tmp, os.path.join(self.directory, key))
            except OSError:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                return
        self._prune()

    def _trusted(self) -> bool:
        if self._usable is None:
            try:
                st = os.stat(self.directory)
            except OSError:
                self._usable = False
            else:
                owner_only = not st.st_mode & 0o022
                mine = not hasattr(os, "geteuid") or st.st_uid == os.geteuid()
                self._usable = owner_only and mine
        return self._usable

    def _key(self, schema_file: str, subject: bytes) -> str:
        salt = self._salts.get(schema_file)
        if salt is None:
            from post_renderer.schema import schema_text

            schema_digest = sha256_hex(schema_text(schema_file).encode())
            parts = [_MAGIC, __version__, schema_file, schema_digest, _parser_version()]
            salt = self._salts[schema_file] = "\0".join(parts).encode() + b"\0"
        return sha256_hex(salt + subject)

    def _prune(self) -> None:
        try:
            with os.scandir(self.directory) as it:
                entries = [(e.stat().st_mtime, e.path) for e in it if e.is_file() and len(e.name) == 64]
        except OSError:
            return
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort()
        for _, path in entries[: len(entries) - MAX_ENTRIES * 3 // 4]:
            try:
                os.unlink(path)
            except OSError:
                pass


def _entry(key: str) -> str:
    return f"{_MAGIC}\n{key}\nvalid\n"


def _parser_version() -> str:
    try:
        from ruamel.yaml import __version__ as version
    except ImportError:  # pragma: no cover - a declared dependency
        return "?"
    return str(version)


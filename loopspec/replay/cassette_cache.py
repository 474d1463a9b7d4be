"""A cache of read cassettes: a corpus that did not change is not parsed again.

Reading a cassette (YAML with source positions, then the checks of every section) is about a third
of replaying a corpus (``bench/replay_cost.py``), and a CI job replays the same corpus under every
new policy. The cache keeps each *valid* cassette as it was read, one entry per cassette: the entry
is named by the path it was read by, the working directory and the files root in force (side files
resolve against them, and the files root decides which may be read at all), and holds a hash of
the cassette's bytes and of loopspec's own code (every module's bytes: an edited reader must not
serve what an older one built). A hit needs both hashes to match and each side file it read
(``sse_file``) to hash as it did. Hashes, not file times, so a CI job that restores the cache into
a fresh checkout of the same files hits. An edited cassette replaces its own entry, so the cache holds one entry per
cassette path it has seen. An invalid cassette is never stored: it is read afresh each time, so its
diagnostics are always the reader's own.

Entries are pickles, loaded by an unpickler that builds nothing but the cassette model's own
classes: a planted entry cannot run code. A cache that cannot be read or written is no cache at
all: every failure there falls back to reading the file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import sys
from typing import Any

from loopspec.language.diagnostics import Diagnostic
from loopspec.language.yamlsource import LoadError, read_yaml_bytes

from .cassette_files import SideFile, files_root_for, side_file_digest
from .cassette_model import Cassette
from .cassette_reader import read_cassette_bytes

__all__ = ["CACHE_DIR_ENV", "DEFAULT_CACHE_DIR", "CassetteCache", "default_cache_dir"]

CACHE_DIR_ENV = "LOOPSPEC_CACHE_DIR"
DEFAULT_CACHE_DIR = ".loopspec_cache"
_FORMAT = 1
_MODEL_MODULES = frozenset({
    "loopspec.replay.cassette_model",
    "loopspec.replay.interactions",
    "loopspec.language.diagnostics",
})


def default_cache_dir() -> str:
    """``$LOOPSPEC_CACHE_DIR``, else ``.loopspec_cache`` in the working directory."""
    return os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR


class CassetteCache:
    """Read cassettes through a cache folder (``hits`` and ``misses`` count what it did)."""

    def __init__(self, folder: str) -> None:
        self.root = os.path.abspath(folder)
        self.hits = 0
        self.misses = 0

    def read(self, path: str, *, files_root: str | None = None) -> tuple[Cassette | None, list[Diagnostic]]:
        """What :func:`~loopspec.replay.cassette.read_cassette` returns, from the cache when it holds it."""
        try:
            raw = read_yaml_bytes(path)
        except LoadError as exc:
            return None, [exc.diagnostic]
        entry = os.path.join(self.root, "cassettes", _entry_name(path, files_root) + ".pickle")
        digest = _digest(raw)
        found = _load(entry, digest)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        cassette, diags, side_files = read_cassette_bytes(raw, path, files_root=files_root)
        if cassette is not None:
            sides = _hashed(side_files)
            if sides is not None:
                try:
                    data = pickle.dumps((_FORMAT, digest, cassette, diags, sides), protocol=pickle.HIGHEST_PROTOCOL)
                except Exception:  # a model value pickle cannot hold: this cassette is read afresh each time
                    return cassette, diags
                self._store(entry, data)
        return cassette, diags

    def _store(self, entry: str, data: bytes) -> None:
        """Write ``entry`` whole or not at all (a reader never sees half a file); a folder that
        cannot be written leaves the cache empty, not the run failed."""
        tmp = f"{entry}.{os.getpid()}.tmp"
        try:
            if not os.path.isdir(self.root):
                os.makedirs(self.root, exist_ok=True)
                _mark_cache_folder(self.root)
            os.makedirs(os.path.dirname(entry), exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, entry)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _mark_cache_folder(root: str) -> None:
    """Keep the folder out of git and out of backups, as pytest's and mypy's caches do."""
    with open(os.path.join(root, ".gitignore"), "w") as fh:
        fh.write("# created by loopspec: the cache of read cassettes\n*\n")
    with open(os.path.join(root, "CACHEDIR.TAG"), "w") as fh:
        fh.write("Signature: 8a477f597d28d172789f06886806bc55\n# created by loopspec, see https://bford.info/cachedir/\n")


def _entry_name(path: str, files_root: str | None) -> str:
    base = os.path.dirname(os.path.abspath(path))
    h = hashlib.blake2b(digest_size=20)
    for part in (str(_FORMAT), os.getcwd(), path, files_root_for(base, files_root)):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return h.hexdigest()


def _digest(raw: bytes) -> str:
    """The cassette's bytes as read by this loopspec's code."""
    return hashlib.blake2b(_code_fingerprint().encode() + b"\0" + raw, digest_size=20).hexdigest()


@functools.lru_cache(maxsize=1)
def _code_fingerprint() -> str:
    """A hash of the bytes of every loopspec module (its version among them): an entry made by other code
    (an editable install that changed, another release) is never served. Content, not times, so
    a fresh install of the same code matches (about 5 ms, once per process)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{sys.version_info[:2]}\0".encode())
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the loopspec package
    for folder, dirs, files in sorted(os.walk(top)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as fh:
                    h.update(os.path.relpath(os.path.join(folder, name), top).encode() + b"\0" + fh.read() + b"\0")
    return h.hexdigest()


class _ModelUnpickler(pickle.Unpickler):
    """Builds only classes defined in the cassette model's modules; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module in _MODEL_MODULES:
            found = getattr(sys.modules.get(module), name, None)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a cassette")


def _load(entry: str, digest: str) -> tuple[Cassette, list[Diagnostic]] | None:
    """The entry's cassette and diagnostics, or None: absent, unreadable, not an entry, made from
    other bytes or by other code, or a side file it read has changed since."""
    try:
        with open(entry, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    try:
        fmt, stored, cassette, diags, side_files = _ModelUnpickler(io.BytesIO(data)).load()
    except Exception:  # a torn, foreign or planted file: read the cassette instead
        return None
    if fmt != _FORMAT or stored != digest or not isinstance(cassette, Cassette) or not isinstance(diags, list):
        return None
    for path, hashed in side_files:
        now = side_file_digest(path)
        if now is None or now[1] != hashed:
            return None
    return cassette, diags


def _hashed(side_files: list[SideFile]) -> list[tuple[str, str]] | None:
    """Each side file the reader read, with the hash of its bytes; None if one has changed since
    it was read (the cassette is then not stored: its entry would pair old text with new bytes)."""
    out = []
    for path, ident in side_files:
        now = side_file_digest(path)
        if now is None or now[0] != ident:
            return None
        out.append((path, now[1]))
    return out

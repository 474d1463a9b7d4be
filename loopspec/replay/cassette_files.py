"""Files a cassette points at (``sse_file``): read only what the cassette's author could mean.

A cassette is often someone else's file (an incident attached to a bug report, a fixture from
another repository), so the path it names is input, not an instruction: it must stay inside the
*files root* once ``..`` and symlinks are resolved, it must be a regular file (never a device such
as ``/dev/zero`` or a FIFO that blocks forever), and it is size-capped like the YAML.

The files root adds to the cassette's own folder when the user widens it: ``files_root=`` from
Python, ``--files-root DIR`` on the command line, or the ``LOOPSPEC_FILES_ROOT`` environment
variable (a corpus whose cassettes share a ``../streams`` folder sets it to the corpus's top).
A cassette cannot widen it itself.
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
from collections import OrderedDict

from loopspec.language.yamlsource import MAX_BYTES

__all__ = ["FILES_ROOT_ENV", "MAX_SIDE_FILE_BYTES", "OUTSIDE_HINT", "SideFile", "files_root_for", "read_side_file", "side_file_digest"]

FILES_ROOT_ENV = "LOOPSPEC_FILES_ROOT"
"""The environment variable that widens the files root for every cassette read."""

MAX_SIDE_FILE_BYTES = MAX_BYTES
"""The largest ``sse_file`` read: the same cap as a cassette or policy file."""

OUTSIDE_HINT = (
    "keep the file in the cassette's folder, or widen the folder files may come from "
    f"(loopspec replay --files-root DIR, or {FILES_ROOT_ENV}=DIR)"
)

Problem = tuple[str, str]
"""What went wrong and what to do about it."""


def files_root_for(cassette_folder: str, files_root: str | None = None) -> str:
    """The folder side files must stay in: the caller's, else the environment's, else the cassette's."""
    return files_root or os.environ.get(FILES_ROOT_ENV) or cassette_folder


def _folder(folder: str) -> str:
    """A folder's real path: a corpus names the same few folders for every one of its side files.
    Remembered by absolute path, so a change of working directory (a Ray worker moves to the
    driver's) never answers for a relative name with the folder it meant before."""
    return _real_folder(os.path.abspath(folder))


@functools.lru_cache(maxsize=256)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _inside(folder: str, real: str) -> bool:
    """``real`` (a resolved path) lies in ``folder``: both are real paths, so a prefix ending at a
    separator is enough (``commonpath`` cost a few microseconds a side file)."""
    folder = _folder(folder)
    return real == folder or real.startswith(folder if folder.endswith(os.sep) else folder + os.sep)


def _resolved(full: str) -> str:
    """``os.path.realpath(full)``, with the folder part remembered: the file itself is looked at
    afresh (a symlink is followed all the way), but a corpus's cassettes name the same few stream
    folders, and resolving them again costs a stat per path component, for every side file."""
    folder, leaf = os.path.split(full)
    if leaf in ("", ".", ".."):
        return os.path.realpath(full)
    try:
        mode = os.lstat(full).st_mode
    except OSError:
        return os.path.realpath(full)
    if stat.S_ISLNK(mode):
        return os.path.realpath(full)
    return os.path.join(_folder(folder or "."), leaf)


FileIdentity = tuple[int, int, int, int, int]
"""A file's device, inode, size, modification and change times (a rewrite changes the change
time, which no ``touch`` can set back)."""

SideFile = tuple[str, FileIdentity]
"""A side file as it was read: the path opened, and its identity then."""


def _identity(st: os.stat_result) -> FileIdentity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def side_file_digest(path: str) -> tuple[FileIdentity, str] | None:
    """The file's identity (as in :data:`SideFile`) and a hash of its bytes, or None if it cannot
    be read whole. The hash is what a cache compares, so a fresh checkout (new inodes and times,
    same bytes) still matches; it is computed once per identity in a process, so a corpus whose
    cassettes share a few streams hashes each once."""
    try:
        ident = _identity(os.stat(path))
        digest = _DIGESTS.get(ident)
        if digest is None:
            with open(path, "rb") as fh:
                digest = hashlib.blake2b(fh.read(MAX_SIDE_FILE_BYTES + 1), digest_size=20).hexdigest()
            if _identity(os.stat(path)) != ident:  # rewritten while it was read
                return None
            if len(_DIGESTS) >= _DIGESTS_MAX:
                _DIGESTS.clear()
            _DIGESTS[ident] = digest
    except OSError:
        return None
    return ident, digest


_DIGESTS: dict[FileIdentity, str] = {}
_DIGESTS_MAX = 4096


def read_side_file(base: str, name: str, *, root: str, seen: list[SideFile] | None = None) -> tuple[Problem | None, str]:
    """The text of ``name`` (relative to ``base``, the cassette's folder), or the problem that
    stopped the read; it must stay inside ``base`` or ``root``. The file's own path is resolved
    afresh on every read (``..`` and symlinks included); only the folders' are remembered. A file
    read is added to ``seen``."""
    full = os.path.join(base, name)
    real = _resolved(full)
    if not (_inside(base, real) or _inside(root, real)):
        where = "the cassette's folder" if _folder(root) == _folder(base) else f"the cassette's folder and {root}"
        return (f"it is outside {where} (after following '..' and symlinks)", OUTSIDE_HINT), ""
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of hanging; the
        # file type is then checked on the open descriptor, so nothing can swap it in between
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return (exc.strerror or str(exc), "sse_file is relative to the cassette's folder"), ""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return ("it is not a regular file (a device, FIFO or folder)", "point sse_file at a file of recorded SSE text"), ""
    key = _identity(st)
    if seen is not None:
        seen.append((os.path.abspath(full), key))
    text = _TEXTS.get(key)
    if text is not None:
        os.close(fd)
        _TEXTS.move_to_end(key)
        return None, text
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_SIDE_FILE_BYTES + 1)
    if len(raw) > MAX_SIDE_FILE_BYTES:
        return (f"it is larger than {MAX_SIDE_FILE_BYTES // (1024 * 1024)} MiB", "split the stream, or trim the recording"), ""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"it is not UTF-8 text ({exc.reason} at byte {exc.start})", "SSE is text; save the file as UTF-8"), ""
    if len(raw) <= _TEXT_CACHE_MAX_FILE:
        _TEXTS[key] = text
        if len(_TEXTS) > _TEXT_CACHE_FILES:
            _TEXTS.popitem(last=False)
    return None, text


_TEXT_CACHE_FILES = 64
_TEXT_CACHE_MAX_FILE = 256 * 1024
_TEXTS: OrderedDict[FileIdentity, str] = OrderedDict()
"""Side files read lately, by the identity and version of the file opened (device, inode, size,
modification and change time: a same-size rewrite whose modification time was set back still
changes the change time): the cassettes of a corpus, and the interactions of one long cassette, name the
same few recorded streams. Every read still resolves, confines and opens the file; only reading and
decoding an unchanged file is skipped. At most 64 files of up to 256 KiB are kept."""

"""The cache of read cassettes (``replay/cassette_cache.py``): a hit is exactly what reading the file
gives, and anything that could make it differ (the cassette's bytes, a side file, the files root,
a torn or planted entry, a folder that cannot be written) makes it read the file instead."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loopspec.replay.cassette import read_cassette
from loopspec.replay.cassette_cache import CassetteCache
from loopspec.replay.corpus import Job, run_corpus

from _paths import DEFAULT_POLICY, FIXTURES, ROOT

SSE = (FIXTURES / "streams" / "openai_stream_text.sse").read_text()
CASSETTE = """loopspec_cassette: 1
name: cached
messages:
  - {role: user, content: Which city?}
interactions:
  - sse_file: stream.sse
expect:
  outcome: completed
"""


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "stream.sse").write_text(SSE)
    (folder / "one.cassette.yaml").write_text(CASSETTE)
    return folder


def entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "cassettes").glob("*.pickle"))


def read_twice(cache: CassetteCache, path: str, files_root: str | None = None) -> tuple:  # type: ignore[type-arg]
    first = cache.read(path, files_root=files_root)
    return first, cache.read(path, files_root=files_root)


def test_a_hit_is_what_reading_the_file_gives(corpus: Path, tmp_path: Path) -> None:
    """The second read comes from the cache and equals a fresh read, diagnostics included."""
    cache = CassetteCache(str(tmp_path / "cache"))
    path = str(corpus / "one.cassette.yaml")
    first, second = read_twice(cache, path, str(corpus))
    assert (cache.misses, cache.hits) == (1, 1)
    assert second == first == read_cassette(path, files_root=str(corpus))
    assert len(entries(tmp_path / "cache")) == 1
    assert (tmp_path / "cache" / ".gitignore").read_text().splitlines()[-1] == "*"


def test_every_fixture_cassette_reads_the_same_through_the_cache(tmp_path: Path) -> None:
    """Every valid cassette in the repository survives the round trip through an entry unchanged."""
    cache = CassetteCache(str(tmp_path / "cache"))
    paths = sorted(str(p) for p in FIXTURES.rglob("*.cassette.yaml"))
    for path in paths:
        cache.read(path)
    hits_before = cache.hits
    for path in paths:
        assert cache.read(path) == read_cassette(path), path
    stored = len(entries(tmp_path / "cache"))
    assert stored > 20 and cache.hits - hits_before == stored


def test_an_edited_cassette_is_read_again_and_replaces_its_entry(corpus: Path, tmp_path: Path) -> None:
    cache = CassetteCache(str(tmp_path / "cache"))
    path = corpus / "one.cassette.yaml"
    cache.read(str(path), files_root=str(corpus))
    path.write_text(CASSETTE.replace("name: cached", "name: edited"))
    c, _ = cache.read(str(path), files_root=str(corpus))
    assert c is not None and c.name == "edited" and cache.hits == 0
    assert len(entries(tmp_path / "cache")) == 1, "the edit replaced the entry instead of adding one"


def test_a_side_file_rewritten_in_place_is_read_again(corpus: Path, tmp_path: Path) -> None:
    """Same size, modification time set back: the change time still tells, and the new text is read."""
    cache = CassetteCache(str(tmp_path / "cache"))
    path = str(corpus / "one.cassette.yaml")
    stream = corpus / "stream.sse"
    before = stream.stat()
    cache.read(path, files_root=str(corpus))
    changed = SSE.replace("C2P2HtMJ", "ZZZZZZZZ")
    assert len(changed) == len(SSE)
    stream.write_text(changed)
    os.utime(stream, ns=(before.st_atime_ns, before.st_mtime_ns))
    c, _ = cache.read(path, files_root=str(corpus))
    assert cache.hits == 0 and c == read_cassette(path, files_root=str(corpus))[0]
    assert c is not None and "ZZZZZZZZ" in str(c.interactions[0])


def test_a_side_file_swapped_for_another_is_read_again(corpus: Path, tmp_path: Path) -> None:
    cache = CassetteCache(str(tmp_path / "cache"))
    path = str(corpus / "one.cassette.yaml")
    cache.read(path, files_root=str(corpus))
    (corpus / "other.sse").write_text(SSE.replace("C2P2HtMJ", "ZZZZZZZZ"))
    os.replace(corpus / "other.sse", corpus / "stream.sse")
    c, _ = cache.read(path, files_root=str(corpus))
    assert cache.hits == 0 and c == read_cassette(path, files_root=str(corpus))[0]
    assert c is not None and "ZZZZZZZZ" in str(c.interactions[0])


def test_a_cassette_cached_under_one_files_root_is_judged_afresh_under_another(tmp_path: Path) -> None:
    """``sse_file: ../streams/x.sse`` reads under a wide files root and is refused under the
    cassette's own folder: the entry made under the first never answers for the second."""
    (tmp_path / "streams").mkdir()
    (tmp_path / "streams" / "x.sse").write_text(SSE)
    (tmp_path / "corpus").mkdir()
    path = tmp_path / "corpus" / "one.cassette.yaml"
    path.write_text(CASSETTE.replace("sse_file: stream.sse", "sse_file: ../streams/x.sse"))
    cache = CassetteCache(str(tmp_path / "cache"))
    wide, _ = cache.read(str(path), files_root=str(tmp_path))
    narrow, diags = cache.read(str(path), files_root=str(tmp_path / "corpus"))
    assert wide is not None and narrow is None and "outside" in diags[0].message


def test_an_invalid_cassette_is_never_stored(corpus: Path, tmp_path: Path) -> None:
    path = corpus / "bad.cassette.yaml"
    path.write_text(CASSETTE.replace("loopspec_cassette: 1", "loopspec_cassette: 2"))
    cache = CassetteCache(str(tmp_path / "cache"))
    first, second = read_twice(cache, str(path), str(corpus))
    assert first[0] is None and first == second == read_cassette(str(path), files_root=str(corpus))
    assert entries(tmp_path / "cache") == [] and cache.hits == 0


@pytest.mark.parametrize("damage", ["torn", "garbage", "empty"])
def test_a_damaged_entry_is_read_past(corpus: Path, tmp_path: Path, damage: str) -> None:
    cache = CassetteCache(str(tmp_path / "cache"))
    path = str(corpus / "one.cassette.yaml")
    cache.read(path, files_root=str(corpus))
    (entry,) = entries(tmp_path / "cache")
    data = entry.read_bytes()
    entry.write_bytes({"torn": data[: len(data) // 2], "garbage": b"\x80\x05not a pickle", "empty": b""}[damage])
    assert cache.read(path, files_root=str(corpus)) == read_cassette(path, files_root=str(corpus))
    assert cache.hits == 0


class _Planted:
    """An object whose unpickling would run a command: a planted entry must never run it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_entry_runs_nothing(corpus: Path, tmp_path: Path) -> None:
    cache = CassetteCache(str(tmp_path / "cache"))
    path = str(corpus / "one.cassette.yaml")
    cache.read(path, files_root=str(corpus))
    (entry,) = entries(tmp_path / "cache")
    marker = tmp_path / "ran"
    entry.write_bytes(pickle.dumps((1, "x", _Planted(str(marker)), [], [])))
    assert cache.read(path, files_root=str(corpus)) == read_cassette(path, files_root=str(corpus))
    assert not marker.exists() and cache.hits == 0


def test_a_folder_that_cannot_be_written_leaves_reading_as_it_was(corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    cache = CassetteCache(str(blocker))
    path = str(corpus / "one.cassette.yaml")
    first, second = read_twice(cache, path, str(corpus))
    assert first == second == read_cassette(path, files_root=str(corpus)) and cache.misses == 2


def test_a_corpus_run_reads_through_the_cache_with_the_same_outcomes(tmp_path: Path) -> None:
    """A process pool twice over a cache folder: the second run's outcomes are the first's, and
    equal those of a run without the cache."""
    corpus = tmp_path / "corpus"
    shutil.copytree(FIXTURES / "incidents", corpus)
    shutil.copytree(FIXTURES / "streams", tmp_path / "streams")
    files = sorted(str(p) for p in corpus.glob("*.cassette.yaml"))
    plain = Job("replay", (str(DEFAULT_POLICY),), files_root=str(tmp_path))
    cached = Job("replay", (str(DEFAULT_POLICY),), files_root=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    without = [o.record for o in run_corpus(plain, files, jobs=1)]
    cold = [o.record for o in run_corpus(cached, files, jobs=2)]
    warm = [o.record for o in run_corpus(cached, files, jobs=2)]
    assert len(entries(tmp_path / "cache")) == len(files)
    assert cold == warm == without
    assert all(r["verdict"] == "pass" for r in warm)


def test_the_cli_caches_unless_told_not_to(tmp_path: Path) -> None:
    """``--cache-dir`` fills the folder it names; ``--no-cache`` writes nothing; both print the
    same report."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "stream.sse").write_text(SSE)
    (corpus / "one.cassette.yaml").write_text(CASSETTE)
    env = dict(os.environ, LOOPSPEC_CACHE_DIR=str(tmp_path / "env-cache"))

    def replay(*extra: str) -> str:
        out = subprocess.run([sys.executable, "-m", "loopspec", "replay", str(corpus), "--machine", str(DEFAULT_POLICY),
                              "--jobs", "1", "--json", *extra], capture_output=True, text=True, env=env, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return out.stdout

    uncached = replay("--no-cache")
    assert not (tmp_path / "env-cache").exists()
    assert replay("--cache-dir", str(tmp_path / "named")) == uncached
    assert len(entries(tmp_path / "named")) == 1 and not (tmp_path / "env-cache").exists()
    assert replay() == replay() == uncached
    assert len(entries(tmp_path / "env-cache")) == 1


def test_a_stream_rewritten_in_place_is_read_afresh_without_the_cache(corpus: Path) -> None:
    """The in-process cache of side-file texts also tells a same-size rewrite whose modification
    time was set back: the second read sees the new text."""
    path = str(corpus / "one.cassette.yaml")
    stream = corpus / "stream.sse"
    before = stream.stat()
    first, _ = read_cassette(path, files_root=str(corpus))
    stream.write_text(SSE.replace("C2P2HtMJ", "ZZZZZZZZ"))
    os.utime(stream, ns=(before.st_atime_ns, before.st_mtime_ns))
    second, _ = read_cassette(path, files_root=str(corpus))
    assert first is not None and second is not None
    assert "ZZZZZZZZ" not in str(first.interactions[0]) and "ZZZZZZZZ" in str(second.interactions[0])


def test_a_fresh_checkout_of_the_same_files_hits(corpus: Path, tmp_path: Path) -> None:
    """CI restores the cache into a new checkout: same paths and bytes, new inodes and times. The
    entries are matched by hashes, so they still answer."""
    cache = CassetteCache(str(tmp_path / "cache"))
    path = str(corpus / "one.cassette.yaml")
    first = cache.read(path, files_root=str(corpus))
    shutil.rmtree(corpus)
    corpus.mkdir()
    (corpus / "stream.sse").write_text(SSE)
    (corpus / "one.cassette.yaml").write_text(CASSETTE)
    assert cache.read(path, files_root=str(corpus)) == first and cache.hits == 1


# --- plants of the 2026-12-02 analysis (tools/plant_mutants.py, mutmut's numbering) --------------


def test_the_folder_is_tagged_as_a_cache_by_the_standard_signature(corpus: Path, tmp_path: Path) -> None:
    """Plants _mark_cache_folder 22-31: CACHEDIR.TAG must sit in the cache folder (not the working
    directory) and start with the exact signature backup tools look for."""
    CassetteCache(str(tmp_path / "cache")).read(str(corpus / "one.cassette.yaml"), files_root=str(corpus))
    tag = (tmp_path / "cache" / "CACHEDIR.TAG").read_text()
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55\n")


def test_a_cassette_read_under_its_own_folder_is_cached(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Plants _entry_name 1, 8: with no files root given and none in the environment, the entry is
    named by the cassette's own folder."""
    monkeypatch.delenv("LOOPSPEC_FILES_ROOT", raising=False)
    cache = CassetteCache(str(tmp_path / "cache"))
    first, second = read_twice(cache, str(corpus / "one.cassette.yaml"))
    assert first == second and first[0] is not None and cache.hits == 1


def test_a_cassette_whose_name_is_not_utf8_is_cached(tmp_path: Path) -> None:
    """Plants _entry_name 17, 20, 21: a file name with bytes that are not UTF-8 (the file system
    allows it; Python names it with surrogates) still names an entry."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "stream.sse").write_text(SSE)
    name = os.fsdecode(b"caf\xe9.cassette.yaml")
    (folder / name).write_text(CASSETTE)
    cache = CassetteCache(str(tmp_path / "cache"))
    first, second = read_twice(cache, str(folder / name), str(folder))
    assert first[0] is not None and first == second and cache.hits == 1


def test_an_entry_holding_something_else_than_a_cassette_is_read_past(corpus: Path, tmp_path: Path) -> None:
    """Plant _load 11: an entry with the right hashes but another model object where the cassette
    belongs was served."""
    cache = CassetteCache(str(tmp_path / "cache"))
    path = str(corpus / "one.cassette.yaml")
    cache.read(path, files_root=str(corpus))
    (entry,) = entries(tmp_path / "cache")
    fmt, digest, cassette, diags, sides = pickle.loads(entry.read_bytes())
    entry.write_bytes(pickle.dumps((fmt, digest, cassette.tools or cassette.expect, diags, sides)))
    assert cache.read(path, files_root=str(corpus)) == read_cassette(path, files_root=str(corpus))
    assert cache.hits == 0


def test_the_unpickler_refuses_types_the_model_modules_only_import() -> None:
    """Plant find_class 9: a type imported into a model module (``typing.Any``, an error class) is
    not part of a cassette and is refused like any other global."""
    import io

    from loopspec.replay import cassette_cache

    for module, name in (("loopspec.replay.cassette_model", "Any"), ("loopspec.language.diagnostics", "DiagnosticError")):
        with pytest.raises(pickle.UnpicklingError):
            cassette_cache._ModelUnpickler(io.BytesIO(f"c{module}\n{name}\n.".encode())).load()
    assert cassette_cache._ModelUnpickler(io.BytesIO(b"cloopspec.replay.cassette_model\nCassette\n.")).load().__name__ == "Cassette"


@pytest.mark.parametrize("change", ["gone", "replaced"])
def test_a_side_file_that_changes_while_the_cassette_is_read_is_not_stored(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Plant _hashed 4: a side file gone, or another file, by the time its hash is taken must keep
    the cassette out of the cache (its entry would pair the text read with other bytes), and the
    read itself still succeeds."""
    from loopspec.replay import cassette_cache

    real = cassette_cache.side_file_digest
    monkeypatch.setattr(cassette_cache, "side_file_digest",
                        lambda p: None if change == "gone" else ((0, 0, 0, 0, 0), (real(p) or ((), ""))[1]))
    cache = CassetteCache(str(tmp_path / "cache"))
    c, _ = cache.read(str(corpus / "one.cassette.yaml"), files_root=str(corpus))
    assert c is not None and entries(tmp_path / "cache") == []


def test_a_cassette_that_cannot_be_pickled_is_read_and_not_stored(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the model ever hold a value pickle refuses, the read still answers and nothing is
    stored: the cache never turns a good cassette into a traceback."""
    from loopspec.replay import cassette_cache

    def refuse(*_a: object, **_k: object) -> bytes:
        raise pickle.PicklingError("cannot pickle")

    monkeypatch.setattr(cassette_cache.pickle, "dumps", refuse)
    cache = CassetteCache(str(tmp_path / "cache"))
    path = str(corpus / "one.cassette.yaml")
    assert cache.read(path, files_root=str(corpus)) == read_cassette(path, files_root=str(corpus))
    assert entries(tmp_path / "cache") == []

"""The evidence store: index by name@version, digest and storage URI; facts cached by content; fail closed."""

from __future__ import annotations

import hashlib
import os
import shutil
import time

import pytest
from conftest import EXAMPLES

from mlgate.gate import GateOptions, prepare
from mlgate.store import FactsCache, FileStore, ModelRef, StoreError, open_store
from mlgate.store.file import RACY_S


@pytest.fixture(scope="module")
def trust():
    return prepare(GateOptions(environment="production", timeout_s=0)).trust


def test_index_by_release_digest_and_uri(trust):
    store = FileStore(EXAMPLES)
    index = store.scan()
    assert len(index) == 4 and not index.errors
    entry = store.lookup(ModelRef("release", "readmission-risk@1.4.0", "t"))
    assert store.lookup(ModelRef("digest", f"sha256:{entry.model_digest}", "t")) == entry
    assert store.lookup(ModelRef("storage_uri", "s3://models.hospital.example/readmission-risk/1.4.0", "t")) == entry
    release, facts = store.load(ModelRef("release", "readmission-risk@1.4.0", "t"), trust)
    assert facts.model["digest"] == entry.model_digest and release.version == "1.4.0"
    assert store.ready() is None


def later_wall_clock(seconds: float = 60.0):
    """A wall clock ``seconds`` ahead: files written by the test count as settled, not racy."""
    return lambda: time.time_ns() + int(seconds * 1e9)


def test_facts_are_cached_until_a_file_changes(tmp_path, trust):
    shutil.copytree(EXAMPLES / "readmission-risk", tmp_path / "r")
    events = []
    store = FileStore(tmp_path, cache=FactsCache(on_result=events.append), wall_ns=later_wall_clock())
    ref = ModelRef("release", "readmission-risk@1.4.0", "t")
    first = store.load(ref, trust)
    assert store.load(ref, trust)[1] is first[1] and events == ["miss", "hit"]
    card = tmp_path / "r" / "evidence" / "model_card.md"
    card.write_text(card.read_text() + "\nchanged\n")
    assert store.load(ref, trust)[1] is not first[1] and events[-1] == "miss"


def test_same_size_rewrite_with_the_mtime_put_back_is_noticed(tmp_path, trust):
    """Issue 15 part 5: the fingerprint was (path, size, mtime, inode); rewriting a file in place
    with the same size and restoring its mtime with os.utime served the old facts. The ctime
    (set by the kernel on every write and utime, not settable from user space) is in the key."""
    shutil.copytree(EXAMPLES / "readmission-risk", tmp_path / "r")
    store = FileStore(tmp_path, wall_ns=later_wall_clock())
    ref = ModelRef("release", "readmission-risk@1.4.0", "t")
    first = store.load(ref, trust)[1]
    assert store.load(ref, trust)[1] is first  # cached
    card = tmp_path / "r" / "evidence" / "model_card.md"
    before = card.stat()
    data = card.read_bytes()
    changed = data.replace(b"Limitations", b"LIMITATIONS", 1)
    assert changed != data and len(changed) == len(data)
    with open(card, "r+b") as fh:  # same inode, same size
        fh.write(changed)
    os.utime(card, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = card.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    facts = store.load(ref, trust)[1]
    assert facts is not first
    assert facts.evidence_files["evidence/model_card.md"] == hashlib.sha256(changed).hexdigest()


def test_facts_of_files_changed_just_now_are_not_cached(tmp_path, trust):
    """A file written within the last RACY_S seconds could be rewritten within the same
    timestamp tick without any stat change: its facts are read afresh until it settles."""
    shutil.copytree(EXAMPLES / "readmission-risk", tmp_path / "r")
    events = []
    now = [time.time_ns()]
    store = FileStore(tmp_path, cache=FactsCache(on_result=events.append), wall_ns=lambda: now[0])
    ref = ModelRef("release", "readmission-risk@1.4.0", "t")
    store.load(ref, trust)
    store.load(ref, trust)
    assert events == ["miss", "miss"]
    now[0] += int((RACY_S + 1) * 1e9)
    store.load(ref, trust)
    store.load(ref, trust)
    assert events[2:] == ["miss", "hit"]


def test_cache_is_bounded_and_expires():
    now = [0.0]
    cache = FactsCache(max_entries=2, ttl_s=10, monotonic=lambda: now[0])
    for k in "abc":
        cache.put(k, k)
    assert len(cache) == 2 and cache.get("a") is None and cache.get("c") == "c"
    now[0] = 11
    assert cache.get("c") is None


def test_unknown_ambiguous_and_changed_references_fail_closed(tmp_path, trust):
    shutil.copytree(EXAMPLES / "readmission-risk", tmp_path / "a")
    shutil.copytree(EXAMPLES / "readmission-risk", tmp_path / "b")
    store = FileStore(tmp_path, rescan_after_s=0)
    with pytest.raises(StoreError, match="ambiguous"):
        store.lookup(ModelRef("release", "readmission-risk@1.4.0", "t"))
    with pytest.raises(StoreError, match="no release 'x@1'"):
        store.lookup(ModelRef("release", "x@1", "t"))
    shutil.rmtree(tmp_path / "b")
    store.scan()
    ref = ModelRef("digest", "sha256:" + store.lookup(ModelRef("release", "readmission-risk@1.4.0", "t")).model_digest, "t")
    model = next((tmp_path / "a" / "model").iterdir())
    model.write_bytes(model.read_bytes() + b"tampered")
    with pytest.raises(StoreError, match="now hashes to"):
        store.load(ref, trust)


def test_reference_syntax_and_urls():
    with pytest.raises(StoreError, match="NAME@VERSION"):
        ModelRef.parse_release("no-version", "f")
    with pytest.raises(StoreError, match="sha256"):
        ModelRef.parse_digest("md5:abc", "f")
    with pytest.raises(StoreError, match="unsupported evidence store scheme 'http'"):
        open_store("http://store.example")  # plain HTTP: evidence in the clear, no server identity
    with pytest.raises(StoreError, match="no credentials"):
        open_store("https://user:secret@store.example/x")
    assert open_store("https://store.example/releases/").url == "https://store.example/releases"
    assert open_store(f"file://{EXAMPLES}").root == EXAMPLES

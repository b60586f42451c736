"""The https:// evidence store against a real HTTPS server on 127.0.0.1 (http.server + generated certificates)."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import ssl
import threading
import time

import pytest
from cli_helpers import run
from conftest import EXAMPLES
from mlgate.gatekeeper.config import Settings
from test_gatekeeper_support import (
    RunningWebhook,
    admit,
    deployment,
    records,
    write_certs,
)

from mlgate.store import (
    INDEX_NAME,
    FileStore,
    ModelRef,
    StoreError,
    build_index,
    open_store,
)
from mlgate.signing.trust import load_trust_policy


class _Handler(http.server.SimpleHTTPRequestHandler):
    delay_s = 0.0

    def do_GET(self):
        if self.server.delay_s:
            time.sleep(self.server.delay_s)
        self.server.paths.append(self.path)
        return super().do_GET()

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that gave up mid-body (the deadline tests)


class StaticHttps:
    """http.server over TLS serving a directory, on 127.0.0.1."""

    def __init__(self, root, certs_dir):
        self.ca, cert, key, _ = write_certs(certs_dir)
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.delay_s, self.httpd.paths = 0.0, []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/store"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def published(tmp_path):
    """The bundled examples copied under /store, with index.json written by `mlgate webhook index`."""
    site = tmp_path / "site"
    shutil.copytree(EXAMPLES, site / "store", ignore=shutil.ignore_patterns("__pycache__", "*.py", "keys"))
    code, out, err = run(["webhook", "index", site / "store"])
    assert code == 0, err
    assert "4 releases" in out
    (tmp_path / "certs").mkdir()
    server = StaticHttps(site, tmp_path / "certs")
    yield server, site / "store"
    server.stop()


@pytest.fixture(scope="module")
def trust():
    return load_trust_policy(EXAMPLES / "trust.yaml")


def _store(server, tmp_path, **kw):
    return open_store(server.url, ca_file=server.ca, cache_dir=tmp_path / "cache", **kw)


def test_index_lists_every_release_with_file_digests(tmp_path):
    doc = build_index(EXAMPLES)
    keys = sorted(r["release"] for r in doc["releases"])
    assert keys == ["chest-xray@0.9.0", "readmission-risk@1.4.0", "triage-acuity@2.0.0", "triage-acuity@2.1.0"]
    rel = next(r for r in doc["releases"] if r["release"] == "readmission-risk@1.4.0")
    assert rel["path"] == "readmission-risk" and "mlgate.yaml" in rel["files"]
    assert all(len(m["sha256"]) == 64 and m["size"] >= 0 for m in rel["files"].values())


def test_resolves_like_the_file_store(published, tmp_path, trust):
    server, root = published
    store = _store(server, tmp_path)
    local = FileStore(root)
    for ref in (ModelRef.parse_release("readmission-risk@1.4.0", "a"), ModelRef.parse_release("triage-acuity@2.1.0", "a")):
        release, facts = store.load(ref, trust)
        local_release, local_facts = local.load(ref, trust)
        assert (release.name, release.version) == (local_release.name, local_release.version)
        assert facts.model == local_facts.model and facts.all_digests == local_facts.all_digests
    digest = "sha256:" + facts.model["digest"]
    assert store.load(ModelRef.parse_digest(digest, "d"), trust)[0].version == "2.1.0"
    assert store.ready() is None
    # Downloaded once, then served from the facts cache: no further file requests.
    before = len(server.httpd.paths)
    store.load(ModelRef.parse_release("readmission-risk@1.4.0", "a"), trust)
    assert len(server.httpd.paths) == before
    store.close()


def test_a_file_changed_on_the_server_is_refused(published, tmp_path, trust):
    server, root = published
    card = root / "readmission-risk" / "evidence" / "model_card.md"
    original = card.read_bytes()
    card.write_bytes(original[:-1] + (b"X" if original[-1:] != b"X" else b"Y"))  # same size, one byte changed
    store = _store(server, tmp_path)
    with pytest.raises(StoreError, match="expected sha256"):
        store.load(ModelRef.parse_release("readmission-risk@1.4.0", "a"), trust)
    card.write_bytes(original + b"more")  # longer than the index says
    with pytest.raises(StoreError, match="larger than expected"):
        store.load(ModelRef.parse_release("readmission-risk@1.4.0", "a"), trust)
    assert not (tmp_path / "cache" / "releases").exists() or not list((tmp_path / "cache" / "releases").iterdir())
    # An index whose model digest lies is caught by re-hashing: the digest lookup finds the entry, the model does not match.
    doc = json.loads((root / INDEX_NAME).read_text())
    doc["releases"] = [r for r in doc["releases"] if r["release"] == "chest-xray@0.9.0"]
    doc["releases"][0]["model_digest"] = "ab" * 32
    (root / INDEX_NAME).write_text(json.dumps(doc))
    store = _store(server, tmp_path)
    with pytest.raises(StoreError, match="now hashes to"):
        store.load(ModelRef.parse_digest("sha256:" + "ab" * 32, "d"), trust)


def test_a_tampered_on_disk_cache_is_verified_and_fetched_again(published, tmp_path, trust):
    """Issue 15 part 5: a release already in the local cache directory was served as it lay on
    disk. A new store (a restarted webhook) re-verifies it against the index before use: a
    changed, added or removed file makes it fetch the release again; what it judges is the
    server's release, never the tampered copy."""
    server, root = published
    ref = ModelRef.parse_release("readmission-risk@1.4.0", "a")
    _release, good = _store(server, tmp_path).load(ref, trust)
    (cached,) = (tmp_path / "cache" / "releases").iterdir()
    card = cached / "evidence" / "model_card.md"
    original = card.read_bytes()
    tampered = original.replace(b"Limitations", b"LIMITATIONS", 1)
    assert tampered != original and len(tampered) == len(original)

    def reload():
        store = _store(server, tmp_path)  # a fresh facts cache: what a restart starts with
        before = len(server.httpd.paths)
        facts = store.load(ref, trust)[1]
        return store, facts, server.httpd.paths[before:]

    # Untouched: verified and used, nothing downloaded but the index.
    store, facts, fetched = reload()
    assert fetched == ["/store/" + INDEX_NAME] and facts.all_digests == good.all_digests
    for change in ("rewrite", "extra", "missing"):
        if change == "rewrite":
            card.chmod(0o644)
            card.write_bytes(tampered)
        elif change == "extra":
            (cached / "evidence" / "approvals" / "forged.sigstore.json").write_bytes(b"{}")
        else:
            (cached / "model.sig").unlink()
        store, facts, fetched = reload()
        assert facts.all_digests == good.all_digests, change
        assert len(fetched) > 1 and any(p.endswith("model_card.md") for p in fetched), (change, fetched)
        assert len(store.cache_problems) == 1, change
        assert card.read_bytes() == original
    assert "model.sig is missing" in store.cache_problems[0]


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "a/../../b", "a\\b"])
def test_unsafe_paths_in_the_index_are_refused(published, tmp_path, trust, path):
    server, root = published
    doc = json.loads((root / INDEX_NAME).read_text())
    doc["releases"][0]["files"][path] = {"sha256": "0" * 64, "size": 1}
    (root / INDEX_NAME).write_text(json.dumps(doc))
    with pytest.raises(StoreError, match="unsafe"):
        _store(server, tmp_path).scan()


def test_down_slow_and_untrusted_stores_deny_naming_the_store(published, tmp_path, trust):
    server, _ = published
    ref = ModelRef.parse_release("readmission-risk@1.4.0", "a")
    # Wrong CA: TLS verification fails.
    other = tmp_path / "other"
    other.mkdir()
    other_ca = write_certs(other)[0]
    with pytest.raises(StoreError, match="unreachable") as exc:
        open_store(server.url, ca_file=other_ca, cache_dir=tmp_path / "c2").load(ref, trust)
    assert server.url in str(exc.value)
    # Slow: bounded by the request's deadline, not the server.
    server.httpd.delay_s = 2.0
    store = _store(server, tmp_path)
    started = time.monotonic()
    with pytest.raises(StoreError, match="deadline") as exc:
        store.load(ref, trust, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.0 and server.url in str(exc.value)
    server.httpd.delay_s = 0.0
    # Down: a warm store re-reads its index after index_ttl_s and fails closed.
    store = _store(server, tmp_path, index_ttl_s=0)
    store.load(ref, trust)
    server.stop()
    with pytest.raises(StoreError, match="unreachable") as exc:
        store.load(ref, trust, deadline=time.monotonic() + 2)
    assert server.url in str(exc.value) and store.ready()


def test_bounded_cache_evicts_least_recently_used(published, tmp_path, trust):
    server, root = published
    sizes = {r["release"]: sum(f["size"] for f in r["files"].values()) for r in build_index(root)["releases"]}
    store = _store(server, tmp_path, cache_max_bytes=max(sizes.values()) + 1)
    for key in ("readmission-risk@1.4.0", "chest-xray@0.9.0", "triage-acuity@2.0.0"):
        store.load(ModelRef.parse_release(key, "a"), trust)
    kept = list((tmp_path / "cache" / "releases").iterdir())
    assert 1 <= len(kept) < 3
    assert sum(p.stat().st_size for d in kept for p in d.rglob("*") if p.is_file()) <= store.cache_max_bytes


def test_webhook_over_an_https_store(published, tmp_path):
    server, _ = published
    (tmp_path / "hook").mkdir()
    settings = Settings(evidence_store=server.url, audit=str(tmp_path / "audit.jsonl"), evidence_store_ca=server.ca,
                        evidence_cache_dir=tmp_path / "cache")
    hook = RunningWebhook(tmp_path / "hook", settings)
    try:
        with hook.client() as client:
            r = admit(client, deployment("readmission-risk@1.4.0"))
            # Judged (allow or deny, whatever the policy says today), not an error: the release resolved.
            annotations = r.json()["response"]["auditAnnotations"]
            assert r.status_code == 200 and annotations["result"] in ("allow", "deny"), r.text
            assert annotations["releases"] == "readmission-risk@1.4.0"
            assert client.get("/readyz").status_code == 200
            hook.gatekeeper.store.index_ttl_s = 0
            server.stop()
            started = time.monotonic()
            r = admit(client, deployment("readmission-risk@1.4.0"), timeout="2s")
            resp = r.json()["response"]
            assert r.status_code == 200 and resp["allowed"] is False and resp["status"]["code"] == 403
            assert server.url in resp["status"]["message"] and time.monotonic() - started < 2
            assert client.get("/readyz").status_code == 503
        assert [rec["result"] for rec in records(tmp_path / "audit.jsonl")] == [annotations["result"], "error"]
    finally:
        hook.stop()

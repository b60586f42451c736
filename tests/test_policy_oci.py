"""Policies as OCI artifacts (issue 21 part 1): `mlgate policy push|pull` and `check --policy oci://`
against a real registry (the CNCF Distribution registry, Debian's docker-registry) on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
import urllib.request

import pytest
import registry_local
from cli_helpers import check_json, run
from conftest import EXAMPLES, require_service

from mlgate.errors import PolicyError
from mlgate.policy import bundled_policy_dir, oci
from mlgate.signing.keys import generate_keypair

RELEASE = EXAMPLES / "readmission-risk"


@pytest.fixture
def registry(tmp_path):
    if not registry_local.available():
        require_service("docker-registry", "apt-get install docker-registry (the CNCF Distribution registry)")
    reg = registry_local.start(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    path = tmp_path / "oci-cache"
    monkeypatch.setenv("MLGATE_OCI_CACHE", str(path))
    monkeypatch.setattr(oci, "_RESOLVED", {})  # each test is a fresh run: tags resolved anew
    return path


@pytest.fixture
def keys(tmp_path):
    out = {}
    for name in ("team", "other"):
        private, public = generate_keypair("ecdsa-p256")
        (tmp_path / f"{name}.key").write_bytes(private)
        (tmp_path / f"{name}.pub").write_bytes(public)
        out[name] = (tmp_path / f"{name}.key", tmp_path / f"{name}.pub")
    return out


def push(source, ref, *extra):
    code, stdout, stderr = run(["policy", "push", source, ref, *extra])
    assert code == 0, stderr
    digest = stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71
    return digest


def manifest(registry, repo, target):
    req = urllib.request.Request(f"http://{registry.host}/v2/{repo}/manifests/{target}",
                                 headers={"Accept": oci.MANIFEST_MEDIA_TYPE})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read()


def records(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_push_pull_round_trip(tmp_path, registry, keys):
    private, public = keys["team"]
    ref = f"oci://{registry.host}/mlgate/policy:v1"
    digest = push(bundled_policy_dir(), ref, "--signing-key", private)
    raw = manifest(registry, "mlgate/policy", "v1")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    doc = json.loads(raw)  # what OPA's OCI downloader reads
    assert doc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert [la["mediaType"] for la in doc["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]

    out = tmp_path / "pulled.tar.gz"
    for target in (ref, f"oci://{registry.host}/mlgate/policy@{digest}"):
        code, stdout, stderr = run(["policy", "pull", target, "-o", out, "--bundle-key", public])
        assert code == 0, stderr
        assert "signature OK" in stdout and digest in stdout
        assert "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest() == doc["layers"][0]["digest"]
    code, stdout, _ = run(["policy", "bundle", "--verify", out, "--key", public])
    assert code == 0 and "signature OK" in stdout

    # A signed bundle without a key is refused, as for local bundles; the wrong key fails verification.
    out.unlink()
    code, _, stderr = run(["policy", "pull", ref, "-o", out])
    assert code == 1 and "bundle is signed" in stderr and not out.exists()
    code, _, stderr = run(["policy", "pull", ref, "-o", out, "--bundle-key", keys["other"][1]])
    assert code == 1 and "verification FAILED" in stderr and not out.exists()
    # A digest the registry does not hold is an error, not a fallback to the tag.
    code, _, stderr = run(["policy", "pull", f"oci://{registry.host}/mlgate/policy@sha256:{'0' * 64}", "-o", out])
    assert code == 2 and "HTTP 404" in stderr


def test_push_a_prebuilt_bundle(tmp_path, registry):
    bundle = tmp_path / "b.tar.gz"
    assert run(["policy", "bundle", "-o", bundle])[0] == 0
    digest = push(bundle, f"oci://{registry.host}/mlgate/prebuilt:1")
    out = tmp_path / "out.tar.gz"
    code, _, stderr = run(["policy", "pull", f"oci://{registry.host}/mlgate/prebuilt@{digest}", "-o", out])
    assert code == 0, stderr
    assert out.read_bytes() == bundle.read_bytes()


def test_tampered_blob_and_foreign_signature_refused(tmp_path, registry, keys):
    private, public = keys["team"]
    digest = push(bundled_policy_dir(), f"oci://{registry.host}/mlgate/policy:v1", "--signing-key", private)
    layer = json.loads(manifest(registry, "mlgate/policy", digest))["layers"][0]["digest"]
    blob = registry.blob_path(layer)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    out = tmp_path / "out.tar.gz"
    code, _, stderr = run(["policy", "pull", f"oci://{registry.host}/mlgate/policy@{digest}", "-o", out, "--bundle-key", public])
    assert code == 2 and "bundle layer digest mismatch" in stderr and not out.exists()
    log = tmp_path / "a.jsonl"
    code, decision, _ = check_json(RELEASE, "production", log, "--policy", f"oci://{registry.host}/mlgate/policy@{digest}", "--bundle-key", public)
    assert code == 2 and decision["allowed"] is False and "digest mismatch" in decision["error"]
    assert [r["result"] for r in records(log)] == ["error"]

    # A bundle signed by another key, pushed over the tag: pulled, but refused by the team's key.
    digest2 = push(bundled_policy_dir(), f"oci://{registry.host}/mlgate/policy:v1", "--signing-key", keys["other"][0])
    code, _, stderr = run(["policy", "pull", f"oci://{registry.host}/mlgate/policy:v1", "-o", out, "--bundle-key", public])
    assert code == 1 and "verification FAILED" in stderr and not out.exists()
    code, decision, _ = check_json(RELEASE, "production", log, "--policy", f"oci://{registry.host}/mlgate/policy@{digest2}", "--bundle-key", public)
    assert code == 2 and decision["allowed"] is False and "signed by key id" in decision["error"]


def test_check_from_registry_decides_like_the_local_policy(tmp_path, registry, keys):
    private, public = keys["team"]
    bundle = tmp_path / "b.tar.gz"
    assert run(["policy", "bundle", "-o", bundle, "--signing-key", private])[0] == 0
    digest = push(bundle, f"oci://{registry.host}/mlgate/policy:v1")
    ref = f"oci://{registry.host}/mlgate/policy@{digest}"
    for example, env in (("readmission-risk", "production"), ("chest-xray", "production")):
        local_log, oci_log = tmp_path / f"{example}-local.jsonl", tmp_path / f"{example}-oci.jsonl"
        code_l, local, _ = check_json(EXAMPLES / example, env, local_log, "--policy", bundle, "--bundle-key", public)
        code_o, remote, _ = check_json(EXAMPLES / example, env, oci_log, "--policy", ref, "--bundle-key", public)
        assert code_o == code_l
        for key in ("allowed", "violations", "warnings", "policy_revision"):
            assert remote[key] == local[key], key
        (rec,) = records(oci_log)
        assert rec["revision_inputs"]["policy"]["revision"] == records(local_log)[0]["revision_inputs"]["policy"]["revision"]
        assert rec["revision_inputs"]["policy"]["oci"] == {"reference": ref, "digest": digest}
        assert rec["revision_inputs"]["policy"]["path"] == ref
    assert code_l == 1  # the chest-xray example is denied in production: a deny travels too


def test_registry_down_fails_closed_but_a_cached_digest_works(tmp_path, registry, keys, cache):
    digest = push(bundled_policy_dir(), f"oci://{registry.host}/mlgate/policy:v1")
    by_digest, by_tag = f"oci://{registry.host}/mlgate/policy@{digest}", f"oci://{registry.host}/mlgate/policy:v1"
    log = tmp_path / "a.jsonl"
    code, first, _ = check_json(RELEASE, "production", log, "--policy", by_digest)
    assert code == 0, first["error"]
    registry.stop()
    code, decision, stderr = check_json(RELEASE, "production", log, "--policy", by_tag)
    assert code == 2 and decision["allowed"] is False and "unreachable" in decision["error"]
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    code, other, _ = check_json(RELEASE, "production", log, "--policy", f"oci://{registry.host}/mlgate/policy@sha256:{'1' * 64}")
    assert code == 2 and "unreachable" in other["error"]
    code, cached, _ = check_json(RELEASE, "production", log, "--policy", by_digest)
    assert code == 0 and cached["policy_revision"] == first["policy_revision"]
    assert [r["result"] for r in records(log)] == ["allow", "error", "error", "allow"]
    # A cache entry that no longer matches its digest is not used.
    entry = cache / "sha256" / digest.split(":")[1] / "bundle.tar.gz"
    entry.write_bytes(entry.read_bytes() + b"\0")
    code, decision, _ = check_json(RELEASE, "production", log, "--policy", by_digest)
    assert code == 2 and "unreachable" in decision["error"]


def test_tag_moved_gives_a_new_digest(tmp_path, registry):
    ref = f"oci://{registry.host}/mlgate/policy:stable"
    first = push(bundled_policy_dir(), ref)
    log = tmp_path / "a.jsonl"
    assert check_json(RELEASE, "production", log, "--policy", ref)[0] == 0
    changed = tmp_path / "policy"
    shutil.copytree(bundled_policy_dir(), changed, ignore=shutil.ignore_patterns("__pycache__"))
    rule = next((changed / "mlgate" / "rules").glob("*.rego"))
    rule.write_text(rule.read_text() + "\n# reviewed again\n")
    second = push(changed, ref)
    assert second != first
    # Within one run (one process) the tag stays resolved to the digest it first gave.
    assert check_json(RELEASE, "production", log, "--policy", ref)[0] == 0
    oci._RESOLVED.clear()  # the next run resolves the tag again
    code, decision, _ = check_json(RELEASE, "production", log, "--policy", ref)
    assert code == 0, decision["error"]
    recs = [r["revision_inputs"]["policy"] for r in records(log)]
    assert [r["oci"] for r in recs] == [{"reference": ref, "digest": d} for d in (first, first, second)]
    assert all(r["path"] == ref for r in recs) and recs[0]["revision"] != recs[2]["revision"]


class _Garbage(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = b"<html>not a registry</html>" if "manifests" in self.path else b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_registry_answering_garbage_fails_closed(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        log = tmp_path / "a.jsonl"
        code, decision, stderr = check_json(RELEASE, "production", log, "--policy", f"oci://{host}/mlgate/policy:v1")
        assert code == 2 and decision["allowed"] is False and "not JSON" in decision["error"]
        assert [r["result"] for r in records(log)] == ["error"]
        code, _, stderr = run(["policy", "pull", f"oci://{host}/mlgate/policy@sha256:{'2' * 64}", "-o", tmp_path / "x.tar.gz"])
        assert code == 2 and "manifest digest mismatch" in stderr
    finally:
        server.shutdown()


@pytest.mark.parametrize("text", ["oci://", "oci://host", "oci://host/Repo:v1", "oci://host/repo", "oci://host/repo@sha256:abc",
                                  "oci://host/repo:bad tag", "oci://ho_st/repo:v1"])
def test_bad_references_are_one_line_errors(text):
    with pytest.raises(PolicyError):
        oci.parse_ref(text)


def test_references_parse():
    d = "sha256:" + "a" * 64
    assert oci.parse_ref(f"oci://localhost:5000/org/policy:v1@{d}") == oci.OciRef("localhost:5000", "org/policy", "v1", d)
    assert str(oci.parse_ref("oci:/reg.example/p:1")) == "oci://reg.example/p:1"  # as a Path prints it


def test_an_artifact_without_one_bundle_layer_is_refused(tmp_path, registry):
    """A manifest whose layers OPA would not read as a bundle (wrong media type, two bundles) is refused."""
    digest = push(bundled_policy_dir(), f"oci://{registry.host}/mlgate/policy:v1")
    doc = json.loads(manifest(registry, "mlgate/policy", digest))
    variants = {"plain-tar": [{**doc["layers"][0], "mediaType": "application/vnd.oci.image.layer.v1.tar"}],
                "two-bundles": [doc["layers"][0], doc["layers"][0]]}
    for tag, layers in variants.items():
        body = json.dumps({**doc, "layers": layers}).encode()
        req = urllib.request.Request(f"http://{registry.host}/v2/mlgate/policy/manifests/{tag}", data=body, method="PUT",
                                     headers={"Content-Type": oci.MANIFEST_MEDIA_TYPE})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 201
        code, _, stderr = run(["policy", "pull", f"oci://{registry.host}/mlgate/policy:{tag}", "-o", tmp_path / "x.tar.gz"])
        assert code == 2 and "exactly one application/vnd.oci.image.layer.v1.tar+gzip layer" in stderr, stderr


def test_a_local_policy_does_not_import_the_oci_client():
    """`mlgate check` start-up stays as it was: oras is imported only for oci:// policies."""
    import subprocess
    import sys

    code = "import sys; from mlgate.policy import load_policy; load_policy(); assert 'oras' not in sys.modules, 'oras imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)

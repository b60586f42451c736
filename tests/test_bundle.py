"""OPA bundles: build, sign and verify per OPA's bundle format and signing docs; load safely."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile

import jwt
import pytest
from cli_helpers import check_json, run
from conftest import EXAMPLES

from mlgate.policy import bundle as B
from mlgate.errors import PolicyError, SignatureError
from mlgate.signing.keys import generate_keypair, key_id, load_public_key
from mlgate.policy import bundled_policy_dir, load_policy


@pytest.fixture
def keys(tmp_path):
    out = {}
    for kind in ("ecdsa-p256", "ed25519"):
        private, public = generate_keypair(kind)
        (tmp_path / f"{kind}.key").write_bytes(private)
        (tmp_path / f"{kind}.pub").write_bytes(public)
        out[kind] = (tmp_path / f"{kind}.key", tmp_path / f"{kind}.pub")
    return out


def members(path):
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def write_tar(path, files, *, links=()):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    path.write_bytes(gzip.compress(raw.getvalue()))
    return path


def test_structured_hash_follows_opa():
    """OPA hashes data.json/.manifest as the parsed document re-encoded: sorted keys, no spaces,
    numbers as written, no HTML escaping (bundle/hash.go); other files as raw bytes."""
    doc = b'{ "b": 1,\n  "a": [1.50, "x<y&z", "\xc3\xa9\\n"] }'
    assert B.file_hash("x/data.json", doc) == hashlib.sha256('{"a":[1.50,"x<y&z","\u00e9\\n"],"b":1}'.encode()).hexdigest()
    assert B.file_hash("x/data.json", doc) == B.file_hash("x/data.json", b'{"a":[1.50,"x<y&z","\\u00e9\\n"],"b":1}')
    assert B.file_hash("x/p.rego", b"package x\n") == hashlib.sha256(b"package x\n").hexdigest()
    assert B.file_hash("x/notdata.json", b'{ "a": 1 }') == hashlib.sha256(b'{ "a": 1 }').hexdigest()


@pytest.mark.parametrize("kind,alg", [("ecdsa-p256", "ES256"), ("ed25519", "EdDSA")])
def test_build_sign_verify(tmp_path, keys, kind, alg):
    private, public = keys[kind]
    out = tmp_path / "b.tar.gz"
    info = B.build_bundle(None, out, signing_key=private)
    policy = load_policy(bundled_policy_dir())
    assert info.revision == policy.revision and info.roots == ("mlgate",)
    files = members(out)
    manifest = json.loads(files[".manifest"])
    assert manifest == {"revision": policy.revision, "roots": ["mlgate"]}
    assert set(files) - {".manifest", ".signatures.json"} == set(policy.files) | {"mlgate/findings.generated.rego"}  # the composition, for a plain OPA
    (token,) = json.loads(files[".signatures.json"])["signatures"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg and header["kid"] == key_id(load_public_key(public))
    payload = jwt.decode(token, load_public_key(public), algorithms=[alg])
    listed = {f["name"]: f for f in payload["files"]}
    assert set(listed) == set(files) - {".signatures.json"}
    assert all(f["algorithm"] == "SHA-256" and f["hash"] == B.file_hash(n, files[n]) for n, f in listed.items())
    assert B.verify_bundle(out, public).revision == policy.revision
    other = keys["ed25519" if kind == "ecdsa-p256" else "ecdsa-p256"][1]
    with pytest.raises(SignatureError):
        B.verify_bundle(out, other)


def test_build_is_reproducible(tmp_path, keys):
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    B.build_bundle(None, a)
    B.build_bundle(None, b)
    assert a.read_bytes() == b.read_bytes()


def _resigned_with(tmp_path, source, change):
    files = members(source)
    change(files)
    return write_tar(tmp_path / "t.tar.gz", files)


@pytest.mark.parametrize("change,match", [
    (lambda f: f.__setitem__("mlgate/decision.rego", f["mlgate/decision.rego"].replace(b"allow", b"allOw", 1)), "mlgate/decision.rego: digest mismatch"),
    (lambda f: f.__setitem__("mlgate/environments/production/data.json", f["mlgate/environments/production/data.json"].replace(b"0.", b"0.9", 1)), "data.json: digest mismatch"),
    (lambda f: f.__setitem__("mlgate/extra.rego", b"package mlgate.extra\n"), "present but not signed: mlgate/extra.rego"),
    (lambda f: f.pop("mlgate/lib/lib.rego"), "signed but absent: mlgate/lib/lib.rego"),
    (lambda f: f.__setitem__(".manifest", b'{"revision": "x", "roots": ["mlgate"]}'), ".manifest: digest mismatch"),
])
def test_tampering_is_detected(tmp_path, keys, change, match):
    private, public = keys["ecdsa-p256"]
    signed = tmp_path / "s.tar.gz"
    B.build_bundle(None, signed, signing_key=private)
    with pytest.raises(SignatureError, match=match):
        B.verify_bundle(_resigned_with(tmp_path, signed, change), public)


def test_reformatted_data_still_verifies(tmp_path, keys):
    """Structured files are hashed by content, as OPA does: whitespace and key order do not matter."""
    private, public = keys["ecdsa-p256"]
    signed = tmp_path / "s.tar.gz"
    B.build_bundle(None, signed, signing_key=private)
    name = "mlgate/environments/production/data.json"
    t = _resigned_with(tmp_path, signed, lambda f: f.__setitem__(name, json.dumps(json.loads(f[name]), indent=7).encode()))
    B.verify_bundle(t, public)


def test_forged_tokens_are_refused(tmp_path, keys):
    private, public = keys["ecdsa-p256"]
    signed = tmp_path / "s.tar.gz"
    B.build_bundle(None, signed, signing_key=private)
    files = members(signed)
    (token,) = json.loads(files[".signatures.json"])["signatures"]
    head, body, _ = token.split(".")
    none_head = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": jwt.get_unverified_header(token)["kid"]}).encode()).rstrip(b"=").decode()
    for forged, match in ((f"{none_head}.{body}.", "alg 'none'"), (f"{head}.{body}.AAAA", "does not verify|rejected"),
                          ("not-a-jwt", "malformed JWT")):
        t = _resigned_with(tmp_path, signed, lambda f: f.__setitem__(".signatures.json", json.dumps({"signatures": [forged]}).encode()))
        with pytest.raises(SignatureError, match=match):
            B.verify_bundle(t, public)
    t = _resigned_with(tmp_path, signed, lambda f: f.__setitem__(".signatures.json", json.dumps({"signatures": [token, token]}).encode()))
    with pytest.raises(SignatureError, match="exactly one JWT"):
        B.verify_bundle(t, public)


def test_unsigned_bundle_with_a_key_fails(tmp_path, keys):
    out = tmp_path / "u.tar.gz"
    B.build_bundle(None, out)
    with pytest.raises(SignatureError, match="not signed"):
        B.verify_bundle(out, keys["ecdsa-p256"][1])


# --- hostile archives -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil.rego", "a/../../evil.rego", "a//b.rego", "./../x", "a\\..\\b.rego"])
def test_path_traversal_is_refused(tmp_path, name):
    t = write_tar(tmp_path / "t.tar.gz", {".manifest": b'{"revision": "r"}', name: b"package x\n"})
    with pytest.raises(PolicyError, match="not a plain relative path"):
        B.read_bundle(t)


def test_links_duplicates_and_caps(tmp_path, monkeypatch):
    t = write_tar(tmp_path / "t.tar.gz", {".manifest": b'{"revision": "r"}'}, links=[("mlgate/x.rego", "/etc/passwd")])
    with pytest.raises(PolicyError, match="not a regular file"):
        B.read_bundle(t)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for data in (b"a", b"b"):
            info = tarfile.TarInfo("x.rego")
            info.size = 1
            tar.addfile(info, io.BytesIO(data))
    dup = tmp_path / "d.tar.gz"
    dup.write_bytes(gzip.compress(raw.getvalue()))
    with pytest.raises(PolicyError, match="appears twice"):
        B.read_bundle(dup)
    monkeypatch.setattr(B, "MAX_FILE_BYTES", 100)
    big = write_tar(tmp_path / "big.tar.gz", {".manifest": b'{"revision": "r"}', "x.rego": b"#" * 101})
    with pytest.raises(PolicyError, match="over the 100 byte limit"):
        B.read_bundle(big)
    monkeypatch.setattr(B, "MAX_FILE_BYTES", 1 << 20)
    monkeypatch.setattr(B, "MAX_TOTAL_BYTES", 1000)
    many = write_tar(tmp_path / "many.tar.gz", {f"{i}.rego": b"#" * 300 for i in range(5)})
    with pytest.raises(PolicyError, match="unpacks to more than"):
        B.read_bundle(many)
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b not gzip at all")
    with pytest.raises(PolicyError, match="not a readable .tar.gz bundle"):
        B.read_bundle(tmp_path / "junk.tar.gz")


def test_manifest_revision_must_match_the_files(tmp_path):
    out = tmp_path / "u.tar.gz"
    B.build_bundle(None, out)
    files = members(out)
    files["mlgate/decision.rego"] += b"\n# changed\n"
    with pytest.raises(PolicyError, match="does not match the bundle's files"):
        load_policy(write_tar(tmp_path / "t.tar.gz", files))


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_bundle_verify_and_check(tmp_path, keys):
    private, public = keys["ecdsa-p256"]
    out = tmp_path / "bundle.tar.gz"
    code, stdout, _ = run(["policy", "bundle", "-o", out, "--signing-key", private])
    assert code == 0 and "signed" in stdout
    code, stdout, _ = run(["policy", "bundle", "--verify", out, "--key", public])
    assert code == 0 and "signature OK" in stdout
    code, _, stderr = run(["policy", "bundle", "--verify", out, "--key", keys["ed25519"][1]])
    assert code == 1 and "verification FAILED" in stderr
    log = tmp_path / "a.jsonl"
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", log, "--policy", out, "--bundle-key", public)
    assert code == 0, decision["error"]
    # The bundle's own revision is what it carries; the recorded revision digests it with the trust policy, settings, engine.
    record = json.loads(log.read_text().splitlines()[0])
    assert record["revision_inputs"]["policy"]["revision"] == load_policy(bundled_policy_dir()).bundle_revision
    assert decision["policy_revision"] == record["policy_revision"] != load_policy(bundled_policy_dir()).bundle_revision
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", log, "--policy", out)
    assert code == 2 and "bundle is signed" in decision["error"]
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", log, "--policy", out, "--bundle-key", keys["ed25519"][1])
    assert code == 2 and decision["allowed"] is False
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["result"] for r in records] == ["allow", "error", "error"]

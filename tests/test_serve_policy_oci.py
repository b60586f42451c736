"""The webhook evaluates a policy pulled from an OCI registry (issue 21 part 1): `mlgate serve --policy
oci://...` against a real registry (the CNCF Distribution registry, Debian's docker-registry) on
127.0.0.1, the webhook over real TLS. A tag that moves is picked up (every gate thread switches, the
change is recorded, later decisions carry the new revision); a registry that is down or a bundle
signed by another key keeps the last verified bundle (/readyz and /metrics say so); a policy that
cannot be pulled at start-up leaves the webhook not ready, denying every review (recorded)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
import registry_local
import yaml
from cli_helpers import run
from conftest import EXAMPLES, require_service
from prometheus_client.parser import text_string_to_metric_families
from test_gatekeeper_support import RunningWebhook, admit, deployment, records, write_certs

from mlgate.errors import InputError
from mlgate.gatekeeper.config import EnvironmentSettings, Settings, load_config, settings_from_dict
from mlgate.policy import bundled_policy_dir, oci
from mlgate.signing.keys import generate_keypair

TRUST = EXAMPLES / "trust.yaml"
RELEASE = "readmission-risk@1.4.0"  # allowed in production by the bundled library; a stricter bias delta denies it


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
    monkeypatch.setattr(oci, "_RESOLVED", {})
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


@pytest.fixture
def strict(tmp_path):
    """The bundled library with production's bias delta at 0.001: readmission-risk is then denied there."""
    policy = tmp_path / "strict-policy"
    shutil.copytree(bundled_policy_dir(), policy, ignore=shutil.ignore_patterns("__pycache__"))
    data = policy / "mlgate" / "environments" / "production" / "data.json"
    doc = json.loads(data.read_text())
    doc["bias"]["delta"] = 0.001  # the file is data.mlgate.environments.production
    data.write_text(json.dumps(doc, indent=1))
    return policy


def push(source, ref, signing_key) -> str:
    code, stdout, stderr = run(["policy", "push", source, ref, "--signing-key", signing_key])
    assert code == 0, stderr
    return stdout.strip()


def serve(tmp_path, ref, public, **settings):
    audit = tmp_path / "audit.jsonl"
    s = Settings(evidence_store=f"file://{EXAMPLES}", audit=str(audit), trust_policy=TRUST, policy_dir=ref, bundle_key=public,
                 **{"policy_refresh_s": 3600.0, "gate_threads": 2, **settings})
    (tmp_path / "hook").mkdir()
    return RunningWebhook(tmp_path / "hook", s)


def refresh(hook) -> bool:
    """What the refresh task does every interval, now, on the server's event loop."""
    return asyncio.run_coroutine_threadsafe(hook.app.refresh_policy(), hook.app.loop).result(120)


def judged(client, hook):
    """(allowed, the decision's audit record) for the readmission-risk release in production."""
    r = admit(client, deployment(RELEASE))
    assert r.status_code == 200, r.text
    resp = r.json()["response"]
    (rec,) = [x for x in records(hook.tmp.parent / "audit.jsonl") if x.get("decision_id") == resp["auditAnnotations"]["decision-id"]]
    return resp["allowed"], rec


def metrics(client) -> dict:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples, name, **labels):
    matching = [v for lab, v in samples.get(name, []) if all(lab.get(k) == w for k, w in labels.items())]
    assert len(matching) == 1, (name, labels, samples.get(name))
    return matching[0]


# ------------------------------------------------------------------ a tag that moves
def test_a_moved_tag_switches_every_gate_thread_and_is_recorded(tmp_path, registry, keys, strict):
    private, public = keys["team"]
    ref = f"oci://{registry.host}/compliance/mlgate:stable"
    d1 = push(bundled_policy_dir(), ref, private)
    hook = serve(tmp_path, ref, public)
    try:
        with hook.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["policy"] | {"lastSuccess": None} == {"source": ref, "state": "current", "digest": d1, "revision": hook.gatekeeper.prepared.revision,
                                                                       "refreshSeconds": 3600.0, "lastSuccess": None}
            allowed, first = judged(client, hook)
            assert allowed is True and first["result"] == "allow"
            r1 = first["policy_revision"]
            assert first["revision_inputs"]["policy"]["oci"] == {"reference": f"{ref}@{d1}", "digest": d1}
            m = metrics(client)
            assert value(m, "mlgate_policy_info", digest=d1, revision=r1) == 1 and value(m, "mlgate_policy_stale") == 0

            assert refresh(hook) is False  # the tag has not moved: nothing to do, nothing recorded
            d2 = push(strict, ref, private)
            assert d2 != d1
            assert refresh(hook) is True

            allowed, second = judged(client, hook)
            assert allowed is False and second["result"] == "deny"
            assert any(v["id"].startswith("MLG-BIAS-") for v in second["violations"])
            r2 = second["policy_revision"]
            assert r2 != r1 and second["revision_inputs"]["policy"]["oci"] == {"reference": f"{ref}@{d2}", "digest": d2}
            assert {gk.prepared.revision for gk in hook.app.gatekeepers} == {r2} and len(hook.app.gatekeepers) == 2

            trail = records(tmp_path / "audit.jsonl")
            (change,) = [x for x in trail if x.get("kind") == "policy-change"]
            assert change["action"] == "policy-change" and change["policy_source"] == ref
            assert change["old"] == {"reference": f"{ref}@{d1}", "digest": d1, "policy_revision": r1}
            assert change["new"] == {"reference": f"{ref}@{d2}", "digest": d2, "policy_revision": r2, "rollback": False}
            assert first["sequence"] < change["sequence"] < second["sequence"]
            assert all(x["policy_revision"] == r2 for x in trail if "kind" not in x and x["sequence"] > change["sequence"])

            ready = client.get("/readyz").json()["policy"]
            assert ready["state"] == "current" and ready["digest"] == d2 and ready["revision"] == r2
            m = metrics(client)
            assert value(m, "mlgate_policy_info", digest=d2, revision=r2) == 1
            assert not [v for lab, v in m["mlgate_policy_info"] if lab["digest"] == d1 and v]
            assert value(m, "mlgate_policy_changes_total") == 1 and value(m, "mlgate_policy_refresh_failures_total") == 0
            assert refresh(hook) is False
            assert len([x for x in records(tmp_path / "audit.jsonl") if x.get("kind") == "policy-change"]) == 1
    finally:
        hook.stop()
    # The chain holds with the policy-change record in it.
    code, out, err = run(["audit", "verify", "--audit", f"file:{tmp_path / 'audit.jsonl'}", "--trust", TRUST])
    assert code == 0, out + err


def test_registry_down_keeps_the_last_verified_bundle(tmp_path, registry, keys):
    private, public = keys["team"]
    ref = f"oci://{registry.host}/compliance/mlgate:stable"
    d1 = push(bundled_policy_dir(), ref, private)
    hook = serve(tmp_path, ref, public)
    try:
        with hook.client() as client:
            allowed, before = judged(client, hook)
            success = value(metrics(client), "mlgate_policy_last_refresh_success_timestamp_seconds")
            assert allowed is True and success > 0
            registry.stop()
            assert refresh(hook) is False
            allowed, after = judged(client, hook)
            assert allowed is True and after["policy_revision"] == before["policy_revision"]
            ready = client.get("/readyz")
            assert ready.status_code == 200  # still ready: the last verified bundle
            policy = ready.json()["policy"]
            assert policy["state"] == "stale" and policy["digest"] == d1 and policy["failures"] == 1
            assert "unreachable" in policy["lastError"] and registry.host in policy["lastError"]
            m = metrics(client)
            assert value(m, "mlgate_policy_stale") == 1 and value(m, "mlgate_policy_refresh_failures_total") == 1
            assert value(m, "mlgate_policy_last_refresh_success_timestamp_seconds") == success
            assert value(m, "mlgate_policy_info", digest=d1) == 1
            assert refresh(hook) is False
            assert client.get("/readyz").json()["policy"]["failures"] == 2
    finally:
        hook.stop()
    assert not [x for x in records(tmp_path / "audit.jsonl") if x.get("kind")]


def test_a_bundle_signed_by_another_key_is_refused(tmp_path, registry, keys, strict):
    private, public = keys["team"]
    ref = f"oci://{registry.host}/compliance/mlgate:stable"
    d1 = push(bundled_policy_dir(), ref, private)
    hook = serve(tmp_path, ref, public)
    try:
        with hook.client() as client:
            revision = judged(client, hook)[1]["policy_revision"]
            foreign = push(strict, ref, keys["other"][0])
            assert refresh(hook) is False
            allowed, rec = judged(client, hook)
            assert allowed is True and rec["policy_revision"] == revision
            policy = client.get("/readyz").json()["policy"]
            assert policy["state"] == "stale" and policy["digest"] == d1
            assert foreign in policy["lastError"] and "signed by key id" in policy["lastError"]
            assert not [x for x in records(tmp_path / "audit.jsonl") if x.get("kind") == "policy-change"]
            # The team signs the same change: taken at the next refresh, and the policy is current again.
            d2 = push(strict, ref, private)
            assert refresh(hook) is True
            allowed, rec = judged(client, hook)
            assert allowed is False and rec["revision_inputs"]["policy"]["oci"]["digest"] == d2
            policy = client.get("/readyz").json()["policy"]
            assert policy["state"] == "current" and "lastError" not in policy
            assert value(metrics(client), "mlgate_policy_stale") == 0
    finally:
        hook.stop()


# ------------------------------------------------------------------ start-up
def test_registry_down_at_startup_is_not_ready_and_denies(tmp_path, registry, keys):
    private, public = keys["team"]
    ref = f"oci://{registry.host}/compliance/mlgate:stable"
    push(bundled_policy_dir(), ref, private)
    registry.stop()
    hook = serve(tmp_path, ref, public, environments={"staging": EnvironmentSettings(mode="warn")})
    try:
        with hook.client() as client:
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503
            message = ready.json()["message"]
            assert f"policy {ref} not loaded" in message and "unreachable" in message
            for env in ("production", "staging"):
                r = admit(client, deployment(RELEASE), env)
                resp = r.json()["response"]
                assert r.status_code == 200 and resp["allowed"] is False and resp["status"]["code"] == 500
                assert "MLG-ADM-005" in resp["status"]["message"] and "unreachable" in resp["status"]["message"]
            recs = records(tmp_path / "audit.jsonl")
            assert [r["result"] for r in recs] == ["deny", "deny"]
            assert all(r["violations"][0]["id"] == "MLG-ADM-005" and r["policy_revision"] is None for r in recs)
            assert recs[1]["environment"] == "staging" and recs[1]["admission"]["mode"] == "enforce"  # denied even in warn mode: nothing was judged
            assert value(metrics(client), "mlgate_policy_stale") == 1
    finally:
        hook.stop()


def test_not_ready_until_the_tag_exists_then_judges(tmp_path, registry, keys):
    """A tag not pushed yet (HTTP 404) is retried; once it verifies the webhook is ready and judges."""
    private, public = keys["team"]
    ref = f"oci://{registry.host}/compliance/mlgate:stable"
    hook = serve(tmp_path, ref, public)
    try:
        with hook.client() as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "HTTP 404" in ready.json()["message"]
            digest = push(bundled_policy_dir(), ref, private)
            assert refresh(hook) is True
            assert client.get("/readyz").status_code == 200
            allowed, rec = judged(client, hook)
            assert allowed is True and rec["revision_inputs"]["policy"]["oci"]["digest"] == digest
            # The first load is no change of policy: nothing to record but the decisions.
            assert not [x for x in records(tmp_path / "audit.jsonl") if x.get("kind")]
    finally:
        hook.stop()


def test_a_digest_is_loaded_once_and_never_refreshed(tmp_path, registry, keys):
    private, public = keys["team"]
    digest = push(bundled_policy_dir(), f"oci://{registry.host}/compliance/mlgate:v1", private)
    hook = serve(tmp_path, f"oci://{registry.host}/compliance/mlgate@{digest}", public, policy_refresh_s=None)
    try:
        assert hook.app.policy.refresh_s is None and hook.app._refresh_loop is None
        registry.stop()  # nothing more is asked of it
        with hook.client() as client:
            allowed, rec = judged(client, hook)
            assert allowed is True and rec["revision_inputs"]["policy"]["oci"]["digest"] == digest
            assert client.get("/readyz").json()["policy"]["refreshSeconds"] is None
    finally:
        hook.stop()


# ------------------------------------------------------------------ mlgate serve: flags and the refresh interval
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_refreshes_a_tag_every_interval(tmp_path, registry, keys, strict):
    """`mlgate serve --policy oci://...:TAG --bundle-key --policy-refresh 1s`: a pushed tag is in use
    within the interval, without anyone asking."""
    private, public = keys["team"]
    ref = f"oci://{registry.host}/compliance/mlgate:stable"
    d1 = push(bundled_policy_dir(), ref, private)
    (tmp_path / "serving").mkdir()
    ca, cert, key, _ = write_certs(tmp_path / "serving")
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "mlgate", "serve", "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert), "--key", str(key),
                             "--audit", f"file:{tmp_path / 'audit.jsonl'}", "--trust", str(TRUST), "--evidence-store", f"file://{EXAMPLES}",
                             "--policy", ref, "--bundle-key", str(public), "--policy-refresh", "1s", "--log-format", "json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "MLGATE_OCI_CACHE": str(tmp_path / "serve-cache")})
    ctx = ssl.create_default_context(cafile=str(ca))

    def readyz():
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"mlgate serve exited {proc.returncode}: {proc.communicate()[1][-3000:]}")
            return None

    def wait_for(digest):
        deadline = time.monotonic() + 60
        while (doc := readyz()) is None or doc["policy"]["digest"] != digest:
            assert time.monotonic() < deadline, f"the webhook did not take {digest}: {doc}"
            time.sleep(0.2)
        return doc

    try:
        assert wait_for(d1)["policy"]["refreshSeconds"] == 1.0
        d2 = push(strict, ref, private)
        assert wait_for(d2)["policy"]["state"] == "current"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err[-3000:]
    changes = [json.loads(line) for line in err.splitlines() if "policy changed" in line]
    assert len(changes) == 1 and d1 in changes[0]["message"] and d2 in changes[0]["message"], err[-3000:]
    (change,) = [x for x in records(tmp_path / "audit.jsonl") if x.get("kind") == "policy-change"]
    assert change["old"]["digest"] == d1 and change["new"]["digest"] == d2


# ------------------------------------------------------------------ settings: one line naming the file and the field
def write(tmp_path, doc):
    path = tmp_path / "webhook.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_policy_settings_from_the_file_and_flags(tmp_path):
    (tmp_path / "team.pub").write_text("x")
    config = write(tmp_path, {"policy": "oci://registry.example/compliance/mlgate:stable", "policyRefresh": "5m", "bundleKey": "team.pub"})
    s = load_config(config, audit="a.jsonl", evidence_store="file:///e")
    assert s.policy_dir == "oci://registry.example/compliance/mlgate:stable" and s.policy_refresh_s == 300.0
    assert s.bundle_key == tmp_path / "team.pub"  # relative to the file
    # Flags win, key by key; --policy arrives as a click Path (oci:/ folded) and is normalised.
    from pathlib import Path

    s = load_config(config, audit="a.jsonl", evidence_store="file:///e", policy_dir=Path("oci://registry.example/compliance/mlgate:canary"),
                    policy_refresh_s=30.0)
    assert s.policy_dir == "oci://registry.example/compliance/mlgate:canary" and s.policy_refresh_s == 30.0
    assert s.bundle_key == tmp_path / "team.pub"
    # A tag without policyRefresh is resolved again every 60 s; a directory stays a path.
    from mlgate.gatekeeper.policy_source import OciPolicySource

    assert OciPolicySource("oci://registry.example/compliance/mlgate:stable").refresh_s == 60.0
    (tmp_path / "rules").mkdir()
    assert load_config(write(tmp_path, {"policy": "rules"}), audit="a", evidence_store="file:///e").policy_dir == tmp_path / "rules"


DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize("doc, field, needle", [
    ({"policy": "oci://registry.example/compliance/mlgate", "policyRefresh": "5m"}, "policy", "give a tag (:TAG) or a digest"),
    ({"policy": "oci://registry.example/compliance/mlgate:stable", "policyRefresh": "abc"}, "policyRefresh", "must be a duration"),
    ({"policy": "oci://registry.example/compliance/mlgate:stable", "policyRefresh": "0s"}, "policyRefresh", "from 1 s to 24 h"),
    ({"policy": "oci://registry.example/compliance/mlgate:stable", "policyRefresh": True}, "policyRefresh", "must be a duration"),
    ({"policy": f"oci://registry.example/compliance/mlgate@{DIGEST}", "policyRefresh": "5m"}, "policyRefresh", "never changes"),
    ({"policyRefresh": "5m"}, "policyRefresh", "is for an oci:// policy"),
    ({"policy": "oci://registry.example/Compliance:stable"}, "policy", "invalid repository name"),
    ({"policy": 7}, "policy", "non-empty string"),
    ({"bundleKey": "missing.pub"}, "bundleKey", "file not found"),
])
def test_bad_policy_settings_are_one_line_naming_file_and_field(tmp_path, doc, field, needle):
    config = write(tmp_path, doc)
    with pytest.raises(InputError) as exc:
        load_config(config, audit="a.jsonl", evidence_store="file:///e")
    text = exc.value.diagnostics()
    assert exc.value.field == field and needle in text and text.startswith(f"{config}: "), text
    assert "\n" not in text


def test_a_bundle_key_needs_a_bundle(tmp_path):
    (tmp_path / "team.pub").write_text("x")
    with pytest.raises(InputError) as exc:
        settings_from_dict({"bundleKey": str(tmp_path / "team.pub")}, "webhook.yaml", audit="a", evidence_store="file:///e")
    assert exc.value.field == "bundleKey" and "verifies an OPA bundle" in exc.value.diagnostics()


@pytest.mark.parametrize("args, needle", [
    (["--policy-refresh", "abc", "--policy", "oci://registry.example/p:stable"], "--policy-refresh: must be a duration"),
    (["--policy", "oci://registry.example/p"], "--policy: oci://registry.example/p: give a tag"),
    (["--policy", f"oci://registry.example/p@{DIGEST}", "--policy-refresh", "5m"], "--policy-refresh: oci://registry.example/p@"),
])
def test_serve_flags_are_checked_before_anything_starts(tmp_path, args, needle):
    code, _, stderr = run(["serve", "--cert", tmp_path / "c", "--key", tmp_path / "k", "--audit", tmp_path / "a.jsonl",
                           "--evidence-store", f"file://{EXAMPLES}", *args])
    assert code == 2 and needle in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_audit_show_lists_a_policy_change_as_an_event_not_a_decision(tmp_path):
    """A policy-change record is listed by its kind and never counted as a decision."""
    from mlgate.audit.export import is_event, table

    change = {"kind": "policy-change", "action": "policy-change", "event_id": "e1", "timestamp": "2026-12-06T00:00:00Z",
              "policy_source": "oci://r/p:stable", "old": {"digest": "sha256:a"}, "new": {"digest": "sha256:b"}, "sequence": 3}
    decision = {"decision_id": "d1", "result": "allow", "action": "admission", "sequence": 4, "release": {"name": "x", "version": "1"}}
    assert is_event(change) and not is_event(decision)
    text = table([change, decision])
    assert "POLICY-CHANGE" in text and "oci://r/p:stable" in text and " e1" in text and "ALLOW" in text

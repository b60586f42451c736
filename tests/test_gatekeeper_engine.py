"""The webhook with ``engine: opa`` (issue #8 part 1): over real TLS, against a server that answers
like OPA's REST API (tests/opa_rest_server.py), configured from the settings file and flags.

The same decisions as the embedded engine for every example; OPA's decision_id in each audit
record; OPA down, slow or undefined is ``allowed: false`` with status 500 naming OPA, within the
request's deadline (the OPA deadline is cut to each request's).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time

import pytest
import yaml
from cli_helpers import check_json, run
from conftest import EXAMPLES
from opa_rest_server import FakeOpa
from test_gatekeeper import EXAMPLE_RELEASES, answer
from test_gatekeeper_support import RunningWebhook, admit, deployment, records

from mlgate.errors import EngineError, InputError
from mlgate.gatekeeper.config import EnvironmentSettings, load_config, settings_from_dict
from mlgate.gatekeeper.service import ENGINE_MARGIN_S, DeadlineBoundEngine
from mlgate.policy import bundled_policy_dir, load_policy

SILENT = 'package mlgate\nimport rego.v1\ndecision := {"allow": true} if input.never\n'


def write_settings(tmp, doc) -> object:
    path = tmp / "webhook.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def bundled():
    return load_policy(bundled_policy_dir())


@pytest.fixture(scope="module")
def opa(bundled):
    with FakeOpa(bundled, bundle_revision=bundled.revision) as server:
        yield server


@pytest.fixture(scope="module")
def hooks(tmp_path_factory, opa):
    """Two webhooks over the same examples: one asks OPA (set in the settings file), one embeds regorus."""
    tmp = tmp_path_factory.mktemp("opa-hook")
    (tmp / "opa").mkdir()
    (tmp / "embedded").mkdir()
    config = write_settings(tmp, {"engine": {"name": "opa", "opa": {"url": opa.url, "timeoutSeconds": 5}}})
    remote = RunningWebhook(tmp / "opa", load_config(config, evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "opa" / "audit.jsonl")))
    local = RunningWebhook(tmp / "embedded", settings_from_dict({}, None, evidence_store=f"file://{EXAMPLES}", audit=str(tmp / "embedded" / "audit.jsonl")))
    yield remote, local
    remote.stop()
    local.stop()


def _record(hook, decision_id):
    (rec,) = [r for r in records(hook.tmp / "audit.jsonl") if r["decision_id"] == decision_id]
    return rec


def test_the_engine_comes_from_the_settings_file(hooks, opa):
    remote, local = hooks
    assert remote.app.settings.engine == "opa" and remote.app.settings.opa.url == opa.url
    assert isinstance(remote.gatekeeper.prepared.engine, DeadlineBoundEngine) and remote.gatekeeper.prepared.engine.timeout_s == 5
    assert local.app.settings.engine == "embedded" and local.gatekeeper.prepared.engine.name == "regorus-rvm"


@pytest.mark.parametrize("env", ["staging", "production"])
@pytest.mark.parametrize("example", sorted(EXAMPLE_RELEASES))
def test_same_decisions_as_the_embedded_engine(hooks, example, env):
    remote, local = hooks
    answers = []
    for hook in (remote, local):
        with hook.client() as client:
            doc = deployment(EXAMPLE_RELEASES[example])
            resp = answer(admit(client, doc, env), doc)
            answers.append((resp, _record(hook, resp["auditAnnotations"]["decision-id"])))
    (r_resp, r_rec), (l_resp, l_rec) = answers
    assert r_resp["allowed"] is l_resp["allowed"]
    assert r_resp.get("status", {}).get("code") == l_resp.get("status", {}).get("code")
    assert r_rec["result"] == l_rec["result"] and r_rec["result"] in ("allow", "deny")
    assert [v["id"] for v in r_rec["violations"]] == [v["id"] for v in l_rec["violations"]]
    assert [w["id"] for w in r_rec["warnings"]] == [w["id"] for w in l_rec["warnings"]]
    assert r_rec["input_digest"] == l_rec["input_digest"]
    # The same policy and trust policy; the recorded revision differs because the engine is part of it.
    assert r_rec["revision_inputs"]["policy"] == l_rec["revision_inputs"]["policy"]
    assert r_rec["trust_policy"] == l_rec["trust_policy"] and r_rec["policy_revision"] != l_rec["policy_revision"]
    # OPA's own id for the decision is in the record, so OPA's decision log and mlgate's trail join.
    assert r_rec["engine"] == "opa" and len(r_rec["engine_decision_id"]) == 36
    assert "engine_decision_id" not in l_rec


def test_each_decision_has_its_own_opa_decision_id(hooks):
    remote, _ = hooks
    ids = [r.get("engine_decision_id") for r in records(remote.tmp / "audit.jsonl") if r.get("engine") == "opa"]
    assert ids and None not in ids and len(set(ids)) == len(ids)


def test_slow_opa_is_denied_within_the_request_deadline(hooks, opa):
    """engine.opa.timeoutSeconds is 5; the request allows 1 s: OPA is given what is left, and the
    deny names OPA (not the webhook's own last-resort deadline answer)."""
    remote, _ = hooks
    opa.fault, opa.delay_s = "slow", 3.0
    try:
        with remote.client() as client:
            doc = deployment("readmission-risk@1.4.0")
            started = time.monotonic()
            resp = answer(admit(client, doc, timeout="1s"), doc)
            elapsed = time.monotonic() - started
    finally:
        opa.fault, opa.delay_s = None, 0.0
    assert resp["allowed"] is False and resp["status"]["code"] == 500, resp
    message = resp["status"]["message"]
    assert "OPA at http://127.0.0.1" in message and "did not answer within the 0." in message, message
    assert elapsed < 1.0 - remote.app.settings.deadline_margin_s + 0.15, elapsed
    rec = _record(remote, resp["auditAnnotations"]["decision-id"])
    assert rec["result"] == "error" and "did not answer" in rec["error"]


def test_opa_undefined_is_500_and_keeps_opas_decision_id(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "p.rego").write_text(SILENT)
    served = load_policy(tmp_path / "p")
    with FakeOpa(served) as silent:  # OPA serves another policy than the local one: the webhook is told its revision
        settings = settings_from_dict({}, None, evidence_store=f"file://{EXAMPLES}", audit=str(tmp_path / "audit.jsonl"),
                                      engine="opa", opa_flags={"url": silent.url, "expected_revision": served.bundle_revision})
        hook = RunningWebhook(tmp_path, settings)
        try:
            with hook.client() as client:
                doc = deployment("readmission-risk@1.4.0")
                resp = answer(admit(client, doc), doc)
        finally:
            hook.stop()
    assert resp["allowed"] is False and resp["status"]["code"] == 500
    assert "undefined on the OPA server" in resp["status"]["message"]
    rec = _record(hook, resp["auditAnnotations"]["decision-id"])
    assert rec["result"] == "error" and len(rec["engine_decision_id"]) == 36


def test_opa_down_is_500_in_enforce_and_a_warning_in_warn_mode(tmp_path):
    """The mode decides the admission; the failure is recorded as an error either way."""
    port = _free_port()
    settings = settings_from_dict({}, None, evidence_store=f"file://{EXAMPLES}", audit=str(tmp_path / "audit.jsonl"),
                                  engine="opa", opa_flags={"url": f"http://127.0.0.1:{port}"})
    hook = RunningWebhook(tmp_path, settings)
    try:
        with hook.client() as client:
            doc = deployment("readmission-risk@1.4.0")
            started = time.monotonic()
            resp = answer(admit(client, doc, timeout="2s"), doc)
            assert time.monotonic() - started < 2
            assert resp["allowed"] is False and resp["status"]["code"] == 500
            assert f"cannot reach OPA at http://127.0.0.1:{port}" in resp["status"]["message"], resp
            hook.gatekeeper.settings = dataclasses.replace(settings, environments={"production": EnvironmentSettings(mode="warn")})
            doc = deployment("readmission-risk@1.4.0")
            resp = answer(admit(client, doc), doc)
            assert resp["allowed"] is True and any("cannot reach OPA" in w for w in resp["warnings"])
    finally:
        hook.stop()
    assert [r["result"] for r in records(tmp_path / "audit.jsonl")] == ["error", "error"]


def test_opa_over_mtls_configured_in_the_settings_file(tmp_path, bundled):
    """ca, clientCert, clientKey and tokenFile from the file (relative to it) reach the engine;
    the token file is followed when the Secret is rotated, without a restart."""
    from test_engine_opa import _pki

    ctx = _pki(tmp_path)  # ca.crt, server.*, client.crt, client.key in tmp_path
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "hook").mkdir()
    with FakeOpa(bundled, tls=ctx, token="s3cret", bundle_revision=bundled.revision) as server:
        config = write_settings(tmp_path, {"engine": {"name": "opa", "opa": {
            "url": server.url, "ca": "ca.crt", "clientCert": "client.crt", "clientKey": "client.key", "tokenFile": "token"}}})
        hook = RunningWebhook(tmp_path / "hook", load_config(config, evidence_store=f"file://{EXAMPLES}", audit=str(tmp_path / "audit.jsonl")))
        try:
            with hook.client() as client:
                doc = deployment("readmission-risk@1.4.0")
                resp = answer(admit(client, doc), doc)
                assert server.requests[-1]["headers"]["Authorization"] == "Bearer s3cret"
                # The Secret is rotated while the webhook serves: the next review uses the new token.
                server.token = "rotated-token"
                (tmp_path / "token").write_text("rotated-token\n")
                rotated = answer(admit(client, doc), doc)
                assert server.requests[-1]["headers"]["Authorization"] == "Bearer rotated-token"
        finally:
            hook.stop()
    assert resp["allowed"] is True, resp
    assert rotated["allowed"] is True, rotated
    rec, _ = records(tmp_path / "audit.jsonl")
    assert rec["engine"] == "opa" and rec["engine_version"].startswith("REST v1 at https://127.0.0.1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the per-request OPA deadline
class _Inner:
    name, version = "opa", "REST v1 at test"

    def __init__(self):
        self.timeout_s = 5.0
        self.seen: list[float] = []

    def decide_with_id(self, doc):
        self.seen.append(self.timeout_s)
        return {"allow": True}, "id-1"


def test_deadline_bound_engine_cuts_the_timeout_to_the_request():
    now = [100.0]
    inner = _Inner()
    engine = DeadlineBoundEngine(inner, lambda: now[0])
    assert engine.decide({}) == {"allow": True} and inner.seen == [5.0]  # no request deadline: the configured one
    engine.deadline = 101.0
    engine.decide_with_id({})
    assert inner.seen[-1] == pytest.approx(1.0 - ENGINE_MARGIN_S)
    engine.deadline = 200.0
    engine.decide_with_id({})
    assert inner.seen[-1] == 5.0  # never longer than configured
    engine.deadline = 100.0 + ENGINE_MARGIN_S
    with pytest.raises(EngineError, match="no time left to ask OPA"):
        engine.decide_with_id({})
    assert len(inner.seen) == 3


# ------------------------------------------------------------------ settings: file and flags
def test_flags_override_the_file_key_by_key(tmp_path):
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "ca.crt").write_text("x")
    config = write_settings(tmp_path, {"engine": {"name": "opa", "opa": {"url": "https://opa.example:8181", "tokenFile": "token", "ca": "ca.crt",
                                                                       "timeoutSeconds": 2}}})
    s = load_config(config, evidence_store="file:///e", audit="a.jsonl")
    assert s.engine == "opa" and s.opa.url == "https://opa.example:8181" and s.opa.token == "s3cret"
    assert s.opa.ca_file == tmp_path / "ca.crt" and s.opa.timeout_s == 2  # relative to the settings file
    assert s.opa.token_file == tmp_path / "token"  # kept, so the engine follows a rotated Secret
    s = load_config(config, evidence_store="file:///e", audit="a.jsonl", opa_flags={"url": "https://other:8181", "timeout_s": 1.5})
    assert s.opa.url == "https://other:8181" and s.opa.token == "s3cret" and s.opa.timeout_s == 1.5
    s = load_config(config, evidence_store="file:///e", audit="a.jsonl", opa_flags={"token": "from-flag"})
    assert s.opa.token == "from-flag" and s.opa.token_file is None  # the flag's token wins, and the file is not re-read over it
    s = load_config(config, evidence_store="file:///e", audit="a.jsonl", engine="embedded")
    assert s.engine == "embedded" and s.opa is None  # another engine on the command line: the file's OPA block is not used


@pytest.mark.parametrize("doc, field, needle", [
    ({"engine": "opa"}, "engine", "must be a mapping"),
    ({"engine": {"name": "wasm"}}, "engine.name", "must be one of embedded, regorus-interp, rego-cpp, opa"),
    ({"engine": {"name": "opa", "extra": 1}}, "engine", "unknown key 'extra'"),
    ({"engine": {"name": "opa", "opa": {"url": "http://x", "tokens": "t"}}}, "engine.opa", "unknown key 'tokens'"),
    ({"engine": {"name": "opa", "opa": {"url": 8181}}}, "engine.opa.url", "non-empty string"),
    ({"engine": {"name": "opa", "opa": {"url": "http://x", "timeoutSeconds": "2"}}}, "engine.opa.timeoutSeconds", "number from 0.05 to 30"),
    ({"engine": {"name": "opa", "opa": {"url": "http://x", "timeoutSeconds": 60}}}, "engine.opa.timeoutSeconds", "number from 0.05 to 30"),
    ({"engine": {"name": "opa", "opa": {"url": "http://x", "tokenFile": "missing"}}}, "engine.opa.tokenFile", "file not found"),
    ({"engine": {"name": "opa", "opa": {"url": "http://x", "tokenFile": "empty"}}}, "engine.opa.tokenFile", "one non-empty line"),
    ({"engine": {"name": "opa", "opa": {"url": "https://x", "clientCert": ["a"]}}}, "engine.opa.clientCert", "non-empty string"),
    ({"engine": {"name": "opa", "opa": {"url": "https://x", "ca": "nope.crt"}}}, "engine.opa.ca", "file not found"),
    ({"engine": {"name": "embedded", "opa": {"url": "http://x"}}}, "engine.opa", "is for name: opa"),
])
def test_bad_engine_settings_are_one_line_naming_file_and_field(tmp_path, doc, field, needle):
    (tmp_path / "empty").write_text("\n")
    config = write_settings(tmp_path, doc)
    with pytest.raises(InputError) as exc:
        load_config(config, evidence_store="file:///e", audit="a.jsonl")
    text = exc.value.diagnostics()
    assert exc.value.field == field and needle in text and "webhook.yaml" in text and "\n" not in text, text


@pytest.mark.parametrize("doc, flags, needle", [
    ({"engine": {"name": "opa"}}, {}, "needs the OPA server's URL"),
    ({}, {"engine": "opa"}, "needs the OPA server's URL"),
    ({}, {"opa_flags": {"url": "http://x"}}, "need --engine opa"),
    ({"engine": {"name": "rego-cpp"}}, {"opa_flags": {"url": "http://x"}}, "not 'rego-cpp'"),
])
def test_engine_and_opa_options_must_agree(tmp_path, doc, flags, needle):
    with pytest.raises(InputError, match=needle):
        settings_from_dict(doc, "webhook.yaml", evidence_store="file:///e", audit="a.jsonl", **flags)


def test_engine_names_match_the_engine_registry():
    from mlgate.cli.engine_options import ENGINE_CHOICES
    from mlgate.policy.engine import ENGINES
    from mlgate.gatekeeper.config import ENGINES as CONFIG_ENGINES

    assert ENGINE_CHOICES == ENGINES == CONFIG_ENGINES


# ------------------------------------------------------------------ the command line
@pytest.mark.parametrize("args, needle", [
    (["--engine", "opa"], "needs the OPA server's URL"),
    (["--opa-url", "http://127.0.0.1:8181"], "need --engine opa"),
    (["--engine", "opa", "--opa-url", "http://127.0.0.1:8181", "--opa-token", "t", "--opa-token-file", "TOKEN"], "give one"),
    (["--engine", "opa", "--opa-url", "http://127.0.0.1:8181", "--opa-token-file", "MISSING"], "file not found"),
    (["--engine", "opa", "--opa-url", "http://127.0.0.1:8181", "--opa-timeout", "0"], "--opa-timeout"),
    (["--engine", "opa", "--opa-url", "ftp://opa.example"], "must be an http:// or https:// URL"),
    (["--engine", "opa", "--opa-url", "http://opa.example:8181", "--opa-token", "t"], "refusing to send the OPA bearer token in clear text"),
])
def test_serve_refuses_bad_engine_options_before_listening(tmp_path, args, needle):
    (tmp_path / "TOKEN").write_text("t\n")
    (tmp_path / "c").write_text("")
    (tmp_path / "k").write_text("")
    args = [a.replace("TOKEN", str(tmp_path / "TOKEN")).replace("MISSING", str(tmp_path / "missing")) for a in args]
    code, out, err = run(["serve", "--cert", tmp_path / "c", "--key", tmp_path / "k", "--evidence-store", f"file://{EXAMPLES}",
                          "--audit", tmp_path / "a.jsonl", *args])
    assert code == 2 and needle in err and len(err.strip().splitlines()) <= 4, err  # a usage error adds click's usage lines
    assert not (tmp_path / "a.jsonl").exists()


def test_check_takes_the_same_token_file_option(tmp_path, bundled):
    """`mlgate check` and `mlgate serve` share the option definitions: --opa-token-file works for both."""
    (tmp_path / "token").write_text("s3cret\n")
    log = tmp_path / "a.jsonl"
    with FakeOpa(bundled, token="s3cret") as server:
        code, decision, err = check_json(EXAMPLES / "readmission-risk", "production", log, "--engine", "opa", "--opa-url", server.url,
                                         "--opa-token-file", tmp_path / "token", "--opa-timeout", "5")
        assert code == 0, (decision, err)
        assert server.requests[-1]["headers"]["Authorization"] == "Bearer s3cret"
        (tmp_path / "token").write_text("wrong\n")
        code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", log, "--engine", "opa", "--opa-url", server.url,
                                       "--opa-token-file", tmp_path / "token")
        assert code == 2 and "HTTP 401 unauthorized" in decision["error"]
    assert [json.loads(line)["engine"] for line in log.read_text().splitlines()] == ["opa", "opa"]


def test_check_help_lists_the_shared_options():
    code, out, _ = run(["check", "--help"])
    assert code == 0
    for flag in ("--engine", "--opa-url", "--opa-token", "--opa-token-file", "--opa-ca", "--opa-client-cert", "--opa-client-key", "--opa-timeout"):
        assert flag in out
    code, out, _ = run(["serve", "--help"])
    assert code == 0 and "--opa-token-file" in out and "--opa-timeout" in out


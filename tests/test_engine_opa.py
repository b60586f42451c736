"""The remote OPA engine, tested against an HTTP server that follows OPA's REST API.

No OPA binary can be installed on the machines that run these tests, so the client is tested
against ``tests/opa_rest_server.py``: a server that answers exactly as OPA's REST API
documentation specifies for ``POST /v1/data/{path}`` (status codes 200/400/401/404/500,
``result`` present when defined and absent when undefined, ``decision_id`` when decision
logging is on, error bodies ``{"code", "message"}``, ``?provenance=true``), with regorus
evaluating the policy behind it. Every failure must deny, with a one-line reason.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import time
from pathlib import Path

import pytest
from cli_helpers import check_json
from conftest import EXAMPLES
from opa_rest_server import FakeOpa

from mlgate.policy.engine import create_engine
from mlgate.policy.engine.opa import OpaSettings
from mlgate.errors import EngineError, PolicyError, UndefinedDecision
from mlgate.policy import bundled_policy_dir, load_policy

ALLOW = 'package mlgate\nimport rego.v1\ndecision := {"allow": input.ok == true, "violations": []} if input.defined\n'


def policy(tmp_path, text=ALLOW):
    (tmp_path / "p.rego").write_text(text)
    return load_policy(tmp_path)


def engine(server, *, policy, timeout_s=2.0, **kw):
    return create_engine("opa", policy, timeout_s=timeout_s, opa=OpaSettings(url=server.url, **kw))


def test_defined_result_and_decision_id(tmp_path):
    p = policy(tmp_path)
    with FakeOpa(p) as opa:
        e = engine(opa, policy=p)
        raw, decision_id = e.decide_with_id({"ok": True, "defined": True})
        assert raw == {"allow": True, "violations": []}
        assert decision_id and len(decision_id) == 36
        req = opa.requests[-1]
        assert req["path"] == "/v1/data/mlgate/decision" and req["params"] == {"provenance": ["true"]}
        assert json.loads(req["body"]) == {"input": {"ok": True, "defined": True}}
        assert req["headers"]["Content-Type"] == "application/json"


def test_undefined_is_a_deny_and_keeps_the_decision_id(tmp_path):
    p = policy(tmp_path)
    with FakeOpa(p) as opa:
        with pytest.raises(UndefinedDecision, match="undefined on the OPA server") as exc:
            engine(opa, policy=p).decide({"defined": False})
        assert len(exc.value.engine_decision_id) == 36
        opa.decision_logging = False
        with pytest.raises(UndefinedDecision):
            engine(opa, policy=p).decide({})


def test_evaluation_error_is_500_internal_error(tmp_path):
    p = policy(tmp_path, 'package mlgate\nimport rego.v1\ndecision := {"allow": to_number(input.x)}\n')
    with FakeOpa(p) as opa, pytest.raises(EngineError) as exc:
        engine(opa, policy=p).decide({"x": "not a number"})
    text = str(exc.value)
    assert text.startswith("OPA answered HTTP 500 internal_error: ") and "\n" not in text


@pytest.mark.parametrize("fault,match", [
    ("not-json", "HTTP 200 with a body that is not JSON"),
    ("json-array", "HTTP 200 with a JSON list, expected an object"),
    ("html-500", "HTTP 500 without an OPA error body"),
    ("redirect", "HTTP 302"),
])
def test_malformed_answers_deny(tmp_path, fault, match):
    p = policy(tmp_path)
    with FakeOpa(p) as opa:
        opa.fault = fault
        with pytest.raises(EngineError, match=match):
            engine(opa, policy=p).decide({"ok": True, "defined": True})


def test_bearer_token(tmp_path):
    p = policy(tmp_path)
    with FakeOpa(p, token="s3cret") as opa:
        with pytest.raises(EngineError, match="HTTP 401 unauthorized"):
            engine(opa, policy=p).decide({"ok": True, "defined": True})
        assert engine(opa, policy=p, token="s3cret").decide({"ok": True, "defined": True})["allow"] is True
        assert opa.requests[-1]["headers"]["Authorization"] == "Bearer s3cret"


def test_token_file_is_read_again_when_the_secret_rotates(tmp_path, caplog):
    """A mounted Secret is rotated by swapping a symlink: the engine follows the file (one stat
    per decision) without a restart, and a file caught mid-rotation keeps the last good token."""
    p = policy(tmp_path)
    secret = tmp_path / "secret"
    (secret / "v1").mkdir(parents=True)
    (secret / "v1" / "token").write_text("one\n")
    (secret / "..data").symlink_to("v1")
    token_file = secret / "token"
    token_file.symlink_to("..data/token")
    ok = {"ok": True, "defined": True}
    with FakeOpa(p, token="one") as opa:
        e = engine(opa, policy=p, token_file=token_file)  # no token given: read from the file
        assert e.decide(ok)["allow"] is True and opa.requests[-1]["headers"]["Authorization"] == "Bearer one"

        opa.token = "two"  # OPA now wants the rotated token; the Secret follows, as kubelet writes it
        (secret / "v2").mkdir()
        (secret / "v2" / "token").write_text("two\n")
        (secret / "..data_tmp").symlink_to("v2")
        (secret / "..data_tmp").replace(secret / "..data")
        assert e.decide(ok)["allow"] is True and opa.requests[-1]["headers"]["Authorization"] == "Bearer two"
        assert e.token_reloads == 1

        (secret / "v3").mkdir()
        (secret / "v3" / "token").write_text("   \n")  # caught half-written: not a token
        (secret / "..data_tmp").symlink_to("v3")
        (secret / "..data_tmp").replace(secret / "..data")
        with caplog.at_level("WARNING", logger="mlgate.policy.engine.opa"):
            assert e.decide(ok)["allow"] is True
        assert opa.requests[-1]["headers"]["Authorization"] == "Bearer two"
        assert "keeping the previous token" in caplog.text and "one non-empty line" in caplog.text

        (secret / "v3" / "token").write_text("three\n")  # the write completes: taken on the next decision
        opa.token = "three"
        assert e.decide(ok)["allow"] is True and opa.requests[-1]["headers"]["Authorization"] == "Bearer three"

        token_file.unlink()  # gone: the last good token is still sent, and OPA judges it
        opa.token = "four"
        with pytest.raises(EngineError, match="HTTP 401 unauthorized"):
            e.decide(ok)


def test_a_token_given_directly_is_never_replaced(tmp_path):
    p = policy(tmp_path)
    with FakeOpa(p, token="s3cret") as opa:
        e = engine(opa, policy=p, token="s3cret")
        assert e.decide({"ok": True, "defined": True})["allow"] is True and e.token_reloads == 0


def test_token_never_sent_in_clear_text_off_host(tmp_path):
    with pytest.raises(PolicyError, match="clear text"):
        create_engine("opa", policy(tmp_path), opa=OpaSettings(url="http://opa.example:8181", token="t"))
    (tmp_path / "token").write_text("t\n")
    with pytest.raises(PolicyError, match="clear text"):
        create_engine("opa", policy(tmp_path), opa=OpaSettings(url="http://opa.example:8181", token_file=tmp_path / "token"))


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "127.0.0.1:8181", "http://127.0.0.1:8181/?x=1", "http://u:p@127.0.0.1"])
def test_bad_urls_are_refused(tmp_path, url):
    with pytest.raises(PolicyError, match="--opa-url"):
        create_engine("opa", policy(tmp_path), opa=OpaSettings(url=url))


def test_connection_refused_is_a_deny(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    e = create_engine("opa", policy(tmp_path), opa=OpaSettings(url=f"http://127.0.0.1:{port}"))
    with pytest.raises(EngineError, match="cannot reach OPA at http://127.0.0.1"):
        e.decide({})


@pytest.mark.parametrize("fault", ["slow", "drip"])
def test_hard_deadline(tmp_path, fault):
    p = policy(tmp_path)
    with FakeOpa(p) as opa:
        opa.fault, opa.delay_s = fault, (3.0 if fault == "slow" else 0.05)
        e = engine(opa, policy=p, timeout_s=0.4)
        started = time.monotonic()
        with pytest.raises(EngineError, match="did not answer within the 0.4 s deadline"):
            e.decide({"ok": True, "defined": True})
        assert time.monotonic() - started < 1.0
        e.close()


def test_connections_are_pooled(tmp_path):
    p = policy(tmp_path)
    with FakeOpa(p) as opa:
        e = engine(opa, policy=p)
        for _ in range(20):
            e.decide({"ok": True, "defined": True})
        assert opa.connections == 1


def test_bundle_revision_must_match_the_local_policy(tmp_path):
    p = policy(tmp_path)
    with FakeOpa(p, bundle_revision="0" * 64) as opa:
        with pytest.raises(EngineError, match="not the expected revision"):
            engine(opa, policy=p).decide({"ok": True, "defined": True})
        opa.bundle_revision = p.revision
        assert engine(opa, policy=p).decide({"ok": True, "defined": True})["allow"] is True


def test_a_string_true_from_opa_still_denies(tmp_path, capsys):
    """The transport never decides: decide() judges OPA's value as it judges the embedded engine's."""
    from mlgate.gate import decide

    p = policy(tmp_path, 'package mlgate\nimport rego.v1\ndecision := {"allow": "true"}\n')
    with FakeOpa(p) as opa:
        allowed, violations, _ = decide(engine(opa, policy=p).decide({}))
    assert allowed is False and violations[0].id == "MLG-CORE-002"


# --- TLS and mTLS ---------------------------------------------------------------------------------


def _pki(tmp_path):
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(name, key, issuer_name, issuer_key, *, ca=False, san=None):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(name, key, crt):
        (tmp_path / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (tmp_path / f"{name}.crt").write_bytes(crt.public_bytes(serialization.Encoding.PEM))

    out = {}
    for ca_name in ("ca", "other-ca"):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
        write(ca_name, ca_key, cert(ca_name, ca_key, ca_subject, ca_key, ca=True))
        out[ca_name] = (ca_key, ca_subject)
    ca_key, ca_subject = out["ca"]
    server_key = ec.generate_private_key(ec.SECP256R1())
    write("server", server_key, cert("opa", server_key, ca_subject, ca_key, san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
    client_key = ec.generate_private_key(ec.SECP256R1())
    write("client", client_key, cert("mlgate", client_key, ca_subject, ca_key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    ctx.load_verify_locations(tmp_path / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def test_mtls(tmp_path):
    ctx = _pki(tmp_path)
    p = policy(tmp_path)
    with FakeOpa(p, tls=ctx) as opa:
        good = dict(ca_file=tmp_path / "ca.crt", client_cert=tmp_path / "client.crt", client_key=tmp_path / "client.key")
        assert engine(opa, policy=p, **good).decide({"ok": True, "defined": True})["allow"] is True
        with pytest.raises(EngineError, match="OPA at https://127.0.0.1"):  # no client certificate: the server refuses
            engine(opa, policy=p, ca_file=tmp_path / "ca.crt").decide({"ok": True, "defined": True})
        with pytest.raises(EngineError, match="TLS with OPA"):  # server certificate from another CA
            engine(opa, policy=p, **{**good, "ca_file": tmp_path / "other-ca.crt"}).decide({"ok": True, "defined": True})
    with pytest.raises(PolicyError, match="both --opa-client-cert and --opa-client-key"):
        create_engine("opa", p, opa=OpaSettings(url="https://127.0.0.1:1", client_cert=tmp_path / "client.crt"))


# --- through the gate and the CLI -----------------------------------------------------------------


def test_cli_check_records_opa_decision_id(tmp_path):
    p = load_policy(bundled_policy_dir())
    log = tmp_path / "a.jsonl"
    with FakeOpa(p, bundle_revision=p.revision) as opa:
        code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", log, "--engine", "opa", "--opa-url", opa.url)
        assert code == 0, (decision["violations"], decision["error"])
        code, decision, _ = check_json(EXAMPLES / "triage-acuity", "production", log, "--engine", "opa", "--opa-url", opa.url)
        assert code == 1 and any(v["id"] == "MLG-BIAS-002" for v in decision["violations"])
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["engine"] for r in records] == ["opa", "opa"]
    assert all(len(r["engine_decision_id"]) == 36 for r in records)
    assert records[0]["engine_decision_id"] != records[1]["engine_decision_id"]


def test_cli_check_opa_down_is_an_error_recorded(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    log = tmp_path / "a.jsonl"
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", log, "--engine", "opa", "--opa-url", f"http://127.0.0.1:{port}")
    assert code == 2 and decision["allowed"] is False
    assert "cannot reach OPA" in decision["error"] and "\n" not in decision["error"]
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["result"] == "error" and "engine_decision_id" not in record


def test_cli_check_opa_undefined_keeps_decision_id(tmp_path):
    log = tmp_path / "a.jsonl"
    (tmp_path / "p").mkdir()
    silent = policy(tmp_path / "p", 'package mlgate\nimport rego.v1\ndecision := {"allow": true} if input.never\n')
    with FakeOpa(silent) as opa:  # OPA serves another policy than the local one: say which revision to expect
        code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", log, "--engine", "opa", "--opa-url", opa.url,
                                       "--opa-bundle-revision", silent.bundle_revision)
    assert code == 2 and "undefined" in decision["error"]
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["result"] == "error" and len(record["engine_decision_id"]) == 36


def test_opa_options_need_engine_opa(tmp_path):
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", tmp_path / "a.jsonl", "--opa-url", "http://127.0.0.1:1")
    assert code == 2 and "need --engine opa" in decision["error"]
    code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", tmp_path / "a.jsonl", "--engine", "opa")
    assert code == 2 and "needs --opa-url" in decision["error"]


def test_a_process_whose_opa_request_hit_the_deadline_still_exits(tmp_path):
    """The abandoned exchange must not hold up interpreter exit (a thread pool's workers are
    joined at shutdown; a server dripping header bytes would keep one reading for minutes)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from opa_rest_server import FakeOpa
        from test_engine_opa import engine, policy
        from mlgate.errors import EngineError
        p = policy(Path({str(tmp_path)!r}))
        opa = FakeOpa(p).__enter__()
        opa.fault, opa.delay_s = "drip", 0.1   # a header byte every 0.1 s (under the read timeout): 330 s
        e = engine(opa, policy=p, timeout_s=0.3)
        try:
            e.decide({{"ok": True, "defined": True}})
        except EngineError as exc:
            print("denied:", exc)
        print("exiting", flush=True)
    """)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "did not answer within the 0.3 s deadline" in proc.stdout, proc.stdout + proc.stderr
    assert time.monotonic() - started < 30

"""The webhook relying on signed verification summaries (issue 20 part 3, gatekeeper/summaries.py).

CI runs ``mlgate check --attest KEY``; the summary carries the decision's time-independent findings
for its input and policy. A webhook with ``acceptSummaries: {maxAge: ...}`` takes those findings
instead of evaluating them, evaluates the time-dependent rules itself, and names the summary in the
audit record. A summary that is tampered, expired, for another model digest, signed by an untrusted
key, made under another policy or for other evidence is never relied on: the webhook evaluates
everything itself, and decides exactly as it would without any summary."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil

import pytest
from cli_helpers import run
from conftest import EXAMPLES, EXAMPLES_NOW, REPO
from test_vsa import _trust_with

from mlgate.clock import FixedClock
from mlgate.errors import InputError
from mlgate.signing.keys import generate_keypair

BODY = REPO / "tests" / "assets" / "admission" / "deployment-create-v1.json"
RELEASE = "readmission-risk"


@pytest.fixture
def ci(tmp_path):
    """A copy of the examples whose readmission-risk carries a production summary signed by CI."""
    store = tmp_path / "store"
    shutil.copytree(EXAMPLES, store)
    private, public = generate_keypair("ecdsa-p256")
    (tmp_path / "ci.key").write_bytes(private)
    _trust_with(tmp_path / "trust.yaml", public)
    code, out, err = run(["check", store / RELEASE, "--env", "production", "-o", "json", "--trust", tmp_path / "trust.yaml",
                          "--audit-log", tmp_path / "ci-audit.jsonl", "--attest", tmp_path / "ci.key"])
    assert code == 0, (out, err)
    return tmp_path


def _summary_path(tmp_path):
    return tmp_path / "store" / RELEASE / ".mlgate" / "verification-production.sigstore.json"


def _gatekeeper(tmp_path, *, accept=True, now=EXAMPLES_NOW, trust=None, name="audit"):
    from mlgate.gatekeeper.config import Settings
    from mlgate.gatekeeper.service import Gatekeeper

    settings = Settings(evidence_store="file://" + str(tmp_path / "store"), audit="file://" + str(tmp_path / f"{name}.jsonl"),
                        trust_policy=trust or tmp_path / "trust.yaml", accept_summaries_s=86_400.0 if accept else None)
    gk = Gatekeeper(settings, clock=FixedClock(now))
    gk.start()
    return gk


def _admit(gk, n=1, uid="s"):
    from mlgate.gatekeeper.review import parse_review

    body = json.loads(BODY.read_text())
    out = []
    for i in range(n):
        body["request"]["uid"] = f"{uid}-{i}"
        out.append(gk.admit(parse_review(body), "production"))
    return out


def _records(tmp_path, name="audit"):
    return [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]


def _decision(outcome):
    (d,) = outcome.decisions
    return d.result, [(f.id, f.message) for f in d.violations], [(f.id, f.message) for f in d.warnings]


def test_a_valid_summary_is_relied_on_and_named_in_the_record(ci):
    statement = json.loads(base64.b64decode(json.loads(_summary_path(ci).read_bytes())["dsseEnvelope"]["payload"]))
    static = statement["predicate"]["mlgate"]["static"]
    assert set(static) == {"key", "policyRevision", "split", "findings"} and isinstance(static["findings"]["violations"], list)
    gk = _gatekeeper(ci)
    plain = _gatekeeper(ci, accept=False, name="plain")
    try:
        outcomes = _admit(gk, 2)
        assert gk.prepared.engine.static_misses == 0  # nothing time-independent was evaluated here
        assert gk.summaries.used == 2
        assert [_decision(o) for o in outcomes] == [_decision(o) for o in _admit(plain, 2)]
        assert outcomes[0].result == "allow"
    finally:
        gk.close()
        plain.close()
    records = _records(ci)
    assert len(records) == 2
    for rec in records:
        assert rec["summary"]["path"].endswith("verification-production.sigstore.json")
        assert rec["summary"]["signer"] == "ci.hospital.example" and len(rec["summary"]["sha256"]) == 64
        assert rec["summary"]["result"] == "PASSED"
    assert all("summary" not in r for r in _records(ci, "plain"))


def test_the_webhook_still_judges_the_time_an_expired_approval_denies(ci):
    """A summary does not carry expiry: an approval that lapsed after CI denies at admission."""
    late = dt.datetime(2027, 12, 1, tzinfo=dt.timezone.utc)  # past the examples' approvals (a year after signing); the summary is a year old
    gk = _gatekeeper(ci, now=late)
    try:
        gk.summaries.max_age = dt.timedelta(days=400)
        (outcome,) = _admit(gk)
    finally:
        gk.close()
    result, violations, _ = _decision(outcome)
    assert result == "deny" and "MLG-APPR-008" in {v for v, _ in violations}
    assert _records(ci)[0]["summary"]["signer"] == "ci.hospital.example"  # it relied on the summary, and still denied


def _refused(ci, **kw):
    gk = _gatekeeper(ci, **kw)
    plain = _gatekeeper(ci, accept=False, name="plain", trust=kw.get("trust"))
    try:
        got, want = _admit(gk), _admit(plain)
        assert gk.summaries.used == 0 and gk.prepared.engine.static_misses == 1
        assert [_decision(o) for o in got] == [_decision(o) for o in want]
    finally:
        gk.close()
        plain.close()
    assert "summary" not in _records(ci)[0]


def test_a_tampered_summary_is_not_relied_on(ci):
    path = _summary_path(ci)
    bundle = json.loads(path.read_bytes())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["mlgate"]["static"]["findings"]["violations"] = []  # hide a finding
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(bundle))
    _refused(ci)


def test_an_expired_summary_is_not_relied_on(ci):
    _refused(ci, now=EXAMPLES_NOW + dt.timedelta(days=2))


def test_a_summary_signed_by_an_untrusted_key_is_not_relied_on(ci):
    _, other = generate_keypair("ecdsa-p256")
    _trust_with(ci / "other-trust.yaml", other)
    _refused(ci, trust=ci / "other-trust.yaml")


def test_a_summary_for_another_model_digest_is_not_relied_on(ci):
    # the summary of another release, put where readmission-risk's belongs
    run(["check", ci / "store" / "triage-acuity", "--env", "production", "-o", "json", "--trust", ci / "trust.yaml",
         "--audit-log", ci / "ci-audit.jsonl", "--attest", ci / "ci.key", "--attest-output", _summary_path(ci)])
    _refused(ci)


def test_a_summary_for_other_evidence_is_not_relied_on(ci):
    card = ci / "store" / RELEASE / "evidence" / "model_card.md"
    card.write_text(card.read_text() + "\n<!-- edited after CI -->\n")
    _refused(ci)


def test_a_summary_made_under_another_policy_is_not_relied_on(ci):
    import yaml

    override = ci / "looser.yaml"
    override.write_text(yaml.safe_dump({"mlgate": {"environments": {"production": {"bias": {"delta": 0.5}}}}}))
    code, out, err = run(["check", ci / "store" / RELEASE, "--env", "production", "-o", "json", "--trust", ci / "trust.yaml",
                          "--audit-log", ci / "ci-audit.jsonl", "--attest", ci / "ci.key", "--data", override])
    assert code in (0, 1), err
    _refused(ci)


def test_accept_summaries_settings_are_checked():
    from mlgate.gatekeeper.config import settings_from_dict

    ok = settings_from_dict({"acceptSummaries": {"maxAge": "24h"}}, "s.yaml", evidence_store="file:///x", audit="file:/a")
    assert ok.accept_summaries_s == 86_400
    for bad, where in (({"acceptSummaries": {}}, "acceptSummaries"), ({"acceptSummaries": {"maxAge": "soon"}}, "acceptSummaries.maxAge"),
                       ({"acceptSummaries": {"maxAge": "24h", "x": 1}}, "acceptSummaries")):
        with pytest.raises(InputError) as exc:
            settings_from_dict(bad, "s.yaml", evidence_store="file:///x", audit="file:/a")
        assert exc.value.field.startswith(where) and exc.value.file == "s.yaml"

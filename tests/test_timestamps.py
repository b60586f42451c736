"""Time that a signer cannot choose (issue 14, part 4).

``signedAt`` is what the signer wrote. Only a trusted time (an RFC 3161 timestamp of a TSA the
trust policy lists, or a keyless bundle's Rekor time) may show that a signature predates a
revocation or a key's ``notAfter``. The TSA here is real: ``openssl ts -reply`` behind a small
HTTP handler on 127.0.0.1 (``tests/tsa_local.py``); its timestamps carry the machine's real time.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlgate.audit import open_sink
from mlgate.clock import FixedClock, rfc3339
from mlgate.errors import InputError
from mlgate.evidence.approval import verify_approval
from mlgate.gate import GateOptions, check
from mlgate.signing.approve import approve_release
from mlgate.signing.timestamp import decode, request_timestamp
from mlgate.signing.trust import Validity, load_trust_policy
from mlgate.signing.verify import verify_release

from cli_helpers import run
from conftest import EXAMPLES, REPO
from tsa_local import Tsa, running_tsa

UTC = dt.timezone.utc
KEYS = EXAMPLES / "keys"
JANE = dict(key_path=KEYS / "jane.roe.key", printed_name="Dr. Jane Roe", signer_id="jane.roe@hospital.example",
            role="clinical-safety-officer", meaning="approval")
JANE_LINE = "  - id: jane.roe@hospital.example"
TRUST_SOURCE = EXAMPLES / "trust.yaml" if (EXAMPLES / "trust.yaml").exists() else REPO / "policies" / "trust.yaml"


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tsa() -> Any:
    server = running_tsa("Hospital Timestamping Authority")
    yield server
    server.close()


@pytest.fixture(scope="module")
def rogue_tsa() -> Any:
    """A working TSA that the trust policy does not list."""
    server = running_tsa("Rogue Timestamping Authority")
    yield server
    server.close()


@pytest.fixture
def release(tmp_path: Path) -> Path:
    dst = tmp_path / "release"
    shutil.copytree(EXAMPLES / "readmission-risk", dst)
    shutil.copy(TRUST_SOURCE, tmp_path / "trust.yaml")
    return dst


def trust_file(release: Path) -> Path:
    return release.parent / "trust.yaml"


def jane_key(release: Path, line: str) -> None:
    """Add ``line`` (notAfter/notBefore/revoked) to Jane's key in the trust policy."""
    text = trust_file(release).read_text()
    head, tail = text.split(JANE_LINE, 1)
    tail = tail.replace("      - pem: |", f"      - {line}\n        pem: |", 1)
    trust_file(release).write_text(head + JANE_LINE + tail)


def list_tsa(release: Path, tsa: Tsa, **kw: Any) -> None:
    with trust_file(release).open("a") as fh:
        fh.write("timestampAuthorities:\n" + tsa.trust_entry(**kw))


def staging_approval(release: Path) -> Path:
    return release / "evidence" / "approvals" / "jane.roe_hospital.example.approval.staging.sigstore.json"


def resign_staging(release: Path, signed_at: dt.datetime, *, tsa: str | None = None) -> Path:
    """Jane signs the staging approval again, claiming ``signed_at`` (the file is replaced)."""
    staging_approval(release).unlink()
    kw = {"tsa": tsa} if tsa else {}
    return approve_release(release, environment="staging", expires=None, comment="stolen key", out=staging_approval(release),
                           now=signed_at, **JANE, **kw)


def gate(release: Path, env: str, now: dt.datetime) -> Any:
    options = GateOptions(environment=env, trust_policy=trust_file(release), clock=FixedClock(now))
    with open_sink(f"file:{release.parent / 'audit.jsonl'}") as sink:
        return check(release, options, sink)


def record_of(release: Path, path: Path | None = None) -> dict[str, Any]:
    path = path or staging_approval(release)
    return verify_approval(path.read_bytes(), path.name, trust=load_trust_policy(trust_file(release)))


def messages(decision: Any, rule: str) -> list[str]:
    return [v.message for v in decision.violations if v.id == rule]


# --------------------------------------------------------------------------- the reproductions (no TSA)
def test_backdated_approval_with_a_compromised_key_is_denied(release: Path) -> None:
    """Jane's key revoked for keyCompromise on 2026-12-01; the thief signs the staging approval
    (Jane's is the only one staging needs) dated 2026-11-30. Before: allowed with a medium
    warning (MLG-APPR-018)."""
    jane_key(release, "revoked: {at: '2026-12-01T00:00:00Z', reason: keyCompromise}")
    resign_staging(release, t("2026-11-30T10:00:00Z"))
    decision = gate(release, "staging", t("2026-12-02T12:00:00Z"))
    assert not decision.allowed
    assert not any(w.id == "MLG-APPR-018" for w in decision.warnings)
    reasons = " ".join(messages(decision, "MLG-APPR-003"))
    assert "revoked at 2026-12-01T00:00:00Z (keyCompromise) and no trusted timestamp shows when it signed" in reasons
    assert "the signed time 2026-11-30T10:00:00Z is the signer's claim" in reasons


@pytest.mark.parametrize("reason", ["unspecified", None])
def test_a_revocation_that_does_not_rule_out_compromise_voids_too(release: Path, reason: str | None) -> None:
    jane_key(release, "revoked: {at: '2026-12-01T00:00:00Z'" + (f", reason: {reason}" if reason else "") + "}")
    resign_staging(release, t("2026-11-30T10:00:00Z"))
    record = record_of(release)
    assert not record["verified"] and "every signature of a credential revoked for a possible compromise is void" in record["reason"]


def test_expired_key_with_an_approval_dated_the_day_before_is_denied(release: Path) -> None:
    """Jane's key is valid until 2026-12-01; an approval dated 2026-11-30 is evaluated on
    2026-12-02. Before: allowed with no warning at all."""
    jane_key(release, "notAfter: '2026-12-01T00:00:00Z'")
    resign_staging(release, t("2026-11-30T10:00:00Z"))
    decision = gate(release, "staging", t("2026-12-02T12:00:00Z"))
    assert not decision.allowed
    (message,) = messages(decision, "MLG-APPR-022")
    assert "valid only until 2026-12-01T00:00:00Z (end of its validity period)" in message
    assert "its signing time 2026-11-30T10:00:00Z is the signer's claim, with no trusted timestamp" in message
    # While the key is still valid the same approval counts: its claimed time is at most now.
    assert not messages(gate(release, "staging", t("2026-11-30T12:00:00Z")), "MLG-APPR-022")


def test_superseded_key_without_a_trusted_time_counts_only_until_the_revocation(release: Path) -> None:
    jane_key(release, "revoked: {at: '2026-12-01T00:00:00Z', reason: superseded}")
    resign_staging(release, t("2026-11-30T10:00:00Z"))
    record = record_of(release)
    assert record["verified"] and record["key_status"] == "valid" and record["key_valid_until"] == "2026-12-01T00:00:00Z"
    decision = gate(release, "staging", t("2026-12-02T12:00:00Z"))
    assert not decision.allowed
    assert "(revoked, superseded)" in messages(decision, "MLG-APPR-022")[0]


def test_verify_shows_the_claimed_time_and_fails_an_ended_credential(release: Path) -> None:
    jane_key(release, "notAfter: '2026-12-01T00:00:00Z'")
    resign_staging(release, t("2026-11-30T10:00:00Z"))
    trust = load_trust_policy(trust_file(release))
    row = next(r for r in verify_release(release, trust, t("2026-12-02T12:00:00Z")).rows if r.artifact.endswith("approval.staging.sigstore.json"))
    assert row.time_source == "claimed" and row.status == "failed"
    assert "credential valid only until 2026-12-01T00:00:00Z and the signing time is the signer's claim" in row.reason


# --------------------------------------------------------------------------- a real TSA
def test_timestamped_approval_made_before_a_superseded_revocation_still_counts(release: Path, tsa: Tsa) -> None:
    list_tsa(release, tsa)
    signed = dt.datetime.now(UTC).replace(microsecond=0)
    path = resign_staging(release, signed, tsa=tsa.url)
    stamp = json.loads(path.read_bytes())["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"]
    gen_time = decode(base64.b64decode(stamp), "t", "f").tst_info.gen_time.replace(tzinfo=UTC)
    revoked = gen_time + dt.timedelta(minutes=10)
    jane_key(release, f"revoked: {{at: '{rfc3339(revoked)}', reason: superseded}}")
    record = record_of(release)
    assert record["verified"], record["reason"]
    assert record["key_status"] == "revoked_after_signing" and record["key_valid_until"] is None
    assert record["signed_at_source"] == "tsa" and record["time_authority"] == "Hospital Timestamping Authority"
    assert record["signed_at"] == rfc3339(gen_time) and record["claimed_signed_at"] == rfc3339(signed)
    # mlgate verify, a day after the revocation: counted, with the revocation noted and the TSA named
    trust = load_trust_policy(trust_file(release))
    row = next(r for r in verify_release(release, trust, revoked + dt.timedelta(days=1)).rows if r.artifact.endswith("approval.staging.sigstore.json"))
    assert row.time_source == "TSA Hospital Timestamping Authority" and row.status == "warning", row
    assert f"credential revoked later, at {rfc3339(revoked)} (superseded)" in row.reason


def test_timestamp_before_the_key_expired_keeps_the_signature(release: Path, tsa: Tsa) -> None:
    list_tsa(release, tsa, pin=True)
    path = resign_staging(release, dt.datetime.now(UTC), tsa=tsa.url)
    gen_time = t(record_of(release, path)["signed_at"])
    jane_key(release, f"notAfter: '{rfc3339(gen_time + dt.timedelta(minutes=5))}'")
    record = record_of(release, path)
    assert record["verified"] and record["key_status"] == "valid" and record["key_valid_until"] is None


def test_timestamp_after_a_compromise_does_not_rescue(release: Path, tsa: Tsa) -> None:
    list_tsa(release, tsa)
    path = resign_staging(release, dt.datetime.now(UTC), tsa=tsa.url)
    gen_time = t(record_of(release, path)["signed_at"])
    jane_key(release, f"revoked: {{at: '{rfc3339(gen_time - dt.timedelta(days=1))}', reason: keyCompromise}}")
    record = record_of(release, path)
    assert not record["verified"] and "does not show the signature predates the compromise" in record["reason"]
    assert "(time from Hospital Timestamping Authority)" in record["reason"]


def test_timestamp_before_compromised_at_still_counts(release: Path, tsa: Tsa) -> None:
    """Issue 14 red team: a compromise voids timestamped signatures too, unless the revoker says
    since when the key was at risk (compromisedAt) and the timestamp predates it."""
    list_tsa(release, tsa)
    path = resign_staging(release, dt.datetime.now(UTC), tsa=tsa.url)
    gen_time = t(record_of(release, path)["signed_at"])
    revoked = rfc3339(gen_time + dt.timedelta(days=1))
    original = trust_file(release).read_text()

    def revoke(extra: str) -> dict:
        trust_file(release).write_text(original)
        jane_key(release, f"revoked: {{at: '{revoked}', reason: keyCompromise{extra}}}")
        return record_of(release, path)

    assert not revoke("")["verified"]  # no compromisedAt: nothing the key signed counts
    record = revoke(f", compromisedAt: '{rfc3339(gen_time + dt.timedelta(hours=1))}'")
    assert record["verified"] and record["key_status"] == "revoked_after_signing", record["reason"]
    assert not revoke(f", compromisedAt: '{rfc3339(gen_time - dt.timedelta(hours=1))}'")["verified"]


def test_timestamp_from_a_tsa_not_in_the_trust_policy_does_not_count(release: Path, tsa: Tsa, rogue_tsa: Tsa) -> None:
    jane_key(release, "revoked: {at: '2026-12-01T00:00:00Z', reason: superseded}")
    path = resign_staging(release, t("2026-11-30T10:00:00Z"), tsa=rogue_tsa.url)
    record = record_of(release, path)  # no TSA listed at all
    assert not record["verified"] and "the trust policy lists no timestampAuthorities" in record["reason"]
    list_tsa(release, tsa)  # another TSA listed
    record = record_of(release, path)
    assert not record["verified"]
    assert "the timestamp does not verify with any timestamping authority the trust policy lists (hospital-tsa:" in record["reason"]


def test_timestamp_over_other_bytes_does_not_count(release: Path, tsa: Tsa) -> None:
    list_tsa(release, tsa)
    bundle = json.loads(resign_staging(release, t("2026-11-30T10:00:00Z")).read_bytes())
    # A genuine timestamp of the listed TSA, but over another signature (e.g. copied from an
    # approval made before the revocation).
    other = request_timestamp(tsa.url, b"the signature of some other statement")
    bundle["verificationMaterial"]["timestampVerificationData"] = {"rfc3161Timestamps": [{"signedTimestamp": base64.b64encode(other).decode()}]}
    staging_approval(release).write_text(json.dumps(bundle))
    record = record_of(release)
    assert not record["verified"] and "Mismatch between messages" in record["reason"]


def _with_token(path: Path, token: bytes) -> None:
    bundle = json.loads(path.read_bytes())
    bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"] = base64.b64encode(token).decode()
    path.write_text(json.dumps(bundle))


def test_a_tampered_token_fails_closed(release: Path, tsa: Tsa) -> None:
    list_tsa(release, tsa)
    path = resign_staging(release, dt.datetime.now(UTC), tsa=tsa.url)
    good = record_of(release, path)
    assert good["verified"]
    token = base64.b64decode(json.loads(path.read_bytes())["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"])
    # The genTime moved a year back (inside the signed TSTInfo): the TSA's signature breaks.
    year = good["signed_at"][:4].encode()
    at = token.index(b"\x18\x0f" + year) + 2  # GeneralizedTime YYYYMMDDhhmmssZ
    _with_token(path, token[:at] + str(int(year) - 1).encode() + token[at + 4:])
    record = record_of(release, path)
    assert not record["verified"] and "the timestamp does not verify" in record["reason"]
    # Truncated: not a timestamp at all.
    _with_token(path, token[: len(token) // 2])
    record = record_of(release, path)
    assert not record["verified"] and "not an RFC 3161 timestamp response" in record["reason"]
    # No single flipped bit anywhere gives a trusted time other than the TSA's, or another TSA.
    trust = load_trust_policy(trust_file(release))
    bundle = json.loads(path.read_bytes())
    stamps = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    for i in range(len(token)):
        flipped = bytearray(token)
        flipped[i] ^= 0x01
        stamps[0]["signedTimestamp"] = base64.b64encode(bytes(flipped)).decode()
        record = verify_approval(json.dumps(bundle).encode(), "flipped", trust=trust)
        if record["verified"]:  # a few unsigned fields (versions, the algorithm OID) are not covered
            assert (record["signed_at"], record["time_authority"]) == (good["signed_at"], good["time_authority"]), i


def test_a_claim_after_the_timestamp_is_refused(release: Path, tsa: Tsa) -> None:
    list_tsa(release, tsa)
    path = resign_staging(release, dt.datetime.now(UTC) + dt.timedelta(days=3), tsa=tsa.url)
    record = record_of(release, path)
    assert not record["verified"] and "after Hospital Timestamping Authority timestamped its signature" in record["reason"]


def test_waive_with_tsa_and_verify_on_the_command_line(release: Path, tsa: Tsa) -> None:
    list_tsa(release, tsa)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    out = release / "evidence" / "approvals" / "jane.tsa.sigstore.json"
    code, _, err = run(["approve", release, "--key", KEYS / "jane.roe.key", "--name", "Dr. Jane Roe", "--id", "jane.roe@hospital.example",
                        "--role", "clinical-safety-officer", "--meaning", "approval", "--env", "dev", "--trust", trust_file(release),
                        "--tsa", tsa.url, "-o", out], now=now)
    assert code == 0, err
    assert json.loads(out.read_bytes())["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    code, text, err = run(["verify", release, "--trust", trust_file(release)], now=now + dt.timedelta(hours=1))
    row = next(line for line in text.splitlines() if line.startswith("evidence/approvals/jane.tsa.sigstore.json"))
    assert "TSA Hospital Timestamping Authority" in row, text
    assert any("claimed" in line for line in text.splitlines() if "production.sigstore.json" in line)
    waiver = release / "waiver.sigstore.json"
    code, _, err = run(["waive", release, "--rule", "MLG-BIAS-002", "--env", "staging", "--justification", "Clinician review of every flagged case (CAPA-1).",
                        "--expires", rfc3339(now + dt.timedelta(days=5)), "--key", KEYS / "jane.roe.key", "--name", "Dr. Jane Roe",
                        "--id", "jane.roe@hospital.example", "--role", "clinical-safety-officer", "--trust", trust_file(release),
                        "--tsa", tsa.url, "-o", waiver], now=now)
    assert code == 0, err
    from mlgate.evidence.waiver import verify_waiver

    record = verify_waiver(waiver.read_bytes(), "waiver", trust=load_trust_policy(trust_file(release)))
    assert record["verified"] and record["signed_at_source"] == "tsa" and record["time_authority"] == "Hospital Timestamping Authority"


def test_an_unreachable_or_bogus_tsa_is_a_one_line_error(release: Path, tsa: Tsa) -> None:
    with pytest.raises(InputError, match=r"--tsa: cannot reach the timestamping authority http://127.0.0.1:9/"):
        request_timestamp("http://127.0.0.1:9/", b"sig", timeout=2)
    with pytest.raises(InputError, match=r"--tsa: 'file:///etc/passwd' is not an http\(s\) URL"):
        request_timestamp("file:///etc/passwd", b"sig")
    code, _, err = run(["approve", release, "--key", KEYS / "jane.roe.key", "--name", "Dr. Jane Roe", "--id", "jane.roe@hospital.example",
                        "--role", "clinical-safety-officer", "--meaning", "approval", "--env", "dev", "--trust", trust_file(release),
                        "--tsa", "http://127.0.0.1:9/", "-o", release / "x.json"])
    assert code == 2 and err.count("\n") == 1 and "cannot reach the timestamping authority" in err and "Traceback" not in err


def test_trust_policy_refuses_a_pinned_tsa_certificate_that_may_not_stamp(release: Path, tmp_path: Path) -> None:
    from tsa_local import make_tsa

    weak = make_tsa(tmp_path / "weak", "Weak TSA", eku_critical=False)
    list_tsa(release, weak, pin=True)
    with pytest.raises(InputError, match=r"timestampAuthorities\[0\].certificate: certificate .* may not sign timestamps"):
        load_trust_policy(trust_file(release))


# --------------------------------------------------------------------------- the rule itself
D = lambda day: dt.datetime(2026, 11, day, tzinfo=UTC)  # noqa: E731


@pytest.mark.parametrize("validity, claimed, trusted, status, counts, until", [
    # a compromise: no claimed time rescues; a trusted time before it does
    (Validity(revoked_at=D(10), revocation_reason="keyCompromise"), D(9), None, "revoked", False, None),
    # ... and a trusted time counts only before compromisedAt (none given: the thief may have
    # timestamped forgeries between the theft and the revocation, so nothing counts)
    (Validity(revoked_at=D(10), revocation_reason="keyCompromise"), D(9), D(9), "revoked", False, None),
    (Validity(revoked_at=D(10), revocation_reason="keyCompromise", compromised_at=D(9)), D(8), D(8), "revoked_after_signing", True, None),
    (Validity(revoked_at=D(10), revocation_reason="keyCompromise", compromised_at=D(9)), D(8), D(9), "revoked", False, None),
    (Validity(revoked_at=D(10), revocation_reason=None, compromised_at=D(9)), D(8), D(8), "revoked_after_signing", True, None),
    (Validity(revoked_at=D(10), revocation_reason="keyCompromise"), D(9), D(11), "revoked", False, None),
    # another reason: counts until the revocation without a trusted time
    (Validity(revoked_at=D(10), revocation_reason="superseded"), D(9), None, "valid", True, D(10)),
    (Validity(revoked_at=D(10), revocation_reason="superseded"), D(10), None, "revoked", False, None),
    (Validity(revoked_at=D(10), revocation_reason="superseded"), D(9), D(9), "revoked_after_signing", True, None),
    # notAfter: the claimed time only bounds; a trusted one settles it
    (Validity(not_after=D(10)), D(9), None, "valid", True, D(10)),
    (Validity(not_after=D(10)), D(10), None, "expired", False, None),
    (Validity(not_after=D(10)), D(9), D(9), "valid", True, None),
    (Validity(not_after=D(10)), D(9), D(10), "expired", False, None),
    (Validity(not_after=D(10), revoked_at=D(8), revocation_reason="cessationOfOperation"), D(7), None, "valid", True, D(8)),
    # notBefore and no bounds
    (Validity(not_before=D(10)), D(9), None, "not_yet_valid", False, None),
    (Validity(), D(9), None, "valid", True, None),
])
def test_judge_signature(validity: Validity, claimed, trusted, status: str, counts: bool, until) -> None:
    judged = validity.judge_signature(claimed, trusted)
    assert (judged.status, judged.problem is None, judged.valid_until) == (status, counts, until)

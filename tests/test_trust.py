from __future__ import annotations

import dataclasses
import shutil
import textwrap
from pathlib import Path

import pytest

from mlgate.signing import keys
from mlgate.errors import InputError
from mlgate.signing.trust import load_trust_policy, parse_trust_policy

ASSETS = Path(__file__).parent / "assets" / "signing"
KEYS = ASSETS / "keys"


def kid(name: str) -> str:
    return keys.key_id(keys.load_public_key(KEYS / f"{name}.pub.pem"))


def inline(name: str, indent: int) -> str:
    return textwrap.indent((KEYS / f"{name}.pub.pem").read_text(), " " * indent)


@pytest.fixture
def trust_dir(tmp_path: Path) -> Path:
    (tmp_path / "keys").mkdir()
    for name in ("approver-ecdsa", "model-signer-ecdsa"):
        shutil.copy(KEYS / f"{name}.pub.pem", tmp_path / "keys" / f"{name}.pub.pem")
    return tmp_path


def example(extra_key: str = "") -> str:
    return f"""\
apiVersion: mlgate.dev/v1
kind: TrustPolicy
metadata: {{name: hospital-trust, version: "2026.11"}}
approvers:
  - id: jane.roe@hospital.example
    name: Dr. Jane Roe
    roles: [clinical-safety-officer, ml-lead]
    meanings: [review, approval]
    environments: [staging, production]
    keys:
      - path: keys/approver-ecdsa.pub.pem
  - id: john.doe@hospital.example
    name: John Doe
    roles: [data-steward]
    meanings: [review]
    keys:
      - pem: |
{inline("approver-ed25519", 10)}{extra_key}
modelSigners:
  - id: ml-platform-ci
    name: ML Platform CI
    keys: [{{path: keys/model-signer-ecdsa.pub.pem}}]
"""


def write(trust_dir: Path, text: str) -> Path:
    path = trust_dir / "trust.yaml"
    path.write_text(text)
    return path


def test_load_example(trust_dir: Path) -> None:
    policy = load_trust_policy(write(trust_dir, example()))
    assert policy.name == "hospital-trust" and policy.version == "2026.11"
    jane, john = policy.approvers
    assert jane.id == "jane.roe@hospital.example" and jane.name == "Dr. Jane Roe"
    assert jane.roles == ("clinical-safety-officer", "ml-lead") and jane.meanings == ("review", "approval")
    assert jane.environments == ("staging", "production") and john.environments is None
    assert jane.may_act_in("production") and not jane.may_act_in("research") and john.may_act_in("anything")
    assert jane.keys[0].key_id == kid("approver-ecdsa") and jane.keys[0].kind == "ecdsa-p256"
    assert jane.keys[0].source.endswith("keys/approver-ecdsa.pub.pem")
    assert john.keys[0].key_id == kid("approver-ed25519") and john.keys[0].source == "inline"
    assert policy.approver_for_key(kid("approver-ed25519")) is john
    assert policy.approver_for_key(kid("model-signer-ecdsa")) is None
    assert policy.model_signer_for_key(kid("model-signer-ecdsa")).id == "ml-platform-ci"
    assert set(policy.approver_keys()) == {kid("approver-ecdsa"), kid("approver-ed25519")}
    assert set(policy.model_signer_keys()) == {kid("model-signer-ecdsa")}
    assert policy.approver("john.doe@hospital.example") is john and policy.approver("nobody") is None
    assert policy.model_signer("ml-platform-ci") is not None
    assert len(policy.digest) == 64


def test_types_are_frozen(trust_dir: Path) -> None:
    policy = load_trust_policy(write(trust_dir, example()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.approvers[0].roles = ("admin",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.approvers = ()  # type: ignore[misc]


def test_key_id_may_be_pinned(trust_dir: Path) -> None:
    text = example().replace("      - path: keys/approver-ecdsa.pub.pem", f"      - path: keys/approver-ecdsa.pub.pem\n        keyId: {kid('approver-ecdsa')}")
    assert load_trust_policy(write(trust_dir, text)).approvers[0].keys[0].key_id == kid("approver-ecdsa")
    wrong = text.replace(kid("approver-ecdsa"), "f" * 64)
    with pytest.raises(InputError, match=r"trust.yaml: approvers\[0\].keys\[0\].keyId: keyId f+ does not match the key"):
        load_trust_policy(write(trust_dir, wrong))


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("apiVersion: mlgate.dev/v1", "apiVersion: mlgate.dev/v2", r"apiVersion: got 'mlgate.dev/v2', expected 'mlgate.dev/v1'"),
        ("kind: TrustPolicy", "kind: ModelRelease", r"kind: got 'ModelRelease'"),
        ("meanings: [review, approval]", "meanings: [review, signing]", r"approvers\[0\].meanings\[1\]: got 'signing', expected one of review, approval"),
        ("roles: [data-steward]", "roles: []", r"approvers\[1\].roles: \[\] should be non-empty"),
        ("    name: John Doe\n", "", r"approvers\[1\]: 'name' is required"),
        ("    name: John Doe\n", "    name: John Doe\n    nickname: JD\n", r"approvers\[1\]: unexpected field\(s\) 'nickname'"),
        ("keys: [{path: keys/model-signer-ecdsa.pub.pem}]", "keys: [{path: keys/model-signer-ecdsa.pub.pem, pem: x}]", r"modelSigners\[0\].keys\[0\]: a key needs exactly one of 'pem'"),
        ("keys: [{path: keys/model-signer-ecdsa.pub.pem}]", "keys: []", r"modelSigners\[0\].keys: \[\] should be non-empty"),
        ("id: jane.roe@hospital.example", "id: jane roe", r"approvers\[0\].id: 'jane roe' does not match"),
    ],
)
def test_schema_errors_name_file_and_json_path(trust_dir: Path, old: str, new: str, message: str) -> None:
    text = example()
    assert old in text
    with pytest.raises(InputError, match="trust.yaml: " + message):
        load_trust_policy(write(trust_dir, text.replace(old, new, 1)))


def test_key_path_must_stay_inside(trust_dir: Path) -> None:
    text = example().replace("path: keys/approver-ecdsa.pub.pem", "path: ../approver-ecdsa.pub.pem")
    with pytest.raises(InputError, match=r"approvers\[0\].keys\[0\].path: path '../approver-ecdsa.pub.pem' leaves"):
        load_trust_policy(write(trust_dir, text))
    text = example().replace("path: keys/approver-ecdsa.pub.pem", "path: /etc/passwd")
    with pytest.raises(InputError, match="absolute path"):
        load_trust_policy(write(trust_dir, text))


def test_missing_key_file(trust_dir: Path) -> None:
    text = example().replace("keys/approver-ecdsa.pub.pem", "keys/gone.pub.pem")
    with pytest.raises(InputError, match=r"trust.yaml: approvers\[0\].keys\[0\].path: key file 'keys/gone.pub.pem': file not found"):
        load_trust_policy(write(trust_dir, text))


def test_bad_key_contents(trust_dir: Path) -> None:
    (trust_dir / "keys" / "approver-ecdsa.pub.pem").write_text("garbage")
    with pytest.raises(InputError, match=r"approver-ecdsa.pub.pem: not a PEM public key"):
        load_trust_policy(write(trust_dir, example()))


def test_inline_private_key_refused(trust_dir: Path) -> None:
    text = example().replace(inline("approver-ed25519", 10), textwrap.indent((KEYS / "approver-ed25519.key.pem").read_text(), " " * 10))
    with pytest.raises(InputError, match=r"trust.yaml: approvers\[1\].keys\[0\].pem: this is a private key"):
        load_trust_policy(write(trust_dir, text))


def test_one_key_one_identity(trust_dir: Path) -> None:
    text = example().replace("keys: [{path: keys/model-signer-ecdsa.pub.pem}]", "keys: [{path: keys/approver-ecdsa.pub.pem}]")
    with pytest.raises(InputError, match=r"modelSigners\[0\].keys\[0\]: key [0-9a-f]{64} is already listed for approver 'jane.roe@hospital.example'"):
        load_trust_policy(write(trust_dir, text))


def test_duplicate_ids(trust_dir: Path) -> None:
    text = example().replace("id: john.doe@hospital.example", "id: jane.roe@hospital.example")
    with pytest.raises(InputError, match=r"approvers\[1\].id: duplicate approver id"):
        load_trust_policy(write(trust_dir, text))


def test_yaml_problems(trust_dir: Path) -> None:
    with pytest.raises(InputError, match="trust.yaml: invalid YAML"):
        load_trust_policy(write(trust_dir, "approvers: [\n"))
    with pytest.raises(InputError, match="aliases are not allowed"):
        load_trust_policy(write(trust_dir, "a: &x [1]\nb: *x\n"))
    with pytest.raises(InputError, match=r"trust.yaml: \$: .*not of type 'object'|trust.yaml: \$: expected object"):
        load_trust_policy(write(trust_dir, "- 1\n"))


def test_trailing_newline_in_token_refused(trust_dir: Path) -> None:
    text = example().replace("roles: [data-steward]", 'roles: ["data-steward\\n"]')
    with pytest.raises(InputError, match=r"approvers\[1\].roles\[0\]"):
        load_trust_policy(write(trust_dir, text))


def test_no_model_signers_is_allowed(trust_dir: Path) -> None:
    text = example().split("modelSigners:")[0]
    policy = parse_trust_policy(text.encode(), "t.yaml", base_dir=trust_dir)
    assert policy.model_signers == () and policy.model_signer_keys() == {}


# --------------------------------------------------------------------------- validity windows, revocation, rotation
import datetime as dt  # noqa: E402

from mlgate.signing.trust import Validity  # noqa: E402

UTC = dt.timezone.utc


def t(day: int) -> dt.datetime:
    return dt.datetime(2026, 11, day, tzinfo=UTC)


@pytest.mark.parametrize("validity, at, status, counts", [
    (Validity(), t(1), "valid", True),
    (Validity(), None, "valid", True),
    (Validity(not_before=t(10)), t(9), "not_yet_valid", False),
    (Validity(not_before=t(10)), t(10), "valid", True),
    (Validity(not_after=t(10)), t(10), "expired", False),
    (Validity(not_after=t(10)), t(9), "valid", True),
    (Validity(revoked_at=t(10), revocation_reason="keyCompromise"), t(10), "revoked", False),
    (Validity(revoked_at=t(10)), t(9), "revoked_after_signing", True),
    (Validity(revoked_at=t(10)), None, "unknown_signing_time", False),
])
def test_validity_judged_at_signing_time(validity: Validity, at, status: str, counts: bool) -> None:
    got, problem = validity.judge(at)
    assert got == status and (problem is None) == counts
    if problem:
        assert "\n" not in problem


def test_windows_revocation_and_rotation_load(trust_dir: Path) -> None:
    text = example().replace(
        "      - path: keys/approver-ecdsa.pub.pem",
        "      - path: keys/approver-ecdsa.pub.pem\n"
        "        notBefore: 2026-01-01T00:00:00Z\n"            # unquoted: YAML reads a datetime
        "        notAfter: '2026-11-20T00:00:00Z'\n"
        "        revoked: {at: '2026-11-25T00:00:00Z', reason: superseded}",
    )
    jane = load_trust_policy(write(trust_dir, text)).approvers[0]
    v = jane.keys[0].validity
    assert v.not_before == dt.datetime(2026, 1, 1, tzinfo=UTC) and v.not_after == t(20)
    assert v.revoked_at == t(25) and v.revocation_reason == "superseded"
    assert v.as_facts() == {"revoked_at": "2026-11-25T00:00:00Z", "revoked_at_ns": 1795564800000000000, "revocation_reason": "superseded"}


@pytest.mark.parametrize("extra, message", [
    ("        notAfter: '2026-01-01T00:00:00Z'\n        notBefore: '2026-02-01T00:00:00Z'", r"notAfter 2026-01-01T00:00:00Z is not after notBefore"),
    ("        notAfter: '2026-13-01'", r"keys\[0\].notAfter: expected an RFC 3339 UTC time"),
    ("        revoked: {reason: keyCompromise}", r"keys\[0\].revoked: 'at' is required"),
    ("        revoked: {at: '2026-01-01T00:00:00Z', reason: lost}", r"revoked.reason: got 'lost', expected one of unspecified, keyCompromise"),
])
def test_window_errors(trust_dir: Path, extra: str, message: str) -> None:
    text = example().replace("      - path: keys/approver-ecdsa.pub.pem", "      - path: keys/approver-ecdsa.pub.pem\n" + extra)
    with pytest.raises(InputError, match=message):
        load_trust_policy(write(trust_dir, text))


def test_signer_needs_a_credential(trust_dir: Path) -> None:
    text = example().replace("    keys: [{path: keys/model-signer-ecdsa.pub.pem}]\n", "")
    with pytest.raises(InputError, match=r"modelSigners\[0\]: a signer needs at least one of 'keys', 'certificates' or 'keyless'"):
        load_trust_policy(write(trust_dir, text))


def test_checkpoint_signers_share_the_one_key_one_identity_rule(trust_dir: Path) -> None:
    text = example() + "checkpointSigners:\n  - id: audit\n    name: Audit\n    keys: [{path: keys/approver-ecdsa.pub.pem}]\n"
    with pytest.raises(InputError, match=r"checkpointSigners\[0\].keys\[0\]: key [0-9a-f]{64} is already listed for approver"):
        load_trust_policy(write(trust_dir, text))
    _, public = keys.generate_keypair("ed25519")
    (trust_dir / "keys" / "audit.pub.pem").write_bytes(public)
    ok = example() + "checkpointSigners:\n  - id: audit\n    name: Audit\n    keys: [{path: keys/audit.pub.pem}]\n"
    assert load_trust_policy(write(trust_dir, ok)).checkpoint_signers[0].id == "audit"

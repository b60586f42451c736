from __future__ import annotations

import dataclasses
import shutil
import textwrap
from pathlib import Path

import pytest

from mlgate import keys
from mlgate.errors import InputError
from mlgate.trust import load_trust_policy, parse_trust_policy

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

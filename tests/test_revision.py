"""Issue 14 part 2: the policy revision recorded with a decision covers every input to it.

The policy's files, each data override, the trust policy actually used and every file it names
(keys, CA certificates, trusted roots), the settings file and the engine with its version. The
record also says which trust policy was used (``trust_policy: {path, digest, files, from}``) and
what the revision digests (``revision_inputs``), so `--trust`, `--policy` and `--data` show."""

from __future__ import annotations

import json
import shutil

import pytest

from cli_helpers import check_json
from conftest import EXAMPLES
from mlgate.errors import EngineError
from mlgate.gate import GateOptions, prepare
from mlgate.policy import bundled_policy_dir, load_policy
from mlgate.policy.engine import create_engine
from mlgate.policy.engine.opa import OpaSettings
from mlgate.settings import NO_SETTINGS, load_settings
from opa_rest_server import FakeOpa

TRUST = EXAMPLES / "trust.yaml"


def _records(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_a_swapped_trust_policy_is_a_different_revision_and_shows_in_the_record(tmp_path):
    """The reproduction: `--trust FILE` swapped every signer and the decision kept the same revision."""
    forged = tmp_path / "forged-trust.yaml"
    forged.write_text(TRUST.read_text().replace("name: Sam Patel", "name: Mallory"))
    log = tmp_path / "a.jsonl"
    check_json(EXAMPLES / "readmission-risk", "production", log)
    check_json(EXAMPLES / "readmission-risk", "production", log, "--trust", forged)
    honest, swapped = _records(log)
    assert honest["policy_revision"] != swapped["policy_revision"]
    assert honest["trust_policy"]["path"] == "examples/trust.yaml" and honest["trust_policy"]["from"] == "settings"
    assert swapped["trust_policy"]["from"] == "flag" and swapped["trust_policy"]["path"].endswith("forged-trust.yaml")
    assert swapped["trust_policy"]["digest"] != honest["trust_policy"]["digest"]
    assert swapped["revision_inputs"]["trust_policy"] == swapped["trust_policy"]


def _trust_with_key_file(tmp_path, key_name):
    """The examples' trust policy with Sam's key given as a file (keys/sam.pub) instead of inline."""
    (tmp_path / "keys").mkdir(exist_ok=True)
    shutil.copy(EXAMPLES / "keys" / f"{key_name}.pub", tmp_path / "keys" / "sam.pub")
    text = TRUST.read_text()
    start = text.index("  - id: sam.patel@hospital.example")
    block_start = text.index("      - pem: |", start)
    block_end = text.index("  - id:", block_start)
    path = tmp_path / "trust.yaml"
    path.write_text(text[:block_start] + "      - path: keys/sam.pub\n" + text[block_end:])
    return path


def _revision(**options):
    return prepare(GateOptions(**{"environment": "production", "settings": NO_SETTINGS, **options}))


def test_a_key_file_the_trust_policy_names_is_part_of_the_revision(tmp_path):
    from mlgate.signing.keys import generate_keypair

    sam = next(p.stem for p in (EXAMPLES / "keys").glob("sam*.pub"))
    trust = _trust_with_key_file(tmp_path, sam)
    first = _revision(trust_policy=trust)
    assert list(first.inputs["trust_policy"]["files"]) == ["keys/sam.pub"]
    (tmp_path / "keys" / "sam.pub").write_bytes(generate_keypair("ecdsa-p256")[1])  # same trust.yaml bytes, another key
    second = _revision(trust_policy=trust)
    assert first.inputs["trust_policy"]["digest"] == second.inputs["trust_policy"]["digest"]
    assert first.revision != second.revision


def test_overrides_settings_and_engine_each_change_the_revision(tmp_path):
    base = _revision(trust_policy=TRUST)
    override = tmp_path / "o.json"
    override.write_text(json.dumps({"mlgate": {"environments": {"staging": {"bias": {"delta": 0.2}}}}}))
    with_data = _revision(trust_policy=TRUST, data_overrides=[override])
    assert with_data.revision != base.revision
    assert [o["digest"] for o in with_data.inputs["data_overrides"]] == [with_data.policy.overrides[0][1]]
    settings_file = tmp_path / ".mlgate.yaml"
    settings_file.write_text(f"trust: {TRUST}\n")
    one = _revision(settings=load_settings(settings_file))
    settings_file.write_text(f"# reviewed\ntrust: {TRUST}\n")
    two = _revision(settings=load_settings(settings_file))
    assert one.revision != two.revision != base.revision and one.inputs["trust_policy"] == {**base.inputs["trust_policy"], "from": "settings"}
    cpp = _revision(trust_policy=TRUST, engine="rego-cpp")
    assert cpp.revision != base.revision and cpp.inputs["engine"]["name"] == "rego-cpp"


def test_the_revision_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    here = _revision(trust_policy=TRUST).revision
    monkeypatch.chdir(tmp_path)
    assert _revision(trust_policy=TRUST).revision == here


# --- the remote OPA: the bundle it serves ----------------------------------------------------------


def test_opa_serving_no_bundle_is_refused():
    """The reproduction: an OPA running loose policy files was recorded under the local revision."""
    p = load_policy(bundled_policy_dir())
    with FakeOpa(p, serve_bundle=False) as opa:
        engine = create_engine("opa", p, opa=OpaSettings(url=opa.url))
        with pytest.raises(EngineError, match="OPA serves no bundle"):
            engine.decide({})


def test_opa_serving_another_bundle_is_refused_and_an_expected_revision_can_be_set(tmp_path):
    p = load_policy(bundled_policy_dir())
    with FakeOpa(p, bundle_revision="f" * 64) as opa:
        with pytest.raises(EngineError, match="not the expected revision"):
            create_engine("opa", p, opa=OpaSettings(url=opa.url)).decide({})
        assert isinstance(create_engine("opa", p, opa=OpaSettings(url=opa.url, expected_revision="f" * 64)).decide({}), dict)


def test_cli_opa_without_a_bundle_is_a_recorded_error(tmp_path):
    p = load_policy(bundled_policy_dir())
    log = tmp_path / "a.jsonl"
    with FakeOpa(p, serve_bundle=False) as opa:
        code, decision, _ = check_json(EXAMPLES / "readmission-risk", "production", log, "--engine", "opa", "--opa-url", opa.url)
    assert code == 2 and "OPA serves no bundle" in decision["error"]
    (record,) = _records(log)
    assert record["result"] == "error" and record["revision_inputs"]["engine"]["bundle_revision"] == p.bundle_revision

"""The bundled Rego policy library (policies/), run in the embedded engine.

Three kinds of test:

* every ``test_*`` rule of every Rego package under policies/ is one pytest
  case; it passes only when the rule evaluates to a literal ``true``;
* the library's own invariants: METADATA blocks are valid YAML with an id,
  severity, controls and remediation that the violation objects repeat
  verbatim, ids are unique, and the generated composition names every rule package;
* whole input documents fed to ``data.mlgate.decision``: the reference release
  allows, and each single mutation of it denies with the expected id.

The loader here mirrors the product's: every ``.rego`` file is a policy, and
every ``data.json`` is data placed at the path of its directory relative to
policies/ (policies/mlgate/environments/production/data.json lands at
data.mlgate.environments.production).
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import regorus

POLICIES = Path(__file__).resolve().parent.parent / "policies"
RULES = POLICIES / "mlgate" / "rules"
DECISION = "data.mlgate.decision"
ID_PATTERN = re.compile(r"^MLG-[A-Z]+-[0-9]{3}$")
SEVERITIES = {"low", "medium", "high", "critical"}

# regorus attaches native backtraces to its errors when this is set.
os.environ.pop("RUST_BACKTRACE", None)


def rego_files() -> list[Path]:
    return sorted(POLICIES.rglob("*.rego"))


def data_files() -> list[Path]:
    return sorted(POLICIES.rglob("data.json"))


def wrap_by_directory(path: Path, document: Any) -> dict[str, Any]:
    """Nest a data.json document under the path of its directory."""
    for part in reversed(path.parent.relative_to(POLICIES).parts):
        document = {part: document}
    return document


def new_engine() -> regorus.Engine:
    """Every file as written, and the findings composition mlgate generates at load (compose.py)."""
    from mlgate.policy import load_policy
    from mlgate.policy.compose import GENERATED_PATH

    engine = regorus.Engine()
    for path in rego_files():
        engine.add_policy(str(path.relative_to(POLICIES)), path.read_text(encoding="utf-8"))
    (generated,) = [m.text for m in load_policy(POLICIES).modules if m.path == GENERATED_PATH]
    engine.add_policy(GENERATED_PATH, generated)
    for path in data_files():
        document = json.loads(path.read_text(encoding="utf-8"))
        engine.add_data_json(json.dumps(wrap_by_directory(path, document)))
    return engine


@cache
def shared_engine() -> regorus.Engine:
    engine = new_engine()
    engine.set_input_json("{}")
    return engine


def evaluate(engine: regorus.Engine, rule: str) -> Any:
    """The rule's value; the string "<undefined>" when regorus finds it undefined."""
    return json.loads(engine.eval_rule_as_json(rule))


def decide(document: Any) -> dict[str, Any]:
    engine = shared_engine()
    engine.set_input_json(json.dumps(document))
    return evaluate(engine, DECISION)


def violation_ids(decision: dict[str, Any]) -> set[str]:
    return {v["id"] for v in decision["violations"]}


# --- discovery of the Rego tests ------------------------------------------------


def discover_rego_tests() -> list[tuple[str, str, str]]:
    """(file, package, rule) for every test_* rule, found as `mlgate policy test` finds them."""
    from mlgate.policy import load_policy
    from mlgate.policy.rego_ast import parse
    from mlgate.policytools.testing import discover

    return sorted((t.path, t.package, t.name) for t in discover(parse(load_policy(POLICIES))))


REGO_TESTS = discover_rego_tests()


def test_rego_tests_were_found() -> None:
    # No tests found is a failure, not a pass (conftest does the same).
    packages = {package for _, package, _ in REGO_TESTS}
    assert "mlgate.decision_test" in packages
    for path in RULES.glob("*.rego"):
        if not path.stem.endswith("_test"):
            assert f"mlgate.rules.{path.stem}_test" in packages, f"{path.name} has no tests"


@pytest.mark.parametrize(
    ("file", "package", "rule"),
    REGO_TESTS,
    ids=[f"{package}.{rule}" for _, package, rule in REGO_TESTS],
)
def test_rego(file: str, package: str, rule: str) -> None:
    try:
        result = evaluate(shared_engine(), f"data.{package}.{rule}")
    except RuntimeError as err:  # regorus raises on evaluation errors
        pytest.fail(f"policies/{file}: {rule} raised: {err}")
    assert result is True, f"policies/{file}: {rule} is {result!r}, expected true"


# --- invariants of the library --------------------------------------------------

def metadata_blocks() -> list[tuple[Path, dict[str, Any], str]]:
    """(file, parsed METADATA, the Rego text up to the next METADATA block).

    The blocks are found by the same code as `mlgate policy lint` (mlgate.policytools).
    """
    from mlgate.policy import load_policy
    from mlgate.policy.rego_ast import annotations, parse

    blocks = []
    for module in parse(load_policy(POLICIES)).modules:
        if module.is_test:
            continue
        found = annotations(module)
        lines = module.text.splitlines(keepends=True)
        for i, a in enumerate(found):
            end = found[i + 1].line - 1 if i + 1 < len(found) else len(lines)
            blocks.append((POLICIES / module.path, a.meta, "".join(lines[a.rule_line - 1 : end])))
    return blocks


def test_lint_finds_nothing_in_the_library() -> None:
    """Every check of `mlgate policy lint` (METADATA, ids, controls, data keys, builtins, deny-if)."""
    from mlgate.policytools.lint import lint

    assert [str(f) for f in lint(POLICIES).findings] == []


def test_every_rule_has_complete_metadata() -> None:
    blocks = metadata_blocks()
    assert blocks
    seen: dict[str, Path] = {}
    for path, meta, _ in blocks:
        custom = meta["custom"]
        where = f"{path.relative_to(POLICIES)} {custom.get('id')}"
        assert meta.get("title") and meta.get("description"), where
        assert ID_PATTERN.match(custom["id"]), where
        assert custom["id"] not in seen, f"{where} duplicates {seen.get(custom['id'])}"
        seen[custom["id"]] = path
        assert custom["severity"] in SEVERITIES, where
        assert isinstance(custom["controls"], list) and custom["controls"], where
        assert isinstance(custom["remediation"], str) and custom["remediation"], where


def test_metadata_blocks_are_where_opa_reads_them() -> None:
    """OPA only reads a METADATA block that starts its own comment block and is
    followed directly by the rule it annotates."""
    for path in rego_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line != "# METADATA":
                continue
            where = f"{path.relative_to(POLICIES)}:{i + 1}"
            assert i == 0 or not lines[i - 1].startswith("#"), f"{where}: comment directly above METADATA"
            j = i + 1
            while lines[j].startswith("#"):
                j += 1
            assert lines[j] and not lines[j].startswith((" ", "\t")), f"{where}: no rule right after the block"


def test_violation_objects_repeat_their_metadata() -> None:
    """regorus has no rego.metadata.rule(), so each violation object repeats
    its annotation; this keeps the two copies equal."""
    for path, meta, body in metadata_blocks():
        custom = meta["custom"]
        where = f"{path.relative_to(POLICIES)} {custom['id']}"
        assert re.search(r"^(violation|warning) contains \w+ if|^input_violations contains", body, re.M), where
        assert f'"id": "{custom["id"]}",' in body, where
        assert f'"severity": "{custom["severity"]}",' in body, where
        assert f'"controls": {json.dumps(custom["controls"])},' in body, where
        assert f'"remediation": {json.dumps(custom["remediation"])},' in body, where
        # every finding object in the block belongs to this annotation
        assert set(re.findall(r'"id": "(MLG-[^"]+)"', body)) == {custom["id"]}, where


def test_the_generated_composition_names_every_rule_package() -> None:
    from mlgate.policy import load_policy
    from mlgate.policy.compose import GENERATED_PATH

    policy = load_policy(POLICIES)
    (generated,) = [m.text for m in policy.modules if m.path == GENERATED_PATH]
    for path in RULES.glob("*.rego"):
        if path.stem.endswith("_test"):
            continue
        text = path.read_text(encoding="utf-8")
        assert f"package mlgate.rules.{path.stem}\n" in text, path.name
        assert f'data.mlgate.rules["{path.stem}"].violation}},' in generated, path.name
        assert (f'data.mlgate.rules["{path.stem}"].warning}},' in generated) == bool(re.search(r"^warning contains", text, re.M)), path.name
    assert "_test" not in generated


def test_environment_data_files() -> None:
    environments = {p.parent.name: json.loads(p.read_text()) for p in data_files()}
    assert set(environments) == {"dev", "production", "staging"}
    production, staging = environments["production"], environments["staging"]
    assert production["bias"]["non_inferiority"] is True
    assert staging["bias"]["non_inferiority"] is False
    assert production["model_signature"]["required"] is True
    assert staging["model_signature"]["required"] is False
    assert {(r["role"], r["meaning"]) for r in production["approvals"]["required"]} == {
        ("quality-assurance", "review"),
        ("clinical-safety-officer", "approval"),
    }
    assert staging["approvals"]["required"] == [{"role": "clinical-safety-officer", "meaning": "approval"}]
    for env in (production, staging):
        assert env["evidence"]["max_age_days"] == 365
        assert env["data_validation"]["required"] is True


# --- whole input documents ------------------------------------------------------


@cache
def _good_input_json() -> str:
    return shared_engine().eval_rule_as_json("data.mlgate.testdata.good_input")


def good_input() -> dict[str, Any]:
    return json.loads(_good_input_json())


def test_good_production_input_allows() -> None:
    decision = decide(good_input())
    assert decision == {"allow": True, "violations": [], "warnings": [], "waivers": []}


def test_empty_input_denies() -> None:
    decision = decide({})
    assert decision["allow"] is False
    assert {"MLG-CFG-001", "MLG-CARD-001", "MLG-APPR-001"} <= violation_ids(decision)


def test_no_input_denies() -> None:
    engine = new_engine()  # set_input never called
    decision = evaluate(engine, DECISION)
    assert decision["allow"] is False
    assert "MLG-CFG-000" in violation_ids(decision)


@pytest.mark.parametrize("document", [[], "production", None, 1])
def test_non_object_input_never_allows(document: Any) -> None:
    # regorus raises (object.get on a non-object); OPA would deny with MLG-CFG-000.
    try:
        decision = decide(document)
    except RuntimeError:
        return
    assert decision["allow"] is not True


# path of the mutation (JSON pointer into the good input) -> new value; DROP removes
DROP = object()
ODIGEST = "0" * 64


def _set(document: dict[str, Any], pointer: str, value: Any) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    node: Any = document
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        if value is DROP:
            del node[int(last)]
        else:
            node[int(last)] = value
    elif value is DROP:
        del node[last]
    else:
        node[last] = value


QA = "/evidence/approvals/records/0"
CSO = "/evidence/approvals/records/1"
EVALUATED_AT_NS = 1795946400000000000

MUTATIONS: list[tuple[str, dict[str, Any], str]] = [
    # name, {pointer: value}, expected violation id
    ("drop model card", {"/evidence/model_card": DROP}, "MLG-CARD-001"),
    ("drop data validation", {"/evidence/data_validation": DROP}, "MLG-DATA-001"),
    ("drop bias audit", {"/evidence/bias_audit": DROP}, "MLG-BIAS-001"),
    ("drop approvals", {"/evidence/approvals": DROP}, "MLG-APPR-001"),
    ("drop model signature", {"/evidence/model_signature": DROP}, "MLG-SIG-001"),
    ("unknown environment", {"/environment": "prod"}, "MLG-CFG-001"),
    ("drop evaluation time", {"/evaluated_at_ns": DROP}, "MLG-CFG-003"),
    ("card section empty", {"/evidence/model_card/sections/training_data/empty": True}, "MLG-CARD-003"),
    ("card placeholder", {"/evidence/model_card/placeholders": ["Training Data"]}, "MLG-CARD-006"),
    ("validation failed", {"/evidence/data_validation/records/0/success": False}, "MLG-DATA-004"),
    ("dataset digest changed", {"/datasets/1/digest_matches": False, "/datasets/1/actual_digest": ODIGEST}, "MLG-DATA-006"),
    ("raise a gap", {
        "/evidence/bias_audit/comparisons/1/gap": 0.215,
        "/evidence/bias_audit/comparisons/1/gap_ci_low": 0.12,
        "/evidence/bias_audit/comparisons/1/gap_ci_high": 0.30,
        "/evidence/bias_audit/comparisons/1/p_holm": 0.00002,
    }, "MLG-BIAS-002"),
    ("upper bound of gap above delta", {"/evidence/bias_audit/comparisons/1/gap_ci_high": 0.051}, "MLG-BIAS-006"),
    ("group below n_min", {"/evidence/bias_audit/groups/1/trials": 12}, "MLG-BIAS-005"),
    ("audit of another model", {"/evidence/bias_audit/subject_digest": ODIGEST}, "MLG-BIAS-004"),
    ("flip approval verified", {f"{CSO}/verified": False, f"{CSO}/reason": "bad signature"}, "MLG-APPR-003"),
    ("flip signature verified", {"/evidence/model_signature/verified": False}, "MLG-SIG-003"),
    ("change model digest", {"/model/digest": ODIGEST}, "MLG-APPR-010"),
    ("change approval digest", {f"{CSO}/subject_digest": ODIGEST}, "MLG-APPR-010"),
    ("change evidence after approval", {"/evidence_files/evidence~1model_card.md": ODIGEST}, "MLG-APPR-012"),
    ("expire an approval", {f"{CSO}/expires_at_ns": EVALUATED_AT_NS - 1}, "MLG-APPR-008"),
    ("approval signed in the future", {f"{QA}/signed_at_ns": EVALUATED_AT_NS + 1}, "MLG-APPR-009"),
    ("approval for staging", {f"{QA}/environment": "staging"}, "MLG-APPR-004"),
    ("signer not authorised for environment", {f"{QA}/environment_authorised": False}, "MLG-APPR-011"),
    ("remove a required role", {QA: DROP}, "MLG-APPR-004"),
    ("role not authorised", {f"{QA}/role_authorised": False}, "MLG-APPR-005"),
    ("same person twice", {f"{QA}/signer_id": "jane.roe@hospital.example"}, "MLG-APPR-006"),
    ("owner approves", {f"{QA}/signer_id": "ml-platform@hospital.example"}, "MLG-APPR-007"),
    ("model file changed", {"/evidence/model_signature/mismatches/changed": ["model/weights.safetensors"]}, "MLG-SIG-005"),
]


@pytest.mark.parametrize(("name", "changes", "expected"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_single_mutation_denies(name: str, changes: dict[str, Any], expected: str) -> None:
    document = good_input()
    for pointer, value in changes.items():
        _set(document, pointer, value)
    decision = decide(document)
    assert decision["allow"] is False, name
    assert expected in violation_ids(decision), decision["violations"]


def test_gap_message_names_the_numbers() -> None:
    document = good_input()
    for pointer, value in MUTATIONS[11][1].items():
        _set(document, pointer, value)
    (message,) = [v["message"] for v in decide(document)["violations"] if v["id"] == "MLG-BIAS-002"]
    assert message.startswith("recall for race=B is 0.83 vs 0.84 for rest (gap 0.215, 95% CI 0.12 to 0.3; ")
    # as OPA prints sprintf("%.2e"), whatever the engine (lib.p writes the number out)
    assert "p_holm 2.00e-05 < alpha 0.05; gap >= delta 0.05" in message, message


def test_moved_approval_message_names_both_digests() -> None:
    document = good_input()
    _set(document, "/model/digest", ODIGEST)
    messages = [v["message"] for v in decide(document)["violations"] if v["id"] == "MLG-APPR-010"]
    assert len(messages) == 2
    for message in messages:
        assert "signed for a different model digest 9372c470eead" in message
        assert "release model digest is 000000000000" in message
        assert "the model changed after approval" in message


def test_findings_carry_their_metadata() -> None:
    """Every finding any mutation produces matches the METADATA of its id."""
    declared = {meta["custom"]["id"]: meta["custom"] for _, meta, _ in metadata_blocks()}
    findings = []
    for _, changes, _ in MUTATIONS:
        document = good_input()
        for pointer, value in changes.items():
            _set(document, pointer, value)
        decision = decide(document)
        findings += decision["violations"] + decision["warnings"]
    findings += decide({})["violations"]
    assert findings
    for finding in findings:
        meta = declared[finding["id"]]
        assert finding["severity"] == meta["severity"]
        assert finding["controls"] == meta["controls"]
        assert finding["remediation"] == meta["remediation"]
        assert "\n" not in finding["message"] and finding["message"]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out.append(prefix + (key,))
        out += _paths(value, prefix + (key,))
    return out


# Fields whose absence does not change the decision: descriptive, or a string
# form of a time the rules read as *_ns. Anything not listed must deny when removed.
INFORMATIONAL = re.compile(
    r"^(request(/.*)?|evaluated_at|release/(name|version|manifest_digest)|model/(path|file_count|storage_uri)"
    r"|datasets/\d+/(uri|actual_digest)"
    r"|evidence/[a-z_]+/(authenticated|errors|digest|path|format)"
    r"|evidence/model_card/(limitations|evaluation_results_present|factors(/.*)?|sections/how_to_use(/.*)?)"
    r"|evidence/data_validation/records/\d+/(digest|errors|path|format|gx_version|suite_name|evaluated|successful"
    r"|unsuccessful|failed_expectations|validated_at)"
    r"|evidence/bias_audit/(alpha|n_min|reference|seed|predictions_digest|tool_versions(/.*)?|created_at"
    r"|groups/\d+/(n|tp|fn|positives|successes|value|ci_low|ci_high)|comparisons/\d+/(p_value|reference_group))"
    r"|evidence/approvals/records/\d+/(path|digest|reason|key_id|signed_at|expires_at|comment"
    # identity and revocation facts, the 11.50 line, and what only separation-of-duties and
    # duplicate checks read (absent, they have nothing to compare)
    r"|manifestation|identity_source|identity|certificate|key_status|key_revoked_at(_ns)?|key_revocation_reason"
    r"|signed_at_source|statement_digest|authored|release_changes)"
    r"|evidence/model_signature/(reason|signer_id|signer_name|key_id|identity_source|identity|certificate|key_status"
    r"|key_revoked_at(_ns)?|key_revocation_reason|signed_at(_ns)?))$"
)


@pytest.mark.parametrize("value", [None, "present", 1, True, [], [{"present": True}]])
def test_a_malformed_evidence_block_denies_without_an_engine_error(value: Any) -> None:
    """Every evidence block replaced by a non-object: a deny naming MLG-CFG-006 and the block,
    never an engine error, in every environment (those that do not require the evidence too)."""
    good = good_input()
    for environment in ("production", "staging", "dev"):
        for kind in sorted(good["evidence"]):
            document = copy.deepcopy(good)
            document["environment"] = environment
            document["evidence"][kind] = value
            decision = decide(document)
            assert decision["allow"] is False, (environment, kind)
            assert {v["subject"] for v in decision["violations"] if v["id"] == "MLG-CFG-006"} == {f"evidence.{kind}"}


def test_removing_any_field_never_errors_and_denies_unless_informational() -> None:
    good = good_input()
    allowed_after_removal = []
    for path in _paths(good):
        document = copy.deepcopy(good)
        node: Any = document
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        decision = decide(document)
        assert isinstance(decision["allow"], bool)
        if decision["allow"]:
            allowed_after_removal.append("/".join(str(p) for p in path))
    unexpected = [p for p in allowed_after_removal if not INFORMATIONAL.match(p)]
    assert unexpected == []

"""`mlgate policy doc`: the control catalogue generated from the policies."""

from __future__ import annotations

import html.parser
from pathlib import Path

import pytest

from cli_helpers import run
from conftest import REPO
from mlgate.policytools.controls import load_catalogue
from mlgate.policytools.doc import build_catalogue, render_markdown
from test_rego_policies import metadata_blocks

POLICIES = REPO / "policies"

# The controls issue 5 names; each must be in the catalogue whether or not a rule covers it.
REQUIRED_CONTROLS = (
    [f"GMLP-{i}" for i in range(1, 11)]
    + [f"21CFR11.10({c})" for c in "abdefg"]
    + ["21CFR11.50", "21CFR11.70", "EUAIA-10", "EUAIA-12", "EUAIA-14", "EUAIA-15", "HIPAA-DEID"]
)


@pytest.fixture(scope="module")
def catalogue():
    return build_catalogue(POLICIES)


def test_control_catalogue_file_lists_the_required_controls() -> None:
    ids = load_catalogue().ids
    assert set(REQUIRED_CONTROLS) <= ids
    assert all(load_catalogue().get(c).title for c in REQUIRED_CONTROLS)


def test_every_annotated_rule_is_documented_with_its_metadata(catalogue) -> None:
    declared = {meta["custom"]["id"]: meta for _, meta, _ in metadata_blocks()}
    assert {r.id for r in catalogue.rules} == set(declared)
    for rule in catalogue.rules:
        meta = declared[rule.id]
        assert rule.title == meta["title"]
        assert rule.severity == meta["custom"]["severity"]
        assert rule.controls == meta["custom"]["controls"]


def test_thresholds_per_environment_come_from_the_data_files(catalogue) -> None:
    rules = {r.id: r for r in catalogue.rules}
    assert rules["MLG-BIAS-006"].thresholds["bias.non_inferiority"] == {"dev": False, "production": True, "staging": False}
    assert rules["MLG-BIAS-002"].thresholds["bias.delta"] == {"dev": 0.1, "production": 0.05, "staging": 0.05}
    assert rules["MLG-SIG-001"].thresholds["model_signature.required"] == {"dev": False, "production": True, "staging": False}
    assert rules["MLG-DATA-007"].thresholds["evidence.max_age_days"] == {"dev": 730, "production": 365, "staging": 365}
    assert len(rules["MLG-APPR-004"].thresholds["approvals.required"]["production"]) == 2
    assert "model_card.required_sections" in rules["MLG-CARD-003"].thresholds
    assert rules["MLG-APPR-010"].thresholds == {}  # reads no environment data


def test_reverse_view_lists_every_control_and_the_gaps(catalogue) -> None:
    declared = [meta["custom"]["controls"] for _, meta, _ in metadata_blocks()]
    cited = {c for controls in declared for c in controls}
    by_control = {c.control.id: c.rules for c in catalogue.controls}
    assert set(by_control) == load_catalogue().ids
    for control, rules in by_control.items():
        assert bool(rules) == (control in cited), control
    assert {c.control.id for c in catalogue.uncovered} == load_catalogue().ids - cited
    assert catalogue.unknown_controls == {}


def test_markdown(catalogue) -> None:
    text = render_markdown(catalogue)
    assert text.startswith("# mlgate control catalogue")
    assert "| `bias.non_inferiority` | false | true | false |" in text
    assert "## Controls with no rule yet" in text
    for control in catalogue.uncovered:
        assert f"- {control.control.id}: " in text
    for control in REQUIRED_CONTROLS:
        assert f"| {control} | " in text


def test_cli_writes_markdown_and_html(tmp_path: Path) -> None:
    md, page = tmp_path / "controls.md", tmp_path / "controls.html"
    code, _, err = run(["policy", "doc", "-o", md])
    assert code == 0, err
    assert md.read_text().startswith("# mlgate control catalogue")
    code, _, err = run(["policy", "doc", "-o", page])
    assert code == 0, err
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and 'id="mlg-bias-002"' in text
    html.parser.HTMLParser().feed(text)  # well-formed enough to parse
    code, out, _ = run(["policy", "doc"])
    assert code == 0 and out.startswith("# mlgate control catalogue")


def test_cli_doc_error_is_one_line() -> None:
    code, _, err = run(["policy", "doc", "tests/assets/policies/syntax_error"])
    assert code == 2 and err.count("\n") == 1 and "demo.rego:7:1" in err


def test_catalogue_shows_what_each_rule_expects() -> None:
    """custom.expected (what passing requires) is in both renderings, next to the rule."""
    from mlgate.policytools.doc import build_catalogue, render

    cat = build_catalogue()
    bias = next(r for r in cat.rules if r.id == "MLG-BIAS-002")
    assert "bias.delta" in bias.expected
    md = render(cat, "md")
    section = md[md.index("### MLG-BIAS-002"):md.index("### MLG-BIAS-003")]
    assert f"Expected: {bias.expected}" in section
    assert render(cat, "html").count("<p>Expected: ") == sum(1 for r in cat.rules if r.expected)

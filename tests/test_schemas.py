from __future__ import annotations

from importlib import resources

import pytest
from jsonschema import Draft202012Validator

from mlgate import schemas

SHIPPED = sorted(p.name for p in resources.files("mlgate.schemas").iterdir() if p.name.endswith(".schema.json"))


def test_every_schema_is_shipped():
    assert {"manifest.schema.json", "bias_audit.schema.json", "gx_validation_result.schema.json", "trust_policy.schema.json",
            "approval_predicate.schema.json", "model_card_toolkit.schema.json"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_schema_is_valid_draft_2020_12(name):
    Draft202012Validator.check_schema(schemas.load(name))


def test_messages_are_one_line_and_clip_hostile_values():
    hostile = {"apiVersion": "x\n" * 5000, "kind": "ModelRelease", "metadata": {}, "spec": {}}
    lines = schemas.messages("manifest.schema.json", hostile, "m.yaml")
    assert lines and all("\n" not in line and len(line) < 400 for line in lines)
    assert lines[0].startswith("m.yaml: apiVersion: got ")


def test_type_names_read_as_yaml_authors_know_them():
    assert schemas.errors("manifest.schema.json", {"apiVersion": "mlgate.dev/v1", "kind": "ModelRelease",
                                                   "metadata": {"name": "a", "version": "1", "owner": "o@x.example"},
                                                   "spec": {"model": {"path": ["x"]}}}) == [("spec.model.path", "expected string, got list")]


def test_limit_and_overflow_line():
    doc = {"apiVersion": "mlgate.dev/v1", "kind": "ModelRelease", "metadata": {"name": "a", "version": "1", "owner": "o@x.example"},
           "spec": {"model": {"path": "m"}, "datasets": [{"name": i} for i in range(30)]}}
    lines = schemas.messages("manifest.schema.json", doc, "m.yaml", limit=5)
    assert len(lines) == 6 and lines[-1] == "m.yaml: $: more errors not shown"

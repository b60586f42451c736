"""A document already found valid against a shipped JSON Schema is not validated again (issue
17 part 5: loading the trust policy's schema cost a CLI start ~50 ms): the verdict is remembered
per exact schema, instance and jsonschema version; errors are never remembered."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import EXAMPLES
from mlgate import schemas

TRUST = EXAMPLES / "trust.yaml"

PROBE = r"""
import json, sys, yaml
from mlgate.signing.trust import load_trust_policy
policy = load_trust_policy(sys.argv[1])
print(json.dumps({"jsonschema": "jsonschema" in sys.modules}))
"""


def _load(path, cache):
    env = dict(os.environ, MLGATE_CACHE_DIR=str(cache))
    run = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=env)
    return run


def test_a_trust_policy_already_found_valid_is_not_validated_again(tmp_path):
    cache = tmp_path / "cache"
    first = _load(TRUST, cache)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"jsonschema": True}
    second = _load(TRUST, cache)
    assert json.loads(second.stdout) == {"jsonschema": False}


def test_an_invalid_trust_policy_is_refused_every_time(tmp_path):
    cache = tmp_path / "cache"
    _load(TRUST, cache)
    doc = yaml.safe_load(TRUST.read_text())
    doc["surprise"] = 1
    bad = tmp_path / "trust.yaml"
    bad.write_text(yaml.safe_dump(doc))
    for _ in range(2):
        run = _load(bad, cache)
        assert run.returncode != 0 and "surprise" in run.stderr, run.stderr[-500:]


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MLGATE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_only_valid_verdicts_are_kept(cache):
    doc = yaml.safe_load(TRUST.read_text())
    assert schemas.errors("trust_policy.schema.json", doc) == []
    assert len(list((cache / schemas._VERDICTS).iterdir())) == 1
    doc["surprise"] = 1
    for _ in range(2):
        assert schemas.errors("trust_policy.schema.json", doc) == [("$", "unexpected field(s) 'surprise'")]
    assert len(list((cache / schemas._VERDICTS).iterdir())) == 1


@pytest.mark.parametrize("value", [dt.date(2026, 1, 1), (1, 2), {1: "x"}, float("nan"), float("inf")])
def test_values_with_no_exact_json_form_are_never_keyed(value):
    assert schemas._verdict_key("trust_policy.schema.json", {"field": value}) is None


def test_the_key_tells_types_apart():
    keys = {schemas._verdict_key("trust_policy.schema.json", {"x": v}) for v in (1, 1.0, True, "1", None, [1])}
    assert len(keys) == 6
    assert schemas._verdict_key("trust_policy.schema.json", {"x": 1}) != schemas._verdict_key("manifest.schema.json", {"x": 1})

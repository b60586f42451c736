"""The bias recomputation is remembered per user (issue 17 part 5): a second read of the same
record imports no statistics library, while an edited record, a cache others can write and a
cache turned off all still recompute."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import EXAMPLES
from mlgate import localcache
from mlgate.evidence import bias

TRIAGE = EXAMPLES / "triage-acuity" / "evidence" / "bias_audit.json"

READ = r"""
import json, sys
from pathlib import Path
from mlgate.evidence.bias import read_bias_audit
facts = read_bias_audit(Path(sys.argv[1]).read_bytes(), "bias_audit.json")
print(json.dumps({"valid": facts["valid"], "errors": facts["errors"], "statsmodels": "statsmodels" in sys.modules}))
"""


def _read(path, cache) -> dict:
    env = dict(os.environ, MLGATE_CACHE_DIR=str(cache))
    run = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True, env=env, check=True)
    return json.loads(run.stdout)


def _tampered(tmp_path):
    doc = json.loads(TRIAGE.read_text())
    i = next(i for i, c in enumerate(doc["comparisons"]) if c["attribute"] == "ethnicity" and c["group"] == "Black")
    doc["comparisons"][i]["p_holm"] = 0.9
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(doc))
    return doc, path


def test_a_second_read_of_the_same_record_imports_no_statistics(tmp_path):
    cache = tmp_path / "cache"
    first = _read(TRIAGE, cache)
    assert first == {"valid": True, "errors": [], "statsmodels": True}
    second = _read(TRIAGE, cache)
    assert second == {"valid": True, "errors": [], "statsmodels": False}


def test_an_edited_record_is_recomputed_even_when_the_original_is_cached(tmp_path):
    cache = tmp_path / "cache"
    _read(TRIAGE, cache)
    _, path = _tampered(tmp_path)
    for _ in range(2):  # and its own (failing) result is remembered as a failure
        got = _read(path, cache)
        assert got["valid"] is False
        assert any(".p_holm: ethnicity=Black: recorded 0.9, the counts give" in e for e in got["errors"]), got


def test_an_entry_in_a_cache_others_can_write_is_not_trusted(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLGATE_CACHE_DIR", str(cache))
    doc, path = _tampered(tmp_path)
    key = bias._cache_key(doc)
    # A forged "no problems" entry for the tampered record: honoured only when the directory is private.
    localcache.put(bias._CACHE_NAMESPACE, key, b"[]")
    assert (cache / bias._CACHE_NAMESPACE / key).exists()
    os.chmod(cache / bias._CACHE_NAMESPACE, 0o777)
    got = _read(path, cache)
    assert got["valid"] is False and got["statsmodels"] is True
    os.chmod(cache / bias._CACHE_NAMESPACE, 0o700)
    os.chmod(cache / bias._CACHE_NAMESPACE / key, 0o666)
    got = _read(path, cache)
    assert got["valid"] is False and got["statsmodels"] is True


def test_a_torn_entry_is_a_miss(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLGATE_CACHE_DIR", str(cache))
    doc, path = _tampered(tmp_path)
    localcache.put(bias._CACHE_NAMESPACE, bias._cache_key(doc), b'[["comparisons", "x"')
    got = _read(path, cache)
    assert got["valid"] is False and got["statsmodels"] is True


@pytest.mark.parametrize("value", ["off", ""])
def test_the_cache_can_be_turned_off(tmp_path, monkeypatch, value):
    monkeypatch.setenv("MLGATE_CACHE_DIR", value)
    assert localcache.cache_dir() is None
    env = dict(os.environ, MLGATE_CACHE_DIR=value, HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", READ, str(TRIAGE)], capture_output=True, text=True, env=env, check=True)
        assert json.loads(run.stdout)["statsmodels"] is True
    assert not (tmp_path / "xdg").exists() and not (tmp_path / ".cache").exists()


def test_the_cache_lies_in_the_users_cache_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLGATE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert localcache.cache_dir() == tmp_path / "xdg" / "mlgate"

"""The webhook's settings file (``mlgate serve --config``): the evidence store's keys, validation
(one line naming the file and the field), and flags winning over the file."""

from __future__ import annotations

import pytest
import yaml
from cli_helpers import run
from conftest import EXAMPLES

from mlgate.errors import InputError
from mlgate.gatekeeper.config import load_config, settings_from_dict


def write(tmp_path, doc):
    path = tmp_path / "webhook.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_evidence_store_from_the_file(tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.crt").write_text("x")
    config = write(tmp_path, {"evidenceStore": {"url": "https://artifacts.example/mlgate", "ca": "certs/ca.crt", "cacheDir": "cache"}})
    s = load_config(config, audit="a.jsonl")
    assert s.evidence_store == "https://artifacts.example/mlgate"
    # Relative paths are relative to the settings file, not to the working directory.
    assert s.evidence_store_ca == tmp_path / "certs" / "ca.crt" and s.evidence_cache_dir == tmp_path / "cache"


def test_flags_win_over_the_evidence_store_keys(tmp_path):
    (tmp_path / "ca.crt").write_text("x")
    (tmp_path / "other.crt").write_text("x")
    config = write(tmp_path, {"evidenceStore": {"url": "https://a.example/m", "ca": "ca.crt", "cacheDir": "/var/cache/a"}})
    s = load_config(config, audit="a.jsonl", evidence_store="https://b.example/m", evidence_store_ca=tmp_path / "other.crt")
    assert s.evidence_store == "https://b.example/m" and s.evidence_store_ca == tmp_path / "other.crt"
    assert str(s.evidence_cache_dir) == "/var/cache/a"


@pytest.mark.parametrize("doc, field, needle", [
    ({"evidenceStore": "file:///evidence"}, "evidenceStore", "must be a mapping"),
    ({"evidenceStore": {"uri": "file:///evidence"}}, "evidenceStore", "unknown key 'uri' (known: ca, cacheDir, url)"),
    ({"evidenceStore": {"url": ""}}, "evidenceStore.url", "non-empty string"),
    ({"evidenceStore": {"url": 5}}, "evidenceStore.url", "non-empty string"),
    ({"evidenceStore": {"url": "https://a.example/m", "ca": "missing.crt"}}, "evidenceStore.ca", "file not found"),
    ({"evidenceStore": {"url": "https://a.example/m", "cacheDir": True}}, "evidenceStore.cacheDir", "non-empty string"),
    ({"evidenceStores": {}}, "$", "unknown key 'evidenceStores'"),
    ({"cache": {"maxEntries": 0}}, "cache.maxEntries", "integer from 1 to 100000"),
    ({"cache": {"size": 1}}, "cache", "unknown key 'size'"),
    ({"gateThreads": True}, "gateThreads", "integer from 1 to 64"),
])
def test_bad_keys_are_one_line_naming_file_and_field(tmp_path, doc, field, needle):
    config = write(tmp_path, doc)
    with pytest.raises(InputError) as exc:
        load_config(config, audit="a.jsonl", evidence_store=None if "evidenceStore" in doc else "file:///e")
    text = exc.value.diagnostics()
    assert exc.value.field == field and needle in text and text.startswith(f"{config}: "), text
    assert "\n" not in text


@pytest.mark.parametrize("doc, flags, needle", [
    ({}, {}, "no evidence store"),
    ({"evidenceStore": {"url": "file:///evidence", "cacheDir": "/c"}}, {}, "--evidence-cache-dir (evidenceStore.cacheDir) is for an https://"),
    ({"evidenceStore": {"url": "https://a.example/m", "cacheDir": "/c"}}, {"evidence_store": "file:///e"}, "is for an https://"),
])
def test_the_evidence_store_must_make_sense(doc, flags, needle):
    with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        settings_from_dict(doc, "webhook.yaml", audit="a.jsonl", **flags)


def test_serve_takes_the_evidence_store_from_the_config_file(tmp_path):
    """`--evidence-store` may be left out when the file names the store; a bad file fails before listening."""
    (tmp_path / "c").write_text("not read before the store is checked")
    (tmp_path / "k").write_text("")
    config = write(tmp_path, {"evidenceStore": {"url": "s3://bucket/x"}})
    code, _, err = run(["serve", "--cert", tmp_path / "c", "--key", tmp_path / "k", "--audit", tmp_path / "a.jsonl", "--config", config])
    assert code == 2 and "unsupported evidence store scheme 's3'" in err
    config = write(tmp_path, {"evidenceStore": {"url": f"file://{EXAMPLES}", "ca": 3}})
    code, _, err = run(["serve", "--cert", tmp_path / "c", "--key", tmp_path / "k", "--audit", tmp_path / "a.jsonl", "--config", config])
    assert code == 2 and "evidenceStore.ca: must be a non-empty string" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["serve", "--cert", tmp_path / "c", "--key", tmp_path / "k", "--audit", tmp_path / "a.jsonl"])
    assert code == 2 and "no evidence store" in err

"""``mlgate audit replay`` (issue 20 part 1): past decisions evaluated again under a proposed policy.

A trail is recorded by the examples (staging and production, through the CLI in-process with a
fixed clock), then replayed: a stricter bias delta flips the readmission-risk production allow to a
deny with the new MLG-BIAS finding; the same policy flips nothing; a policy with a rule file
deleted lets refused decisions through (exit 1); --record appends replay records that verify and
that show and report never count as decisions; erased inputs are not replayable.
"""

from __future__ import annotations

import json
import shutil

import pytest

from cli_helpers import run
from conftest import EXAMPLES

EXAMPLES_RECORDED = ("readmission-risk", "triage-acuity")
STRICT_DELTA = {"mlgate": {"environments": {"production": {"bias": {"delta": 0.001}}}}}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A trail of the examples' decisions (inputs stored: the default), recorded once."""
    root = tmp_path_factory.mktemp("recorded")
    log = root / "audit.jsonl"
    for example in EXAMPLES_RECORDED:
        for env in ("staging", "production"):
            code, _out, err = run(["check", EXAMPLES / example, "--env", env, "--audit-log", log])
            assert code in (0, 1), err
    return root


@pytest.fixture
def trail(recorded, tmp_path):
    """A private copy of the recorded trail (log, head and evidence store)."""
    root = tmp_path / "trail"
    shutil.copytree(recorded, root)
    return root / "audit.jsonl"


def _records(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def _replay(log, *args):
    code, out, err = run(["audit", "replay", "--audit", f"file:{log}", *args])
    return code, out, err


def _replay_json(log, *args):
    code, out, err = _replay(log, "-o", "json", *args)
    assert code in (0, 1), err
    return code, json.loads(out)


def _strict(tmp_path):
    path = tmp_path / "strict-delta.json"
    path.write_text(json.dumps(STRICT_DELTA))
    return path


def _policy_copy(tmp_path):
    from mlgate.policy import bundled_policy_dir

    policy = tmp_path / "policy"
    shutil.copytree(bundled_policy_dir(), policy, ignore=shutil.ignore_patterns("__pycache__"))
    return policy


def test_inputs_are_stored_by_default_once_per_distinct_facts(trail):
    recs = _records(trail)
    assert len(recs) == 4 and all(r["erased"] == [] and set(r["input_facts"]) == {"model", "datasets", "evidence", "evidence_files"}
                                  for r in recs)
    # Staging and production decisions about one release read the same facts: stored once.
    by_release = {}
    for r in recs:
        by_release.setdefault(r["release"]["name"], []).append(r["input_facts"])
    for facts in by_release.values():
        assert facts[0] == facts[1]
    blobs = [p for p in (trail.parent / "evidence" / "sha256").rglob("*") if p.is_file()]
    assert len(blobs) == len({d for r in recs for d in r["input_facts"].values()})


def test_a_stricter_delta_flips_the_readmission_risk_production_allow(trail, tmp_path):
    before = trail.read_bytes()
    code, result = _replay_json(trail, "--policy", _policy_copy(tmp_path), "--data", _strict(tmp_path))
    assert code == 0  # nothing flips from deny to allow
    flips = {(f["release"], f["environment"]): f for f in result["flips"]}
    assert set(flips) == {("readmission-risk@1.4.0", "production")}, result["flips"]
    flip = flips[("readmission-risk@1.4.0", "production")]
    assert flip["flip"] == "allow->deny" and flip["original"] == "allow" and flip["replayed"] == "deny"
    assert flip["added"] and all(v["id"].startswith("MLG-BIAS-") and "delta 0.001" in v["message"] for v in flip["added"])
    assert flip["removed"] == []
    assert result["summary"]["allow_to_deny"] == 1 and result["summary"]["deny_to_allow"] == 0 and result["summary"]["not_replayable"] == 0
    assert result["at"] == "original" and result["policy"]["data_overrides"][0]["path"].endswith("strict-delta.json")
    # Staging is untouched by a production override.
    assert all(c["environment"] == "production" for c in result["changed"])
    assert trail.read_bytes() == before  # no --record: nothing appended

    code, out, err = _replay(trail, "--policy", _policy_copy(tmp_path / "t"), "--data", _strict(tmp_path))
    assert code == 0
    assert "readmission-risk@1.4.0 production:" in out and "ALLOW->DENY" in out and "+ MLG-BIAS-" in out
    code, out, err = _replay(trail, "--policy", _policy_copy(tmp_path / "m"), "--data", _strict(tmp_path), "-o", "markdown")
    assert code == 0
    assert "| readmission-risk@1.4.0 | production | allow→deny |" in out and "`MLG-BIAS-" in out


def test_the_same_policy_flips_nothing(trail):
    from mlgate.policy import bundled_policy_dir

    code, result = _replay_json(trail, "--policy", bundled_policy_dir())
    assert code == 0
    assert result["summary"]["replayed"] == 4 and result["flips"] == [] and result["changed"] == []
    code, result = _replay_json(trail, "--policy", bundled_policy_dir(), "--engine", "regorus-interp")  # one meaning on every engine
    assert code == 0 and result["policy"]["engine"]["name"] == "regorus" and result["flips"] == [] and result["changed"] == []


def test_a_policy_without_a_rule_lets_refused_decisions_through(trail, tmp_path):
    policy = _policy_copy(tmp_path)
    for name in ("bias.rego", "bias_test.rego"):
        (policy / "mlgate" / "rules" / name).unlink()
    code, result = _replay_json(trail, "--policy", policy)
    assert code == 1
    flips = {(f["release"], f["environment"]): f for f in result["flips"]}
    assert ("triage-acuity@2.1.0", "production") in flips or any(k[0].startswith("triage-acuity@") and k[1] == "production" for k in flips)
    flip = next(f for k, f in flips.items() if k[0].startswith("triage-acuity@") and k[1] == "production")
    assert flip["flip"] == "deny->allow" and flip["replayed"] == "allow"
    assert {v["id"] for v in flip["removed"]} >= {"MLG-BIAS-002"} and flip["added"] == []
    assert all(f["flip"] == "deny->allow" for f in result["flips"])


def test_at_now_evaluates_at_the_clock_not_the_recorded_time(trail, tmp_path):
    import datetime as dt

    from mlgate.policy import bundled_policy_dir

    later = dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)  # every approval of the examples has lapsed
    code, out, err = run(["audit", "replay", "--audit", f"file:{trail}", "--policy", bundled_policy_dir(), "-o", "json", "--at", "now"], now=later)
    assert code == 0, err
    result = json.loads(out)
    assert result["at"] == "now" and {f["evaluated_at"] for f in result["flips"]} == {"2031-01-01T00:00:00Z"}
    assert any(f["release"].startswith("readmission-risk@") and f["flip"] == "allow->deny" for f in result["flips"])
    code, out, err = run(["audit", "replay", "--audit", f"file:{trail}", "--policy", bundled_policy_dir(), "-o", "json"], now=later)
    assert json.loads(out)["flips"] == []  # at the recorded time: the same decisions


def test_record_appends_replays_that_verify_and_are_never_counted_as_decisions(trail, tmp_path):
    code, out, err = _replay(trail, "--policy", _policy_copy(tmp_path), "--data", _strict(tmp_path), "--record")
    assert code == 0, err
    recs = _records(trail)
    originals, replays = recs[:4], recs[4:]
    assert len(replays) == 4
    by_id = {r["decision_id"]: r for r in originals}
    for rep in replays:
        assert rep["action"] == "replay" and rep["kind"] == "replay"
        assert rep["replay_of"]["decision_id"] in by_id and rep["decision_id"] not in by_id
        assert rep["replay_of"]["hash"] == by_id[rep["replay_of"]["decision_id"]]["hash"]
    flipped = [r for r in replays if r["flip"]]
    assert len(flipped) == 1 and flipped[0]["result"] == "deny" and flipped[0]["replay_of"]["result"] == "allow"

    code, out, err = run(["audit", "verify", "--audit", f"file:{trail}"])
    assert code == 0, out + err
    code, out, err = run(["audit", "show", "--audit", f"file:{trail}", "-o", "json"])
    listing = json.loads(out)
    assert listing["count"] == 4 and listing["replays"] == 4
    code, out, err = run(["audit", "show", "--audit", f"file:{trail}"])
    assert out.count("REPLAY:") == 4
    # A replay of a trail holding replays replays only the decisions.
    code, result = _replay_json(trail, "--policy", _policy_copy(tmp_path / "again"))
    assert result["summary"]["replayed"] == 4

    # audit export lists the proposed policy's revision with its replays, never as decisions.
    code, out, err = run(["audit", "export", "--audit", f"file:{trail}", "-o", tmp_path / "export.tar"])
    assert code == 0, err
    import tarfile

    with tarfile.open(tmp_path / "export.tar") as tar:
        manifest = json.loads(tar.extractfile("MANIFEST.json").read())
    revisions = manifest["policy_revisions"]
    assert revisions[replays[0]["policy_revision"]] == {"git": None, "decisions": [], "replays": [5, 6, 7, 8]}
    assert sorted(s for r in revisions.values() for s in r["decisions"]) == [1, 2, 3, 4]
    # audit report counts the release's decisions, never its replays.
    code, out, err = run(["audit", "report", "--audit", f"file:{trail}", "--release", "readmission-risk@1.4.0",
                          "--trust", EXAMPLES / "trust.yaml", "-o", tmp_path / "report.html"])
    assert code == 0, err
    assert "readmission-risk 1.4.0, 2 decision(s)" in out
    html = (tmp_path / "report.html").read_text()
    assert not any(rep["decision_id"] in html for rep in replays)


def test_erased_inputs_are_not_replayable(trail, tmp_path):
    code, _out, err = run(["check", EXAMPLES / "readmission-risk", "--env", "production", "--audit-log", trail, "--audit-input", "erase"])
    assert code == 0, err
    assert _records(trail)[-1]["erased"] == ["/input"] and "input" not in _records(trail)[-1]
    code, result = _replay_json(trail, "--policy", _policy_copy(tmp_path))
    assert result["summary"]["replayed"] == 4 and result["summary"]["not_replayable"] == 1
    (entry,) = result["not_replayable"]
    assert entry["sequence"] == 5 and "erased" in entry["reason"]
    code, out, err = _replay(trail, "--policy", _policy_copy(tmp_path / "t"))
    assert "not replayable: 1 decision(s)" in out


def test_a_changed_stored_input_is_an_error_naming_it(trail, tmp_path):
    rec = _records(trail)[0]
    digest = rec["input_facts"]["evidence"]
    blob = trail.parent / "evidence" / "sha256" / digest[:2] / digest
    blob.write_bytes(blob.read_bytes().replace(b'"present":true', b'"present":false', 1))
    code, out, err = _replay(trail, "--policy", _policy_copy(tmp_path))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "input_facts.evidence" in err and "sha256" in err
    blob.unlink()
    code, out, err = _replay(trail, "--policy", _policy_copy(tmp_path / "t"))
    assert code == 2 and "missing from the evidence store" in err


def test_bad_policy_and_data_are_one_line_errors(trail, tmp_path):
    code, out, err = _replay(trail, "--policy", tmp_path / "no-such-policy")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no-such-policy" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mlgate": {"decision": {"allow": True}}}))
    code, out, err = _replay(trail, "--policy", _policy_copy(tmp_path), "--data", bad)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bad.json" in err


def test_replay_of_a_postgresql_trail(tmp_path):
    """The same replay over a PostgreSQL trail: inputs stored in its evidence table, once per facts."""
    import secrets

    from test_audit_pg import BASE, _admin

    name = f"mlgate_test_{secrets.token_hex(6)}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = BASE.rsplit("/", 1)[0] + f"/{name}"
    try:
        for env in ("staging", "production"):
            code, _out, err = run(["check", EXAMPLES / "readmission-risk", "--env", env, "--audit", url])
            assert code == 0, err
        code, out, err = run(["audit", "replay", "--audit", url, "--policy", _policy_copy(tmp_path), "--data", _strict(tmp_path),
                              "-o", "json", "--record"])
        assert code == 0, err
        result = json.loads(out)
        assert [(f["release"], f["environment"], f["flip"]) for f in result["flips"]] == [("readmission-risk@1.4.0", "production", "allow->deny")]
        code, out, err = run(["audit", "verify", "--audit", url])
        assert code == 0, out + err
        listing = json.loads(run(["audit", "show", "--audit", url, "-o", "json"])[1])
        assert listing["count"] == 2 and listing["replays"] == 2
        import psycopg

        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM mlgate_audit_evidence").fetchone()[0]
        assert stored == 4  # model, datasets, evidence, evidence_files: once for both decisions
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_since_replays_only_later_decisions(trail, tmp_path):
    import datetime as dt

    from conftest import EXAMPLES_NOW

    later = EXAMPLES_NOW + dt.timedelta(hours=1)
    code, _out, err = run(["check", EXAMPLES / "readmission-risk", "--env", "production", "--audit-log", trail], now=later)
    assert code == 0, err
    code, result = _replay_json(trail, "--policy", _policy_copy(tmp_path), "--data", _strict(tmp_path), "--since", "2026-11-29T12:30:00Z")
    assert result["summary"]["replayed"] == 1 and result["since"] == "2026-11-29T12:30:00Z"
    assert [f["sequence"] for f in result["flips"]] == [5]
    code, _out, err = _replay(trail, "--policy", _policy_copy(tmp_path / "t"), "--since", "yesterday")
    assert code == 2 and "--since" in err


def test_webhook_decisions_are_stored_and_replayable(tmp_path):
    """mlgate serve stores the input document by default: its admissions replay like the CLI's."""
    from mlgate.gatekeeper.config import Settings
    from test_gatekeeper_support import RunningWebhook, admit, deployment

    log = tmp_path / "audit.jsonl"
    hook = RunningWebhook(tmp_path, Settings(evidence_store=f"file://{EXAMPLES}", audit=str(log)))
    try:
        with hook.client() as client:
            for _ in range(2):  # the same release admitted twice: its facts are stored once
                doc = deployment("readmission-risk@1.4.0")
                r = admit(client, doc, "production")
                assert r.status_code == 200 and r.json()["response"]["allowed"] is True, r.text
    finally:
        hook.stop()
    recs = _records(log)
    assert len(recs) == 2 and all(r["source"] == "admission" and r["erased"] == [] for r in recs)
    assert recs[0]["input_facts"] == recs[1]["input_facts"]
    code, result = _replay_json(log, "--policy", _policy_copy(tmp_path), "--data", _strict(tmp_path))
    assert code == 0 and result["summary"]["replayed"] == 2
    assert [(f["release"], f["flip"]) for f in result["flips"]] == [("readmission-risk@1.4.0", "allow->deny")] * 2

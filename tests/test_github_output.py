"""`mlgate check -o github` (issue 19 part 6): GitHub Actions workflow commands, one `::error`
per violation and one `::warning` per warning, escaped the way `@actions/core` escapes them
(`%`, CR, LF in the message; also `:` and `,` in properties), so a finding's text can neither
end its command early nor start another."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil

import pytest
from cli_helpers import run
from conftest import EXAMPLES

from mlgate.gate import Decision, Finding
from mlgate.render import FORMATS, renderer
from mlgate.render.github import escape_data, escape_property

COMMAND = re.compile(r"^::(?P<kind>error|warning|notice)(?: (?P<props>[^:]*))?::(?P<message>.*)$")


def _unescape(text: str) -> str:
    # The runner's own decoding order (actions/runner ActionCommand.UnescapeProperty/Data).
    for escaped, raw in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(escaped, raw)
    return text


def _parse(output: str) -> list[dict]:
    commands = []
    for line in output.splitlines():
        m = COMMAND.match(line)
        assert m, f"not a workflow command: {line!r}"
        props = {}
        for pair in (m.group("props") or "").split(","):
            if pair:
                key, _, value = pair.partition("=")
                props[key] = _unescape(value)
        commands.append({"kind": m.group("kind"), **props, "message": _unescape(m.group("message"))})
    return commands


def test_escaping_matches_actions_core():
    assert escape_data("100% done\r\nnext") == "100%25 done%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    assert _unescape(escape_property("x,y:z%25\r\n")) == "x,y:z%25\r\n"


def test_github_is_a_registered_format():
    assert "github" in FORMATS
    code, out, _ = run(["check", "--help"])
    assert code == 0 and "github" in out


def test_denied_example_annotates_each_violation(tmp_path):
    code, out, err = run(["check", EXAMPLES / "triage-acuity", "--env", "production", "-o", "github", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 1, err
    commands = _parse(out)
    errors = [c for c in commands if c["kind"] == "error"]
    assert {c["title"] for c in errors} == {"MLG-BIAS-002", "MLG-BIAS-006"}
    assert all(c["file"].endswith("triage-acuity/mlgate.yaml") for c in errors)
    assert any("ethnicity=Black" in c["message"] and "\nremediation: " in c["message"] for c in errors)
    notice = commands[-1]
    assert notice["kind"] == "notice" and notice["message"].startswith("DENIED triage-acuity 2.0.0 -> production")
    # The same findings as the JSON report.
    code, out, _ = run(["check", EXAMPLES / "triage-acuity", "--env", "production", "-o", "json", "--audit-log", tmp_path / "a.jsonl"])
    assert sorted(v["id"] for v in json.loads(out)["violations"]) == sorted(c["title"] for c in errors)


def test_allowed_example_has_no_error(tmp_path):
    code, out, err = run(["check", EXAMPLES / "readmission-risk", "--env", "production", "-o", "github", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 0, err
    commands = _parse(out)
    assert not [c for c in commands if c["kind"] == "error"]
    assert commands[-1]["message"].startswith("ALLOWED readmission-risk")


def test_unknown_environment_is_an_error_annotation(tmp_path):
    code, out, _ = run(["check", EXAMPLES / "readmission-risk", "--env", "prod", "-o", "github", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 2
    commands = _parse(out)
    assert commands[0]["kind"] == "error" and commands[0]["title"] == "mlgate error" and "prod" in commands[0]["message"]


def _decision(**findings) -> Decision:
    return Decision(decision_id="d-1", result="deny", environment="production",
                    evaluated_at=dt.datetime(2026, 11, 29, tzinfo=dt.timezone.utc),
                    release={"name": "r", "version": "1"}, manifest_path="rel/mlgate.yaml", **findings)


HOSTILE = "gap 5% \r\n::add-mask::secret\n::set-output name=x::y\x1b[2K\u202e"


@pytest.mark.parametrize("where", ["message", "remediation", "subject", "id"])
def test_hostile_text_cannot_start_a_command(where):
    values = {"id": "MLG-X-001", "message": "plain", "remediation": "fix", "subject": "evidence/e.json"}
    values[where] = HOSTILE if where != "subject" else "evidence/a,b:c/" + HOSTILE
    out = renderer("github")(_decision(violations=(Finding(severity="high", **values),),
                                       warnings=(Finding(id="MLG-W-001", message=HOSTILE, severity="low"),)))
    lines = out.splitlines()
    assert len(lines) == 3  # error, warning, notice: nothing a value held became a line of its own
    assert not any(c in out for c in ("\r", "\x1b", "\u202e"))
    commands = _parse(out)
    assert [c["kind"] for c in commands] == ["error", "warning", "notice"]
    error = commands[0]
    assert set(error) == {"kind", "file", "title", "message"}  # a `,` or `:` in a value adds no property
    if where == "subject":
        assert error["file"].startswith("rel/evidence/a,b:c/gap 5% \\r\\n::add-mask::secret")
    if where == "id":
        assert error["title"].startswith("gap 5% \\r\\n::add-mask::")
    if where in ("message", "remediation"):
        # mlgate's own line break (before the remediation) survives; the value's do not.
        assert error["message"].count("\n") == 1 and "5% \\r\\n::add-mask::secret\\n::set-output" in error["message"]
    assert "\n" not in commands[1]["message"] and "\\x1b[2K\\u202e" in commands[1]["message"]


def test_hostile_release_through_the_cli(tmp_path):
    release = tmp_path / "hostile"
    shutil.copytree(EXAMPLES / "readmission-risk", release)
    manifest = release / "mlgate.yaml"
    manifest.write_text(manifest.read_text().replace("uri: data/train.csv", "uri: " + json.dumps("data/a,b:c%0A\r::warning::x\x1b[8m.csv")))
    code, out, err = run(["check", release, "--env", "production", "-o", "github", "--audit-log", tmp_path / "a.jsonl"])
    assert code == 1, err
    commands = _parse(out)  # every line is one of mlgate's own commands
    data = [c for c in commands if c.get("title") == "MLG-DATA-006"]
    assert len(data) == 1 and "data/a,b:c%0A" in data[0]["message"] and "\x1b" not in data[0]["message"]
    assert not [c for c in commands if c["kind"] == "warning" and "::x" in c["message"] and c.get("title") is None]

"""The rego-cpp engine (regopy extra) fails closed like the embedded one, and lint knows its traps."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_helpers import run

from mlgate.policy.engine import create_engine
from mlgate.policy.engine.regopy_engine import available
from mlgate.errors import EngineError, PolicyError, UndefinedDecision
from mlgate.policy import bundled_policy_dir, load_policy

pytestmark = pytest.mark.skipif(not available(), reason="the rego-cpp extra (regopy) is not installed")


def engine(tmp_path, text, **kw):
    (tmp_path / "p.rego").write_text(text)
    return create_engine("rego-cpp", load_policy(tmp_path), **kw)


def test_decides(tmp_path):
    e = engine(tmp_path, 'package mlgate\nimport rego.v1\ndecision := {"allow": input.x == 1, "v": [s | some s in {"b", "a"}]}\n')
    assert e.name == "rego-cpp" and e.version
    got = e.decide({"x": 1})
    assert got["allow"] is True and sorted(got["v"]) == ["a", "b"]
    # A difference from OPA and regorus (which iterate sets in sorted order): rego-cpp keeps the
    # set literal's order. mlgate.gate.decide sorts findings, so decisions do not depend on it.
    assert got["v"] == ["b", "a"]
    assert e.decide({"x": 2})["allow"] is False


def test_undefined_and_errors_deny(tmp_path):
    with pytest.raises(UndefinedDecision):
        engine(tmp_path, 'package mlgate\nimport rego.v1\ndecision := {"allow": true} if input.never\n').decide({})
    with pytest.raises(EngineError) as exc:
        engine(tmp_path, 'package mlgate\nimport rego.v1\ndecision := {"allow": to_number(input.x)}\n').decide({"x": "nan?"})
    assert "\n" not in str(exc.value)


def test_timeout(tmp_path):
    slow = 'package mlgate\nimport rego.v1\ndecision := {"allow": count([1 | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); i < j]) > 0}\n'
    with pytest.raises(EngineError, match="exceeded the 0.2 s deadline"):
        engine(tmp_path, slow, timeout_s=0.2).decide({})


def test_syntax_error_names_file_and_line(tmp_path):
    with pytest.raises(PolicyError) as exc:
        engine(tmp_path, 'package mlgate\nimport rego.v1\nx := [k | some k, v in input.o]\ndecision := {"allow": true}\n')
    assert "p.rego:3:" in str(exc.value) and "Invalid collection" in str(exc.value)


def test_missing_builtin_refused_with_this_engines_view(tmp_path):
    with pytest.raises(PolicyError, match=r"p.rego:3: builtin net.cidr_contains is not available in the rego-cpp engine"):
        engine(tmp_path, 'package mlgate\nimport rego.v1\nok if net.cidr_contains("10.0.0.0/8", input.ip)\ndecision := {"allow": ok}\n')


def test_has_what_regorus_lacks(tmp_path):
    """The reason for this engine: io.jwt.* (which the embedded engine refuses at load time)."""
    text = ('package mlgate\nimport rego.v1\n'
            'decision := {"allow": io.jwt.verify_hs256(input.t, "secret")}\n')
    token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.3Vd0yTOGmk4zj6Rb8h0uVLfJ1lRRbYExwTjsNyj1OXY"
    assert engine(tmp_path, text).decide({"t": token}) in ({"allow": True}, {"allow": False})
    with pytest.raises(PolicyError, match="io.jwt.verify_hs256 is not available in the embedded engine"):
        create_engine("embedded", load_policy(tmp_path))


def test_bundled_policy_loads():
    assert create_engine("rego-cpp", load_policy(bundled_policy_dir())).name == "rego-cpp"


# rego-cpp answers these with no output at all; regopy 1.5.2 wraps the NULL so that reading it
# crashes the process. Run in a child, so that a regression is a failed test, not a dead run.
_WITH_INPUT = """
import sys
from pathlib import Path
from mlgate.policy.engine import create_engine
from mlgate.errors import PolicyError
from mlgate.policy import load_policy
try:
    create_engine("rego-cpp", load_policy(Path(sys.argv[1])))
except PolicyError as exc:
    print(exc)
"""


@pytest.mark.parametrize(("test", "message"), [
    ('test_a if { ok with input as {"e": 1} }', "shape `rego-localref` has no field `rego-refhead`"),
    ('doc := {"e": 1}\ntest_a if { ok with input as doc }', "shape `rego-with` has no field `rego-ref`"),
])
def test_uncompilable_with_is_a_load_error_not_a_crash(tmp_path, test, message):
    (tmp_path / "p.rego").write_text(f'package mlgate\nimport rego.v1\nok if is_number(input.e)\n{test}\ndecision := {{"allow": ok}}\n')
    child = subprocess.run([sys.executable, "-c", _WITH_INPUT, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert f"cannot load policy in the rego-cpp engine: {message}" in child.stdout


def test_quoted_sprintf_result_is_an_engine_error_that_names_the_cause(tmp_path):
    """sprintf of a concat result prints it in quotes, unescaped: not JSON. trim_prefix(s, "") avoids it."""
    text = ('package mlgate\nimport rego.v1\n'
            'decision := {"allow": true, "m": sprintf("(%s)", [concat(", ", ["a", "b"])])}\n')
    with pytest.raises(EngineError, match="its output is not JSON .*unescaped quotes"):
        engine(tmp_path, text).decide({})
    plain = text.replace('[concat(", ", ["a", "b"])]', '[trim_prefix(concat(", ", ["a", "b"]), "")]')
    assert engine(tmp_path, plain).decide({}) == {"allow": True, "m": "(a, b)"}


def test_lint_engine_rego_cpp(tmp_path):
    code, out, _ = run(["policy", "lint", bundled_policy_dir(), "--engine", "rego-cpp"])
    assert code == 0, out  # the bundled library compiles; what remains are warnings
    lines = [line for line in out.splitlines() if "[rego-cpp]" in line]
    assert all(line.endswith("(warning)") and "approvals.rego" not in line for line in lines), out
    code, out, _ = run(["policy", "lint", bundled_policy_dir()])
    assert code == 0 and "[rego-cpp]" not in out
    (tmp_path / "p.rego").write_text('package mlgate\nimport rego.v1\n\nt := time.parse_rfc3339_ns(input.ts)\n'
                                     'u := time.parse_rfc3339_ns("2026-01-01T00:00:00+00:00")\nm := sprintf("%q", [1])\nn := sprintf("%v", [1])\n'
                                     'c := net.cidr_contains("10.0.0.0/8", input.ip)\n'
                                     'j(xs) := concat(", ", xs)\n'
                                     'q := sprintf("(%s) (%s) (%s)", [j(["a"]), lower("A"), trim_prefix(concat(", ", ["b"]), "")])\n'
                                     'w := sprintf("%s", [concat(", ", ["a"])])\n'
                                     'ks := [k | some k, v in input.o]\n'
                                     'ko := {k: v | some k, v in input.o}\n'
                                     'd := {"e": 1}\n'
                                     'x if { is_number(input.e) with input as d; e := d; t with data.x as e; t with data.x as d }\n')
    code, out, _ = run(["policy", "lint", tmp_path, "--engine", "rego-cpp"])
    found = {(int(line.split(":")[1]), line.split("] ")[1][:14]) for line in out.splitlines() if "[rego-cpp]" in line or "[builtin]" in line}
    assert found == {(4, "time.parse_rfc"), (6, "sprintf: its f"), (8, "builtin net.ci"), (10, "sprintf of j(."), (10, "sprintf of low"),
                     (12, "`some k, v in "), (15, "`with input as"), (15, "`with ... as d")}, out
    assert code == 1

from __future__ import annotations

import json

from click.testing import CliRunner

from mlgate.cli import cli
from mlgate.clock import FixedClock

from conftest import EXAMPLES_NOW


def run(args, *, now=EXAMPLES_NOW, ids=None):
    """Run the CLI in-process (sigstore's habit) with an injected clock; return (exit code, stdout, stderr)."""
    obj = {"clock": FixedClock(now)}
    if ids is not None:
        obj["ids"] = ids
    result = CliRunner().invoke(cli, [str(a) for a in args], obj=obj, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def check_json(release, env, audit_log, *extra, now=EXAMPLES_NOW):
    code, out, err = run(["check", release, "--env", env, "-o", "json", "--audit-log", audit_log, *extra], now=now)
    return code, json.loads(out), err

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


def resign_approvals(release, *, keys=None):
    """Sign every approval of ``release`` again, as its signer would after reviewing the edited
    manifest: same signer, role, meaning, environment, times and approved evidence, bound to the
    release as it is now. For tests that edit one manifest field to exercise one rule (without
    it, the edit also voids the approvals: MLG-APPR-020)."""
    import base64
    from pathlib import Path

    from mlgate.clock import parse_time
    from mlgate.evidence.approval import create_approval
    from mlgate.manifest import load_release

    from conftest import EXAMPLES

    keys = Path(keys or EXAMPLES / "keys")
    loaded = load_release(release)
    for path, _rel in loaded.approvals:
        bundle = json.loads(path.read_bytes())
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        p, subject = statement["predicate"], statement["subject"][0]
        path.write_bytes(create_approval(
            (keys / f"{p['signer']['id'].split('@')[0]}.key").read_bytes(),
            release_name=subject["name"], model_digest=subject["digest"]["sha256"],
            printed_name=p["signer"]["printedName"], signer_id=p["signer"]["id"], role=p["role"], meaning=p["meaning"],
            environment=p["environment"], signed_at=parse_time(p["signedAt"]),
            expires_at=parse_time(p["expiresAt"]) if p["expiresAt"] else None,
            evidence_digests=p["evidenceDigests"], comment=p["comment"], authored=p.get("authored"),
            release=loaded.binding,
        ))

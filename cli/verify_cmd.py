"""``mlgate verify RELEASE``: verify every signature in a release and print one row per signature.

Exit codes: 0 every signature verified (warnings allowed), 1 a signature failed or the release
has none, 2 the release or the trust policy cannot be read. Only :class:`MlgateError` is caught.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlgate.errors import MlgateError

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


@click.command("verify")
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--trust", "trust_path", type=click.Path(dir_okay=False, path_type=Path), help="Trust policy (default: `trust` in .mlgate.yaml; none is trusted by default).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--summary-max-age", metavar="AGE", help="Refuse a verification summary (RELEASE/.mlgate/verification-*.sigstore.json) older than AGE (30m, 24h, 7d).")
@click.pass_context
def verify(ctx, release, trust_path, fmt, summary_max_age):
    """Verify every signature in RELEASE (approvals, waivers, the model signature and verification summaries): artifact,
    signer, identity source (key/certificate/keyless), meaning, signed_at, status and reason. A
    waiver's row names its role and rules and says when it expires or expired."""
    from mlgate.clock import SystemClock
    from mlgate.settings import find_settings, trust_policy_path
    from mlgate.signing.trust import load_trust_policy
    from mlgate.signing.verify import render_json, render_text, verify_release

    clock = (ctx.obj or {}).get("clock") or SystemClock()
    try:
        from mlgate.signing.summary import parse_max_age

        max_age = parse_max_age(summary_max_age, field="--summary-max-age") if summary_max_age is not None else None
        trust = load_trust_policy(trust_policy_path(trust_path, find_settings())[0])
        report = verify_release(release, trust, clock.now(), summary_max_age=max_age)
    except MlgateError as exc:
        click.echo(f"mlgate: error: {exc.diagnostics()}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(render_json(report) if fmt == "json" else render_text(report))
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)

"""``mlgate audit``: verify, show and export the audit trail (design.md section 8).

The trail is named by ``--audit URL`` or ``MLGATE_AUDIT`` (default ``file:.mlgate/audit.jsonl``),
as for ``mlgate check``. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mlgate.errors import MlgateError

EXIT_OK, EXIT_NOT_INTACT, EXIT_ERROR = 0, 1, 2
DEFAULT_AUDIT_URL = "file:.mlgate/audit.jsonl"

_audit_option = click.option("--audit", "audit_url", envvar="MLGATE_AUDIT", default=DEFAULT_AUDIT_URL, show_default=True,
                             help="Audit trail: file:PATH or postgresql://... (env MLGATE_AUDIT).")


def _fail(exc: MlgateError) -> None:
    click.echo(f"mlgate: error: {exc.diagnostics()}", err=True)
    sys.exit(EXIT_ERROR)


def _time(value: str | None, name: str):
    if value is None:
        return None
    from mlgate.clock import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected an RFC 3339 time with a timezone (e.g. 2026-01-31T00:00:00Z): {exc}", param_hint=name) from None


def _filters(f):
    for opt in reversed([
        click.option("--model-digest", help="Only decisions about this model digest (a prefix is enough)."),
        click.option("--release", help="Only decisions about release NAME or NAME@VERSION."),
        click.option("--env", "environment", help="Only decisions for this environment."),
        click.option("--result", type=click.Choice(["allow", "deny", "error"]), help="Only decisions with this result."),
        click.option("--since", help="Only decisions at or after this time (RFC 3339)."),
        click.option("--until", help="Only decisions at or before this time (RFC 3339)."),
    ]):
        f = opt(f)
    return f


def _make_filter(model_digest, release, environment, result, since, until):
    from mlgate.audit_export import RecordFilter

    return RecordFilter(model_digest=model_digest, release=release, environment=environment, result=result,
                        since=_time(since, "--since"), until=_time(until, "--until"))


@click.group()
def audit() -> None:
    """Verify, show and export the hash-chained audit trail."""


@audit.command()
@_audit_option
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(audit_url, fmt):
    """Walk the chain and report the first broken link. Exit 0 intact, 1 tampered, 2 cannot read."""
    from mlgate.audit_verify import VerifyResult, open_trail, verify_trail

    try:
        trail = open_trail(audit_url)
    except MlgateError as exc:
        result = VerifyResult(location=audit_url, status="unreadable", problem=exc.diagnostics())
    else:
        try:
            result = verify_trail(trail)
        finally:
            trail.close()
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    elif result.ok:
        click.echo(f"mlgate: audit trail {result.location} intact: {result.records} record(s), head sequence {result.head_sequence} hash {result.head_hash}")
        for note in result.notes:
            click.echo(f"mlgate: note: {note}")
    elif result.status == "unreadable":
        click.echo(f"mlgate: error: {result.problem}", err=True)
    else:
        click.echo(f"mlgate: audit trail {result.location} {result.status.upper()}: {result.problem}")
    sys.exit(result.exit_code)


@audit.command()
@_audit_option
@_filters
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def show(audit_url, model_digest, release, environment, result, since, until, fmt):
    """List recorded decisions, filtered, as a text table or JSON."""
    from mlgate.audit_export import select, table
    from mlgate.audit_verify import open_trail

    filt = _make_filter(model_digest, release, environment, result, since, until)
    try:
        trail = open_trail(audit_url)
        try:
            records = select(trail, filt)
        finally:
            trail.close()
    except MlgateError as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(json.dumps({"apiVersion": "mlgate.dev/audit-list/v1", "count": len(records), "records": records}, indent=2, sort_keys=True))
    else:
        click.echo(table(records))


@audit.command()
@_audit_option
@_filters
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The tar file to write.")
@click.pass_context
def export(ctx, audit_url, model_digest, release, environment, result, since, until, out):
    """Write a tar for an auditor: the whole chain, the retained evidence of the selected
    decisions, and a manifest of digests."""
    from mlgate.audit_export import export_trail
    from mlgate.audit_verify import open_trail
    from mlgate.clock import SystemClock

    filt = _make_filter(model_digest, release, environment, result, since, until)
    clock = (ctx.obj or {}).get("clock") or SystemClock()
    try:
        trail = open_trail(audit_url)
        try:
            manifest = export_trail(trail, out, filt, now=clock.now())
        finally:
            trail.close()
    except MlgateError as exc:
        _fail(exc)
    status = manifest["chain"]["verification"]["status"]
    click.echo(f"mlgate: exported {manifest['chain']['records']} record(s) ({len(manifest['selected'])} selected) and "
               f"{len(manifest['evidence'])} evidence file(s) to {out}; chain {status}")
    if status != "intact":
        click.echo(f"mlgate: warning: the chain is not intact: {manifest['chain']['verification']['problem']}", err=True)

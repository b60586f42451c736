"""The audit-trail URL as every command takes it: ``--audit URL`` or ``MLGATE_AUDIT``, one
grammar (:func:`mlgate.audit.url.parse_audit_url`) and the same checks for both, so a mistyped
environment variable is refused in one line instead of writing the trail somewhere unexpected."""

from __future__ import annotations

import click
from click.core import ParameterSource

AUDIT_HELP = "Audit trail: file:PATH, a path (./trail, audit.jsonl) or postgresql://... (env MLGATE_AUDIT)."


class AuditOption(click.Option):
    """``--audit``: remembers whether the value came from the command line or MLGATE_AUDIT, so an
    error names the one the user actually set (click sets the parameter source only after callbacks run)."""

    def consume_value(self, ctx: click.Context, opts):
        value, source = super().consume_value(ctx, opts)
        ctx.meta[f"mlgate.source.{self.name}"] = source
        return value, source


def check_audit_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: parse the URL now; a bad one is a one-line error naming --audit or MLGATE_AUDIT, exit 2."""
    if value is None:
        return None
    from mlgate.audit.url import parse_audit_url
    from mlgate.errors import MlgateError
    from mlgate.safeio import printable

    source = ctx.meta.get(f"mlgate.source.{param.name}") or ctx.get_parameter_source(param.name)
    where = "MLGATE_AUDIT" if source == ParameterSource.ENVIRONMENT else "--audit"
    try:
        parse_audit_url(value, field=where)
    except MlgateError as exc:
        click.echo(printable(f"mlgate: error: {exc.diagnostics()}"), err=True)
        ctx.exit(2)
    return value

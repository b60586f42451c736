"""``mlgate monitor``: judge a window of production predictions against the release's thresholds.

Exit 0 when the window passes, 1 when the bias rule or a drift threshold fails, 2 on an error.
Every run, error included, is one record in the audit trail (action ``monitor``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlgate.cli.audit_option import AUDIT_HELP, AuditOption, check_audit_url
from mlgate.errors import MlgateError
from mlgate.safeio import printable


@click.command("monitor")
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--window", "window", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Production predictions with outcomes (CSV or Parquet).")
@click.option("--env", "environment", required=True, help="Environment whose thresholds apply (e.g. production).")
@click.option("--label", required=True, help="Column with the observed outcome (0/1).")
@click.option("--pred", required=True, help="Column with the model's prediction (0/1).")
@click.option("--sensitive", required=True, help="Comma-separated sensitive attribute columns.")
@click.option("--features", help="Comma-separated input features to check for drift (default: every column shared with the reference).")
@click.option("--reference", type=click.Path(dir_okay=False, path_type=Path), help="Training reference (default: the release's training dataset).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), help="Write the monitoring record (JSON) here.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), help="Sign the record (DSSE, in-toto) with this key; written to OUTPUT.sigstore.json.")
@click.option("--policy", "policy_dir", type=click.Path(path_type=Path), help="Policy directory (default: the bundled library).")
@click.option("--data", "data_files", type=click.Path(path_type=Path), multiple=True, help="Extra data document merged over the policy data.")
@click.option("--audit", "audit_url", envvar="MLGATE_AUDIT", cls=AuditOption, callback=check_audit_url,
              help=AUDIT_HELP + " Default: file:.mlgate/audit.jsonl.")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), help="Shorthand for --audit file:PATH.")
@click.pass_context
def monitor(ctx, release, window, environment, label, pred, sensitive, features, reference, out, key_path, policy_dir, data_files, audit_url, audit_log):
    """Recompute the bias audit and the data drift of a production WINDOW for RELEASE; exit 1 when either fails."""
    import dataclasses
    import json

    from click.core import ParameterSource

    from mlgate.audit import AuditOptions, decision_record, open_sink
    from mlgate.cli import DEFAULT_AUDIT_LOG, EXIT_ERROR, _actor, _clock
    from mlgate.gate import Decision, GateOptions, prepare
    from mlgate.inputdoc import Request

    clock = _clock(ctx)
    request = Request(source="cli", user=_actor(), operation="monitor")
    options = GateOptions(environment=environment, policy_dir=policy_dir, data_overrides=list(data_files), clock=clock, request=request)
    ids = (ctx.obj or {}).get("ids") or options.ids
    if key_path is not None and out is None:
        click.echo("mlgate: error: --key signs the record written by -o/--output; give both", err=True)
        sys.exit(EXIT_ERROR)
    # As in `check`: --audit-log on the command line wins over MLGATE_AUDIT; both on the command line is a mistake.
    if audit_log is not None and audit_url is not None and ctx.meta.get("mlgate.source.audit_url") == ParameterSource.COMMANDLINE:
        click.echo("mlgate: error: --audit and --audit-log both name the audit trail; give one", err=True)
        sys.exit(EXIT_ERROR)
    audit_url = f"file:{audit_log}" if audit_log is not None else audit_url or f"file:{DEFAULT_AUDIT_LOG}"
    try:
        sink = open_sink(audit_url, AuditOptions(policy_dir=policy_dir))
    except MlgateError as exc:
        click.echo(printable(f"mlgate: error: {exc.diagnostics()}"), err=True)
        sys.exit(EXIT_ERROR)

    now = clock.now()
    base = Decision(decision_id=ids(), result="error", environment=environment, evaluated_at=now)
    result = None
    with sink:
        try:
            from mlgate.manifest import load_release
            from mlgate.monitor import run_monitor
            from mlgate.policy.environments import require_environment

            prepared = prepare(options)
            require_environment(prepared.policy, environment)
            loaded = load_release(release)
            base = dataclasses.replace(base, policy_revision=prepared.revision, engine=prepared.engine.name,
                                       engine_version=prepared.engine.version,
                                       release={"name": loaded.name, "version": loaded.version, "owner": loaded.owner,
                                                "manifest_digest": loaded.manifest_digest})
            result = run_monitor(
                loaded, window=window, label=label, pred=pred, sensitive=[s.strip() for s in sensitive.split(",") if s.strip()],
                environment=environment, prepared=prepared, now=now, request=request,
                features=[f.strip() for f in features.split(",") if f.strip()] if features else None, reference=reference,
            )
            from mlgate.canonical import digest_json

            decision = dataclasses.replace(
                base, result="allow" if result.allowed else "deny", violations=result.violations, warnings=result.warnings,
                model_digest=result.record["model_digest"], input_digest=digest_json(result.input_document),
                evidence_digests=result.evidence_digests, input_document=result.input_document,
            )
            if out is not None:
                _write(out, json.dumps(result.record, indent=2, sort_keys=True) + "\n")
                if key_path is not None:
                    _sign(out, key_path, result.record)
        except MlgateError as exc:
            decision = dataclasses.replace(base, error=exc.diagnostics())
        try:
            receipt = sink.append(decision_record(decision, request))
        except MlgateError as exc:
            click.echo(printable(f"mlgate: error: audit record not written: {exc.diagnostics()}"), err=True)
            sys.exit(EXIT_ERROR)

    if decision.result == "error":
        click.echo(printable(f"mlgate: error: {decision.error} (audit #{receipt.sequence})"), err=True)
        sys.exit(EXIT_ERROR)
    record = result.record
    echo = _echo  # every line quotes the manifest or the window: neutralised
    echo(f"mlgate: monitoring {record['result'].upper()}  {record['release']['name']} {record['release']['version']} -> {environment}"
         f" (window {record['window']['rows']} rows; decision {decision.decision_id}, audit #{receipt.sequence})")
    for v in record["violations"]:
        echo(f"  x {v['id']} [{v['severity']}] {v['message']}")
    for w in record["warnings"]:
        echo(f"  ! {w['id']} [{w['severity']}] {w['message']}")
    drifted = {v.get("subject") for v in record["violations"] if v["id"].startswith("MLG-MON-")}
    for d in record["drift"]:
        mark = "x" if d["feature"] in drifted else " "
        ks = "" if d["ks_statistic"] is None else f", KS {d['ks_statistic']:.3f} (p {d['ks_p_value']:.2g})"
        psi = "n/a" if d["psi"] is None else f"{d['psi']:.3f}"
        echo(f"  {mark} drift {d['feature']}: PSI {psi}{ks}")
    if out is not None:
        echo(f"mlgate: monitoring record written to {out}" + (f" (signed: {out}.sigstore.json)" if key_path else ""))
    sys.exit(0 if decision.result == "allow" else 1)


def _echo(text: str) -> None:
    """One report line: the release's name, version and findings are manifest and window values."""
    click.echo(printable(text))


def _write(path: Path, text: str) -> None:
    from mlgate.errors import InputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", file=str(path)) from None


def _sign(out: Path, key_path: Path, record: dict) -> None:
    from mlgate.signing.attestation import make_statement, sign_statement
    from mlgate.signing.keys import load_private_key
    from mlgate.monitor import PREDICATE_TYPE

    statement = make_statement([{"name": record["release"]["name"], "digest": {"sha256": record["model_digest"]}}], PREDICATE_TYPE, record)
    bundle = sign_statement(statement, load_private_key(key_path))
    Path(f"{out}.sigstore.json").write_bytes(bundle)

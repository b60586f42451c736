"""``mlgate audit``: verify, show, export, checkpoint and report the audit trail (design.md section 8).

The trail is named by ``--audit URL`` or ``MLGATE_AUDIT`` (default ``file:.mlgate/audit.jsonl``),
as for ``mlgate check``. Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mlgate.cli.audit_option import AuditOption, check_audit_url
from mlgate.errors import MlgateError

EXIT_OK, EXIT_NOT_INTACT, EXIT_ERROR = 0, 1, 2
DEFAULT_AUDIT_URL = "file:.mlgate/audit.jsonl"

_audit_option = click.option("--audit", "audit_url", envvar="MLGATE_AUDIT", default=DEFAULT_AUDIT_URL, show_default=True, cls=AuditOption, callback=check_audit_url,
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
    from mlgate.audit.export import RecordFilter

    return RecordFilter(model_digest=model_digest, release=release, environment=environment, result=result,
                        since=_time(since, "--since"), until=_time(until, "--until"))


@click.group()
def audit() -> None:
    """Verify, checkpoint, show, export and report the hash-chained audit trail."""


_trust_option = click.option("--trust", "trust_path", type=click.Path(dir_okay=False, path_type=Path),
                             help="Trust policy listing checkpointSigners (default: `trust` in .mlgate.yaml, else none).")


def _default_trust() -> Path | None:
    """The project's trust policy (``trust`` in .mlgate.yaml), or None: mlgate ships none."""
    from mlgate.settings import find_settings

    try:
        return find_settings().trust
    except MlgateError as exc:
        click.echo(f"mlgate: error: {exc.diagnostics()}", err=True)
        sys.exit(2)


@audit.command()
@_audit_option
@_trust_option
@click.option("--checkpoint", "extra_checkpoints", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A checkpoint bundle held outside the trail (repeatable); checked like the stored ones.")
@click.option("--anchor", "anchors", multiple=True, metavar="file:DIR",
              help="Anchor directory holding checkpoint copies (repeatable): its checkpoints are checked, and count as anchored.")
@click.option("--require-anchor", "require_anchor", metavar="AGE",
              help="Fail (exit 1) when a record older than AGE (e.g. 24h, 7d) is not covered by an anchored checkpoint: one with a "
                   "timestamp of a TSA the trust policy lists, or a copy in an --anchor directory, signed within AGE of the record.")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def verify(ctx, audit_url, trust_path, extra_checkpoints, anchors, require_anchor, fmt):
    """Walk the chain and report the first broken link, then check every signed checkpoint
    against the trust policy. Exit 0 intact, 1 tampered (or unanchored), 2 cannot read or cannot check."""
    from mlgate.audit.checkpoint import CheckpointPolicy, anchor_store, parse_age
    from mlgate.audit.verify import VerifyResult, open_trail, verify_trail
    from mlgate.clock import SystemClock

    try:
        age = parse_age(require_anchor) if require_anchor is not None else None
        for url in anchors:
            anchor_store(url)
    except MlgateError as exc:
        _fail(exc)
    clock = (ctx.obj or {}).get("clock") or SystemClock()
    policy = CheckpointPolicy(trust_path=trust_path or _default_trust(), extra=tuple(extra_checkpoints), anchors=tuple(anchors),
                              require_anchor=age, now=clock.now())
    try:
        trail = open_trail(audit_url)
    except MlgateError as exc:
        result = VerifyResult(location=audit_url, status="unreadable", problem=exc.diagnostics())
    else:
        try:
            result = verify_trail(trail, checkpoints=policy)
        finally:
            trail.close()
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
        sys.exit(result.exit_code)
    if result.ok:
        click.echo(f"mlgate: audit trail {result.location} intact: {result.records} record(s), head sequence {result.head_sequence} hash {result.head_hash}")
    elif result.status in ("unreadable", "unverifiable"):
        click.echo(f"mlgate: error: {result.problem}", err=True)
    else:
        click.echo(f"mlgate: audit trail {result.location} {result.status.upper()}: {result.problem}")
    for cp in result.checkpoints or []:
        click.echo(_checkpoint_line(cp))
    if result.ok:
        for note in result.notes:
            click.echo(f"mlgate: note: {note}")
    sys.exit(result.exit_code)


def _checkpoint_line(cp: dict) -> str:
    if cp["sequence"] is None:
        return f"  checkpoint {cp['where']}: {cp['status'].upper()}: {cp['reason']}"
    who = f"{cp['signer_name']} <{cp['signer_id']}>" if cp["signer_id"] else "?"
    text = f"  checkpoint sequence {cp['sequence']} hash {cp['hash'][:16]} signed by {who} at {cp['time']}: {cp['status'].upper()}"
    if cp.get("anchors"):
        text += f" (anchored: {', '.join(cp['anchors'])}; at {cp['anchored_at']})"
    return text + (f": {cp['reason']}" if cp["reason"] else "")


@audit.command()
@_audit_option
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Private key (PEM) of a checkpoint signer.")
@click.option("--trust", "trust_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Trust policy: refuse a key that is not a checkpoint signer, and check the stored checkpoints first.")
@click.option("--anchor", "anchors", multiple=True, metavar="file:DIR", help="Also copy the checkpoint to this anchor directory (repeatable).")
@click.option("--tsa", metavar="URL", help="RFC 3161 timestamping authority to timestamp the checkpoint (with --trust: one it lists).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.pass_context
def checkpoint(ctx, audit_url, key_path, trust_path, anchors, tsa, fmt):
    """Verify the chain and sign its head (sequence, hash, time), so that a whole rewritten
    chain is detectable later. Exit 0 signed, 1 the chain is not intact, 2 error."""
    from mlgate.audit.anchor import create_checkpoint
    from mlgate.audit.checkpoint import CheckpointRefused, load_checkpoint_trust
    from mlgate.audit.verify import open_trail
    from mlgate.clock import SystemClock
    from mlgate.signing.keys import load_private_key

    clock = (ctx.obj or {}).get("clock") or SystemClock()
    try:
        key = load_private_key(key_path)
        trust = load_checkpoint_trust(trust_path) if trust_path else None
        timestamper = None
        if tsa is not None:
            from mlgate.signing.timestamp import request_timestamp

            timestamper = lambda signature: request_timestamp(tsa, signature)  # noqa: E731
        trail = open_trail(audit_url)
        try:
            signed = create_checkpoint(trail, key, now=clock.now(), trust=trust, timestamper=timestamper, anchors=anchors)
        finally:
            trail.close()
    except CheckpointRefused as exc:
        click.echo(f"mlgate: refused: {exc.diagnostics()}", err=True)
        sys.exit(EXIT_NOT_INTACT)
    except MlgateError as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(json.dumps({"apiVersion": "mlgate.dev/audit-checkpoint-result/v1", "location": signed.location, "sequence": signed.sequence,
                               "hash": signed.hash, "time": signed.time, "key_id": signed.key_id, "signer_id": signed.signer_id,
                               "anchors": list(signed.anchors)},
                              indent=2, sort_keys=True))
    else:
        click.echo(f"mlgate: signed checkpoint of sequence {signed.sequence} hash {signed.hash} at {signed.time} "
                   f"with key {signed.key_id[:16]}: {signed.location}" + (f" (anchored: {', '.join(signed.anchors)})" if signed.anchors else ""))


@audit.command()
@_audit_option
@_filters
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def show(audit_url, model_digest, release, environment, result, since, until, fmt):
    """List recorded decisions, filtered, as a text table or JSON."""
    from mlgate.audit.export import select, table
    from mlgate.audit.verify import open_trail

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
        from mlgate.audit.export import is_event

        replays = sum(1 for r in records if r.get("action") == "replay" or r.get("kind") == "replay")
        events = sum(1 for r in records if is_event(r))
        # A replay (mlgate audit replay --record) and an event (the webhook's policy-change) are listed, marked by
        # their kind, and never counted as decisions.
        click.echo(json.dumps({"apiVersion": "mlgate.dev/audit-list/v1", "count": len(records) - replays - events, "replays": replays,
                               "events": events, "records": records}, indent=2, sort_keys=True))
    else:
        from mlgate.safeio import printable

        click.echo(printable(table(records), keep_newlines=True))  # release names and messages come from manifests


@audit.command()
@_audit_option
@_filters
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The tar file to write.")
@click.pass_context
def export(ctx, audit_url, model_digest, release, environment, result, since, until, out):
    """Write a tar for an auditor: the whole chain, the retained evidence of the selected
    decisions, and a manifest of digests."""
    from mlgate.audit.export import export_trail
    from mlgate.audit.verify import open_trail
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


@audit.command()
@_audit_option
@click.option("--release", "release_spec", required=True, help="The release: NAME or NAME@VERSION.")
@click.option("--release-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The release directory (its manifest names the evidence; files whose digests match the records fill in what was not retained).")
@click.option("--policy", "policy_dir", type=click.Path(file_okay=False, path_type=Path), help="Policy directory for the bias thresholds (default: the bundled library).")
@_trust_option
@click.option("--checkpoint", "extra_checkpoints", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A checkpoint bundle held outside the trail (repeatable).")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The HTML file to write.")
@click.option("--pdf", "pdf", type=click.Path(dir_okay=False, path_type=Path), help="Also print the page to this PDF (needs Chromium).")
@click.pass_context
def report(ctx, audit_url, release_spec, release_dir, policy_dir, trust_path, extra_checkpoints, out, pdf):
    """Write one self-contained HTML page for an auditor: datasets -> data validation -> model ->
    model card -> bias audit -> approvals -> every gate decision -> chain verification.
    Exit 0 written, 1 written but the trail did not verify, 2 error."""
    from mlgate.audit.verify import open_trail
    from mlgate.clock import SystemClock
    from mlgate.report import build_report, write_atomically

    clock = (ctx.obj or {}).get("clock") or SystemClock()
    try:
        trail = open_trail(audit_url)
        try:
            html, data = build_report(trail, release_spec, now=clock.now(), release_dir=release_dir, policy_dir=policy_dir,
                                      trust_path=trust_path or _default_trust(), checkpoints=tuple(extra_checkpoints))
        finally:
            trail.close()
        write_atomically(out, html)
        if pdf is not None:
            from mlgate.report.chromium import print_pdf

            print_pdf(out, pdf)
    except MlgateError as exc:
        _fail(exc)
    v = data.verification
    click.echo(f"mlgate: wrote {out}{f' and {pdf}' if pdf else ''}: {data.title}, {len(data.records)} decision(s), chain {v.status}")
    if not v.ok:
        click.echo(f"mlgate: warning: the audit trail did not verify: {v.problem}", err=True)
        sys.exit(EXIT_NOT_INTACT)


@audit.command()
@_audit_option
@click.option("--policy", "policy_path", required=True, type=click.Path(path_type=Path),
              help="The proposed policy: a policy directory or an OPA bundle (*.tar.gz).")
@click.option("--data", "data_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Data override for the proposed policy (repeatable; documented environment data only).")
@click.option("--bundle-key", type=click.Path(dir_okay=False, path_type=Path), help="Public key verifying a signed OPA bundle given as --policy.")
@click.option("--engine", type=click.Choice(["embedded", "regorus-interp", "rego-cpp"]), default="embedded", show_default=True,
              help="The in-process policy engine to evaluate the proposed policy on.")
@click.option("--since", help="Only decisions at or after this time (RFC 3339).")
@click.option("--at", "at", type=click.Choice(["original", "now"]), default="original", show_default=True,
              help="Evaluate at the recorded evaluation time, or now.")
@click.option("--record", "record", is_flag=True, help="Append each replayed decision to the trail (action: replay, naming the original decision).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text", show_default=True)
@click.pass_context
def replay(ctx, audit_url, policy_path, data_files, bundle_key, engine, since, at, record, fmt):
    """Re-evaluate the stored inputs of past decisions under a proposed policy and list, per
    release and environment, every decision that would flip (allow->deny, deny->allow) with the
    findings that changed. Nothing is appended unless --record. Exit 0 no deny->allow flip,
    1 some decision would flip from deny to allow, 2 error."""
    from mlgate.audit import AuditOptions, open_sink
    from mlgate.audit.verify import open_trail
    from mlgate.clock import SystemClock, uuid4_ids
    from mlgate.replay import Replayer, ReplayOptions, render_markdown, render_text, replay as run_replay, replay_record
    from mlgate.safeio import printable

    obj = ctx.obj or {}
    clock, ids = obj.get("clock") or SystemClock(), obj.get("ids") or uuid4_ids
    now = clock.now()
    options = ReplayOptions(policy=policy_path, data_overrides=tuple(data_files), bundle_key=bundle_key, engine=engine, at=at,
                            since=_time(since, "--since"))
    try:
        replayer = Replayer(options)
        trail = open_trail(audit_url)
        try:
            result = run_replay(trail, options, now=now, replayer=replayer)
        finally:
            trail.close()
        if record and result.replayed:
            from mlgate.cli import _actor

            with open_sink(audit_url, AuditOptions(input_mode="erase")) as sink:
                for r in result.replayed:
                    sink.append(replay_record(r, replayer, decision_id=ids(), now=now, actor=_actor(), at=at))
    except MlgateError as exc:
        _fail(exc)
    finally:
        replayer = None  # the engine is bound to this thread: dropped here, never by a collection on a sink's thread
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    elif fmt == "markdown":
        click.echo(printable(render_markdown(result), keep_newlines=True), nl=False)
    else:
        click.echo(printable(render_text(result), keep_newlines=True))
    if record and result.replayed:
        click.echo(f"mlgate: recorded {len(result.replayed)} replay record(s) (action: replay) in {audit_url}", err=True)
    sys.exit(result.exit_code)


def _file_trail(audit_url: str, command: str) -> Path:
    from mlgate.audit.url import parse_audit_url

    target = parse_audit_url(audit_url)
    if target.kind != "file":
        raise click.UsageError(f"mlgate audit {command} mends file trails; a PostgreSQL trail is written in transactions and "
                               f"cannot tear (a deleted head row: mlgate audit recover-head)")
    return Path(target.path)


def _mend(ctx, audit_url, trust_path, actor, fmt, command: str) -> None:
    from mlgate.audit.checkpoint import CheckpointPolicy
    from mlgate.audit.repair import RepairRefused, recover_head, repair_torn
    from mlgate.clock import SystemClock, uuid4_ids

    from mlgate.audit.url import parse_audit_url

    obj = ctx.obj or {}
    clock, ids = obj.get("clock") or SystemClock(), obj.get("ids") or uuid4_ids
    policy = CheckpointPolicy(trust_path=trust_path or _default_trust())
    if command == "recover-head" and parse_audit_url(audit_url).kind == "postgresql":
        from mlgate.audit.repair import recover_head_pg

        fn, where = recover_head_pg, parse_audit_url(audit_url).dsn
    else:
        fn, where = (repair_torn if command == "repair" else recover_head), _file_trail(audit_url, command)
    try:
        result = fn(where, now=clock.now(), ids=ids, actor=actor, checkpoints=policy)
    except RepairRefused as exc:
        click.echo(f"mlgate: refused: {exc.diagnostics()}", err=True)
        sys.exit(EXIT_NOT_INTACT)
    except MlgateError as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        click.echo(f"mlgate: {result.message}")
        for note in result.notes:
            click.echo(f"mlgate: note: {note}")


_actor_option = click.option("--actor", help="Who mends the trail, for the record (default: the OS user name).")
_mend_output = click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)


@audit.command()
@_audit_option
@_trust_option
@_actor_option
@_mend_output
@click.pass_context
def repair(ctx, audit_url, trust_path, actor, fmt):
    """Move a torn last line (a crash mid-write) into a quarantine file beside the log and append
    a repair record naming it and its sha256. Refuses when the trail does not verify before the
    torn line. Exit 0 repaired or nothing to repair, 1 refused, 2 error."""
    _mend(ctx, audit_url, trust_path, actor, fmt, "repair")


@audit.command("recover-head")
@_audit_option
@_trust_option
@_actor_option
@_mend_output
@click.pass_context
def recover_head_cmd(ctx, audit_url, trust_path, actor, fmt):
    """Rebuild a lost or unreadable head file, or a deleted PostgreSQL head row (run as the tables'
    owner), after a full verify (chain and signed checkpoints), and append a recover-head record.
    Exit 0 rebuilt or nothing to recover, 1 refused, 2 error."""
    _mend(ctx, audit_url, trust_path, actor, fmt, "recover-head")


@audit.command("init-db")
@_audit_option
@click.option("--writer", "writers", multiple=True, required=True,
              help="The role mlgate check and mlgate serve connect as: it may only append (repeatable).")
@click.option("--reader", "readers", multiple=True, help="A role that may only read the trail (verify, show, export, report; repeatable).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def init_db_cmd(audit_url, writers, readers, fmt):
    """Create the PostgreSQL audit tables as the role of --audit, which owns them, and grant the
    writer role only what appending needs: INSERT on records, evidence and checkpoints, the head
    moved only through a function that checks the chain; no UPDATE, DELETE, TRUNCATE, ALTER or
    trigger control. Safe to run again. Exit 0 done, 2 error."""
    from mlgate.audit.postgres import init_db
    from mlgate.audit.url import parse_audit_url

    target = parse_audit_url(audit_url)
    if target.kind != "postgresql":
        raise click.UsageError("mlgate audit init-db sets up a PostgreSQL trail: --audit postgresql://OWNER@HOST/DB")
    try:
        result = init_db(target.dsn, writers=writers, readers=readers)
    except MlgateError as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
        return
    click.echo(f"mlgate: audit tables ready in {result.location} (schema {result.schema}), owned by {result.owner}")
    for role in result.writers:
        click.echo(f"mlgate: writer {role}: may append (INSERT records, evidence, checkpoints; the head only through "
                   f"mlgate_audit_advance_head); no UPDATE, DELETE, TRUNCATE, ALTER or trigger control")
    for role in result.readers:
        click.echo(f"mlgate: reader {role}: may read (SELECT) only")
    for note in result.notes:
        click.echo(f"mlgate: note: {note}")

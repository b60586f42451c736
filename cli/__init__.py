"""The ``mlgate`` command: flags in, one core call, rendered decision and exit code out.

Heavy modules (the engine, cryptography, pandas, Fairlearn) are imported inside the commands
that need them, so ``mlgate --help`` stays fast. Only :class:`MlgateError` is caught: a real
bug still shows its traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from mlgate import __version__
from mlgate.cli.audit_option import AuditOption, check_audit_url
from mlgate.cli.engine_options import engine_options, opa_settings
from mlgate.cli.params import FiniteFloatRange
from mlgate.errors import MlgateError
from mlgate.safeio import printable

EXIT_ALLOWED, EXIT_DENIED, EXIT_ERROR = 0, 1, 2
DEFAULT_AUDIT_LOG = Path(".mlgate") / "audit.jsonl"


def _clock(ctx: click.Context):
    from mlgate.clock import SystemClock

    return (ctx.obj or {}).get("clock") or SystemClock()


def _fail(exc: MlgateError) -> None:
    click.echo(printable(f"mlgate: error: {exc.diagnostics()}"), err=True)
    sys.exit(EXIT_ERROR)


def _actor() -> str:
    import getpass
    import os

    for var in ("MLGATE_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_REQUESTEDFOREMAIL", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlgate")
def cli() -> None:
    """mlgate: prove a model release has the evidence regulators expect, or refuse it."""


@cli.command()
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--env", "environment", required=True, help="Target environment: one the policy defines, a directory under "
              "mlgate/environments/ of --policy (the bundled library: dev, staging, production; `mlgate policy doc` lists them). "
              "Any other is an error (exit 2).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "junit", "sarif", "github"]), default="text", show_default=True,
              help="Report format; github: GitHub Actions annotations (::error/::warning per finding).")
@click.option("--output-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here instead of stdout.")
@click.option("--policy", "policy_dir", type=click.Path(path_type=Path), multiple=True,
              help="Policy directory, OPA bundle or oci://REPO@sha256:... (default: `policy` in .mlgate.yaml, else the bundled library). "
              "Repeatable: layers, in order, each adding packages (e.g. your mlgate.rules.org_* rules); a first one that defines no "
              "data.mlgate.decision goes on top of the bundled library.")
@click.option("--data", "data_files", type=click.Path(path_type=Path), multiple=True, help="Data document merged over the policy's environment data (repeatable; may set mlgate.environments.<tier>.<key> only).")
@click.option("--trust", "trust_policy", type=click.Path(path_type=Path), help="Trust policy file (default: `trust` in .mlgate.yaml; none is trusted by default).")
@click.option("--audit", "audit_url", envvar="MLGATE_AUDIT", cls=AuditOption, callback=check_audit_url, help="Audit trail: file:PATH (default: `audit` in .mlgate.yaml, else file:.mlgate/audit.jsonl) or postgresql://... (env MLGATE_AUDIT).")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), help="Shorthand for --audit file:PATH.")
@click.option("--retain-evidence", is_flag=True, envvar="MLGATE_RETAIN_EVIDENCE", help="Keep a content-addressed copy of every file the decision read.")
@click.option("--audit-input", type=click.Choice(["erase", "store"]), envvar="MLGATE_AUDIT_INPUT", default="store", show_default=True,
              help="Keep the input document for mlgate audit replay (its facts content-addressed beside the trail, once per distinct facts), or erase it and record only its digest.")
@click.option("--timeout", "timeout_s", type=FiniteFloatRange(min=0.1), default=10.0, show_default=True, help="Policy evaluation deadline in seconds.")
@engine_options()
@click.option("--bundle-key", type=click.Path(dir_okay=False, path_type=Path), help="Public key that must have signed each --policy bundle (*.tar.gz or oci://).")
@click.option("--explain", is_flag=True, help="Also explain each finding: rule, inputs read and their values, what was expected, the tier's thresholds, remediation; and every rule evaluated (text and json output).")
@click.option("--checkpoint-key", type=click.Path(dir_okay=False, path_type=Path), envvar="MLGATE_CHECKPOINT_KEY",
              help="Sign a checkpoint of the audit trail's head when one is due (private key of a checkpointSigners entry of the trust policy).")
@click.option("--checkpoint-every", metavar="N|T|N,T", help="When a checkpoint is due: N records after the newest, or T (30s, 15m, 1h, 1d) after it was signed [default: 1h].")
@click.option("--checkpoint-anchor", "checkpoint_anchors", multiple=True, metavar="file:DIR",
              help="Also copy each checkpoint to this anchor directory, outside the writer's reach (repeatable).")
@click.option("--checkpoint-tsa", metavar="URL", help="RFC 3161 timestamping authority (one the trust policy lists in timestampAuthorities) to timestamp each checkpoint.")
@click.option("--attest", "attest_key", type=click.Path(dir_okay=False, path_type=Path), envvar="MLGATE_ATTEST_KEY",
              help="Private key (PEM) to sign a verification summary of the decision with (SLSA VSA v1 in a Sigstore bundle; env MLGATE_ATTEST_KEY).")
@click.option("--attest-output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the summary [default: RELEASE/.mlgate/verification-ENV.sigstore.json].")
@click.option("--verifier-id", default="https://mlgate.dev/verifier", show_default=True, help="The summary's verifier.id.")
@click.pass_context
def check(ctx, release, environment, fmt, output_file, policy_dir, data_files, trust_policy, audit_url, audit_log, retain_evidence, audit_input, timeout_s,
          engine, bundle_key, explain=False, checkpoint_key=None, checkpoint_every=None, checkpoint_anchors=(), checkpoint_tsa=None,
          attest_key=None, attest_output=None, verifier_id="https://mlgate.dev/verifier", **opa_params):
    """Decide whether RELEASE may be promoted to --env. Exit 0 allowed, 1 denied, 2 error.

    RELEASE is a release directory, or models:/NAME/VERSION or models:/NAME@ALIAS on the MLflow
    server in MLFLOW_TRACKING_URI."""
    if explain and fmt not in ("text", "json"):
        click.echo(f"mlgate: error: --explain works with -o text or -o json, not {fmt}", err=True)
        sys.exit(EXIT_ERROR)
    from click.core import ParameterSource

    from mlgate.audit import AuditOptions, open_sink
    from mlgate.gate import GateOptions, check_loaded as run_check_loaded
    from mlgate.inputdoc import Request
    from mlgate.render import renderer

    from mlgate.settings import find_settings

    try:
        settings = find_settings()  # .mlgate.yaml in the working directory; the flags win over it
        attest_signer = _attest_signer(attest_key, attest_output, release)  # refused before deciding
    except MlgateError as exc:
        _fail(exc)
    # --policy given once: that source (as before); several: the layers, in order; none: the settings file's.
    policy_dir = (policy_dir[0] if len(policy_dir) == 1 else tuple(policy_dir)) if policy_dir else settings.policy
    options = GateOptions(
        settings=settings,
        environment=environment,
        policy_dir=policy_dir,
        data_overrides=list(data_files),
        trust_policy=trust_policy,
        timeout_s=timeout_s,
        clock=_clock(ctx),
        request=Request(source="cli", user=_actor(), operation="promote"),
        engine=engine,
        bundle_key=bundle_key,
        time_split=attest_signer is not None,  # the summary carries the time-independent findings (a webhook may take them)
    )
    options.opa = opa_settings(opa_params)
    ids = (ctx.obj or {}).get("ids")
    if ids is not None:
        options.ids = ids
    # --audit-log on the command line wins over MLGATE_AUDIT; both on the command line is a mistake.
    if audit_log is not None and audit_url is not None and ctx.get_parameter_source("audit_url") == ParameterSource.COMMANDLINE:
        click.echo("mlgate: error: --audit and --audit-log both name the audit trail; give one", err=True)
        sys.exit(EXIT_ERROR)
    if audit_log is not None:
        audit_url = f"file:{audit_log}"
    checkpointer = None
    try:
        resolved_audit = audit_url or settings.audit or f"file:{DEFAULT_AUDIT_LOG}"
        base_policy = policy_dir[0] if isinstance(policy_dir, tuple) else policy_dir  # the record's policy_git: of the base layer
        sink = open_sink(resolved_audit, AuditOptions(policy_dir=base_policy, input_mode=audit_input, retain_evidence=retain_evidence))
        from mlgate.audit.autocheckpoint import CheckpointingSink, Checkpointer, checkpoint_settings

        cp_settings = checkpoint_settings(checkpoint_key, checkpoint_every, checkpoint_anchors, checkpoint_tsa)
        if cp_settings is not None:  # refused before deciding: a key the trust policy does not list, a bad anchor
            checkpointer = Checkpointer.from_settings(resolved_audit, cp_settings, clock=options.clock,
                                                      trust_path=trust_policy or settings.trust)
            sink = CheckpointingSink(sink, checkpointer)
    except MlgateError as exc:
        _fail(exc)
    fetch = None
    if str(release).startswith("models:"):
        # An MLflow model version: downloaded into a temporary directory inside the recorded path.
        import functools
        import tempfile

        from mlgate.cli.mlflow_cmd import fetch_model_version

        workdir = ctx.with_resource(tempfile.TemporaryDirectory(prefix="mlgate-mlflow-"))
        fetch = functools.partial(fetch_model_version, str(release), Path(workdir))
    with sink:
        decision = run_check_loaded(_release_loader(release, environment, fetch), options, sink)
    for problem in checkpointer.errors if checkpointer is not None else ():  # the decision is recorded; the checkpoint is not
        click.echo(printable(f"mlgate: warning: {problem}"), err=True)
    report = renderer(fmt)(decision)
    if explain:
        report = _with_explanation(report, fmt, decision, options)
    if fmt == "text":  # the explanation quotes input values too: no control character reaches the terminal
        report = printable(report, keep_newlines=True)
    if output_file is not None:
        try:
            output_file.write_text(report + "\n", encoding="utf-8")
        except OSError as exc:
            click.echo(f"mlgate: error: {output_file}: cannot write the report: {exc.strerror}", err=True)
            sys.exit(EXIT_ERROR)
        click.echo(f"mlgate: {decision.result.upper()} (decision {decision.decision_id}); report written to {output_file}")
    else:
        click.echo(report)
    if decision.error:
        click.echo(printable(f"mlgate: error: {decision.error}"), err=True)
    summary_path = None
    if attest_signer is not None and decision.result in ("allow", "deny"):
        from mlgate.signing.summary import default_path
        from mlgate.vsa import attest

        release_dir = Path(decision.manifest_path).parent
        try:
            summary_path = attest(decision, release_dir, attest_signer, attest_output or default_path(release_dir, environment),
                                  verifier_id=verifier_id)
        except MlgateError as exc:
            _fail(exc)
        click.echo(printable(f"mlgate: verification summary ({'PASSED' if decision.result == 'allow' else 'FAILED'}) written to {summary_path}"), err=True)
    elif attest_signer is not None:
        click.echo(printable(f"mlgate: warning: no verification summary written: the decision is {decision.result}, nothing was verified"), err=True)
    sys.exit(decision.exit_code)


def _attest_signer(key_path: Path | None, output: Path | None, release: Path):
    """``--attest KEY``: the private key, loaded before deciding (a bad key is exit 2, no decision)."""
    if key_path is None:
        if output is not None:
            raise MlgateError("--attest-output needs --attest KEY", field="--attest-output")
        return None
    if output is None and str(release).startswith("models:"):
        raise MlgateError("an MLflow model version has no release directory to write the summary into; pass --attest-output",
                          field="--attest-output")
    from mlgate.signing.keys import load_private_key

    return load_private_key(key_path)


def _release_loader(release: Path, environment: str, fetch):
    """What :func:`mlgate.gate.check` loads, after one more check: the environment is one the
    loaded policy defines. Inside the recorded path, so a mistyped ``--env`` is one error
    decision naming the valid environments (exit 2), not a deny listing every threshold as missing."""

    def load(prepared):
        from mlgate import evidence
        from mlgate.manifest import load_release
        from mlgate.policy.environments import require_environment

        require_environment(prepared.policy, environment)
        loaded = load_release(fetch() if fetch is not None else Path(release))
        return loaded, evidence.collect(loaded, prepared.trust)

    return load


def _with_explanation(report: str, fmt: str, decision, options) -> str:
    """The report with the decision's explanation: appended (text) or under "explanation" (json).
    The decision is already recorded; an explanation that cannot be built is reported, not fatal."""
    from mlgate.policy.layers import load_layers
    from mlgate.policytools.doc import build_catalogue
    from mlgate.policytools.explain import explain as explain_decision, render_text

    try:  # the policy the decision was made with: the same sources, layered the same way (mlgate.gate.prepare)
        policy = load_layers(options.policy_dir, data_overrides=options.data_overrides, bundle_key=options.bundle_key)
        explanation = explain_decision(decision, build_catalogue(policy=policy))
    except MlgateError as exc:
        click.echo(printable(f"mlgate: error: cannot explain the decision: {exc.diagnostics()}"), err=True)
        return report
    if fmt == "json":
        import json

        from mlgate.safeio import dumps_json

        doc = json.loads(report)
        doc["explanation"] = explanation.as_dict()
        return dumps_json(doc, indent=2, sort_keys=True)
    return report + "\n" + render_text(explanation)


_SIGNING_POLICY = click.option("--policy", "policy_dir", type=click.Path(path_type=Path),
                               help="Policy whose environments --env must name (default: the bundled library).")
_SIGNING_TRUST = click.option("--trust", "trust_path", type=click.Path(dir_okay=False, path_type=Path),
                              help="Trust policy to check the signer against (default: as for check: `trust` in .mlgate.yaml); a mismatch is a warning.")


def _check_signer(policy_dir, trust_path, environment, key_path, signer_id, role, meaning) -> list[str]:
    """Before signing: --env is an environment the policy defines (else MlgateError, exit 2); the
    warnings to print once signed, one per reason the trust policy would not count the signature."""
    from mlgate.policy import load_policy
    from mlgate.policy.environments import require_environment
    from mlgate.signing.approve import signer_warnings
    from mlgate.signing.trust import load_trust_policy

    policy = load_policy(policy_dir)
    require_environment(policy, environment)
    from mlgate.errors import InputError
    from mlgate.settings import find_settings, trust_policy_path

    try:  # as `check` finds it: --trust, then `trust` in .mlgate.yaml, then a trust.yaml inside the policy
        path, _ = trust_policy_path(trust_path, find_settings(), policy.trust_policy_path)
    except InputError:
        return ["no trust policy to check the signer against (pass --trust); the gate counts only signers it lists"]
    return signer_warnings(key_path, signer_id=signer_id, role=role, meaning=meaning, environment=environment,
                           trust=load_trust_policy(path))


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        click.echo(printable(f"mlgate: warning: {warning}"), err=True)


_TSA = click.option(
    "--tsa", metavar="URL",
    help="RFC 3161 timestamping authority to timestamp the signature (stored in the bundle). Only a timestamp of an authority "
         "the trust policy lists (timestampAuthorities) shows the signature predates a later revocation or key expiry; "
         "the signing time written otherwise is the signer's claim.",
)


@cli.command()
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Signer's private key (PEM).")
@click.option("--name", "printed_name", required=True, help="Printed name of the signer (21 CFR 11.50).")
@click.option("--id", "signer_id", required=True, help="Signer id as listed in the trust policy.")
@click.option("--role", required=True, help="Role in which the signer signs (e.g. clinical-safety-officer).")
@click.option("--meaning", required=True, type=click.Choice(["review", "approval", "responsibility", "authorship"]), help="What the signature means (21 CFR 11.50(a)(3)).")
@click.option("--env", "environment", required=True, help="Environment this approval is for.")
@click.option("--expires", help="Expiry, RFC 3339 (e.g. 2027-06-30T00:00:00Z).")
@click.option("--comment", help="Free-text comment recorded in the signed statement.")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the signed approval (default: the release's approvals directory).")
@_SIGNING_POLICY
@_SIGNING_TRUST
@click.option("--force", is_flag=True, help="Replace an existing file at the output path (default: refuse).")
@_TSA
@click.pass_context
def approve(ctx, release, key_path, printed_name, signer_id, role, meaning, environment, expires, comment, out, policy_dir, trust_path, force, tsa):
    """Sign an approval of RELEASE's model digest and evidence (DSSE, in-toto Statement v1).

    --env must be an environment the policy defines; a warning says when the trust policy would
    not count the signature (unknown key, other signer, role, meaning or environment)."""
    try:
        from mlgate.signing.approve import approve_release

        warnings = _check_signer(policy_dir, trust_path, environment, key_path, signer_id, role, meaning)
        written = approve_release(
            release, key_path=key_path, printed_name=printed_name, signer_id=signer_id, role=role, meaning=meaning,
            environment=environment, expires=expires, comment=comment, out=out, now=_clock(ctx).now(), force=force, tsa=tsa,
        )
    except MlgateError as exc:
        _fail(exc)
    _warn(warnings)
    click.echo(printable(f"mlgate: approval by {printed_name} ({role}, {meaning}) for {environment} written to {written}"))


@cli.command()
@click.argument("release", type=click.Path(path_type=Path))
@click.option("--rule", "rules", required=True, multiple=True, help="Rule id to waive, e.g. MLG-BIAS-002 (repeatable).")
@click.option("--env", "environment", required=True, help="Environment the waiver is for.")
@click.option("--justification", required=True, help="Why the risk is accepted and how it is mitigated meanwhile (at least 20 characters).")
@click.option("--expires", required=True, help="Expiry, RFC 3339 (required; the policy caps the validity, e.g. 30 days in production).")
@click.option("--ticket", help="Change or risk-register reference (e.g. CAPA-2026-114).")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Signer's private key (PEM).")
@click.option("--name", "printed_name", required=True, help="Printed name of the signer (21 CFR 11.50).")
@click.option("--id", "signer_id", required=True, help="Signer id as listed in the trust policy.")
@click.option("--role", required=True, help="Role in which the signer accepts the risk (e.g. clinical-safety-officer).")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the signed waiver (default: the release's waivers directory).")
@_SIGNING_POLICY
@_SIGNING_TRUST
@click.option("--force", is_flag=True, help="Replace an existing file at the output path (default: refuse).")
@_TSA
@click.pass_context
def waive(ctx, release, rules, environment, justification, expires, ticket, key_path, printed_name, signer_id, role, out, policy_dir, trust_path, force, tsa):
    """Sign a time-limited waiver: RELEASE's violations of the named rules become warnings until
    it expires, if the policy accepts the signer's role, the validity and the rules."""
    try:
        from mlgate.signing.approve import waive_release

        warnings = _check_signer(policy_dir, trust_path, environment, key_path, signer_id, role, None)
        written = waive_release(
            release, key_path=key_path, printed_name=printed_name, signer_id=signer_id, role=role, rules=list(rules),
            environment=environment, justification=justification, expires=expires, ticket=ticket, out=out, now=_clock(ctx).now(),
            force=force, tsa=tsa,
        )
    except MlgateError as exc:
        _fail(exc)
    _warn(warnings)
    click.echo(printable(f"mlgate: waiver of {', '.join(sorted(set(rules)))} by {printed_name} ({role}) for {environment} until {expires} written to {written}"))
    if out is not None:
        click.echo("mlgate: list it under spec.evidence.waivers in mlgate.yaml unless it lies in a directory listed there", err=True)


@cli.command()
@click.option("--type", "kind", type=click.Choice(["ecdsa-p256", "ed25519"]), default="ecdsa-p256", show_default=True)
@click.option("-o", "--output", "prefix", required=True, type=click.Path(path_type=Path), help="Writes PREFIX.key (mode 0600) and PREFIX.pub.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def keygen(kind, prefix, force):
    """Generate a signing key pair for approvals or model signatures."""
    from mlgate.signing.keys import generate_keypair, key_id, load_public_key_pem

    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for p in (private_path, public_path):
        if p.exists() and not force:
            click.echo(f"mlgate: error: {p}: exists (use --force to overwrite)", err=True)
            sys.exit(EXIT_ERROR)
    private_pem, public_pem = generate_keypair(kind)
    try:
        private_path.parent.mkdir(parents=True, exist_ok=True)
        import os

        # Without --force, O_EXCL: a key that appeared since the check above is not overwritten either.
        exclusive = 0 if force else os.O_EXCL
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL), 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private_pem)
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | exclusive, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(public_pem)
    except FileExistsError as exc:
        click.echo(f"mlgate: error: {exc.filename}: exists (use --force to overwrite)", err=True)
        sys.exit(EXIT_ERROR)
    except OSError as exc:
        click.echo(f"mlgate: error: {prefix}: cannot write the key pair: {exc.strerror}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"mlgate: wrote {private_path} and {public_path} (key id {key_id(load_public_key_pem(public_pem, str(public_path)))})")


@cli.group()
def evidence() -> None:
    """Produce evidence records."""


@evidence.command("bias")
@click.option("--predictions", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV with labels, predictions and sensitive columns.")
@click.option("--label", required=True, help="Column with the true label (0/1).")
@click.option("--pred", required=True, help="Column with the predicted label (0/1).")
@click.option("--sensitive", required=True, help="Comma-separated sensitive attribute columns.")
@click.option("--metric", default="recall", show_default=True, type=click.Choice(["recall", "specificity", "precision", "selection_rate"]))
@click.option("--reference", default="rest", show_default=True, help="rest | best | a group value.")
@click.option("--n-min", default=30, show_default=True, type=click.IntRange(min=1), help="Minimum denominator (e.g. positives) per group.")
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--model-digest", help="Model digest (hex) the record names as its subject.")
@click.option("--model", "model_path", type=click.Path(exists=True, path_type=Path), help="Model file or directory; its model-signing digest is the subject.")
@click.option("--release", "release_dir", type=click.Path(path_type=Path), help="Release whose model digest the record names.")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def evidence_bias(ctx, predictions, label, pred, sensitive, metric, reference, n_min, confidence, seed, model_digest, model_path, release_dir, out):
    """Per-subgroup bias audit (Fairlearn MetricFrame, Wilson/Newcombe CIs, Holm-corrected score tests)."""
    import json

    try:
        from mlgate.evidence.bias import compute_bias_audit

        if model_digest is None and (model_path is not None or release_dir is not None):
            from mlgate.evidence.model_digest import compute_model_digest
            from mlgate.manifest import load_release

            model_digest = compute_model_digest(model_path or load_release(release_dir).model_path).root
        record = compute_bias_audit(
            predictions, label=label, pred=pred, sensitive=[s.strip() for s in sensitive.split(",") if s.strip()],
            metric=metric, reference=reference, n_min=n_min, confidence=confidence, seed=seed,
            subject_digest=model_digest, created_at=_clock(ctx).now(),
        )
    except MlgateError as exc:
        _fail(exc)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as exc:
        click.echo(f"mlgate: error: {out}: cannot write: {exc.strerror}", err=True)
        sys.exit(EXIT_ERROR)
    flagged = [c for c in record.get("comparisons", []) if c.get("insufficient")]
    click.echo(f"mlgate: bias audit of {len(record.get('groups', []))} groups written to {out}"
               + (f" ({len(flagged)} comparison(s) with insufficient evidence)" if flagged else ""))


# Command groups defined in their own modules under cli/ (each keeps its heavy imports inside
# its commands). Register each one here, one import and one add_command per module.
# `mlgate explain RELEASE --env ENV`: `check --explain`, same options, same recorded decision.
# --explain works with text and json only: explain offers just those (its help lists only what works).
_EXPLAIN_OUTPUT = click.Option(["-o", "--output", "fmt"], type=click.Choice(["text", "json"]), default="text", show_default=True)
explain = click.Command(
    "explain", params=[_EXPLAIN_OUTPUT if p.name == "fmt" else p for p in check.params if p.name != "explain"],
    callback=functools.partial(check.callback, explain=True),
    help="Explain the decision for RELEASE in --env: for each violation or warning the rule, the input paths it read with their "
         "values, what was expected, the tier's thresholds and the remediation; for an allow, every rule evaluated. "
         "The decision is made and recorded as by `check` (same exit codes).",
)
cli.add_command(explain)

from mlgate.cli.audit_cmd import audit as _audit_group  # noqa: E402
cli.add_command(_audit_group)
from mlgate.cli.webhook_cmd import serve as _serve_cmd, webhook as _webhook_group  # noqa: E402

cli.add_command(_serve_cmd)
cli.add_command(_webhook_group)
from mlgate.cli.policy_cmd import policy as _policy_group  # noqa: E402
cli.add_command(_policy_group)
from mlgate.cli.evidence_cmd import collect as _collect_cmd  # noqa: E402
evidence.add_command(_collect_cmd)
from mlgate.cli.verify_cmd import verify as _verify_cmd  # noqa: E402
cli.add_command(_verify_cmd)
from mlgate.cli.mlflow_cmd import publish as _publish_cmd  # noqa: E402
cli.add_command(_publish_cmd)
from mlgate.cli.monitor_cmd import monitor as _monitor_cmd  # noqa: E402
cli.add_command(_monitor_cmd)
from mlgate.cli.recheck_cmd import recheck as _recheck_cmd  # noqa: E402
cli.add_command(_recheck_cmd)


def _show_progress() -> None:
    """Long hashing and downloads report progress on stderr, only when it is a terminal."""
    if not sys.stderr.isatty():
        return
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("mlgate: %(message)s"))
    progress = logging.getLogger("mlgate.progress")
    progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = False


def main(argv: list[str] | None = None, **extra) -> None:
    _show_progress()
    cli.main(args=argv, prog_name="mlgate", **extra)

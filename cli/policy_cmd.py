"""``mlgate policy test | lint | doc``: flags in, one call into mlgate.policytools, a report out.

Exit codes: 0 pass, 1 fail (a test failed, coverage below the threshold, a lint error),
2 error (the policies cannot be loaded, no tests found, a file cannot be written). Only
:class:`MlgateError` is caught, so a real bug still shows its traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlgate.errors import MlgateError

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2

_DIR = click.argument("policy_dir", required=False, type=click.Path(path_type=Path))


def _fail(exc: MlgateError) -> None:
    click.echo(f"mlgate: error: {exc.diagnostics()}", err=True)
    sys.exit(EXIT_ERROR)


def _write(text: str, out: Path | None) -> None:
    if out is None:
        click.echo(text)
        return
    try:
        out.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        click.echo(f"mlgate: error: {out}: cannot write: {exc.strerror}", err=True)
        sys.exit(EXIT_ERROR)


@click.group("policy")
def policy() -> None:
    """Test, lint, document and bundle a policy directory (default: the bundled library)."""


@policy.command("test")
@_DIR
@click.option("--coverage", is_flag=True, help="Report per-file covered and uncovered lines.")
@click.option("--threshold", type=click.FloatRange(0, 100), help="Fail when line coverage of the policy modules is below PCT (implies --coverage).", metavar="PCT")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True)
@click.option("--output-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here instead of stdout.")
@click.option("--run", "run_filter", metavar="TEXT", help="Only the tests whose package.name contains TEXT.")
@click.option("-q", "--quiet", is_flag=True, help="Text output: list failing tests only.")
def test_cmd(policy_dir, coverage, threshold, fmt, output_file, run_filter, quiet):
    """Run the Rego unit tests (test_* rules) of POLICY_DIR. Exit 0 pass, 1 fail, 2 error."""
    from mlgate.policytools.render import test_renderer, test_text
    from mlgate.policytools.testing import run_tests

    try:
        result = run_tests(policy_dir, coverage=coverage, threshold=threshold, run=run_filter)
    except MlgateError as exc:
        _fail(exc)
    text = test_text(result, verbose=not quiet) if fmt == "text" else test_renderer(fmt)(result)
    _write(text, output_file)
    sys.exit(result.exit_code)


@policy.command("lint")
@_DIR
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--engine", type=click.Choice(["embedded", "rego-cpp"]), default="embedded", show_default=True, help="Check builtins and idioms for this engine.")
def lint_cmd(policy_dir, fmt, engine):
    """Check POLICY_DIR: METADATA, ids, severities, controls, data keys, builtins, `deny if`. Exit 0 clean, 1 findings, 2 error."""
    from mlgate.policytools.lint import lint, render

    try:
        report = lint(policy_dir, engine=engine)
    except MlgateError as exc:
        _fail(exc)
    click.echo(render(report, fmt))
    sys.exit(EXIT_FAIL if report.errors else EXIT_PASS)


@policy.command("doc")
@_DIR
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), help="controls.md or controls.html (format from the suffix); default: Markdown on stdout.")
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), help="Override the format the suffix implies.")
def doc_cmd(policy_dir, out, fmt):
    """Generate the control catalogue of POLICY_DIR: rules, thresholds per environment, controls."""
    from mlgate.policytools.doc import build_catalogue, render

    if fmt is None:
        fmt = "html" if out is not None and out.suffix.lower() in (".html", ".htm") else "md"
    try:
        catalogue = build_catalogue(policy_dir)
    except MlgateError as exc:
        _fail(exc)
    _write(render(catalogue, fmt), out)
    if out is not None:
        click.echo(f"mlgate: control catalogue of {len(catalogue.rules)} rules and {len(catalogue.controls)} controls written to {out}", err=True)


@policy.command("bundle")
@_DIR
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), help="Write the OPA bundle here (e.g. bundle.tar.gz).")
@click.option("--signing-key", type=click.Path(dir_okay=False, path_type=Path), help="Sign it (.signatures.json) with this PEM private key (ECDSA P-256 or Ed25519).")
@click.option("--verify", "verify_path", type=click.Path(dir_okay=False, path_type=Path), help="Verify this bundle instead of building one (needs --key).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), help="Public key the bundle given to --verify must be signed with.")
def bundle_cmd(policy_dir, out, signing_key, verify_path, key_path):
    """Build an OPA bundle of POLICY_DIR (revision = the audit records' policy revision), or --verify one. Exit 0 ok, 1 verification failed, 2 error."""
    from mlgate.policy.bundle import build_bundle, verify_bundle
    from mlgate.errors import SignatureError

    if verify_path is not None:
        if out is not None or signing_key is not None or policy_dir is not None or key_path is None:
            click.echo("mlgate: error: --verify BUNDLE takes --key PUB and nothing else", err=True)
            sys.exit(EXIT_ERROR)
        try:
            info = verify_bundle(verify_path, key_path)
        except SignatureError as exc:
            click.echo(f"mlgate: bundle verification FAILED: {exc.diagnostics()}", err=True)
            sys.exit(EXIT_FAIL)
        except MlgateError as exc:
            _fail(exc)
        click.echo(f"mlgate: {info.path}: signature OK (key id {(info.key_id or '?')[:16]}), {len(info.files)} files, revision {info.revision}")
        return
    if out is None:
        click.echo("mlgate: error: give -o BUNDLE.tar.gz (or --verify BUNDLE --key PUB)", err=True)
        sys.exit(EXIT_ERROR)
    try:
        info = build_bundle(policy_dir, out, signing_key=signing_key)
    except MlgateError as exc:
        _fail(exc)
    signed = f", signed (key id {(info.key_id or '?')[:16]})" if info.signed else ", unsigned"
    click.echo(f"mlgate: wrote {info.path}: {len(info.files)} files, roots {', '.join(info.roots)}, revision {info.revision}{signed}")

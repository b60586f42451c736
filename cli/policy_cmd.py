"""``mlgate policy test | lint | doc | bundle | push | pull``: flags in, one call into mlgate.policytools
(or mlgate.policy for bundles and registries), a report out.

``test`` and ``lint`` take one POLICY_DIR as it is, or ``--policy`` (repeatable): the layered policy
``mlgate check --policy`` evaluates (:mod:`mlgate.policy.layers`). ``bundle`` and ``push`` ship one
layer; a directory that defines no ``data.mlgate.decision`` is first checked layered on the bundled
library, so that what every consumer would refuse is refused before it is shipped.

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
# Layers, as for `mlgate check --policy` (mlgate.policy.layers): POLICY_DIR is one policy as it is.
_LAYERS = click.option("--policy", "layers", multiple=True, type=click.Path(path_type=Path),
                       help="Instead of POLICY_DIR: the layered policy of these sources (directory, *.tar.gz or oci://...), in order, "
                            "as `mlgate check --policy` evaluates it (the bundled library beneath a first one that defines no "
                            "data.mlgate.decision). Repeatable.")
_BUNDLE_KEY = click.option("--bundle-key", type=click.Path(dir_okay=False, path_type=Path),
                           help="Public key that must have signed each --policy bundle (*.tar.gz or oci://).")


def _fail(exc: MlgateError) -> None:
    click.echo(f"mlgate: error: {exc.diagnostics()}", err=True)
    sys.exit(EXIT_ERROR)


def _layered(policy_dir: Path | None, layers: tuple[Path, ...], bundle_key: Path | None, *, require_finding_ids: bool = True):
    """The policy to work on: None (POLICY_DIR, loaded by the tool) or the layered policy of --policy."""
    if not layers:
        if bundle_key is not None:
            raise MlgateError("--bundle-key verifies the bundles of --policy; give the policy with --policy", field="--bundle-key")
        return None
    if policy_dir is not None:
        raise MlgateError("give POLICY_DIR or --policy (repeatable, layered), not both", field="--policy")
    from mlgate.policy.layers import load_layers

    return load_layers(tuple(layers), bundle_key=bundle_key, require_finding_ids=require_finding_ids)


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
    """Test, lint, document, bundle, push and pull policies (default: the bundled library)."""


@policy.command("test")
@_DIR
@_LAYERS
@_BUNDLE_KEY
@click.option("--coverage", is_flag=True, help="Report per-file covered and uncovered lines.")
@click.option("--threshold", type=click.FloatRange(0, 100), help="Fail when line coverage of the policy modules is below PCT (implies --coverage).", metavar="PCT")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json", "junit"]), default="text", show_default=True)
@click.option("--output-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here instead of stdout.")
@click.option("--run", "run_filter", metavar="TEXT", help="Only the tests whose package.name contains TEXT.")
@click.option("-q", "--quiet", is_flag=True, help="Text output: list failing tests only.")
def test_cmd(policy_dir, layers, bundle_key, coverage, threshold, fmt, output_file, run_filter, quiet):
    """Run the Rego unit tests (test_* rules) of POLICY_DIR, or of every --policy layer. Exit 0 pass, 1 fail, 2 error."""
    from mlgate.policytools.render import test_renderer, test_text
    from mlgate.policytools.testing import run_tests

    try:
        layered = _layered(policy_dir, layers, bundle_key)
        if layered is None:
            result = run_tests(policy_dir, coverage=coverage, threshold=threshold, run=run_filter)
        else:
            result = _run_layered(layered, coverage=coverage, threshold=threshold, run=run_filter)
    except MlgateError as exc:
        _fail(exc)
    text = test_text(result, verbose=not quiet) if fmt == "text" else test_renderer(fmt)(result)
    _write(text, output_file)
    sys.exit(result.exit_code)


def _run_layered(policy, *, coverage: bool, threshold: float | None, run: str | None):
    """Each layer's tests on the layers up to it (mlgate.policy.layers.unit_test_stages), as one run."""
    import dataclasses

    from mlgate.policy.layers import unit_test_stages
    from mlgate.policytools.testing import ERROR, FAIL, PASS, Coverage, FileCoverage, TestRun, run_tests

    runs = []
    for _label, staged in unit_test_stages(policy):
        try:
            runs.append(run_tests(policy=staged, coverage=coverage, threshold=threshold, run=run))
        except MlgateError as exc:
            if not exc.message.startswith(("no Rego test matches", "no Rego tests found")):
                raise
    source = getattr(policy, "source", "")
    if not runs:
        raise MlgateError(f"no Rego test{f' matches {run!r}' if run else 's found (expected test_* rules, e.g. in *_test.rego)'} "
                          "in the layers given (the bundled library beneath is tested with mlgate)", file=source)
    results = tuple(r for one in runs for r in one.results)
    cov = None
    if runs[0].coverage is not None:
        files: dict[str, FileCoverage] = {}
        for one in runs:
            for f in one.coverage.files:
                seen = files.get(f.file)
                if seen is None:
                    files[f.file] = f
                    continue
                covered = set(seen.covered) | set(f.covered)
                files[f.file] = dataclasses.replace(seen, covered=tuple(sorted(covered)),
                                                    not_covered=tuple(sorted((set(seen.not_covered) | set(f.not_covered)) - covered)))
        cov = Coverage(tuple(sorted(files.values(), key=lambda f: f.path)))
    counts = {s: sum(1 for r in results if r.status == s) for s in (PASS, FAIL, ERROR)}
    return TestRun(source, results, cov, threshold, sum(one.duration_s for one in runs), counts)


@policy.command("lint")
@_DIR
@_LAYERS
@_BUNDLE_KEY
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--engine", type=click.Choice(["embedded", "rego-cpp"]), default="embedded", show_default=True, help="Check builtins and idioms for this engine.")
def lint_cmd(policy_dir, layers, bundle_key, fmt, engine):
    """Check POLICY_DIR (or the --policy layers): METADATA, ids, severities, controls, data keys, builtins, `deny if`;
    layered, also every data value a later layer changes (an error where it loosens a documented threshold).
    Exit 0 clean, 1 findings, 2 error."""
    from mlgate.policytools.lint import lint, render

    try:
        report = lint(policy_dir, policy=_layered(policy_dir, layers, bundle_key, require_finding_ids=False), engine=engine)
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
        _check_layer(policy_dir)
        info = build_bundle(policy_dir, out, signing_key=signing_key)
    except MlgateError as exc:
        _fail(exc)
    signed = f", signed (key id {(info.key_id or '?')[:16]})" if info.signed else ", unsigned"
    click.echo(f"mlgate: wrote {info.path}: {len(info.files)} files, roots {', '.join(info.roots)}, revision {info.revision}{signed}")


def _check_layer(policy_dir: Path | None) -> None:
    """Before bundling a directory that defines no data.mlgate.decision (an organisation's packages,
    shipped to be layered): refuse what every `mlgate check --policy` of it would refuse, layered on
    the bundled library (a package of the library's, a finding rule without an id, data of another type)."""
    if policy_dir is None or not Path(policy_dir).is_dir():
        return
    from mlgate.policy.layers import load_layers

    load_layers((policy_dir,))


@policy.command("push")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("reference")
@click.option("--signing-key", type=click.Path(dir_okay=False, path_type=Path), help="Sign the bundle built from SOURCE (a directory) with this PEM private key.")
def push_cmd(source, reference, signing_key):
    """Push SOURCE (a policy directory, bundled as by `mlgate policy bundle`, or a bundle *.tar.gz)
    to REFERENCE (oci://REGISTRY/REPO:TAG) as an OCI artifact OPA reads; print the manifest digest."""
    import tempfile

    from mlgate.policy import oci
    from mlgate.policy.bundle import build_bundle, is_bundle_path, read_bundle

    try:
        ref = oci.parse_ref(reference)
        if ref.digest is not None or ref.tag is None:
            raise MlgateError(f"{reference}: push to a tag (oci://REGISTRY/REPO:TAG); the digest is printed", field="reference")
        if is_bundle_path(source):
            if signing_key is not None:
                raise MlgateError("--signing-key signs a bundle built from a policy directory; SOURCE is already a bundle (sign it with `mlgate policy bundle`)", file=str(source))
            info = read_bundle(source)
            data = source.read_bytes()
        else:
            _check_layer(source)
            with tempfile.TemporaryDirectory(prefix="mlgate-push-") as tmp:
                out = Path(tmp) / "bundle.tar.gz"
                info = build_bundle(source, out, signing_key=signing_key)
                data = out.read_bytes()
        digest = oci.push(data, ref, revision=info.revision)
    except MlgateError as exc:
        _fail(exc)
    signed = f"signed (key id {(info.key_id or '?')[:16]})" if info.signed else "unsigned"
    click.echo(f"mlgate: pushed {ref}@{digest}: revision {info.revision}, {signed}", err=True)
    click.echo(digest)


@policy.command("pull")
@click.argument("reference")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Write the verified bundle here (e.g. bundle.tar.gz).")
@click.option("--bundle-key", type=click.Path(dir_okay=False, path_type=Path), help="Public key the bundle must be signed with (a signed bundle is refused without one).")
def pull_cmd(reference, out, bundle_key):
    """Pull REFERENCE (oci://REGISTRY/REPO:TAG or @sha256:...): manifest and layer digests checked,
    the bundle signature verified with --bundle-key. Exit 0 ok, 1 verification failed, 2 error."""
    import os
    import tempfile

    from mlgate.errors import SignatureError
    from mlgate.policy import oci
    from mlgate.policy.bundle import read_bundle, verify_bundle

    try:
        ref = oci.parse_ref(reference)
        pulled = oci.pull(ref)
        fd, tmp = tempfile.mkstemp(prefix=".mlgate-pull-", suffix=".tar.gz", dir=out.parent if str(out.parent) else ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pulled.bundle)
            try:
                info = verify_bundle(Path(tmp), bundle_key) if bundle_key is not None else read_bundle(Path(tmp))
            except MlgateError as exc:
                raise type(exc)(exc.message, file=str(pulled.ref), field=exc.field) from None
            if bundle_key is None and info.signed:
                raise SignatureError("bundle is signed; pass its public key (--bundle-key) to verify it, as OPA requires", file=str(pulled.ref))
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except SignatureError as exc:
        click.echo(f"mlgate: bundle verification FAILED: {exc.diagnostics()}", err=True)
        sys.exit(EXIT_FAIL)
    except OSError as exc:
        click.echo(f"mlgate: error: {out}: cannot write: {exc.strerror}", err=True)
        sys.exit(EXIT_ERROR)
    except MlgateError as exc:
        _fail(exc)
    signed = f"signature OK (key id {(info.key_id or '?')[:16]})" if bundle_key is not None else "unsigned"
    click.echo(f"mlgate: wrote {out} from {pulled.ref}: {signed}, {len(info.files)} files, revision {info.revision}")

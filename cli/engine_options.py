"""The policy-engine options shared by ``mlgate check`` and ``mlgate serve``: one definition, so
both commands spell and mean them the same way.

``--engine`` picks the engine; ``--opa-url``, ``--opa-token`` (or ``--opa-token-file``),
``--opa-ca``, ``--opa-client-cert``, ``--opa-client-key`` and ``--opa-timeout`` say how to reach
an OPA server (:class:`mlgate.policy.engine.opa.OpaSettings`). Nothing heavy is imported here:
``mlgate --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mlgate.cli.params import FiniteFloatRange

#: The same names as :data:`mlgate.policy.engine.ENGINES` (a test keeps them equal); importing that
#: module here would load the policy machinery on every ``mlgate --help``.
ENGINE_CHOICES = ("embedded", "regorus-interp", "rego-cpp", "opa")

#: OpaSettings field -> the command-line parameter that sets it.
_OPA_PARAMS = {"url": "opa_url", "token": "opa_token", "ca_file": "opa_ca", "client_cert": "opa_client_cert",
               "client_key": "opa_client_key", "timeout_s": "opa_timeout", "expected_revision": "opa_bundle_revision"}


def _token_from_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> tuple[Path, str] | None:
    """(the file, the token in it now): read here so a bad file stops the command before it starts;
    the engine reads the file again when it changes (a rotated Secret)."""
    if value is None:
        return None
    # One reader for the flag and the settings file's engine.opa.tokenFile (a light module: no web stack).
    from mlgate.policy.engine.opa import read_token_file
    from mlgate.errors import MlgateError

    try:
        return value, read_token_file(value)
    except MlgateError as exc:
        raise click.BadParameter(exc.diagnostics(), ctx=ctx, param=param) from None


def engine_options(*, default: str | None = "embedded", default_help: str = "") -> Callable[[Callable], Callable]:
    """Decorate a command with ``--engine`` and the OPA options. The command receives ``engine``
    and the OPA parameters; pass the latter to :func:`opa_fields` or :func:`opa_settings`.
    ``default=None`` lets the command tell "not given" apart (``serve``: the settings file decides)."""
    options = [
        click.option("--engine", type=click.Choice(ENGINE_CHOICES), envvar="MLGATE_ENGINE", default=default, show_default=default is not None,
                     help="Policy engine: regorus compiled (embedded), regorus interpreted (regorus-interp), rego-cpp in-process (extra), or an OPA server." + default_help),
        click.option("--opa-url", envvar="MLGATE_OPA_URL", help="OPA server base URL for --engine opa (e.g. http://127.0.0.1:8181)."),
        click.option("--opa-token", envvar="MLGATE_OPA_TOKEN", help="Bearer token for OPA (prefer env MLGATE_OPA_TOKEN or --opa-token-file)."),
        click.option("--opa-token-file", "opa_token_from_file", type=click.Path(dir_okay=False, path_type=Path), callback=_token_from_file,
                     help="File holding the bearer token for OPA (e.g. a mounted Secret); read again when it changes."),
        click.option("--opa-ca", type=click.Path(dir_okay=False, path_type=Path), help="CA bundle that signed OPA's server certificate."),
        click.option("--opa-client-cert", type=click.Path(dir_okay=False, path_type=Path), help="Client certificate for mTLS to OPA."),
        click.option("--opa-client-key", type=click.Path(dir_okay=False, path_type=Path), help="Client key for mTLS to OPA."),
        click.option("--opa-bundle-revision", help="Bundle revision OPA must report serving (provenance); default: the local policy's "
                     "revision (`mlgate policy bundle` writes it). An answer from any other bundle, or none, is a deny."),
        click.option("--opa-timeout", type=FiniteFloatRange(min=0.05, max=30), help="Deadline per OPA decision in seconds (default: `check --timeout`; "
                     "`serve`: 5, and always inside each request's admission deadline)."),
    ]

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def opa_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~mlgate.policy.engine.opa.OpaSettings` fields the command line gave (only those)."""
    token, from_file = params.get("opa_token"), params.get("opa_token_from_file")
    if token is not None and from_file is not None:
        raise click.UsageError("--opa-token and --opa-token-file both give the OPA bearer token; give one")
    values = {**params, "opa_token": token if token is not None else (from_file[1] if from_file else None)}
    fields = {name: values[param] for name, param in _OPA_PARAMS.items() if values.get(param) is not None}
    if from_file is not None:
        fields["token_file"] = from_file[0]
    return fields


def opa_settings(params: dict[str, Any]) -> Any:
    """An :class:`~mlgate.policy.engine.opa.OpaSettings` when any OPA option was given, else None
    (the engine then says what is missing: ``--engine opa`` needs ``--opa-url``, OPA options need ``--engine opa``)."""
    fields = opa_fields(params)
    if not fields:
        return None
    from mlgate.policy.engine.opa import OpaSettings

    return OpaSettings(**{"url": "", **fields})

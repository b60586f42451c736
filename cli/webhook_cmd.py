"""``mlgate serve`` (the admission webhook) and ``mlgate webhook`` (manifests, certificates).

uvicorn, prometheus-client, the kubernetes client and cryptography are imported inside the
commands, so ``mlgate --help`` does not pay for them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlgate.errors import MlgateError

EXIT_ERROR = 2


def _fail(message: str) -> None:
    click.echo(f"mlgate: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _need(*modules: str) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        _fail(f"the webhook needs {', '.join(missing)}: pip install 'mlgate[webhook]'")


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=8443, show_default=True, type=click.IntRange(1, 65535))
@click.option("--cert", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Serving certificate (PEM); reloaded when the file changes.")
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Its private key (PEM).")
@click.option("--evidence-store", required=True, help="Where releases live: file://DIR (or a path).")
@click.option("--audit", "audit_url", required=True, help="Audit trail: file:PATH, file:///abs/path, a path, or postgresql://... (several replicas).")
@click.option("--policy", "policy_dir", type=click.Path(path_type=Path), help="Policy directory (default: the bundled library).")
@click.option("--data", "data_files", type=click.Path(path_type=Path), multiple=True, help="Extra data document merged over the policy data (repeatable).")
@click.option("--trust", "trust_policy", type=click.Path(path_type=Path), help="Trust policy file (default: trust.yaml beside the policies).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="Webhook settings (modes per environment, limits).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--access-log/--no-access-log", default=False, show_default=True)
def serve(host, port, cert, key, evidence_store, audit_url, policy_dir, data_files, trust_policy, config_file, log_level, access_log):
    """Run the Kubernetes validating admission webhook over TLS: POST /v1/admit/ENVIRONMENT."""
    import ssl

    _need("uvicorn", "prometheus_client")
    from mlgate.gatekeeper.config import Settings, load_config

    flags = {"evidence_store": evidence_store, "audit": audit_url, "policy_dir": policy_dir, "trust_policy": trust_policy, "data_overrides": tuple(data_files)}
    try:
        settings = load_config(config_file, **flags) if config_file else Settings(**flags)
    except MlgateError as exc:
        _fail(exc.diagnostics())
    for path in (cert, key):
        if not path.is_file():
            _fail(f"{path}: file not found")
    from mlgate.gatekeeper.service import open_audit_sink
    from mlgate.store import open_store

    try:  # refuse a bad URL before binding the port; the store is indexed at start-up
        open_store(settings.evidence_store)
        with open_audit_sink(settings):
            pass
    except MlgateError as exc:
        _fail(exc.diagnostics())
    from mlgate.gatekeeper.app import WebhookApp
    from mlgate.gatekeeper.server import build_server

    app = WebhookApp(settings)
    try:
        server = build_server(app, host=host, port=port, cert=cert, key=key, reload_s=settings.cert_reload_s, log_level=log_level, access_log=access_log)
    except (ssl.SSLError, OSError) as exc:
        _fail(f"{cert}: cannot load the serving certificate and key: {exc}")
    server.run()
    if not server.started:
        _fail(app.startup_error or f"the webhook did not start on {host}:{port} (see the log above)")


@click.group()
def webhook() -> None:
    """Kubernetes manifests and certificates for the admission webhook."""


@webhook.command("certs")
@click.option("--service", default="mlgate", show_default=True, help="Service name of the webhook.")
@click.option("--namespace", default="mlgate", show_default=True)
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 3650), help="Serving certificate lifetime.")
@click.option("--dns", "extra_dns", multiple=True, help="Extra DNS SAN (repeatable).")
@click.option("--ip", "ips", multiple=True, help="IP SAN (repeatable), e.g. 127.0.0.1 for local testing.")
@click.option("-o", "--output-dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Writes ca.crt, ca.key, tls.crt, tls.key.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def certs(service, namespace, days, extra_dns, ips, output_dir, force):
    """A CA and a serving certificate whose SAN holds SERVICE.NAMESPACE.svc (when not using cert-manager)."""
    import datetime as dt
    import ipaddress
    import os

    from mlgate.gatekeeper.certs import generate

    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            _fail(f"--ip {ip!r}: not an IP address")
    files = {"ca.crt": None, "ca.key": None, "tls.crt": None, "tls.key": None}
    if not force:
        for name in files:
            if (output_dir / name).exists():
                _fail(f"{output_dir / name}: exists (use --force to overwrite)")
    bundle = generate(service, namespace, dt.datetime.now(dt.UTC), extra_dns=list(extra_dns), ips=list(ips), days=days)
    files = {"ca.crt": bundle.ca_cert_pem, "ca.key": bundle.ca_key_pem, "tls.crt": bundle.cert_pem, "tls.key": bundle.key_pem}
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            fd = os.open(output_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name.endswith(".key") else 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
    except OSError as exc:
        _fail(f"{output_dir}: cannot write the certificates: {exc.strerror or exc}")
    click.echo(f"mlgate: wrote ca.crt, ca.key, tls.crt, tls.key to {output_dir} (SAN {service}.{namespace}.svc)")


@webhook.command("manifests")
@click.option("--namespace", default="mlgate", show_default=True)
@click.option("--image", required=True, help="Container image of mlgate.")
@click.option("--environments", default="staging,production", show_default=True, help="Comma-separated environments; one webhook each.")
@click.option("--name", default="mlgate", show_default=True, help="Name of the Service, Deployment and webhook configuration.")
@click.option("--replicas", default=3, show_default=True, type=click.IntRange(1, 50))
@click.option("--timeout", "timeout_s", default=5, show_default=True, type=click.IntRange(1, 30), help="timeoutSeconds of each webhook.")
@click.option("--cert-manager", is_flag=True, help="Emit a cert-manager Issuer and Certificate and inject the CA with its annotation.")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, path_type=Path), help="CA certificate (PEM) for caBundle, from `mlgate webhook certs`.")
def manifests(namespace, image, environments, name, replicas, timeout_s, cert_manager, ca_bundle):
    """Print the Kubernetes manifests (YAML) built with the kubernetes client's typed models."""
    _need("kubernetes")
    from mlgate.gatekeeper.manifests import ManifestOptions, render

    envs = [e.strip() for e in environments.split(",") if e.strip()]
    ca = None
    if ca_bundle is not None:
        try:
            ca = ca_bundle.read_bytes()
        except OSError as exc:
            _fail(f"{ca_bundle}: cannot read: {exc.strerror or exc}")
    try:
        text = render(ManifestOptions(namespace=namespace, image=image, environments=envs, name=name, replicas=replicas,
                                      timeout_s=timeout_s, cert_manager=cert_manager, ca_bundle_pem=ca))
    except MlgateError as exc:
        _fail(exc.diagnostics())
    click.echo(text, nl=False)

"""``mlgate serve`` (the admission webhook) and ``mlgate webhook`` (manifests, certificates).

uvicorn, prometheus-client, the kubernetes client and cryptography are imported inside the
commands, so ``mlgate --help`` does not pay for them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlgate.cli.engine_options import engine_options, opa_fields
from mlgate.errors import MlgateError

EXIT_ERROR = 2
DEFAULT_GATE_THREADS_REMOTE = 4


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
@click.option("--evidence-store", help="Where releases live: file://DIR (or a path), or https://HOST/PREFIX serving index.json (or evidenceStore.url in --config).")
@click.option("--evidence-store-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CA bundle (PEM) to verify an https:// evidence store.")
@click.option("--evidence-cache-dir", type=click.Path(file_okay=False, path_type=Path), help="Local cache for releases downloaded from an https:// store.")
@click.option("--audit", "audit_url", required=True, envvar="MLGATE_AUDIT", show_envvar=True,
              help="Audit trail: file:PATH, file:///abs/path, a path, or postgresql://... (several replicas).")
@click.option("--policy", "policy_dir", type=click.Path(path_type=Path),
              help="Policy directory, OPA bundle (*.tar.gz) or oci://REGISTRY/REPO:TAG|@sha256:... (default: policy in --config, else the bundled library).")
@click.option("--policy-refresh", metavar="DURATION", help="How often an oci:// tag is resolved again: 30s, 5m, 1h [default: policyRefresh in --config, else 60s].")
@click.option("--bundle-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Public key that must have signed the --policy bundle (*.tar.gz or oci://; or bundleKey in --config).")
@click.option("--data", "data_files", type=click.Path(path_type=Path), multiple=True, help="Extra data document merged over the policy data (repeatable).")
@click.option("--trust", "trust_policy", type=click.Path(path_type=Path), help="Trust policy file (default: trust.yaml beside the policies).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="Webhook settings (modes per environment, limits, evidence store, engine); flags win.")
@engine_options(default=None, default_help=" [default: engine.name in --config, else embedded]")
@click.option("--gate-threads", type=click.IntRange(1, 64), help="Gate threads per worker, each with its own policy engine (default: 1, or 4 with an https:// store or OPA).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes sharing the port (one policy engine each; /metrics adds them all up).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--log-format", default="text", show_default=True, type=click.Choice(["text", "json"]),
              help="json: every log line one JSON object, one line per admission (uid, kind, namespace, name, environment, mode, result, latency, rule ids).")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@click.option("--checkpoint-key", type=click.Path(dir_okay=False, path_type=Path),
              help="Sign checkpoints of the audit trail as it grows, on a background thread (a checkpointSigners key; or auditCheckpoints.key in --config).")
@click.option("--checkpoint-every", metavar="N|T|N,T", help="N records or T (30s, 15m, 1h) after the newest checkpoint [default: 1h].")
@click.option("--checkpoint-anchor", "checkpoint_anchors", multiple=True, metavar="file:DIR", help="Copy each checkpoint to this anchor directory (repeatable).")
@click.option("--checkpoint-tsa", metavar="URL", help="RFC 3161 TSA (listed in the trust policy's timestampAuthorities) to timestamp each checkpoint.")
def serve(host, port, cert, key, evidence_store, evidence_store_ca, evidence_cache_dir, audit_url, policy_dir, data_files, trust_policy, config_file,
          engine, gate_threads, workers, log_level, log_format, access_log, checkpoint_key=None, checkpoint_every=None, checkpoint_anchors=(),
          checkpoint_tsa=None, policy_refresh=None, bundle_key=None, **opa_params):
    """Run the Kubernetes validating admission webhook over TLS: POST /v1/admit/ENVIRONMENT."""
    import os
    import ssl

    _need("uvicorn", "prometheus_client")
    # prometheus_client reads this when it is first imported (in each worker); nothing imported it yet.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from mlgate.gatekeeper.config import load_config, parse_duration, settings_from_dict

    flags = {"evidence_store": evidence_store, "audit": audit_url, "policy_dir": policy_dir, "trust_policy": trust_policy, "data_overrides": tuple(data_files),
             "evidence_store_ca": evidence_store_ca, "evidence_cache_dir": evidence_cache_dir, "gate_threads": gate_threads, "engine": engine,
             "bundle_key": bundle_key}
    opa_flags = opa_fields(opa_params)
    cp_flags = {"key": checkpoint_key, "every": checkpoint_every, "anchors": checkpoint_anchors, "tsa": checkpoint_tsa}
    try:
        flags["policy_refresh_s"] = None if policy_refresh is None else parse_duration(policy_refresh, None, "--policy-refresh")
        settings = (load_config(config_file, opa_flags=opa_flags, checkpoint_flags=cp_flags, **flags) if config_file
                    else settings_from_dict({}, None, opa_flags=opa_flags, checkpoint_flags=cp_flags, **flags))
        if settings.gate_threads is None:  # neither the flag nor the settings file chose
            import dataclasses

            # Evaluation holds the GIL, so extra threads only pay off when a thread waits on the network.
            remote = settings.evidence_store.startswith("https://") or settings.engine == "opa"
            settings = dataclasses.replace(settings, gate_threads=DEFAULT_GATE_THREADS_REMOTE if remote else 1)
    except MlgateError as exc:
        _fail(exc.diagnostics())
    for path in (cert, key):
        if not path.is_file():
            _fail(f"{path}: file not found")
    from mlgate.gatekeeper.service import open_audit_sink

    from mlgate.store import open_store

    try:  # refuse a bad URL before binding the port; the store is indexed at start-up
        open_store(settings.evidence_store, ca_file=settings.evidence_store_ca)
        with open_audit_sink(settings):
            pass
        if settings.opa is not None:  # the OPA URL and TLS files (nothing is sent yet)
            from mlgate.policy.engine.opa import OpaEngine

            OpaEngine(settings.opa).close()
    except MlgateError as exc:
        _fail(exc.diagnostics())
    from mlgate.gatekeeper.app import WebhookApp
    from mlgate.gatekeeper.server import build_server

    def run_one(sockets=None) -> bool:
        app = WebhookApp(settings)
        try:
            server = build_server(app, host=host, port=port, cert=cert, key=key, reload_s=settings.cert_reload_s, log_level=log_level, access_log=access_log,
                                  log_format=log_format)
        except (ssl.SSLError, OSError) as exc:
            _fail(f"{cert}: cannot load the serving certificate and key: {exc}")
        server.run(sockets=sockets)
        if not server.started:
            _fail(app.startup_error or f"the webhook did not start on {host}:{port} (see the log above)")
        return True

    if workers == 1:
        run_one()
        return
    _serve_workers(run_one, host, port, workers)


def _serve_workers(run_one, host: str, port: int, workers: int) -> None:
    """Fork ``workers`` processes that accept on one listening socket; stop them all on SIGTERM/SIGINT.

    The parent binds the socket and forks before any thread or policy engine exists; each child
    builds its own app, engine and sink (the file and PostgreSQL sinks keep one chain across
    processes). If a worker dies, the others are stopped and the command fails (let Kubernetes restart it).

    Metrics: the parent makes a fresh ``PROMETHEUS_MULTIPROC_DIR`` before forking, so each
    worker's metrics go to files there and ``/metrics`` on any worker reports the sum of all;
    it marks each worker dead when it exits, and removes the directory at the end."""
    import os
    import shutil
    import signal
    import socket
    import tempfile

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.listen(2048)
    sock.set_inheritable(True)
    try:
        metrics_dir = tempfile.mkdtemp(prefix="mlgate-metrics-")
    except OSError as exc:
        _fail(f"cannot create the metrics directory in {tempfile.gettempdir()}: {exc.strerror or exc}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if "prometheus_client" in sys.modules:  # imported before the directory existed: make new metrics use it
        from prometheus_client import values

        values.ValueClass = values.get_value_class()
    children = []
    try:
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 0
                try:
                    run_one([sock])
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - a child never returns into the parent's code; the parent reports it
                    code = 1
                os._exit(code)
            children.append(pid)
        sock.close()
        failed = _wait_for_workers(children, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if failed:
        _fail("a webhook worker exited with an error; all workers were stopped")


def _wait_for_workers(children: list[int], metrics_dir: str) -> bool:
    """Wait for every worker; on SIGTERM/SIGINT or a worker's failure stop the rest. True if one failed."""
    import os
    import signal

    stopping = []

    def stop(signum, _frame):
        stopping.append(signum)
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    from prometheus_client.multiprocess import mark_process_dead

    failed = False
    for _ in range(len(children)):
        pid, status = os.wait()
        mark_process_dead(pid, metrics_dir)
        code = os.waitstatus_to_exitcode(status)
        # uvicorn re-raises the stop signal once it has shut down: death by it after a stop is normal.
        if code != 0 and not (stopping and code in (-signal.SIGTERM, -signal.SIGINT)) and not failed:
            failed = True
            stop(signal.SIGTERM, None)
    return failed


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


@webhook.command("index")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Where to write it (default: DIRECTORY/index.json).")
def index(directory, output):
    """Write the index.json that lets a static HTTPS server serve DIRECTORY as an evidence store."""
    import json
    import os

    from mlgate.store import INDEX_NAME, build_index

    try:
        doc = build_index(directory)
    except MlgateError as exc:
        _fail(exc.diagnostics())
    target = output or directory / INDEX_NAME
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        _fail(f"{target}: cannot write: {exc.strerror or exc}")
    for line in doc["errors"]:
        click.echo(f"mlgate: warning: not indexed: {line}", err=True)
    click.echo(f"mlgate: wrote {target} ({len(doc['releases'])} releases)")


@webhook.command("manifests")
@click.option("--namespace", default="mlgate", show_default=True, help="Namespace of the webhook (created by the manifests).")
@click.option("--image", required=True, help="Container image of mlgate.")
@click.option("--environments", default="staging,production", show_default=True, help="Comma-separated environments; one webhook each.")
@click.option("--mode", "modes", multiple=True, metavar="ENV=MODE", help="Mode of an environment in the settings file: enforce (default), warn or audit (repeatable).")
@click.option("--name", default="mlgate", show_default=True, help="Name of the Service, Deployment and webhook configuration.")
@click.option("--kube-version", default="1.25", show_default=True, help="Kubernetes version of the target cluster (1.25 or later): matchConditions from 1.28.")
@click.option("--replicas", type=click.IntRange(1, 50), help="Webhook pods [default: 1 with a file trail, 3 with PostgreSQL]; more than one needs a PostgreSQL trail.")
@click.option("--audit-url-secret", metavar="SECRET", help="Existing Secret whose key 'url' holds the postgresql:// URL of a shared audit trail.")
@click.option("--audit-url", metavar="URL", help="postgresql:// URL of a shared audit trail, put in a Secret NAME-audit-db by the manifests.")
@click.option("--audit-size", default="5Gi", show_default=True, help="Size of the file trail's PersistentVolumeClaim.")
@click.option("--evidence-store", default="file:///evidence", show_default=True, help="file:///DIR (a PersistentVolumeClaim mounted there) or https://HOST/PREFIX.")
@click.option("--evidence-size", default="1Gi", show_default=True, help="Size of a file:// evidence store's PersistentVolumeClaim.")
@click.option("--storage-class", help="storageClassName of the PersistentVolumeClaims (default: the cluster's).")
@click.option("--exempt-namespace-label", "exempt_ns", multiple=True, metavar="KEY[=VALUE]", help="Namespaces with this label are never sent to the webhook (repeatable).")
@click.option("--timeout", "timeout_s", default=5, show_default=True, type=click.IntRange(1, 30), help="timeoutSeconds of each webhook.")
@click.option("--cert-manager", is_flag=True, help="Emit a cert-manager Issuer and Certificate and inject the CA with its annotation.")
@click.option("--certs", "certs_dir", type=click.Path(file_okay=False, path_type=Path), help="Directory from `mlgate webhook certs`: a TLS Secret and the caBundle.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="mlgate serve --workers in each pod; the CPU and memory requests and limits scale with it.")
@click.option("--gate-threads", type=click.IntRange(1, 64), help="mlgate serve --gate-threads in each pod (default: serve's).")
@click.option("--log-format", default="json", show_default=True, type=click.Choice(["json", "text"]), help="mlgate serve --log-format in each pod.")
@click.option("--trust-policy", "trust_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Trust policy (YAML, keys inline) put in the ConfigMap and given to mlgate serve --trust.")
@click.option("--recheck-schedule", metavar="CRON", help="Also a CronJob running `mlgate recheck --from-cluster --apply` on this schedule "
              "('0 * * * *'), with a ServiceAccount that may only list the judged kinds and write PolicyReports.")
def manifests(namespace, image, environments, modes, name, kube_version, replicas, audit_url_secret, audit_url, audit_size, evidence_store,
              evidence_size, storage_class, exempt_ns, timeout_s, cert_manager, certs_dir, workers, gate_threads, log_format, trust_file,
              recheck_schedule=None):
    """Print every Kubernetes object the webhook needs (YAML), built with the kubernetes client's typed models."""
    _need("kubernetes")
    from mlgate.gatekeeper.manifests import ManifestOptions, render

    envs = [e.strip() for e in environments.split(",") if e.strip()]
    mode_map = {}
    for item in modes:
        env, sep, mode = item.partition("=")
        if not sep:
            _fail(f"--mode {item!r}: expected ENV=MODE")
        mode_map[env.strip()] = mode.strip()
    from mlgate.signing.trust import load_trust_policy

    try:
        trust = trust_file.read_text(encoding="utf-8")
        if load_trust_policy(trust_file).files:
            _fail(f"{trust_file}: names other files; the manifests carry one file: put the keys inline (pem:)")
    except OSError as exc:
        _fail(f"{trust_file}: cannot read: {exc.strerror or exc}")
    except MlgateError as exc:
        _fail(exc.diagnostics())
    certs = None
    if certs_dir is not None:
        certs = {}
        for file in ("ca.crt", "tls.crt", "tls.key"):
            try:
                certs[file] = (certs_dir / file).read_bytes()
            except OSError as exc:
                _fail(f"{certs_dir / file}: cannot read: {exc.strerror or exc}")
    try:
        text = render(ManifestOptions(namespace=namespace, image=image, environments=envs, name=name, replicas=replicas,
                                      timeout_s=timeout_s, cert_manager=cert_manager, certs=certs, workers=workers, gate_threads=gate_threads,
                                      kube_version=kube_version, modes=mode_map, evidence_store=evidence_store, evidence_size=evidence_size,
                                      audit_url=audit_url, audit_url_secret=audit_url_secret, audit_size=audit_size, storage_class=storage_class,
                                      exempt_namespace_labels=list(exempt_ns), log_format=log_format,
                                      trust_policy=trust, recheck_schedule=recheck_schedule))
    except MlgateError as exc:
        _fail(exc.diagnostics())
    click.echo(text, nl=False)

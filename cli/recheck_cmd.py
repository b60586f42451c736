"""``mlgate recheck``: re-judge the models that run in a cluster now, and publish PolicyReports (issue 20, part 2).

A decision is made at admission; approvals and waivers expire, keys are revoked, thresholds change.
``recheck`` reads the objects as the apiserver returns them (``kubectl get
inferenceservices,seldondeployments,deployments -A -o json``: a ``v1 List``; or a file or
directory of manifests, YAML or JSON, several documents per file allowed), judges each one with
:meth:`mlgate.gatekeeper.service.Gatekeeper.recheck` (the webhook's own reference extraction,
evidence store, exemptions and gate; each decision recorded with ``action: recheck``), and writes
one ``wgpolicyk8s.io/v1alpha2`` ``PolicyReport`` per namespace (the Policy Reports API of the
Kubernetes policy working group, which Kyverno and others publish).

Exit 0: every model still allowed; 1: at least one is denied or could not be judged; 2: bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from mlgate.errors import MlgateError

EXIT_ERROR = 2
REPORT_API = "wgpolicyk8s.io/v1alpha2"
REPORT_NAME = "mlgate-recheck"
RESULTS = ("pass", "fail", "warn", "error", "skip")
#: The v1alpha2 CRD's severities are high, medium and low: mlgate's critical is reported as high (its own word kept in
#: the result's ``properties.severity``); a pass or skip carries none.
SEVERITY = {"low": "low", "medium": "medium", "high": "high", "critical": "high"}
MAX_INPUT_BYTES = 64 * 1024 * 1024
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _fail(message: str) -> None:
    from mlgate.safeio import printable

    click.echo(printable(f"mlgate: error: {' '.join(str(message).split())}"), err=True)
    sys.exit(EXIT_ERROR)


# ---------------------------------------------------------------------- reading the objects
def _documents(text: str, name: str) -> list[Any]:
    from mlgate.safeio import parse_json

    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return [parse_json(text.encode("utf-8"), name)]
        except MlgateError:
            pass  # YAML flow style also starts with "{": let the YAML reader say what is wrong
    import yaml

    from mlgate.safeio import (
        _NoAliasLoader,  # safe, no aliases, no duplicate keys; pure Python: deep nesting is a RecursionError
    )

    try:
        return list(yaml.load_all(text, Loader=_NoAliasLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise MlgateError(f"{name}: not valid YAML or JSON{where}: {problem}") from None
    except RecursionError:
        raise MlgateError(f"{name}: nested too deeply to be a Kubernetes object") from None


def _objects(doc: Any, name: str, where: str, out: list[tuple[dict[str, Any], str]], depth: int = 0) -> None:
    """Append every object of ``doc`` (a List's items, recursively) with where it came from."""
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise MlgateError(f"{name}: {where}: expected a Kubernetes object (a mapping), got {type(doc).__name__}")
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise MlgateError(f"{name}: {where}.kind: must be a non-empty string")
    if not isinstance(api, str) or not api:
        raise MlgateError(f"{name}: {where}.apiVersion: must be a non-empty string")
    if kind == "List" or kind.endswith("List") and "items" in doc:
        items = doc.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            raise MlgateError(f"{name}: {where}.items: must be a list, got {type(items).__name__}")
        if depth >= 2:
            raise MlgateError(f"{name}: {where}: a List nested in a List nested in a List; refusing to read deeper")
        for i, item in enumerate(items):
            _objects(item, name, f"{where}.items[{i}]" if where != "$" else f"items[{i}]", out, depth + 1)
        return
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        raise MlgateError(f"{name}: {where}.metadata: must be a mapping")
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        raise MlgateError(f"{name}: {where}.metadata.name: must be a non-empty string")
    if meta.get("namespace") is not None and (not isinstance(meta["namespace"], str) or not meta["namespace"]):
        raise MlgateError(f"{name}: {where}.metadata.namespace: must be a non-empty string")
    labels = meta.get("labels")
    if labels is not None and not (isinstance(labels, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        raise MlgateError(f"{name}: {where}.metadata.labels: must map strings to strings")
    out.append((doc, f"{name}: {where}"))


def read_objects(source: str) -> list[tuple[dict[str, Any], str]]:
    """Every object in ``source`` (``-``: standard input; a file; a directory of *.yaml, *.yml, *.json, recursively)."""
    from mlgate.safeio import decode_text, display, read_bytes

    if source == "-":
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise MlgateError(f"<stdin>: more than {MAX_INPUT_BYTES} bytes")
        files = [("<stdin>", data)]
    else:
        path = Path(source)
        if path.is_dir():
            paths = sorted(p for p in path.rglob("*") if p.suffix.lower() in MANIFEST_SUFFIXES and p.is_file())
            if not paths:
                raise MlgateError(f"{display(path)}: no *.yaml, *.yml or *.json file in the directory")
        elif path.exists():
            paths = [path]
        else:
            raise MlgateError(f"{display(path)}: file not found")
        files = [(display(p), read_bytes(p, limit=MAX_INPUT_BYTES)) for p in paths]
    found: list[tuple[dict[str, Any], str]] = []
    for name, data in files:
        docs = _documents(decode_text(data, name), name)
        for i, doc in enumerate(docs):
            _objects(doc, name, "$" if len(docs) == 1 else f"document {i + 1}", found)
    return found


# ---------------------------------------------------------------------- which environment
def _namespace_envs(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        ns, sep, env = pair.partition("=")
        if not sep or not ns or not env:
            raise MlgateError(f"--namespace-env {pair!r}: expected NAMESPACE=ENVIRONMENT")
        out[ns] = env
    return out


def environment_for(namespace: str, *, env: str | None, label: str | None, overrides: dict[str, str],
                    namespace_labels: dict[str, dict[str, str]]) -> tuple[str | None, str]:
    """(environment, how it was chosen) for ``namespace``; None with the reason when none can be chosen."""
    if namespace in overrides:
        return overrides[namespace], f"--namespace-env {namespace}={overrides[namespace]}"
    if env is not None:
        return env, "--env"
    labels = namespace_labels.get(namespace)
    if labels is None:
        return None, (f"namespace {namespace}: its labels are not in the input (add the Namespace objects, "
                      f"kubectl get namespaces,... -o json, or give --namespace-env {namespace}=ENV)")
    if label not in labels:
        return None, f"namespace {namespace} has no label {label}"
    return labels[label], f"namespace label {label}"


# ---------------------------------------------------------------------- expiry
def earliest_expiry(decision: Any) -> tuple[int, str] | None:
    """(expires_at_ns, what) of the first verified approval for the decision's environment, or waiver, to lapse
    (from the facts the policy saw: ``expires_at_ns``); None when none of them expires."""
    doc = decision.input_document or {}
    evidence = doc.get("evidence") if isinstance(doc.get("evidence"), dict) else {}
    found: list[tuple[int, str]] = []
    for kind in ("approvals", "waivers"):
        block = evidence.get(kind) if isinstance(evidence.get(kind), dict) else {}
        for rec in block.get("records") or []:
            if not isinstance(rec, dict) or not isinstance(rec.get("expires_at_ns"), int) or isinstance(rec.get("expires_at_ns"), bool):
                continue
            if kind == "approvals" and not (rec.get("verified") and rec.get("environment") in (None, decision.environment)):
                continue
            who = rec.get("signer_id") or rec.get("path") or "?"
            found.append((rec["expires_at_ns"], f"{kind[:-1]} {who} ({rec.get('expires_at')})"))
    return min(found) if found else None


def days_left(expires_ns: int, now) -> float:
    from mlgate.clock import epoch_ns

    return round((expires_ns - epoch_ns(now)) / 86_400e9, 2)


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Prometheus text format (node-exporter textfile collector, or a Pushgateway): models out of compliance per
    namespace and environment, and days until the earliest approval or waiver expiry per release."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    out = Gauge("mlgate_recheck_models_out_of_compliance", "Model references the gate no longer allows (deny or error), at the last recheck",
                ["namespace", "environment"], registry=registry)
    expiry = Gauge("mlgate_recheck_days_until_expiry", "Days until the earliest approval or waiver of a release expires (negative: expired)",
                   ["release", "environment"], registry=registry)
    soonest: dict[tuple[str, str], float] = {}
    for row in rows:
        env = row.get("environment") or ""
        gauge = out.labels(row["namespace"], env)  # 0 when every model there is allowed
        failing = [d for d in row["decisions"] if d["result"] != "allow" and not d.get("exempt")]
        gauge.inc(len(failing) or (1 if row["result"] == "error" else 0))
        for d in row["decisions"]:
            if d.get("release") and d.get("days_until_expiry") is not None:
                key = (d["release"], env)
                soonest[key] = min(soonest.get(key, d["days_until_expiry"]), d["days_until_expiry"])
    for (release, env), days in soonest.items():
        expiry.labels(release, env).set(days)
    try:
        write_to_textfile(str(path), registry)
    except OSError as exc:
        raise MlgateError(f"{path}: cannot write the metrics: {exc.strerror}") from None


# ---------------------------------------------------------------------- reports
def _ref(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj["metadata"]
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "namespace": meta.get("namespace") or "default"}
    if isinstance(meta.get("uid"), str) and meta["uid"]:
        ref["uid"] = meta["uid"]
    return ref


def _timestamp(now) -> dict[str, int]:
    seconds = int(now.timestamp())
    return {"seconds": seconds, "nanos": now.microsecond * 1000}


def results_for(obj: dict[str, Any], environment: str, decisions: list[Any], mode: str, now) -> list[dict[str, Any]]:
    """PolicyReport results for one object: per decision, a ``pass`` (allowed, no finding), a ``fail`` per
    violation, a ``warn`` per warning, an ``error`` when it could not be judged, a ``skip`` when exempt."""
    resource = [_ref(obj)]
    out: list[dict[str, Any]] = []
    for d in decisions:
        props = {"decision-id": d.decision_id, "environment": environment, "mode": mode, "result": d.result}
        if d.release:
            props["release"] = f"{d.release['name']}@{d.release['version']}"
        if d.model_digest:
            props["model-digest"] = f"sha256:{d.model_digest}"
        soonest = earliest_expiry(d)
        if soonest is not None:
            props["earliest-expiry"] = soonest[1]
            props["days-until-expiry"] = f"{days_left(soonest[0], now):g}"
        what = props.get("release", "the model")
        base = {"policy": f"mlgate-{environment}", "source": "mlgate", "resources": resource, "timestamp": _timestamp(now),
                "scored": True, "category": "mlgate", "properties": props}
        if d.exempt is not None:
            out.append({**base, "rule": "exemption", "result": "skip", "message": _msg(str(d.exempt))})
            continue
        if d.result == "error":
            out.append({**base, "rule": "judgement", "result": "error", "severity": "high", "message": _msg(f"{what} could not be judged: {d.error}")})
            continue
        for v in d.violations:
            out.append({**base, "properties": {**props, "severity": v.severity}, "rule": v.id, "result": "fail",
                        "severity": SEVERITY.get(v.severity, "high"), "message": _msg(f"{what}: {v.message}")})
        for w in d.warnings:
            out.append({**base, "properties": {**props, "severity": w.severity}, "rule": w.id, "result": "warn",
                        "severity": SEVERITY.get(w.severity, "low"), "message": _msg(f"{what}: {w.message}")})
        if d.allowed and not d.violations:
            out.append({**base, "rule": "decision", "result": "pass", "message": _msg(f"{what} is allowed in {environment}")})
        elif not d.allowed and not d.violations:  # a deny with no finding: still a fail
            out.append({**base, "rule": "decision", "result": "fail", "severity": "high", "message": _msg(f"{what} is denied in {environment}")})
    return out


def _msg(text: str, limit: int = 1024) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def policy_report(namespace: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {r: 0 for r in RESULTS}
    for r in results:
        summary[r["result"]] += 1
    return {"apiVersion": REPORT_API, "kind": "PolicyReport",
            "metadata": {"name": REPORT_NAME, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "mlgate"}},
            "summary": summary, "results": results}


# ---------------------------------------------------------------------- in the cluster (the CronJob)
#: (group, version, plural, kind) listed by --from-cluster: what `kubectl get inferenceservices,seldondeployments,deployments -A` reads.
CLUSTER_KINDS = (("apps", "v1", "deployments", "Deployment"), ("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"),
                 ("machinelearning.seldon.io", "v1", "seldondeployments", "SeldonDeployment"))


def _api_client():
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except Exception as exc:  # noqa: BLE001 - no kubeconfig: one line
            raise MlgateError(f"--from-cluster: no in-cluster service account and no kubeconfig ({exc})") from None
    return client.ApiClient()


def _get_json(api, path: str) -> Any | None:
    """GET ``path`` from the apiserver as its raw JSON (exactly what kubectl -o json shows); None on 404 (a CRD not installed).

    Both shapes of the kubernetes client: openapi-generator 7 (``param_serialize`` then
    ``call_api(method, url, ...)``, which does not raise on an error status) and the older one
    (``call_api(path, method, ...)``); pyproject allows either."""
    from kubernetes.client.rest import ApiException

    headers = {"Accept": "application/json"}
    try:
        if hasattr(api, "param_serialize"):
            method, url, hdrs, _body, _post = api.param_serialize("GET", path, header_params=headers, auth_settings=["BearerToken"])
            resp = api.call_api(method, url, header_params=hdrs)
            resp.read()
            if not 200 <= resp.status <= 299:
                raise ApiException(http_resp=resp)
            data = resp.data
        else:
            data = api.call_api(path, "GET", header_params=headers, auth_settings=["BearerToken"],
                                _preload_content=False, _return_http_data_only=True).data
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise MlgateError(f"the apiserver refused GET {path}: {exc.status} {exc.reason}") from None
    return json.loads(data)


def objects_from_cluster(with_namespaces: bool) -> list[tuple[dict[str, Any], str]]:
    """Every object of :data:`CLUSTER_KINDS` in every namespace (and the Namespaces, for --env-from-label)."""
    api = _api_client()
    lists = [("", "v1", "namespaces", "Namespace")] if with_namespaces else []
    found: list[tuple[dict[str, Any], str]] = []
    for group, version, plural, kind in lists + list(CLUSTER_KINDS):
        path = f"/api/{version}/{plural}" if not group else f"/apis/{group}/{version}/{plural}"
        doc = _get_json(api, path)
        if doc is None:
            continue
        for item in doc.get("items") or []:  # list items carry no apiVersion/kind: the list's are theirs
            item.setdefault("apiVersion", f"{group}/{version}" if group else version)
            item.setdefault("kind", kind)
        _objects({**doc, "kind": "List", "apiVersion": "v1"}, f"apiserver {path}", "$", found)
    return found


def apply_reports(docs: list[dict[str, Any]]) -> None:
    """Create each namespace's PolicyReport, or update the one there (the ServiceAccount may create and update them)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(_api_client())
    group, version = REPORT_API.split("/")
    for doc in docs:
        ns = doc["metadata"]["namespace"]
        try:
            api.create_namespaced_custom_object(group, version, ns, "policyreports", doc)
            continue
        except ApiException as exc:
            if exc.status != 409:
                raise MlgateError(f"cannot create PolicyReport {ns}/{REPORT_NAME}: {exc.status} {exc.reason}") from None
        try:
            current = api.get_namespaced_custom_object(group, version, ns, "policyreports", REPORT_NAME)
            body = {**doc, "metadata": {**doc["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
            api.replace_namespaced_custom_object(group, version, ns, "policyreports", REPORT_NAME, body)
        except ApiException as exc:
            raise MlgateError(f"cannot update PolicyReport {ns}/{REPORT_NAME}: {exc.status} {exc.reason}") from None


# ---------------------------------------------------------------------- the command
@click.command()
@click.option("-f", "--filename", "source", metavar="FILE|DIR|-",
              help="Objects to re-judge: `kubectl get inferenceservices,seldondeployments,deployments -A -o json` output (a v1 List), "
                   "a manifest file or a directory of them (YAML or JSON, several documents allowed); - reads standard input.")
@click.option("--env", "environment", help="Judge every object for this environment.")
@click.option("--env-from-label", "env_label", metavar="KEY",
              help="Judge each object for the environment its namespace's label KEY names (Namespace objects in the input carry the labels).")
@click.option("--namespace-env", "namespace_envs", multiple=True, metavar="NS=ENV",
              help="The environment of namespace NS (repeatable); wins over --env and --env-from-label.")
@click.option("--evidence-store", help="Where releases live: file://DIR (or a path), or https://HOST/PREFIX (or evidenceStore.url in --config).")
@click.option("--evidence-store-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CA bundle (PEM) for an https:// evidence store.")
@click.option("--audit", "audit_url", envvar="MLGATE_AUDIT", show_envvar=True,
              help="Audit trail each re-judgement is recorded in (action: recheck): file:PATH or postgresql://... "
                   "[default: `audit` in .mlgate.yaml, else file:.mlgate/audit.jsonl].")
@click.option("--policy", "policy_dir", type=click.Path(path_type=Path), help="Policy directory (default: `policy` in .mlgate.yaml, else the bundled library).")
@click.option("--data", "data_files", type=click.Path(path_type=Path), multiple=True, help="Extra data document merged over the policy data (repeatable).")
@click.option("--trust", "trust_policy", type=click.Path(path_type=Path), help="Trust policy file (default: `trust` in .mlgate.yaml).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="The webhook's settings file (modes, exemptions, trusted storage, evidence store).")
@click.option("-o", "--output", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Summary format.")
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write one PolicyReport per namespace here (NAMESPACE.policyreport.json); without it the reports go to stdout as a v1 List.")
@click.option("--from-cluster", is_flag=True, help="List the objects from the apiserver (in-cluster service account, else kubeconfig) instead of -f.")
@click.option("--apply", "apply_", is_flag=True, help="Create or update each namespace's PolicyReport (mlgate-recheck) in the cluster.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when a model is no longer allowed (the reports say so); input errors still exit 2.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write Prometheus metrics here (text format): models out of compliance, days until the earliest approval or waiver expiry per release.")
@click.pass_context
def recheck(ctx, source, environment, env_label, namespace_envs, evidence_store, evidence_store_ca, audit_url, policy_dir, data_files,
            trust_policy, config_file, fmt, report_dir, from_cluster=False, apply_=False, exit_zero=False, metrics_file=None):
    """Re-judge the models running in a cluster now and write a PolicyReport per namespace. Exit 0 all allowed, 1 one is not, 2 error."""
    from mlgate.cli import DEFAULT_AUDIT_LOG, _actor, _clock

    from mlgate.settings import find_settings

    if environment is not None and env_label is not None:
        _fail("--env and --env-from-label both choose the environment; give one")
    try:
        overrides = _namespace_envs(namespace_envs)
    except MlgateError as exc:
        _fail(exc.diagnostics())
    if environment is None and env_label is None and not overrides:
        _fail("which environment? give --env ENV, --env-from-label KEY or --namespace-env NS=ENV")
    if (source is None) == (not from_cluster):
        _fail("give the objects with -f FILE|DIR|- or --from-cluster (one of them)")
    try:
        objects = objects_from_cluster(env_label is not None) if from_cluster else read_objects(source)
    except MlgateError as exc:
        _fail(exc.diagnostics())

    from mlgate.gatekeeper.config import load_config, settings_from_dict
    from mlgate.gatekeeper.service import Gatekeeper

    try:
        project = find_settings()  # .mlgate.yaml in the working directory, as for mlgate check; the flags win
    except MlgateError as exc:
        _fail(exc.diagnostics())
    policy_dir = policy_dir if policy_dir is not None else project.policy
    trust_policy = trust_policy if trust_policy is not None else project.trust
    audit_url = audit_url or project.audit or f"file:{DEFAULT_AUDIT_LOG}"
    flags = {"evidence_store": evidence_store, "audit": audit_url, "policy_dir": policy_dir, "trust_policy": trust_policy,
             "data_overrides": tuple(data_files), "evidence_store_ca": evidence_store_ca}
    try:
        settings = load_config(config_file, **flags) if config_file else settings_from_dict({}, None, **flags)
    except MlgateError as exc:
        _fail(exc.diagnostics())
    if not settings.evidence_store:
        _fail("no evidence store: give --evidence-store (or evidenceStore.url in --config)")

    clock = _clock(ctx)
    ids = (ctx.obj or {}).get("ids")
    namespace_labels = {o["metadata"]["name"]: dict(o["metadata"].get("labels") or {}) for o, _ in objects
                        if o["kind"] == "Namespace" and o["apiVersion"] == "v1"}
    gk = None
    rows: list[dict[str, Any]] = []
    reports: dict[str, list[dict[str, Any]]] = {}
    try:
        gk = Gatekeeper(settings, clock=clock, ids=ids)
        gk.start()
        known = ", ".join(sorted(gk.environments)) or "none"
        for given, flag in [(environment, "--env")] + [(e, f"--namespace-env {ns}={e}") for ns, e in overrides.items()]:
            if given is not None and given not in gk.environments:
                raise MlgateError(f"{flag}: unknown environment {given!r} (the policy and settings know: {known})")
        now = clock.now()
        for obj, where in objects:
            if not _judged_kind(obj):
                continue
            namespace = obj["metadata"].get("namespace") or "default"
            env, how = environment_for(namespace, env=environment, label=env_label, overrides=overrides, namespace_labels=namespace_labels)
            ref = _ref(obj)
            row = {"namespace": namespace, "kind": obj["kind"], "name": ref["name"], "environment": env, "environment_from": how}
            if env is not None and env not in gk.environments:  # from a namespace label: that namespace is not judged
                env, how = None, f"namespace {namespace}: label {env_label}={env} names no environment the policy or settings know ({known})"
            if env is None:
                result = {"policy": "mlgate", "rule": "environment", "result": "error", "severity": "high", "source": "mlgate",
                          "resources": [ref], "timestamp": _timestamp(now), "message": _msg(f"not judged: {how}")}
                reports.setdefault(namespace, []).append(result)
                rows.append({**row, "result": "error", "decisions": [], "message": how})
                continue
            outcome = gk.recheck(obj, env, user=_actor())
            mode = settings.environment(env).mode
            reports.setdefault(namespace, []).extend(results_for(obj, env, outcome.decisions, mode, now))
            rows.append({**row, "result": outcome.result, "mode": mode,
                         "decisions": [_decision_row(d, now) for d in outcome.decisions]})
    except MlgateError as exc:
        _fail(exc.diagnostics())
    finally:
        if gk is not None:
            gk.close()
            close = getattr(gk.sink, "close", None)
            if close is not None:
                close()

    docs = [policy_report(ns, reports[ns]) for ns in sorted(reports)]
    if report_dir is not None:
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
            for doc in docs:
                (report_dir / f"{doc['metadata']['namespace']}.policyreport.json").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            _fail(f"{report_dir}: cannot write the reports: {exc.strerror}")
    if apply_ or metrics_file is not None:
        try:
            if metrics_file is not None:
                write_metrics(metrics_file, rows)
            if apply_:
                apply_reports(docs)
        except MlgateError as exc:
            _fail(exc.diagnostics())
    not_allowed = [r for r in rows if r["result"] not in ("allow", "exempt")]
    summary = {"apiVersion": "mlgate.dev/recheck-summary/v1", "evaluated_at": now.isoformat().replace("+00:00", "Z"),
               "objects": len(rows), "not_allowed": len(not_allowed), "namespaces": {d["metadata"]["namespace"]: d["summary"] for d in docs},
               "results": rows}
    if report_dir is None and not apply_:
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": docs}, indent=2, sort_keys=True))
        _summary(summary, fmt, err=True)
    else:
        _summary(summary, fmt, err=False)
    sys.exit(1 if not_allowed and not exit_zero else 0)


def _judged_kind(obj: dict[str, Any]) -> bool:
    from mlgate.gatekeeper.refs import KINDS

    return obj["kind"] in KINDS and obj["kind"] != "Namespace"


def _decision_row(d: Any, now) -> dict[str, Any]:
    soonest = earliest_expiry(d)
    return {"decision_id": d.decision_id, "result": d.result, "release": f"{d.release['name']}@{d.release['version']}" if d.release else None,
            "violations": [v.id for v in d.violations], "warnings": [w.id for w in d.warnings], "error": d.error, "exempt": d.exempt,
            "earliest_expiry": soonest[1] if soonest else None, "days_until_expiry": days_left(soonest[0], now) if soonest else None}


def _summary(summary: dict[str, Any], fmt: str, *, err: bool) -> None:
    if fmt == "json":
        click.echo(json.dumps(summary, indent=2, sort_keys=True), err=err)
        return
    from mlgate.safeio import printable

    for row in summary["results"]:
        releases = ", ".join(d["release"] or "?" for d in row["decisions"]) or "-"
        ids = ", ".join(sorted({i for d in row["decisions"] for i in d["violations"]}))
        extra = f" [{ids}]" if ids else (f" ({row['message']})" if row.get("message") else "")
        click.echo(printable(f"{row['result'].upper():7} {row['namespace']}/{row['kind']}/{row['name']} {releases} in {row['environment'] or '?'}{extra}"), err=err)
    counts = ", ".join(f"{ns}: {s['pass']} pass, {s['fail']} fail, {s['warn']} warn, {s['error']} error, {s['skip']} skip"
                       for ns, s in summary["namespaces"].items())
    click.echo(f"mlgate recheck: {summary['objects']} object(s), {summary['not_allowed']} no longer allowed" + (f" ({counts})" if counts else ""), err=err)

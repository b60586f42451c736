"""`mlgate webhook manifests` and `mlgate webhook certs`: structure and the constraints the apiserver enforces."""

from __future__ import annotations

import re

import pytest
import yaml
from cli_helpers import run

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def docs(*extra):
    code, out, err = run(["webhook", "manifests", "--image", "registry.example/mlgate:0.1.0", *extra])
    assert code == 0, err
    return {d["kind"]: d for d in yaml.safe_load_all(out)}


def test_validating_webhook_configuration():
    vwc = docs("--environments", "staging,production")["ValidatingWebhookConfiguration"]
    assert [w["name"] for w in vwc["webhooks"]] == ["staging.mlgate.mlgate.dev", "production.mlgate.mlgate.dev"]
    for w, env in zip(vwc["webhooks"], ["staging", "production"]):
        assert len(w["name"].split(".")) >= 3 and DNS1123.match(w["name"])
        assert w["failurePolicy"] == "Fail" and w["sideEffects"] == "NoneOnDryRun"
        assert 1 <= w["timeoutSeconds"] <= 30 and w["timeoutSeconds"] == 5
        assert w["admissionReviewVersions"] == ["v1", "v1beta1"]
        assert w["clientConfig"]["service"]["path"] == f"/v1/admit/{env}"
        assert w["namespaceSelector"] == {"matchLabels": {"mlgate.dev/environment": env}}
        resources = {r for rule in w["rules"] for r in rule["resources"]}
        assert {"deployments", "statefulsets", "daemonsets", "replicasets", "jobs", "cronjobs", "pods",
                "inferenceservices", "seldondeployments", "deployments/scale"} <= resources
        assert {c["name"] for c in w["matchConditions"]} == {"not-own-namespace", "not-kube-system"}


def test_deployment_is_hardened():
    d = docs()
    dep = d["Deployment"]
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["securityContext"]["runAsNonRoot"] is True
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert c["resources"]["requests"]["cpu"]
    assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert d["PodDisruptionBudget"]["spec"]["minAvailable"] == 2
    assert {"Service", "ServiceAccount"} <= set(d)


def test_cert_manager_and_ca_bundle(tmp_path):
    d = docs("--cert-manager")
    assert d["Certificate"]["spec"]["dnsNames"][0] == "mlgate.mlgate.svc"
    assert d["ValidatingWebhookConfiguration"]["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "mlgate/mlgate"
    code, _, err = run(["webhook", "certs", "-o", tmp_path])
    assert code == 0, err
    from cryptography import x509

    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    assert "mlgate.mlgate.svc" in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert (tmp_path / "tls.key").stat().st_mode & 0o077 == 0
    vwc = docs("--ca-bundle", str(tmp_path / "ca.crt"))["ValidatingWebhookConfiguration"]
    assert all(w["clientConfig"]["caBundle"] for w in vwc["webhooks"])


@pytest.mark.parametrize("args, needle", [(["--environments", "Prod_1"], "DNS label"), (["--timeout", "31"], "31")])
def test_bad_options_are_one_line(args, needle):
    code, _, err = run(["webhook", "manifests", "--image", "x", *args])
    assert code == 2 and needle in err and len(err.strip().splitlines()) <= 4


def _container(*extra):
    return docs(*extra)["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def _flag(args, name):
    return args[args.index(name) + 1] if name in args else None


def test_workers_and_gate_threads_reach_the_container():
    c = _container()
    assert _flag(c["args"], "--workers") == "2" and "--gate-threads" not in c["args"]  # default: two workers, serve's threads
    c = _container("--workers", "3", "--gate-threads", "4")
    assert _flag(c["args"], "--workers") == "3" and _flag(c["args"], "--gate-threads") == "4"
    # The container runs what `mlgate serve` accepts.
    from mlgate.cli.webhook_cmd import serve

    known = {opt for p in serve.params for opt in p.opts}
    assert {a for a in c["args"][1:] if a.startswith("--")} <= known


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

    objects = build(ManifestOptions(namespace="mlgate", image="x", environments=["production"], workers=4, gate_threads=2))
    (dep,) = [o for o in objects if isinstance(o, k.V1Deployment)]
    container = dep.spec.template.spec.containers[0]
    assert isinstance(container.resources, k.V1ResourceRequirements) and container.resources.limits["cpu"] == "4"


@pytest.mark.parametrize("args, needle", [(["--workers", "0"], "--workers"), (["--workers", "65"], "--workers"), (["--gate-threads", "0"], "--gate-threads")])
def test_bad_worker_counts_are_refused(args, needle):
    code, _, err = run(["webhook", "manifests", "--image", "x", *args])
    assert code == 2 and needle in err

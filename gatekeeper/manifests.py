"""Kubernetes manifests for the webhook, built with the ``kubernetes`` client's typed models.

One ValidatingWebhook per environment (``<env>.<name>.mlgate.dev``), selected by the namespace
label ``mlgate.dev/environment=<env>`` and posting to ``/v1/admit/<env>``; ``failurePolicy:
Fail``, ``sideEffects: NoneOnDryRun``; matchConditions skip the webhook's own namespace and
kube-system. Plus ServiceAccount, Service, Deployment (anti-affinity, probes, non-root,
read-only root filesystem), PodDisruptionBudget and either a cert-manager Issuer/Certificate or
a caBundle from ``mlgate webhook certs``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from mlgate.gatekeeper.config import ENVIRONMENT_NAME

from mlgate.errors import InputError

ENV_LABEL = "mlgate.dev/environment"
WORKLOAD_RULES = [
    (["apps"], ["deployments", "statefulsets", "daemonsets", "replicasets"]),
    (["batch"], ["jobs", "cronjobs"]),
    ([""], ["pods", "replicationcontrollers"]),
    (["serving.kserve.io"], ["inferenceservices"]),
    (["machinelearning.seldon.io"], ["seldondeployments"]),
]


@dataclass(frozen=True)
class ManifestOptions:
    namespace: str
    image: str
    environments: list[str]
    name: str = "mlgate"
    replicas: int = 3
    timeout_s: int = 5
    cert_manager: bool = False
    ca_bundle_pem: bytes | None = None
    port: int = 8443
    workers: int = 2  # worker processes per pod (``mlgate serve --workers``): one evaluation at a time each
    gate_threads: int | None = None  # ``mlgate serve --gate-threads`` (None: serve's default)


def pod_resources(workers: int) -> tuple[dict[str, str], dict[str, str]]:
    """(requests, limits) for a pod running ``workers`` processes: half a CPU requested and one CPU
    allowed per worker (a worker evaluates one review at a time, holding the GIL); memory 128 MiB
    per worker plus 128 MiB, limit twice that (benchmarks/webhook.py measures about 100 MB
    resident per worker, the metrics files in the /tmp emptyDir included)."""
    memory = 128 + 128 * workers  # MiB: 256Mi for one worker
    request_cpu = str(workers // 2) if workers % 2 == 0 else f"{500 * workers}m"
    return ({"cpu": request_cpu, "memory": f"{memory}Mi"}, {"cpu": str(workers), "memory": f"{2 * memory}Mi"})


def build(opts: ManifestOptions) -> list[object]:
    from kubernetes import client as k

    if not opts.environments:
        raise InputError("no environment given (--environments staging,production)")
    for env in opts.environments:
        if not ENVIRONMENT_NAME.match(env):
            raise InputError(f"environment {env!r} is not a DNS label")
    if not 1 <= opts.timeout_s <= 30:
        raise InputError(f"timeoutSeconds must be 1-30, got {opts.timeout_s}")
    if not 1 <= opts.workers <= 64:
        raise InputError(f"--workers must be 1-64, got {opts.workers}")
    if opts.gate_threads is not None and not 1 <= opts.gate_threads <= 64:
        raise InputError(f"--gate-threads must be 1-64, got {opts.gate_threads}")
    labels = {"app.kubernetes.io/name": opts.name, "app.kubernetes.io/component": "admission-webhook"}
    meta = lambda name, **kw: k.V1ObjectMeta(name=name, namespace=opts.namespace, labels=labels, **kw)
    secret = f"{opts.name}-tls"
    objects: list[object] = [
        k.V1ServiceAccount(api_version="v1", kind="ServiceAccount", metadata=meta(opts.name), automount_service_account_token=False),
        k.V1Service(api_version="v1", kind="Service", metadata=meta(opts.name), spec=k.V1ServiceSpec(
            selector=labels, ports=[k.V1ServicePort(name="https", port=443, target_port="https", protocol="TCP")])),
    ]
    args = ["serve", "--host", "0.0.0.0", "--port", str(opts.port), "--cert", "/tls/tls.crt", "--key", "/tls/tls.key",
            "--evidence-store", "file:///evidence", "--audit", "file:///audit/audit.jsonl", "--workers", str(opts.workers)]
    if opts.gate_threads is not None:
        args += ["--gate-threads", str(opts.gate_threads)]
    requests, limits = pod_resources(opts.workers)
    probe = lambda path, delay: k.V1Probe(http_get=k.V1HTTPGetAction(path=path, port="https", scheme="HTTPS"),
                                          initial_delay_seconds=delay, period_seconds=10, timeout_seconds=2, failure_threshold=3)
    container = k.V1Container(
        name="webhook", image=opts.image, args=args, ports=[k.V1ContainerPort(name="https", container_port=opts.port)],
        readiness_probe=probe("/readyz", 2), liveness_probe=probe("/healthz", 5),
        resources=k.V1ResourceRequirements(requests=requests, limits=limits),
        security_context=k.V1SecurityContext(run_as_non_root=True, run_as_user=65532, read_only_root_filesystem=True,
                                             allow_privilege_escalation=False, capabilities=k.V1Capabilities(drop=["ALL"]),
                                             seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault")),
        volume_mounts=[k.V1VolumeMount(name="tls", mount_path="/tls", read_only=True),
                       k.V1VolumeMount(name="evidence", mount_path="/evidence", read_only=True),
                       k.V1VolumeMount(name="audit", mount_path="/audit"),
                       k.V1VolumeMount(name="tmp", mount_path="/tmp")],
    )
    pod = k.V1PodTemplateSpec(
        metadata=k.V1ObjectMeta(labels=labels),
        spec=k.V1PodSpec(
            service_account_name=opts.name, containers=[container],
            security_context=k.V1PodSecurityContext(run_as_non_root=True, fs_group=65532),
            affinity=k.V1Affinity(pod_anti_affinity=k.V1PodAntiAffinity(required_during_scheduling_ignored_during_execution=[
                k.V1PodAffinityTerm(topology_key="kubernetes.io/hostname", label_selector=k.V1LabelSelector(match_labels=labels))])),
            volumes=[k.V1Volume(name="tls", secret=k.V1SecretVolumeSource(secret_name=secret)),
                     k.V1Volume(name="evidence", persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(claim_name=f"{opts.name}-evidence", read_only=True)),
                     k.V1Volume(name="audit", persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(claim_name=f"{opts.name}-audit")),
                     k.V1Volume(name="tmp", empty_dir=k.V1EmptyDirVolumeSource(medium="Memory", size_limit="64Mi"))],
        ),
    )
    objects.append(k.V1Deployment(api_version="apps/v1", kind="Deployment", metadata=meta(opts.name), spec=k.V1DeploymentSpec(
        replicas=opts.replicas, selector=k.V1LabelSelector(match_labels=labels), template=pod,
        strategy=k.V1DeploymentStrategy(type="RollingUpdate", rolling_update=k.V1RollingUpdateDeployment(max_unavailable=1, max_surge=1)))))
    objects.append(k.V1PodDisruptionBudget(api_version="policy/v1", kind="PodDisruptionBudget", metadata=meta(opts.name),
                                           spec=k.V1PodDisruptionBudgetSpec(min_available=max(1, opts.replicas - 1), selector=k.V1LabelSelector(match_labels=labels))))
    annotations = None
    if opts.cert_manager:
        annotations = {"cert-manager.io/inject-ca-from": f"{opts.namespace}/{opts.name}"}
        objects += _cert_manager(opts, secret, labels)
    webhooks = []
    for env in opts.environments:
        client_config = k.AdmissionregistrationV1WebhookClientConfig(
            service=k.AdmissionregistrationV1ServiceReference(name=opts.name, namespace=opts.namespace, path=f"/v1/admit/{env}", port=443),
            ca_bundle=base64.b64encode(opts.ca_bundle_pem).decode() if opts.ca_bundle_pem else None)
        webhooks.append(k.V1ValidatingWebhook(
            name=f"{env}.{opts.name}.mlgate.dev", client_config=client_config, admission_review_versions=["v1", "v1beta1"],
            failure_policy="Fail", side_effects="NoneOnDryRun", timeout_seconds=opts.timeout_s, match_policy="Equivalent",
            namespace_selector=k.V1LabelSelector(match_labels={ENV_LABEL: env}),
            rules=[k.V1RuleWithOperations(api_groups=groups, api_versions=["*"], operations=["CREATE", "UPDATE", "DELETE"],
                                          resources=resources + [f"{r}/scale" for r in resources if r in ("deployments", "statefulsets", "replicasets")],
                                          scope="Namespaced") for groups, resources in WORKLOAD_RULES],
            match_conditions=[
                k.V1MatchCondition(name="not-own-namespace", expression=f"request.namespace != '{opts.namespace}'"),
                k.V1MatchCondition(name="not-kube-system", expression="request.namespace != 'kube-system'"),
            ]))
    objects.append(k.V1ValidatingWebhookConfiguration(
        api_version="admissionregistration.k8s.io/v1", kind="ValidatingWebhookConfiguration",
        metadata=k.V1ObjectMeta(name=f"{opts.name}.mlgate.dev", labels=labels, annotations=annotations), webhooks=webhooks))
    return objects


def _cert_manager(opts: ManifestOptions, secret: str, labels: dict[str, str]) -> list[dict]:
    # cert-manager kinds are CRDs, not in the kubernetes client's models: plain dicts, same shape.
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
              "metadata": {"name": f"{opts.name}-selfsigned", "namespace": opts.namespace, "labels": labels}, "spec": {"selfSigned": {}}}
    cert = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": opts.name, "namespace": opts.namespace, "labels": labels},
            "spec": {"secretName": secret, "dnsNames": [f"{opts.name}.{opts.namespace}.svc", f"{opts.name}.{opts.namespace}.svc.cluster.local"],
                     "issuerRef": {"name": f"{opts.name}-selfsigned", "kind": "Issuer"}, "duration": "2160h", "renewBefore": "360h",
                     "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}}}
    return [issuer, cert]


def to_dicts(objects: list[object]) -> list[dict]:
    from kubernetes.client import ApiClient

    api = ApiClient()
    return [o if isinstance(o, dict) else api.sanitize_for_serialization(o) for o in objects]


def render(opts: ManifestOptions) -> str:
    import yaml

    return yaml.safe_dump_all(to_dicts(build(opts)), sort_keys=False)

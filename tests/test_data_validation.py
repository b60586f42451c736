"""Great Expectations 1.x validation results: the real GX 1.24.1 outputs, read unchanged."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlgate.errors import InputError
from mlgate.evidence.data_validation import read_validation_result

from conftest import REPO, require_service

FORMATS = Path(__file__).parent / "assets" / "formats"
PASSING = "gx-1.24.1-validation-result.passing.json"
FAILING = "gx-1.24.1-validation-result.failing.json"
DESCRIBE = "gx-1.24.1-checkpoint-describe.failing.json"

TRAIN = "a" * 64
ENCOUNTERS = "e" * 64
DATASETS = {"train": TRAIN, "encounters": ENCOUNTERS}


def asset(name: str) -> bytes:
    return (FORMATS / name).read_bytes()


def doc(name: str) -> dict:
    return json.loads(asset(name))


def read(data: bytes | dict, name: str = "evidence/validation.json", **kw):
    if isinstance(data, dict):
        data = json.dumps(data).encode()
    kw.setdefault("datasets", DATASETS)
    return read_validation_result(data, name, **kw)


# ------------------------------------------------------------------ the real files, unchanged
def test_passing_result_facts():
    r = read(asset(PASSING), "evidence/validation_train.json", dataset="train")
    assert r["valid"] is True and r["errors"] == []
    assert r["format"] == "great_expectations"
    assert r["path"] == "evidence/validation_train.json"
    assert len(r["digest"]) == 64
    assert r["success"] is True
    assert r["suite_name"] == "readmission_input_suite"
    assert (r["evaluated"], r["successful"], r["unsuccessful"]) == (3, 3, 0)
    assert r["failed_expectations"] == []
    assert r["validated_at"] == "2026-11-29T01:19:55.218175Z"
    assert r["validated_at_ns"] == 1795915195218175000
    assert r["gx_version"] == "1.24.1"
    assert r["dataset"] == {"name": "train", "digest": TRAIN}


def test_failing_result_facts():
    r = read(asset(FAILING), dataset="train")
    assert r["valid"] is True, r["errors"]
    assert r["success"] is False
    assert (r["evaluated"], r["successful"], r["unsuccessful"]) == (3, 1, 2)
    assert r["failed_expectations"] == [
        {"type": "expect_column_values_to_not_be_null", "column": "age", "unexpected_count": 1, "severity": "critical"},
        {"type": "expect_column_values_to_be_in_set", "column": "readmitted", "unexpected_count": 1, "severity": "critical"},
    ]
    assert r["validated_at"] == "2026-11-29T01:19:55.196551Z"


def test_checkpoint_describe_shape_is_read():
    r = read(asset(DESCRIBE), dataset="train")
    assert r["valid"] is True, r["errors"]
    assert r["success"] is False
    assert (r["evaluated"], r["successful"], r["unsuccessful"]) == (3, 1, 2)
    # describe_dict() carries no suite name, time, version or batch: unknown, not invented
    assert r["suite_name"] is None
    assert r["validated_at"] is None and r["validated_at_ns"] is None
    assert r["gx_version"] is None
    assert r["dataset"] == {"name": "train", "digest": TRAIN}


def test_both_shapes_give_the_same_facts_for_the_same_run():
    a = read(asset(FAILING), dataset="train")
    b = read(asset(DESCRIBE), dataset="train")
    for key in ("valid", "success", "evaluated", "successful", "unsuccessful", "dataset"):
        assert a[key] == b[key], key
    strip = lambda fes: [{k: v for k, v in fe.items() if k != "severity"} for fe in fes]  # noqa: E731
    assert strip(a["failed_expectations"]) == strip(b["failed_expectations"])


def test_files_are_read_unchanged_from_shared_formats():
    shared = REPO.parent / "shared" / "formats"
    if not shared.is_dir():
        require_service("shared formats", f"the reference outputs are not at {shared} (shared/formats beside the checkout)")
    for name in (PASSING, FAILING, DESCRIBE):
        assert (shared / name).read_bytes() == asset(name), name


# ------------------------------------------------------------------ linking to manifest datasets
def test_link_by_asset_name_when_no_dataset_given():
    r = read(asset(PASSING))
    assert r["dataset"] == {"name": "encounters", "digest": ENCOUNTERS}
    assert r["valid"] is True


def test_unlinked_when_asset_name_is_not_a_dataset():
    r = read(asset(PASSING), datasets={"train": TRAIN})
    assert r["dataset"] is None
    assert r["valid"] is True  # a fact; the policy denies unlinked records


def test_describe_shape_without_dataset_is_unlinked():
    r = read(asset(DESCRIBE))
    assert r["dataset"] is None


def test_explicit_dataset_wins_over_asset_name():
    r = read(asset(PASSING), dataset="train")
    assert r["dataset"] == {"name": "train", "digest": TRAIN}


def test_unknown_dataset_name_is_an_error():
    r = read(asset(PASSING), dataset="tset")
    assert r["valid"] is False
    assert r["success"] is False
    assert r["dataset"] is None
    assert any("dataset" in e and "'tset'" in e for e in r["errors"])


# ------------------------------------------------------------------ tampering and inconsistency
def test_tampered_success_flag_is_invalid():
    d = doc(FAILING)
    d["success"] = True
    r = read(d)
    assert r["valid"] is False
    assert r["success"] is False
    assert any("success" in e and "contradicts" in e for e in r["errors"])


def test_tampered_result_flags_disagree_with_statistics():
    d = doc(FAILING)
    for res in d["results"]:
        res["success"] = True
    d["success"] = True
    r = read(d)
    assert r["valid"] is False and r["success"] is False
    assert any("statistics.successful_expectations" in e for e in r["errors"])


def test_statistics_count_mismatch():
    d = doc(PASSING)
    d["statistics"]["evaluated_expectations"] = 12
    r = read(d)
    assert r["valid"] is False and r["success"] is False
    assert any("statistics.evaluated_expectations: says 12" in e for e in r["errors"])


def test_dropped_failed_result_is_caught_by_statistics():
    d = doc(FAILING)
    d["results"] = [x for x in d["results"] if x["success"]]
    d["success"] = True
    r = read(d)
    assert r["valid"] is False and r["success"] is False


def test_describe_shape_tampered_top_level_success():
    d = doc(DESCRIBE)
    d["success"] = True
    r = read(d)
    assert r["valid"] is False and r["success"] is False
    assert any(e.startswith("evidence/validation.json: success:") for e in r["errors"])


def test_describe_shape_tampered_inner_success():
    d = doc(DESCRIBE)
    d["validation_results"][0]["success"] = True
    r = read(d)
    assert r["valid"] is False
    assert any("validation_results[0].success" in e for e in r["errors"])


# ------------------------------------------------------------------ wrong types, wrong versions
@pytest.mark.parametrize(
    "mutate, path",
    [
        (lambda d: d.__setitem__("success", "true"), "success"),
        (lambda d: d["statistics"].__setitem__("evaluated_expectations", "3"), "statistics.evaluated_expectations"),
        (lambda d: d["results"][0]["expectation_config"].__setitem__("type", 7), "results[0].expectation_config.type"),
        (lambda d: d["results"][0]["result"].__setitem__("unexpected_count", -1), "results[0].result.unexpected_count"),
        (lambda d: d.__setitem__("results", {"a": 1}), "results"),
        (lambda d: d.__setitem__("meta", []), "meta"),
        (lambda d: d.pop("suite_name"), "$"),
        (lambda d: d["meta"].__setitem__("validation_time", "yesterday"), "meta.validation_time"),
        (lambda d: d["meta"].__setitem__("validation_time", "2026-11-29T01:19:55"), "meta.validation_time"),
    ],
)
def test_wrong_types_are_invalid_not_exceptions(mutate, path):
    d = doc(PASSING)
    mutate(d)
    r = read(d)
    assert r["valid"] is False
    assert r["success"] is False
    assert any(f"evidence/validation.json: {path}" in e for e in r["errors"]), r["errors"]
    assert all("\n" not in e for e in r["errors"])


def test_run_id_time_used_when_validation_time_absent():
    d = doc(PASSING)
    del d["meta"]["validation_time"]
    d["meta"]["run_id"]["run_time"] = "2026-11-29T02:19:55.218175+01:00"
    r = read(d)
    assert r["valid"] is True
    assert r["validated_at"] == "2026-11-29T01:19:55.218175Z"


def test_gx_0x_result_is_not_supported():
    d = doc(PASSING)
    d["meta"]["great_expectations_version"] = "0.18.19"
    r = read(d)
    assert r["valid"] is False
    assert any("great_expectations_version" in e for e in r["errors"])


def test_not_an_object():
    r = read(b"[1, 2, 3]")
    assert r["valid"] is False and r["success"] is False
    assert r["errors"] == ["evidence/validation.json: $: expected a Great Expectations validation result object, got list"]


def test_unparseable_bytes_raise_input_error():
    with pytest.raises(InputError, match="evidence/validation.json"):
        read(b"{not json")
    with pytest.raises(InputError):
        read(b"\x00\x01binary")


# ------------------------------------------------------------------ property: only InputError, ever
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)
gx_keys = st.sampled_from(
    ["success", "results", "statistics", "meta", "suite_name", "validation_results", "expectations",
     "expectation_config", "type", "expectation_type", "kwargs", "result", "unexpected_count",
     "evaluated_expectations", "successful_expectations", "validation_time", "run_id", "run_time",
     "active_batch_definition", "data_asset_name", "great_expectations_version"]
)
gx_like = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=8) | st.just("2026-11-29T01:19:55Z"),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(gx_keys, children, max_size=6),
    max_leaves=30,
)


def _check(data: bytes, **kw):
    try:
        r = read(data, **kw)
    except InputError:
        return
    assert isinstance(r["valid"], bool)
    assert r["success"] is False or r["valid"] is True
    json.dumps(r, allow_nan=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_input_error(data):
    _check(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values | gx_like, st.sampled_from([None, "train", "nope"]))
def test_arbitrary_json_only_raise_input_error(value, dataset):
    _check(json.dumps(value).encode(), dataset=dataset)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutating_the_real_file_never_raises(data):
    d = doc(data.draw(st.sampled_from([PASSING, FAILING, DESCRIBE])))
    # replace one value somewhere in the document with an arbitrary JSON value
    paths = []
    stack = [((), d)]
    while stack:
        p, v = stack.pop()
        paths.append(p)
        if isinstance(v, dict):
            stack.extend(((*p, k), x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend(((*p, i), x) for i, x in enumerate(v))
    path = data.draw(st.sampled_from([p for p in paths if p]))
    target = d
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = data.draw(json_values)
    _check(json.dumps(d).encode())


def test_deeply_nested_json_does_not_crash():
    _check(b"[" * 5000 + b"]" * 5000)
    _check(b'{"results": ' + b"[" * 900 + b"]" * 900 + b"}")


def test_reader_does_not_mutate_or_depend_on_copies():
    d = doc(FAILING)
    before = copy.deepcopy(d)
    read(d)
    assert d == before


def test_describe_shape_with_several_validation_results_is_aggregated():
    d = doc(DESCRIBE)
    passing = copy.deepcopy(d["validation_results"][0])
    for e in passing["expectations"]:
        e["success"] = True
    passing["success"] = True
    passing["statistics"].update(successful_expectations=3, unsuccessful_expectations=0, success_percent=100.0)
    d["validation_results"].append(passing)
    d["statistics"].update(evaluated_validations=2, successful_validations=1, unsuccessful_validations=1, success_percent=50.0)
    r = read(d)
    assert r["valid"] is True, r["errors"]
    assert (r["evaluated"], r["successful"], r["unsuccessful"]) == (6, 4, 2)
    assert r["success"] is False


def test_zero_expectations_is_refused():
    """A suite in which no expectation ran proves nothing about the data (issue 14)."""
    d = doc(PASSING)
    d["results"] = []
    d["statistics"].update(evaluated_expectations=0, successful_expectations=0, success_percent=None)
    r = read(d)
    assert r["evaluated"] == 0 and r["valid"] is False and r["success"] is False
    assert "no expectation was evaluated" in r["errors"][0]

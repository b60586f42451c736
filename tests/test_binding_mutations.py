"""Mutation property test of the binding (issue 14 part 8), on the bundled examples.

Hypothesis mutates one field of a signed release at a time: a manifest leaf (every field of
``mlgate.yaml``), one byte of an evidence, dataset, model or approval file. Two properties:

* a mutation never turns a deny into an allow (``triage-acuity`` in production);
* a mutation of anything signed over never keeps an allow (``readmission-risk`` in production):
  every manifest field is signed by the approvals' release binding, and every file by a digest.
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli_helpers import run
from conftest import EXAMPLES, REPO

TRUST = REPO / "examples" / "trust.yaml"
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, i))
    else:
        yield path


def _mutated(value, how: int):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 + how
    if isinstance(value, float):
        return value * 1.5 + 1
    if value is None:
        return ["x", 0, True][how % 3]
    text = str(value)
    return [text + "x", text[:-1] if len(text) > 1 else text + "y", text.upper() if text.upper() != text else text.lower() + "z"][how % 3]


def _set(doc, path, value):
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


class Release:
    """A copy of an example whose files are mutated and restored in place (one copy per test)."""

    def __init__(self, tmp_path, name):
        self.root = tmp_path / name
        shutil.copytree(EXAMPLES / name, self.root)
        self.manifest = (self.root / "mlgate.yaml").read_text()
        self.doc = yaml.safe_load(self.manifest)
        self.leaves = [p for p in _leaves(self.doc) if p[:3] not in (("spec", "evidence", "approvals"), ("spec", "evidence", "waivers"))]
        self.files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.name != "mlgate.yaml"
                            and "monitoring" not in p.parts and "evaluation" not in p.parts)
        self.log = tmp_path / "audit.jsonl"

    def decide(self, env):
        code, out, _ = run(["check", self.root, "--env", env, "-o", "json", "--trust", TRUST, "--audit-log", self.log])
        return code, json.loads(out) if out.strip().startswith("{") else {"allowed": False}

    def with_manifest_leaf(self, index, how):
        path = self.leaves[index % len(self.leaves)]
        doc = json.loads(json.dumps(self.doc, default=str))
        node = doc
        for key in path:
            node = node[key]
        _set(doc, path, _mutated(node, how))
        (self.root / "mlgate.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        return ".".join(map(str, path))

    def with_file_byte(self, index, offset):
        path = self.files[index % len(self.files)]
        data = bytearray(path.read_bytes())
        original = bytes(data)
        if data:
            data[offset % len(data)] ^= 0x01
        else:
            data = bytearray(b"x")
        path.write_bytes(bytes(data))
        return path, original

    def restore_manifest(self):
        (self.root / "mlgate.yaml").write_text(self.manifest)


@pytest.fixture
def allowed(tmp_path):
    release = Release(tmp_path, "readmission-risk")
    code, decision = release.decide("production")
    assert code == 0, decision.get("violations")
    return release


@pytest.fixture
def denied(tmp_path):
    release = Release(tmp_path, "triage-acuity")
    code, _ = release.decide("production")
    assert code == 1
    return release


@SETTINGS
@given(index=st.integers(min_value=0, max_value=10_000), how=st.integers(min_value=0, max_value=2))
def test_no_manifest_mutation_keeps_an_allow(allowed, index, how):
    where = allowed.with_manifest_leaf(index, how)
    try:
        code, decision = allowed.decide("production")
        assert code != 0, f"mutating {where} kept the allow"
    finally:
        allowed.restore_manifest()


@SETTINGS
@given(index=st.integers(min_value=0, max_value=10_000), offset=st.integers(min_value=0, max_value=1 << 20))
def test_no_file_byte_flip_keeps_an_allow(allowed, index, offset):
    path, original = allowed.with_file_byte(index, offset)
    try:
        code, _ = allowed.decide("production")
        assert code != 0, f"flipping a byte of {path.relative_to(allowed.root)} kept the allow"
    finally:
        path.write_bytes(original)


@SETTINGS
@given(index=st.integers(min_value=0, max_value=10_000), how=st.integers(min_value=0, max_value=2))
def test_no_manifest_mutation_turns_a_deny_into_an_allow(denied, index, how):
    where = denied.with_manifest_leaf(index, how)
    try:
        code, _ = denied.decide("production")
        assert code != 0, f"mutating {where} turned the deny into an allow"
    finally:
        denied.restore_manifest()


@SETTINGS
@given(index=st.integers(min_value=0, max_value=10_000), offset=st.integers(min_value=0, max_value=1 << 20))
def test_no_file_byte_flip_turns_a_deny_into_an_allow(denied, index, offset):
    path, original = denied.with_file_byte(index, offset)
    try:
        code, _ = denied.decide("production")
        assert code != 0, f"flipping a byte of {path.relative_to(denied.root)} turned the deny into an allow"
    finally:
        path.write_bytes(original)


def test_every_manifest_field_is_reached(allowed):
    """The leaf enumeration covers the fields the decision reads (so the property is not vacuous)."""
    fields = {".".join(map(str, p[:2])) for p in allowed.leaves}
    for wanted in ("metadata.name", "metadata.version", "metadata.owner", "spec.model", "spec.datasets", "spec.evidence",
                   "spec.provenance", "spec.lineage", "spec.privacy"):
        assert wanted in fields

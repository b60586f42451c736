"""The input document's canonical JSON, assembled from facts serialised once (the webhook's path)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from conftest import EXAMPLES

from mlgate import evidence
from mlgate.canonical import canonical_json
from mlgate.inputdoc import Request, build_input, canonical_input
from mlgate.manifest import load_release
from mlgate.signing.trust import load_trust_policy

RELEASES = sorted(p.parent.name for p in EXAMPLES.glob("*/mlgate.yaml"))


@pytest.fixture(scope="module")
def trust():
    return load_trust_policy(EXAMPLES / "trust.yaml")


@pytest.mark.parametrize("name", RELEASES)
def test_assembled_bytes_are_canonical_json(name, trust):
    release = load_release(EXAMPLES / name)
    facts = evidence.collect(release, trust)
    for environment in ("dev", "staging", "production"):
        now = dt.datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)
        request = Request(source="admission", user="system:serviceaccount:ml:deployer", namespace="ml", operation="CREATE", groups=("g",))
        doc = build_input(release=release, facts=facts, environment=environment, now=now, request=request)
        assert canonical_input(doc, facts) == canonical_json(doc)
        assert canonical_input(doc, facts) == canonical_json(doc)  # the second time from the facts' serialisation


def test_a_fact_replaced_in_the_document_is_serialised_as_it_is(trust):
    """Only the very objects the Facts hold are taken from their serialisation."""
    release = load_release(EXAMPLES / RELEASES[0])
    facts = evidence.collect(release, trust)
    doc = build_input(release=release, facts=facts, environment="production", now=dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc), request=Request())
    canonical_input(doc, facts)  # fills the facts' serialisation
    doc["evidence"] = copy.deepcopy(doc["evidence"])
    doc["evidence"]["model_card"] = None
    assert canonical_input(doc, facts) == canonical_json(doc)
    assert b'"model_card":null' in canonical_input(doc, facts)


def test_non_finite_numbers_are_refused_as_before(trust):
    release = load_release(EXAMPLES / RELEASES[0])
    facts = evidence.collect(release, trust)
    facts.model["size_bytes"] = float("nan")
    doc = build_input(release=release, facts=facts, environment="production", now=dt.datetime(2026, 12, 6, tzinfo=dt.timezone.utc), request=Request())
    with pytest.raises(ValueError):
        canonical_input(doc, facts)

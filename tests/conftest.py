from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

os.environ.pop("RUST_BACKTRACE", None)

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(__file__).resolve().parent / "assets"
EXAMPLES = REPO / "examples"
# The instant the acceptance tests evaluate at: examples are dated relative to it, so
# the suite does not rot as the calendar moves.
EXAMPLES_NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def asset():
    def _asset(name: str) -> Path:
        path = ASSETS / name
        assert path.exists(), f"missing test asset {name}"
        return path

    return _asset

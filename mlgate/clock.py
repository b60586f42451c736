"""Injected time and decision ids: nothing else in mlgate reads the wall clock."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Callable, Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime: ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class FixedClock:
    at: dt.datetime

    def now(self) -> dt.datetime:
        return self.at


IdFactory = Callable[[], str]


def uuid4_ids() -> str:
    return str(uuid.uuid4())


def rfc3339(ts: dt.datetime) -> str:
    """UTC RFC 3339 with a trailing Z, microsecond precision when present."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: mlgate only handles timezone-aware times")
    ts = ts.astimezone(dt.timezone.utc)
    return ts.isoformat().replace("+00:00", "Z")


def epoch_ns(ts: dt.datetime) -> int:
    ts = ts.astimezone(dt.timezone.utc)
    delta = ts - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def parse_time(value: str) -> dt.datetime:
    """Parse an RFC 3339 / ISO 8601 timestamp; a naive one is rejected."""
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone")
    return parsed.astimezone(dt.timezone.utc)

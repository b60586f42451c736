from __future__ import annotations

from mlgate.gate import Decision
from mlgate.safeio import dumps_json


def render(decision: Decision) -> str:
    return dumps_json(decision.as_dict(), indent=2, sort_keys=True)

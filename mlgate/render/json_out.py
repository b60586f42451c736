from __future__ import annotations

import json

from mlgate.gate import Decision


def render(decision: Decision) -> str:
    return json.dumps(decision.as_dict(), indent=2, sort_keys=True, ensure_ascii=False)

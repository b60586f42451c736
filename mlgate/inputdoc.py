"""The input document ``mlgate.dev/input/v1`` (docs/input-document.md): facts only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mlgate.clock import epoch_ns, rfc3339
from mlgate.evidence import Facts
from mlgate.manifest import Release

INPUT_VERSION = "mlgate.dev/input/v1"


@dataclass(frozen=True)
class Request:
    source: str = "cli"  # cli | admission
    user: str | None = None
    namespace: str | None = None
    operation: str = "promote"
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "user": self.user, "namespace": self.namespace, "operation": self.operation, "dry_run": self.dry_run}


def build_input(*, release: Release, facts: Facts, environment: str, now: dt.datetime, request: Request) -> dict[str, Any]:
    return {
        "apiVersion": INPUT_VERSION,
        "environment": environment,
        "evaluated_at": rfc3339(now),
        "evaluated_at_ns": epoch_ns(now),
        "request": request.as_dict(),
        "release": {
            "name": release.name,
            "version": release.version,
            "owner": release.owner,
            "manifest_digest": release.manifest_digest,
        },
        "model": facts.model,
        "datasets": facts.datasets,
        "evidence_files": facts.evidence_files,
        "evidence": facts.evidence,
    }

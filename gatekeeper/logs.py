"""The webhook's log: one line per admission (``mlgate.admission``), plus uvicorn's and mlgate's own.

``mlgate serve --log-format json`` writes every line as one JSON object (stdlib ``logging`` with
:class:`JsonFormatter`), so a platform's log pipeline can parse it; an admission line carries
``time``, ``decision_ids``, ``uid``, ``kind``, ``namespace``, ``name``, ``environment``,
``mode``, ``result`` (the gate's verdict), ``admission`` (admitted | refused), ``latency_ms``
and ``rule_ids``. ``text`` writes the same fields as ``key=value`` pairs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

ADMISSION_LOGGER = "mlgate.admission"
#: Fields of an admission line, in the order the text format prints them.
FIELDS = ("uid", "kind", "namespace", "name", "environment", "mode", "result", "admission", "latency_ms", "decision_ids", "rule_ids", "dry_run")


def _time(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the admission's fields, an exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"time": _time(record), "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        fields = getattr(record, "admission", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname:<7} {record.getMessage()}"
        fields = getattr(record, "admission", None)
        if isinstance(fields, dict):
            parts = []
            for key in FIELDS:
                value = fields.get(key)
                if isinstance(value, list):
                    value = ",".join(map(str, value))
                if value not in (None, ""):
                    parts.append(f"{key}={value}")
            line += " " + " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn's ``log_config``: uvicorn's loggers and mlgate's on stderr."""
    formatter = "mlgate.gatekeeper.logs.JsonFormatter" if log_format == "json" else "mlgate.gatekeeper.logs.TextFormatter"
    level = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {"default": handler},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["default"], "level": level, "propagate": False},
            "mlgate": {"handlers": ["default"], "level": level, "propagate": False},
        },
    }


def admission_fields(*, uid: str, kind: str, namespace: str | None, name: str | None, environment: str, mode: str | None, result: str,
                     admitted: bool, latency_s: float, decisions: list[Any], dry_run: bool) -> dict[str, Any]:
    rule_ids: list[str] = []
    for decision in decisions:
        for finding in list(getattr(decision, "violations", ()) or ()) + list(getattr(decision, "warnings", ()) or ()):
            if finding.id not in rule_ids:
                rule_ids.append(finding.id)
    return {"uid": uid, "kind": kind, "namespace": namespace, "name": name, "environment": environment, "mode": mode, "result": result,
            "admission": "admitted" if admitted else "refused", "latency_ms": round(latency_s * 1000, 3),
            "decision_ids": [d.decision_id for d in decisions], "rule_ids": rule_ids, "dry_run": dry_run}

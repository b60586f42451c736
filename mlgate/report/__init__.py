"""``mlgate audit report``: the trail of one model release as one self-contained HTML page.

:func:`build_report` gathers (:mod:`mlgate.report.gather`) and renders
(:mod:`mlgate.report.page`); :mod:`mlgate.report.chromium` prints it to PDF.

May import the audit trail (it reads one), the evidence readers, signing, the manifest and the
policy loader; never the gate's evaluation path or the doors.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from mlgate.errors import InputError


def build_report(trail: Any, release: str, *, now: dt.datetime, release_dir: Path | None = None, policy_dir: Path | None = None,
                 trust_path: Path | None = None, checkpoints: tuple[Path, ...] = ()):
    """(html text, the gathered ReportData)."""
    from mlgate.report.gather import gather
    from mlgate.report.page import render

    data = gather(trail, release, now=now, release_dir=release_dir, policy_dir=policy_dir, trust_path=trust_path, checkpoint_extra=checkpoints)
    return render(data), data


def write_atomically(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise InputError(f"cannot write the report: {exc.strerror or exc}", file=str(path)) from None

"""Progress of long hashing on stderr, only when it is a terminal (issue 19 part 6)."""

from __future__ import annotations

import logging
import sys

from mlgate.evidence.model_digest import compute_model_digest
from mlgate.progress import MIN_BYTES, Progress


def _big_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    with (model / "weights.bin").open("wb") as fh:  # sparse: quick to make, hashed in full
        fh.truncate(MIN_BYTES + 1024 * 1024)
    (model / "config.json").write_text("{}")
    return model


def test_hashing_a_large_model_reports_progress_to_a_listener(tmp_path, caplog):
    model = _big_model(tmp_path)
    with caplog.at_level(logging.INFO, logger="mlgate.progress"):
        compute_model_digest(model, max_workers=1)
    lines = [r.getMessage() for r in caplog.records if r.name == "mlgate.progress"]
    assert lines and lines[-1].endswith("(100%)"), lines
    assert all(line.startswith("hashing the model model:") for line in lines)


def test_small_work_and_no_listener_report_nothing(tmp_path, caplog):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w").write_bytes(b"x" * 1000)
    with caplog.at_level(logging.INFO, logger="mlgate.progress"):
        compute_model_digest(tmp_path / "m")
    assert not [r for r in caplog.records if r.name == "mlgate.progress"]
    with caplog.at_level(logging.INFO, logger="mlgate.progress"):
        assert Progress("x", MIN_BYTES - 1).enabled is False  # small work: nothing, even with a listener
        assert Progress("x", MIN_BYTES).enabled is True
    logging.getLogger("mlgate.progress").setLevel(logging.WARNING)
    try:
        assert Progress("x", 10 * MIN_BYTES).enabled is False  # nobody listening: nothing
    finally:
        logging.getLogger("mlgate.progress").setLevel(logging.NOTSET)


def test_the_cli_shows_progress_only_on_a_terminal(monkeypatch):
    from mlgate import cli

    logger = logging.getLogger("mlgate.progress")
    before = list(logger.handlers)
    try:
        monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
        cli._show_progress()
        assert logger.handlers == before
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
        cli._show_progress()
        assert len(logger.handlers) == len(before) + 1 and logger.isEnabledFor(logging.INFO)
    finally:
        logger.handlers[:] = before
        logger.setLevel(logging.NOTSET)
        logger.propagate = True

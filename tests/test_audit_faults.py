"""Failure behaviour (issue 4, part 8): when the sink cannot write (disk full, file size limit,
permission denied, PostgreSQL down), the decision is an error with a one-line message, and
nothing already written is damaged."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlgate.audit import FileAuditSink, open_sink
from mlgate.audit.verify import FileTrail, verify_trail
from mlgate.errors import AuditError

from cli_helpers import run
from conftest import EXAMPLES, require_service

RELEASE = EXAMPLES / "readmission-risk"


def _seed(log: Path, n: int = 3) -> bytes:
    sink = FileAuditSink(log)
    for i in range(n):
        sink.append({"decision_id": f"seed-{i}"})
    return log.read_bytes()


def _intact(log: Path, n: int) -> None:
    result = verify_trail(FileTrail(log))
    assert result.ok and result.records == n, result.problem


def _one_line_error(err: str, *needles: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


# -- full filesystem ------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 512 KiB tmpfs (needs root and mount rights; skipped where mounting is not allowed)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the RLIMIT_FSIZE test covers a full disk")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(directory: Path) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_full_filesystem_denies_and_keeps_the_log(small_fs):
    log = small_fs / "audit.jsonl"
    before = _seed(log)
    _fill(small_fs)
    # The stored input document (its facts, content-addressed beside the log) does not fit: the
    # decision fails before its record is written.
    code, out, err = run(["check", RELEASE, "--env", "production", "--audit-log", log, "--audit-input", "store"])
    assert code == 2 and "ERROR" in out.upper()
    _one_line_error(err, "audit record not written", str(small_fs / "evidence"), "No space left on device", "nothing was appended")
    assert log.read_bytes() == before
    _intact(log, 3)


def test_full_filesystem_while_retaining_evidence(small_fs):
    log = small_fs / "audit.jsonl"
    before = _seed(log)
    _fill(small_fs)
    code, _, err = run(["check", RELEASE, "--env", "production", "--audit-log", log, "--retain-evidence"])
    assert code == 2
    _one_line_error(err, "cannot retain evidence", "No space left on device")
    assert log.read_bytes() == before
    assert not [p for p in (small_fs / "evidence").rglob("*") if p.name.endswith(".tmp")]


def test_file_size_limit_denies_and_keeps_the_log(tmp_path):
    """RLIMIT_FSIZE in a child process: the write stops part-way (EFBIG); the partial record is
    cut off again, so the log still ends with a whole, verifiable record."""
    log = tmp_path / "audit.jsonl"
    before = _seed(log)
    script = (
        "import resource, sys\n"
        "from mlgate.cli import main\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 700}, resource.RLIM_INFINITY))\n"
        f"main(['check', {str(RELEASE)!r}, '--env', 'production', '--audit-log', {str(log)!r}])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    _one_line_error(proc.stderr, "audit record not written", "File too large", "nothing was appended")
    assert log.read_bytes() == before
    _intact(log, 3)


# -- permission denied ----------------------------------------------------------------------


def _as_nobody(fn):
    """Run ``fn`` in a forked child without root's privileges (root ignores file modes); return its result."""
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            payload = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001
            payload = ("raised", f"{type(exc).__name__}: {exc}")
        with os.fdopen(w, "wb") as fh:
            fh.write(pickle.dumps(payload))
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return pickle.loads(data)


def test_permission_denied_on_the_log(tmp_path):
    log = tmp_path / "audit.jsonl"
    before = _seed(log)
    os.chmod(tmp_path, 0o755)
    os.chmod(log, 0o444)
    run(["check", RELEASE, "--env", "production", "--audit-log", tmp_path / "warm.jsonl"])  # import everything before the fork
    # What a check may import lazily when a per-user cache is not readable (the child runs as nobody,
    # who may not read root's cache or, here, root's site-packages): imported before the fork.
    import jsonschema  # noqa: F401
    from statsmodels.stats import multitest, proportion  # noqa: F401

    def attempt(*extra):
        code, out, err = run(["check", RELEASE, "--env", "production", "--audit-log", log, *extra])
        return code, err

    # The log itself (inputs not stored, so the log is the first thing written):
    status, (code, err) = _as_nobody(lambda: attempt("--audit-input", "erase"))
    assert status == "ok" and code == 2
    _one_line_error(err, "audit record not written", str(log), "cannot open the audit log: Permission denied")
    assert log.read_bytes() == before
    # With inputs stored (the default), the content-addressed store beside the log is written
    # first: the same one-line refusal, naming it, and still nothing appended.
    status, (code, err) = _as_nobody(attempt)
    assert status == "ok" and code == 2
    _one_line_error(err, "audit record not written", "Permission denied")
    assert log.read_bytes() == before


def test_permission_denied_on_the_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(locked, 0o555)

    def attempt():
        try:
            FileAuditSink(locked / "audit.jsonl").append({"decision_id": "x"})
        except AuditError as exc:
            return str(exc)
        return "appended"

    status, message = _as_nobody(attempt)
    assert status == "ok" and "cannot open the audit log: Permission denied" in message
    assert not (locked / "audit.jsonl").exists()


# -- PostgreSQL down ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_postgresql_closed_port(tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{_free_port()}/mlgate"
    started = time.monotonic()
    with open_sink(url, timeout=2) as sink, pytest.raises(AuditError) as info:
        sink.append({"decision_id": "x"})
    assert time.monotonic() - started < 10
    assert "cannot connect to PostgreSQL" in str(info.value) and "Connection refused" in str(info.value) and "\n" not in str(info.value)
    code, out, err = run(["check", RELEASE, "--env", "production", "--audit", url])
    assert code == 2
    _one_line_error(err, "audit record not written", url, "Connection refused")


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def own_server(tmp_path):
    """A PostgreSQL server this test starts and stops (initdb refuses root: run as postgres)."""
    bindir = _pg_bin()
    if os.geteuid() != 0:
        pytest.skip("needs root (to run initdb and pg_ctl as the postgres user)")
    if bindir is None or shutil.which("runuser") is None:
        require_service("PostgreSQL server binaries", "initdb and pg_ctl under /usr/lib/postgresql/*/bin, and runuser (apt-get install postgresql)")
    base = Path("/tmp") / f"mlgate-pg-{os.getpid()}-{time.monotonic_ns()}"  # /tmp: the postgres user must reach it
    base.mkdir()
    shutil.chown(base, "postgres")
    port = _free_port()
    data = base / "data"

    def as_pg(*args):
        return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, args)], capture_output=True, text=True, timeout=60)

    init = as_pg(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres")
    assert init.returncode == 0, init.stderr

    def start():
        p = as_pg(bindir / "pg_ctl", "-D", data, "-l", base / "log", "-w", "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        assert p.returncode == 0, p.stderr

    def stop():
        p = as_pg(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        assert p.returncode == 0, p.stderr

    start()
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", start, stop
    finally:
        as_pg(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_postgresql_server_stopped_and_restarted(own_server):
    url, start, stop = own_server
    sink = open_sink(url, timeout=2)
    try:
        first = [sink.append({"decision_id": f"d{i}"}) for i in range(2)]
        stop()
        with pytest.raises(AuditError) as info:
            sink.append({"decision_id": "while-down"})
        message = str(info.value)
        assert "\n" not in message and url in message and ("cannot connect" in message or "cannot write" in message), message
        code, _, err = run(["check", RELEASE, "--env", "production", "--audit", url])
        assert code == 2
        _one_line_error(err, "audit record not written", "cannot connect to PostgreSQL")
        start()
        after = sink.append({"decision_id": "after"})  # the pool recovers; the chain goes on
        assert after.sequence == 3
    finally:
        sink.close()
    from mlgate.audit.verify import PostgresTrail

    trail = PostgresTrail(url)
    try:
        result = verify_trail(trail)
    finally:
        trail.close()
    assert result.ok and result.records == 3 and first[0].sequence == 1

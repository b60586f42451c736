"""Fault injection with figures (issue 16 part 5): no decision without a record, whatever breaks.

Runs decisions through the gate in-process (as ``mlgate check`` does, one file trail shared by
several writer processes) and through a real webhook (``mlgate serve`` over TLS), while injecting:

  cli-sigkill      SIGKILL of one of three writer processes mid-batch (file trail)
  cli-disk-full    the trail on a 256 KiB tmpfs that fills up, then frees (needs mount rights)
  cli-fifo         a release whose evidence file is a FIFO (nobody writes to it)
  pg-restart       PostgreSQL restarted mid-run (pg_ctlcluster; needs the rights and MLGATE_TEST_PG)
  webhook-poison   concurrent admissions, one in eight naming a release with a lone surrogate in
                   its manifest, one in eight a release with a FIFO as evidence
  webhook-sigkill  SIGKILL of the webhook mid-batch, restarted on the same trail

For each it prints the requests sent, the decisions returned, the records written, the decisions
refused because the trail could not be written (fail closed: an error decision, never an allow),
the decisions recorded but never answered (in flight when a process was killed), and the
verification of the chain (a torn last line left by a kill is repaired with ``mlgate audit
repair`` and verified again). It checks, per injection: every decision returned is recorded
exactly once (matched by decision id or admission uid), every record is a decision returned or
one in flight at a kill, nothing refused was an allow, and the chain verifies. The last line is
the summary; exit 0 when every injection that ran holds.

    python benchmarks/faults.py               # default: about 1 to 2 minutes on 2 CPUs
    python benchmarks/faults.py --quick       # tiny N, the cheap injections only (tests/test_faults_script.py)
    python benchmarks/faults.py --only cli-sigkill,webhook-poison -n 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
EXAMPLES = REPO / "examples"
TRUST = EXAMPLES / "trust.yaml"
RELEASE = EXAMPLES / "readmission-risk"
INJECTIONS = ("cli-sigkill", "cli-disk-full", "cli-fifo", "pg-restart", "webhook-poison", "webhook-sigkill")
QUICK = ("cli-sigkill", "cli-fifo", "webhook-poison")


@dataclass
class Outcome:
    name: str
    sent: int = 0
    returned: int = 0
    records: int = 0
    refused: int = 0  # returned as an error because the trail could not be written (cannot be recorded)
    in_flight: int = 0  # recorded, never answered: the process was killed after the write
    verify: str = "-"
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0
    results: str = ""  # what the decisions returned were
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.skipped is not None or not self.problems


# --------------------------------------------------------------------------- shared helpers
def _options(user: str):
    from mlgate.gate import GateOptions
    from mlgate.inputdoc import Request
    from mlgate.settings import Settings

    return GateOptions(environment="staging", trust_policy=TRUST, timeout_s=0, settings=Settings(),
                       request=Request(source="cli", user=user, operation="promote"))


def _records(url: str) -> list[dict]:
    from mlgate.audit.trail import iter_records, open_trail

    trail = open_trail(url)
    try:
        return [rec for _w, _raw, rec in iter_records(trail)]
    finally:
        trail.close()


def _verify(url: str, out: Outcome) -> None:
    """Verify; a torn last line (a kill mid-write) is repaired and verified again."""
    from mlgate.audit.trail import open_trail
    from mlgate.audit.verify import verify_trail

    trail = open_trail(url)
    try:
        result = verify_trail(trail)
    finally:
        trail.close()
    if result.status == "torn" and url.startswith("file:"):
        from mlgate.audit.repair import repair_torn
        from mlgate.clock import SystemClock

        repair_torn(Path(url[5:]), now=SystemClock().now(), ids=lambda: str(uuid.uuid4()), actor="faults.py")
        trail = open_trail(url)
        try:
            again = verify_trail(trail)
        finally:
            trail.close()
        out.verify = f"torn -> repaired -> {again.status} ({again.records} records)"
        if not again.ok:
            out.problems.append(f"after repair: {again.problem}")
        return
    out.verify = f"{result.status} ({result.records} records)"
    if not result.ok:
        out.problems.append(f"verify: {result.status}: {result.problem}")


def _match(out: Outcome, returned: dict[str, str], recorded: list[str], killed: set[str] | None = None) -> None:
    """returned: key -> result of each decision answered; recorded: the key of each record.
    ``killed``: keys that may be recorded without an answer (their process died)."""
    counts: dict[str, int] = {}
    for key in recorded:
        counts[key] = counts.get(key, 0) + 1
    out.returned, out.records = len(returned), len(recorded)
    tally: dict[str, int] = {}
    for r in returned.values():
        tally[r] = tally.get(r, 0) + 1
    out.results = " ".join(f"{k} {v}" for k, v in sorted(tally.items()))
    dup = [k for k, n in counts.items() if n > 1]
    if dup:
        out.problems.append(f"{len(dup)} decision(s) recorded twice, e.g. {dup[0]}")
    missing = [k for k, r in returned.items() if k not in counts and r != "refused"]
    if missing:
        out.problems.append(f"{len(missing)} decision(s) returned without a record, e.g. {missing[0]}")
    out.refused = sum(1 for k, r in returned.items() if r == "refused")
    extra = [k for k in counts if k not in returned]
    out.in_flight = sum(1 for k in extra if killed is not None and k in killed)
    stray = [k for k in extra if killed is None or k not in killed]
    if stray:
        out.problems.append(f"{len(stray)} record(s) of no decision, e.g. {stray[0]}")
    if out.returned - out.refused + out.in_flight != out.records:
        out.problems.append(f"records {out.records} != decisions recorded {out.returned - out.refused} + in flight {out.in_flight}")


# --------------------------------------------------------------------------- in-process writers
def writer_main(audit_url: str, count: int, tag: str, release: str) -> None:
    """One writer process: prepare once, then decide ``count`` times, one line per decision returned."""
    from mlgate.audit import open_sink
    from mlgate.gate import check, prepare

    options = _options(tag)
    prepared = prepare(options)
    sink = open_sink(audit_url)
    print("READY", flush=True)
    for _ in range(count):
        d = check(release, options, sink, prepared=prepared)
        print(d.decision_id, "refused" if d.audit is None else d.result, flush=True)


def cli_sigkill(n: int, tmp: Path) -> Outcome:
    out = Outcome("cli-sigkill")
    url = f"file:{tmp / 'sigkill.jsonl'}"
    per = max(n // 3, 4)
    procs = [subprocess.Popen([sys.executable, __file__, "--writer", url, str(per), f"w{i}", str(RELEASE)], stdout=subprocess.PIPE,
                              text=True, cwd=REPO) for i in range(3)]
    lines: list[list[str]] = [[] for _ in procs]

    def pump(i: int) -> None:
        for line in procs[i].stdout:
            lines[i].append(line.split())
    threads = [threading.Thread(target=pump, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(lines[0]) < 1 + per // 3:  # READY, then a third of its batch
        if time.monotonic() > deadline or procs[0].poll() is not None:
            break
        time.sleep(0.005)
    procs[0].send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(timeout=300)
    for t in threads:
        t.join(timeout=10)
    out.sent = 3 * per
    returned = {x[0]: x[1] for ls in lines for x in ls if len(x) == 2}
    recs = _records(url)
    killed = {r["decision_id"] for r in recs if r.get("actor") == "w0"}
    _verify(url, out)
    _match(out, returned, [r["decision_id"] for r in recs if "decision_id" in r], killed)
    if out.returned >= out.sent:
        out.problems.append("the writer was not killed mid-batch")
    return out


def _decide(options, prepared, sink, release, count: int) -> dict[str, str]:
    from mlgate.gate import check

    returned = {}
    for _ in range(count):
        d = check(release, options, sink, prepared=prepared)
        returned[d.decision_id] = "refused" if d.audit is None else d.result
        if d.audit is None and d.result == "allow":
            raise AssertionError("a decision that could not be recorded was an allow")
    return returned


def cli_disk_full(n: int, tmp: Path) -> Outcome:
    from mlgate.audit import open_sink
    from mlgate.gate import prepare

    out = Outcome("cli-disk-full")
    mnt = tmp / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        out.skipped = f"cannot mount a tmpfs here: {(proc.stderr or proc.stdout).strip() or 'exit ' + str(proc.returncode)}"
        return out
    try:
        url = f"file:{mnt / 'audit.jsonl'}"
        phase = min(max(n // 4, 5), 20)  # three phases; 60 records fit in 256 KiB with room to spare
        options = _options("disk-full")
        prepared = prepare(options)
        sink = open_sink(url)
        returned = _decide(options, prepared, sink, RELEASE, phase)
        # fill the disk, leaving less than one record's room
        with open(mnt / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 4096)
            except OSError:
                pass
        full = _decide(options, prepared, sink, RELEASE, phase)
        if not any(r == "refused" for r in full.values()):
            out.problems.append("the disk never filled up")
        returned.update(full)
        out.note = f"disk full: {sum(1 for r in full.values() if r == 'refused')} of {len(full)} refused (error, unrecorded), then space freed"
        (mnt / "filler").unlink()
        returned.update(_decide(options, prepared, sink, RELEASE, phase))
        out.sent = len(returned)
        recs = _records(url)
        _verify(url, out)
        _match(out, returned, [r["decision_id"] for r in recs])
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True)
    return out


def _fifo_release(root: Path, name: str) -> Path:
    """A copy of the example release, renamed, whose bias audit is a FIFO nobody writes to."""
    target = root / name
    shutil.copytree(RELEASE, target, symlinks=True)
    manifest = target / "mlgate.yaml"
    manifest.write_text(manifest.read_text().replace("name: readmission-risk", f"name: {name}", 1))
    (target / "evidence" / "bias_audit.json").unlink()
    os.mkfifo(target / "evidence" / "bias_audit.json")
    return target


def _poisoned_release(root: Path, name: str) -> Path:
    """A copy whose owner ends in a lone surrogate (YAML "\\uD800")."""
    target = root / name
    shutil.copytree(RELEASE, target, symlinks=True)
    manifest = target / "mlgate.yaml"
    text = manifest.read_text().replace("name: readmission-risk", f"name: {name}", 1)
    lines = [(line.split("owner:")[0] + 'owner: "ml-platform\\uD800"') if line.strip().startswith("owner:") else line
             for line in text.splitlines()]
    manifest.write_text("\n".join(lines) + "\n")
    return target


def cli_fifo(n: int, tmp: Path) -> Outcome:
    from mlgate.audit import open_sink
    from mlgate.gate import prepare

    out = Outcome("cli-fifo")
    release = _fifo_release(tmp / "fifo-releases", "fifo-evidence")
    url = f"file:{tmp / 'fifo.jsonl'}"
    options = _options("fifo")
    prepared = prepare(options)
    sink = open_sink(url)
    returned: dict[str, str] = {}
    for i in range(max(n // 4, 4)):  # alternate the FIFO release with the normal one
        returned.update(_decide(options, prepared, sink, release if i % 2 == 0 else RELEASE, 1))
    out.sent = len(returned)
    recs = _records(url)
    fifo = [r for r in recs if (r.get("release") or {}).get("name") == "fifo-evidence" or "FIFO" in json.dumps(r)]
    if any(r.get("result") == "allow" for r in fifo):
        out.problems.append("a release with a FIFO as evidence was allowed")
    _verify(url, out)
    _match(out, returned, [r["decision_id"] for r in recs])
    return out


def pg_restart(n: int, tmp: Path) -> Outcome:
    out = Outcome("pg-restart")
    base = os.environ.get("MLGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        out.skipped = "pg_lsclusters/pg_ctlcluster not installed"
        return out
    clusters = [line.split() for line in subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout.splitlines()]
    online = [c for c in clusters if len(c) >= 4 and c[3] == "online"]
    if not online:
        out.skipped = "no PostgreSQL cluster online"
        return out
    version, cluster = online[0][0], online[0][1]
    try:
        import psycopg

        name = f"mlgate_faults_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 - no server, no rights: say why
        out.skipped = f"PostgreSQL not usable at {base}: {' '.join(str(exc).split())[:120]}"
        return out
    url = base.rsplit("/", 1)[0] + f"/{name}"
    from mlgate.audit import open_sink
    from mlgate.gate import prepare

    options = _options("pg")
    prepared = prepare(options)
    sink = open_sink(url, timeout=2.0)
    returned: dict[str, str] = {}
    restart: dict[str, object] = {}

    def restarter() -> None:
        while len(returned) < max(n // 6, 3):
            time.sleep(0.01)
        restart["at"] = len(returned)
        started = time.monotonic()
        p = subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, cluster, "restart"], capture_output=True, text=True)
        restart["rc"], restart["err"] = p.returncode, (p.stderr or p.stdout).strip()
        restart["secs"], restart["after"] = time.monotonic() - started, len(returned)
    t = threading.Thread(target=restarter)
    t.start()
    try:
        from mlgate.gate import check

        deadline = time.monotonic() + 120
        while (t.is_alive() or len(returned) < max(n // 2, 8)) and time.monotonic() < deadline:
            d = check(RELEASE, options, sink, prepared=prepared)
            returned[d.decision_id] = "refused" if d.audit is None else d.result
            if d.audit is None and d.result == "allow":
                out.problems.append("a decision that could not be recorded was an allow")
        t.join()
        if restart.get("rc") != 0:
            out.skipped = f"pg_ctlcluster restart not permitted: {restart.get('err') or restart.get('rc')}"
        out.sent = len(returned)
        out.note = (f"restarted after decision {restart.get('at')}, took {restart.get('secs', 0):.1f} s, "
                    f"{restart.get('after', 0) - restart.get('at', 0)} decision(s) returned during it")
        sink.close()
        _verify(url, out)
        _match(out, returned, [r["decision_id"] for r in _records(url)])
    finally:
        try:
            with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:  # noqa: BLE001 - cleanup only
            pass
    return out


# --------------------------------------------------------------------------- the webhook
def _body(uid: str, release: str) -> bytes:
    doc = json.loads((REPO / "tests" / "assets" / "admission" / "deployment-create-v1.json").read_text())
    doc["request"]["uid"] = uid
    doc["request"]["object"]["spec"]["template"]["metadata"].setdefault("annotations", {})["mlgate.dev/release"] = release
    return json.dumps(doc).encode()


async def _admit(port: int, ctx: ssl.SSLContext, jobs: list[tuple[str, str]], concurrency: int, answers: dict[str, str]) -> None:
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            uid, release = queue.get_nowait()
            body = _body(uid, release)
            head = (f"POST /v1/admit/staging?timeout=10s HTTP/1.1\r\nHost: mlgate\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 10)
                writer.write(head + body)
                await writer.drain()
                data = await asyncio.wait_for(reader.read(), 30)
                writer.close()
            except (OSError, asyncio.TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
                continue  # no answer: the server was killed (the apiserver would fail the admission: failurePolicy Fail)
            status = data.split(b" ", 2)[1] if data.startswith(b"HTTP/") else b"?"
            if status == b"200":
                doc = json.loads(data.split(b"\r\n\r\n", 1)[1])
                answers[uid] = "allow" if doc["response"]["allowed"] else "deny"

    await asyncio.gather(*(worker() for _ in range(concurrency)))


class Webhook:
    def __init__(self, tmp: Path, store: Path, audit: Path):
        from test_gatekeeper_support import write_certs

        certs = tmp / f"certs-{uuid.uuid4().hex[:6]}"
        certs.mkdir()
        self.ca, self.cert, self.key, _ = write_certs(certs)
        self.store, self.audit, self.proc = store, audit, None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.ctx = ssl.create_default_context(cafile=str(self.ca))

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "mlgate", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--cert", str(self.cert), "--key", str(self.key), "--evidence-store", f"file://{self.store}",
                                      "--audit", f"file:{self.audit}", "--trust", str(TRUST), "--log-level", "error", "--gate-threads", "2"],
                                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the webhook did not start: {self.proc.stderr.read().decode(errors='replace')[-400:] if self.proc.stderr else ''}")
                time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _store(tmp: Path) -> Path:
    store = tmp / "store"
    store.mkdir()
    shutil.copytree(RELEASE, store / "readmission-risk", symlinks=True)
    _poisoned_release(store, "poisoned-release")
    _fifo_release(store, "fifo-release")
    return store


def _uid_records(audit: Path) -> list[str]:
    return [((r.get("admission") or {}).get("uid") or "?") for r in _records(f"file:{audit}")]


def webhook_poison(n: int, tmp: Path) -> Outcome:
    out = Outcome("webhook-poison")
    audit = tmp / "webhook-poison.jsonl"
    hook = Webhook(tmp, _store(tmp), audit)
    hook.start()
    try:
        names = ["readmission-risk@1.4.0"] * 6 + ["poisoned-release@1.4.0", "fifo-release@1.4.0"]
        jobs = [(str(uuid.uuid4()), names[i % len(names)]) for i in range(n)]
        answers: dict[str, str] = {}
        asyncio.run(_admit(hook.port, hook.ctx, jobs, 8, answers))
    finally:
        hook.stop()
    out.sent = len(jobs)
    if len(answers) != len(jobs):
        out.problems.append(f"{len(jobs) - len(answers)} request(s) got no decision")
    bad = {uid for uid, rel in jobs if not rel.startswith("readmission-risk")}
    if any(answers.get(uid) == "allow" for uid in bad):
        out.problems.append("a poisoned or FIFO release was allowed")
    _verify(f"file:{audit}", out)
    _match(out, answers, _uid_records(audit))
    return out


def webhook_sigkill(n: int, tmp: Path) -> Outcome:
    out = Outcome("webhook-sigkill")
    audit = tmp / "webhook-sigkill.jsonl"
    hook = Webhook(tmp, _store(tmp), audit)
    hook.start()
    jobs = [(str(uuid.uuid4()), "readmission-risk@1.4.0") for _ in range(n)]
    answers: dict[str, str] = {}
    first, second = jobs[: n // 2], jobs[n // 2:]
    try:
        def killer() -> None:
            while len(answers) < max(len(first) // 3, 1):
                time.sleep(0.005)
            hook.proc.send_signal(signal.SIGKILL)
        t = threading.Thread(target=killer, daemon=True)
        t.start()
        asyncio.run(_admit(hook.port, hook.ctx, first, 8, answers))
        t.join(timeout=60)
        hook.proc.wait(timeout=30)
        before = len(answers)
        unanswered = {uid for uid, _ in first if uid not in answers}
        _verify(f"file:{audit}", out)  # the restarted webhook must be able to append: repair a torn line first
        hook.start()
        asyncio.run(_admit(hook.port, hook.ctx, second, 8, answers))
    finally:
        hook.stop()
    out.sent = len(jobs)
    if before >= len(first):
        out.problems.append("the webhook was not killed mid-batch")
    if len(answers) - before != len(second):
        out.problems.append(f"{len(second) - (len(answers) - before)} request(s) after the restart got no decision")
    first_verify = out.verify
    out.note = f"{len(first) - before} request(s) of the first half got no answer (server killed; the apiserver fails them: failurePolicy Fail)"
    _verify(f"file:{audit}", out)
    out.verify = f"after kill: {first_verify}; at the end: {out.verify}"
    _match(out, answers, [u for u in _uid_records(audit) if u != "?"], unanswered)
    return out


# --------------------------------------------------------------------------- main
RUNNERS = {"cli-sigkill": cli_sigkill, "cli-disk-full": cli_disk_full, "cli-fifo": cli_fifo, "pg-restart": pg_restart,
           "webhook-poison": webhook_poison, "webhook-sigkill": webhook_sigkill}


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--writer":
        writer_main(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="decisions per injection (default 200)")
    parser.add_argument("--quick", action="store_true", help=f"n = 12 and only {', '.join(QUICK)}")
    parser.add_argument("--only", help=f"comma-separated injections among {', '.join(INJECTIONS)}")
    args = parser.parse_args(argv)
    chosen = list(QUICK) if args.quick else list(INJECTIONS)
    if args.only:
        chosen = [x.strip() for x in args.only.split(",") if x.strip()]
        unknown = [x for x in chosen if x not in RUNNERS]
        if unknown:
            parser.error(f"unknown injection {unknown[0]!r} (known: {', '.join(INJECTIONS)})")
    n = 12 if args.quick else args.n
    tmp = Path(tempfile.mkdtemp(prefix="mlgate-faults-"))
    results: list[Outcome] = []
    print(f"{'injection':<16} {'sent':>5} {'returned':>8} {'records':>7} {'refused':>7} {'in-flight':>9} {'secs':>5}  verify")
    try:
        for name in chosen:
            started = time.monotonic()
            try:
                (tmp / name).mkdir()
                out = RUNNERS[name](n, tmp / name)
            except Exception as exc:  # noqa: BLE001 - an injection that breaks the harness is a failure, named
                out = Outcome(name, problems=[f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"])
            out.seconds = time.monotonic() - started
            results.append(out)
            if out.skipped:
                print(f"{name:<16} skipped: {out.skipped}")
                continue
            print(f"{name:<16} {out.sent:>5} {out.returned:>8} {out.records:>7} {out.refused:>7} {out.in_flight:>9} {out.seconds:>5.1f}  {out.verify}")
            print(f"{'':<16} decisions: {out.results or 'none'}" + (f"; {out.note}" if out.note else ""))
            for problem in out.problems:
                print(f"{'':<16} PROBLEM: {problem}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ran = [r for r in results if not r.skipped]
    ok = all(r.ok for r in results) and bool(ran)
    print(f"faults: {len(ran)} injection(s) run, {len(results) - len(ran)} skipped; records == decisions recorded + in flight, "
          f"chains intact: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

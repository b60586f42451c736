"""Audit trail figures (issue 4, part 9).

    python benchmarks/audit.py [--pg postgresql://postgres@127.0.0.1:5432/test] [--records N]

Prints: appends/s to the file backend with durability on (every append returns after its
fsync; group commit across concurrent callers; target >= 5,000/s), appends/s to PostgreSQL
from 4 concurrent writer processes keeping one valid chain (target >= 2,000/s), ``audit
verify`` speed (target >= 200,000 records/s) and bytes per record. Records are shaped like
real decisions (ten evidence digests, two findings). PostgreSQL figures use a database created
for the run and dropped after it; ``--pg ''`` skips them.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlgate.audit import FileAuditSink, open_sink, seal  # noqa: E402
from mlgate.audit.verify import FileTrail, PostgresTrail, verify_trail  # noqa: E402
from mlgate.canonical import canonical_json  # noqa: E402


def record(tag: str) -> dict:
    return {
        "decision_id": f"{tag}-{secrets.token_hex(8)}", "timestamp": "2026-11-29T12:00:00.123456Z", "actor": "ci@hospital.example",
        "action": "promote", "source": "cli", "namespace": None, "dry_run": False,
        "release": {"name": "readmission-risk", "version": "1.4.0", "owner": "ml-platform@hospital.example"},
        "subject_digest": "f4dea8985af4808542b9a3193991e873d215ce04228d2e6d1a085ead1980384a", "environment": "production",
        "policy_revision": "d6797571864f45f08a23ee4b4b3aa46477fb477de1d3cc998abca4eee125286f",
        "policy_git": {"commit": "3b1a462bbc1cd4e764dec3977e38ec3026aa1fb4", "dirty": False, "path": "policies"},
        "engine": "regorus", "engine_version": "0.13.0", "mlgate_version": "0.1.0",
        "input_digest": "bd1ae2de7dd7fc9297fff9416ef3b0e0801906afd5cb0e094d02195e22c77287", "erased": ["/input"],
        "evidence_digests": {f"evidence/file_{i}.json": secrets.token_hex(32) for i in range(10)}, "evidence_retained": False,
        "result": "deny",
        "violations": [{"id": "MLG-BIAS-002", "message": "recall for ethnicity=Black is 0.741 vs 0.883 for rest (gap 0.142; p_holm 5.4e-33)"},
                       {"id": "MLG-BIAS-006", "message": "recall for ethnicity=Black: gap 0.142 has 95% CI upper bound 0.169 >= delta 0.05"}],
        "warnings": [], "error": None,
    }


def _threads(sink, n_threads: int, per_thread: int, tag: str) -> None:
    recs = [[record(f"{tag}{t}") for _ in range(per_thread)] for t in range(n_threads)]
    barrier = threading.Barrier(n_threads)

    def work(batch):
        barrier.wait()
        for r in batch:
            sink.append(r)

    ts = [threading.Thread(target=work, args=(b,)) for b in recs]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def bench_file(records: int, threads: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("MLGATE_BENCH_DIR")) as d:
        log = Path(d) / "audit.jsonl"
        sink = FileAuditSink(log)
        started = time.perf_counter()
        _threads(sink, threads, records // threads, "f")
        elapsed = time.perf_counter() - started
        n = records // threads * threads
        result = verify_trail(FileTrail(log))
        assert result.ok and result.records == n, result.problem
        return n / elapsed, log.stat().st_size / n


def _pg_writer(url: str, threads: int, per_thread: int, tag: str, go) -> None:
    sink = open_sink(url)
    sink.append(record("warm"))  # connect and create the tables before the clock starts
    go.wait()
    _threads(sink, threads, per_thread, tag)
    sink.close()


def bench_pg(base: str, records: int, writers: int, threads: int) -> tuple[float, float, int]:
    import psycopg

    name = f"mlgate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + f"/{name}"
    try:
        ctx = mp.get_context("spawn")
        go = ctx.Event()
        per_thread = records // (writers * threads)
        procs = [ctx.Process(target=_pg_writer, args=(url, threads, per_thread, f"w{w}-", go)) for w in range(writers)]
        for p in procs:
            p.start()
        with psycopg.connect(url, autocommit=True) as conn:
            while True:  # every writer has connected and written its warm-up record
                try:
                    if conn.execute("SELECT count(*) FROM mlgate_audit_records").fetchone()[0] >= writers:
                        break
                except psycopg.errors.UndefinedTable:
                    pass
                time.sleep(0.05)
        started = time.perf_counter()
        go.set()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - started
        assert all(p.exitcode == 0 for p in procs)
        n = per_thread * threads * writers
        trail = PostgresTrail(url)
        try:
            result = verify_trail(trail)
        finally:
            trail.close()
        assert result.ok and result.records == n + writers, result.problem
        with psycopg.connect(url, autocommit=True) as conn:
            size = conn.execute("SELECT pg_total_relation_size('mlgate_audit_records')").fetchone()[0]
        return n / elapsed, size / (n + writers), result.records
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_verify(records: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        log = Path(d) / "audit.jsonl"
        prev, lines = "0" * 64, []
        for i in range(1, records + 1):
            s = seal(record("v"), sequence=i, prev_hash=prev)
            prev = s["hash"]
            lines.append(canonical_json(s) + b"\n")
        log.write_bytes(b"".join(lines))
        best = 0.0
        for _ in range(3):
            started = time.perf_counter()
            result = verify_trail(FileTrail(log))
            elapsed = time.perf_counter() - started
            assert result.ok and result.records == records
            best = max(best, records / elapsed)
        return best, log.stat().st_size / records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default=os.environ.get("MLGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--verify-records", type=int, default=200000)
    args = ap.parse_args()

    rate1, _ = bench_file(2000, 1)
    print(f"file, durable, 1 writer thread (no grouping possible): {rate1:10,.0f} appends/s")
    rate, size = bench_file(args.records, 64)
    print(f"file, durable, 64 writer threads, group commit:       {rate:10,.0f} appends/s  (target >= 5,000)  {size:,.0f} bytes/record")
    if args.pg:
        rate_pg1, _, _ = bench_pg(args.pg, 4000, 4, 1)
        print(f"postgresql, 4 writer processes x 1 thread:             {rate_pg1:10,.0f} appends/s  (one chain, verified)")
        rate_pg, size_pg, n = bench_pg(args.pg, args.records, 4, 16)
        print(f"postgresql, 4 writer processes x 16 threads:           {rate_pg:10,.0f} appends/s  (target >= 2,000; one chain of {n:,} verified)  "
              f"{size_pg:,.0f} bytes/record incl. indexes")
    vrate, vsize = bench_verify(args.verify_records)
    print(f"audit verify (file, {args.verify_records:,} records):                {vrate:10,.0f} records/s  (target >= 200,000)  {vsize:,.0f} bytes/record")


if __name__ == "__main__":
    main()

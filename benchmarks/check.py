"""Figures for issue #2's targets. Prints; asserts nothing (speed is measured, not unit-tested).

    python benchmarks/check.py [--runs 5] [--hash-gib 1.0] [--skip-hash]

- median wall time of `mlgate check` on each example (target < 0.5 s on a 2-core machine);
- `mlgate --help` wall time and the import time of `mlgate.cli` (target < 0.15 s);
- model hashing throughput on a directory of several files already in the page cache, as a
  fraction of this machine's limit: cores x single-core `openssl speed -evp sha256` at 16 KiB
  blocks (target >= 0.75).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = [("readmission-risk", "production"), ("triage-acuity", "production"), ("triage-acuity-v2", "production"), ("chest-xray", "staging")]
MLGATE = [sys.executable, "-m", "mlgate"]


def timed(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def median_of(n: int, cmd: list[str], **kw) -> float:
    timed(cmd, **kw)  # warm the page cache and .pyc files
    return statistics.median(timed(cmd, **kw) for _ in range(n))


def openssl_sha256_rate() -> float:
    """Single-core sha256 bytes/s at the largest block size `openssl speed` reports."""
    out = subprocess.run(["openssl", "speed", "-seconds", "2", "-evp", "sha256"], capture_output=True, text=True).stdout
    line = next(line for line in out.splitlines() if line.lower().startswith("sha256"))
    values = re.findall(r"([\d.]+)k", line)
    return float(values[-1]) * 1000


def hashing(gib: float) -> None:
    from mlgate.evidence.model_digest import compute_model_digest

    cores = os.cpu_count() or 1
    files = 8
    size = int(gib * (1 << 30)) // files
    root = Path(tempfile.mkdtemp(prefix="mlgate-bench-", dir=os.environ.get("MLGATE_BENCH_DIR")))
    try:
        model = root / "model"
        model.mkdir()
        block = os.urandom(1 << 20)
        for i in range(files):
            with open(model / f"shard-{i:02d}.safetensors", "wb") as fh:
                for _ in range(size // len(block)):
                    fh.write(block)
        total = sum(p.stat().st_size for p in model.iterdir())
        compute_model_digest(model)  # page cache warm-up
        runs = [0.0] * 3
        for i in range(3):
            start = time.perf_counter()
            compute_model_digest(model)
            runs[i] = time.perf_counter() - start
        best = min(runs)
        rate = total / best
        single = openssl_sha256_rate()
        limit = cores * single
        print(f"hashing {total / (1 << 30):.2f} GiB in {files} files: {best:.3f} s = {rate / 1e9:.2f} GB/s")
        print(f"  limit: {cores} cores x {single / 1e9:.2f} GB/s (openssl speed -evp sha256, 16 KiB blocks) = {limit / 1e9:.2f} GB/s")
        print(f"  fraction of the limit: {rate / limit:.2f} (target >= 0.75)")
    finally:
        shutil.rmtree(root)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hash-gib", type=float, default=1.0)
    parser.add_argument("--skip-hash", action="store_true")
    args = parser.parse_args()

    audit = Path(tempfile.mkdtemp(prefix="mlgate-bench-audit-")) / "audit.jsonl"
    print(f"mlgate check, median of {args.runs} runs (target < 0.5 s):")
    for name, env in EXAMPLES:
        t = median_of(args.runs, [*MLGATE, "check", f"examples/{name}", "--env", env, "--audit-log", str(audit)], cwd=REPO)
        print(f"  {name:18s} --env {env:10s} {t * 1000:7.1f} ms")
    help_t = median_of(args.runs * 2, [*MLGATE, "--help"], cwd=REPO)
    bare = median_of(args.runs * 2, [sys.executable, "-c", "pass"])
    probe = "import time; t = time.perf_counter(); import mlgate.cli; print(time.perf_counter() - t)"
    imports = statistics.median(float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout)
                                for _ in range(args.runs * 2))
    print(f"mlgate --help: {help_t * 1000:.1f} ms wall (bare interpreter {bare * 1000:.1f} ms); "
          f"import mlgate.cli: {imports * 1000:.1f} ms (target < 150 ms)")
    if not args.skip_hash:
        hashing(args.hash_gib)
    return 0


if __name__ == "__main__":
    sys.exit(main())

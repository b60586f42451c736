"""Figures for issue #2's and issue #17's targets. Prints; asserts nothing (speed is measured, not unit-tested).

    python benchmarks/check.py [--runs 5] [--hash-gib 1.0] [--skip-hash] [--baseline REV] [--only-check]

- median wall time of `mlgate check` on each example, next to a bare `python -c pass` measured
  in the same run (issue 17's target: <= 120 ms and <= 6x the bare interpreter), with the
  first run on an empty cache (MLGATE_CACHE_DIR, see mlgate.localcache) shown apart;
- with ``--baseline REV``: the same commands from the tree of git revision REV (unpacked into
  a temporary directory and imported ahead of this checkout), run alternately with the current
  tree in every round, so old and new see the same machine load;
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
MLGATE = [sys.executable, "-P", "-m", "mlgate"]  # -P: the working directory is not on sys.path (--baseline imports its own tree)


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


def baseline_tree(rev: str, into: Path) -> Path:
    """The tree of ``rev`` laid out as the installed package (cli/, gatekeeper/ and policies/
    inside mlgate/, as pyproject's package-dir maps them), to import ahead of this checkout."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for top, inside in (("cli", "cli"), ("gatekeeper", "gatekeeper"), ("policies", "policies")):
        if (into / top).is_dir() and not (into / "mlgate" / inside).exists():
            (into / top).rename(into / "mlgate" / inside)
    return into


def check_commands(args, audit: Path) -> None:
    """Median `mlgate check` per example, current tree and (optionally) a baseline revision,
    alternating in every round; a bare interpreter in the same rounds."""
    trees: list[tuple[str, dict[str, str]]] = []
    work = Path(tempfile.mkdtemp(prefix="mlgate-bench-"))
    # An installed mlgate has its .pyc files: a PYTHONDONTWRITEBYTECODE environment would make
    # every run compile each module again (~100 ms here), a cost no user pays.
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for label in ([f"baseline {args.baseline}"] if args.baseline else []) + ["current"]:
        env = dict(base_env, MLGATE_CACHE_DIR=str(work / f"cache-{len(trees)}"))
        if label != "current":
            env["PYTHONPATH"] = str(baseline_tree(args.baseline, work / "baseline"))
        trees.append((label, env))
    bare_cmd = [sys.executable, "-c", "pass"]
    print(f"mlgate check, median of {args.runs} runs after a first run on an empty cache "
          f"(targets: <= 120 ms, <= 6x a bare interpreter):")
    for name, env_name in EXAMPLES:
        cmd = [*MLGATE, "check", f"examples/{name}", "--env", env_name, "--audit-log", str(audit)]
        first = {label: timed(cmd, cwd=REPO, env=env) for label, env in trees}
        for _label, env in trees:  # the .pyc files of modules edited since they were last written
            timed(cmd, cwd=REPO, env=env)
        times: dict[str, list[float]] = {label: [] for label, _ in trees}
        bare: list[float] = []
        for _ in range(args.runs):
            bare.append(timed(bare_cmd))
            for label, env in trees:
                times[label].append(timed(cmd, cwd=REPO, env=env))
        b = statistics.median(bare)
        print(f"  {name} --env {env_name}: bare interpreter {b * 1000:.1f} ms")
        for label, _ in trees:
            t = statistics.median(times[label])
            print(f"    {label:28s} {t * 1000:7.1f} ms = {t / b:4.1f}x bare (first run, empty cache: {first[label] * 1000:.1f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hash-gib", type=float, default=1.0)
    parser.add_argument("--skip-hash", action="store_true")
    parser.add_argument("--baseline", metavar="REV", help="also time the tree of this git revision, alternating with the current one")
    parser.add_argument("--only-check", action="store_true", help="only the `mlgate check` figures")
    args = parser.parse_args()

    audit = Path(tempfile.mkdtemp(prefix="mlgate-bench-audit-")) / "audit.jsonl"
    check_commands(args, audit)
    if args.only_check:
        return 0
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

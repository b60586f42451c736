"""Admission webhook latency under open-loop load (issue #3, part 9).

    python benchmarks/webhook.py [--rates 200,500,1000,1500] [--duration 30] [--connections 64]

Starts ``mlgate serve`` (a separate process, TLS, the bundled examples as the evidence store,
a file audit trail fsync'd per record) and a load generator in this process that sends at a
fixed rate: request *i* is due at ``start + i/rate`` whatever happened to the others (open
loop), and its latency is measured from that due time, so a slow answer cannot hide the
latency of the requests queued behind it. Connections are kept alive; the evidence cache is
warmed first. The body is a Deployment CREATE as the apiserver sends it (~6 kB).

Prints p50/p95/p99/max latency and errors per rate, the highest rate whose p99 stays within
10 ms, and the server's resident memory. Every answered request is checked to be a 200
AdmissionReview with the right uid; the audit trail is checked to hold one record per request,
and ``/metrics`` (scraped several times: with ``--workers N`` any worker may answer) to count
every request of every worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def _body(uid: str) -> bytes:
    doc = json.loads((REPO / "tests" / "assets" / "admission" / "deployment-create-v1.json").read_text())
    doc["request"]["uid"] = uid
    return json.dumps(doc).encode()


def _request(port: int, uid: str) -> bytes:
    body = _body(uid)
    head = (f"POST /v1/admit/production?timeout=5s HTTP/1.1\r\nHost: mlgate.mlgate.svc:{port}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json, */*\r\nUser-Agent: kube-apiserver-admission\r\n"
            f"Accept-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return status, await reader.readexactly(length)


async def _run_rate(port: int, ctx: ssl.SSLContext, rate: float, duration: float, connections: int, tag: str) -> dict:
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"))
    latencies: list[float] = []
    errors: list[str] = []
    total = int(rate * duration)
    start = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        due = start + i / rate
        uid = f"{tag}-{i:08d}"
        reader, writer = await pool.get()
        try:
            writer.write(_request(port, uid))
            status, payload = await _read_response(reader)
            done = time.perf_counter()
            if status != 200:
                errors.append(f"HTTP {status}")
            else:
                resp = json.loads(payload)["response"]
                if resp["uid"] != uid or "allowed" not in resp:
                    errors.append("bad AdmissionReview")
                elif resp.get("status", {}).get("code") == 500:
                    errors.append(resp["status"]["message"][:100])
            latencies.append(done - due)
        except Exception as exc:  # noqa: BLE001 - counted as an error
            errors.append(type(exc).__name__)
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        finally:
            pool.put_nowait((reader, writer))

    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"rate": rate, "sent": total, "p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99),
            "max": latencies[-1] * 1000 if latencies else float("nan"), "errors": len(errors), "error_kinds": sorted(set(errors))[:3]}


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of the server and its worker processes."""
    total = 0.0
    for p in [str(pid), *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _scrape_requests(port: int, ctx: ssl.SSLContext, scrapes: int = 4) -> list[float]:
    """``mlgate_admission_requests_total`` summed over its labels, from several scrapes on new
    connections (with --workers N any worker may answer; each must report every worker's requests)."""
    import http.client

    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for _ in range(scrapes):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        out.append(sum(s.value for f in text_string_to_metric_families(text) if f.name == "mlgate_admission_requests"
                       for s in f.samples if s.name == "mlgate_admission_requests_total"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="200,500,1000,1500")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--gate-threads", type=int, default=1, help="mlgate serve --gate-threads")
    parser.add_argument("--workers", type=int, default=1, help="mlgate serve --workers (processes)")
    args = parser.parse_args()

    from test_gatekeeper_support import write_certs

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    tmp = Path(tempfile.mkdtemp(prefix="mlgate-bench-"))
    ca, cert, key, _ = write_certs(tmp)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    audit = tmp / "audit.jsonl"
    server = subprocess.Popen([sys.executable, "-m", "mlgate", "serve", "--host", "127.0.0.1", "--port", str(port), "--cert", str(cert),
                               "--key", str(key), "--evidence-store", f"file://{REPO / 'examples'}", "--audit", f"file://{audit}",
                               "--log-level", "warning", "--gate-threads", str(args.gate_threads), "--workers", str(args.workers)], cwd=REPO)
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("mlgate: error: the webhook did not start")
                time.sleep(0.1)
        # Warm every worker's evidence cache (connections spread over the workers) before measuring.
        asyncio.run(_run_rate(port, ctx, 100, 2, args.connections, "warm"))
        print(f"mlgate webhook, {args.workers} worker(s) x {args.gate_threads} gate thread(s), open loop, {args.duration:g} s per rate, {args.connections} keep-alive TLS connections, "
              f"{len(_body('x'))} byte Deployment CREATE, {os.cpu_count()} CPUs (generator included)")
        print(f"{'rate/s':>8} {'sent':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} {'srv CPU ms/req':>15}")
        peak = None
        sent = 200
        for rate in [float(r) for r in args.rates.split(",")]:
            cpu_before = _cpu_s(server.pid)
            result = asyncio.run(_run_rate(port, ctx, rate, args.duration, args.connections, f"r{int(rate)}"))
            result["cpu_ms"] = (_cpu_s(server.pid) - cpu_before) / result["sent"] * 1000
            sent += result["sent"]
            print(f"{rate:>8.0f} {result['sent']:>7} {result['p50']:>8.2f} {result['p95']:>8.2f} {result['p99']:>8.2f} {result['max']:>8.1f} "
                  f"{result['errors']:>7} {result['cpu_ms']:>15.2f} {' '.join(result['error_kinds'])}")
            if result["p99"] <= 10 and result["errors"] == 0:
                peak = rate
        print(f"peak rate with p99 <= 10 ms and no errors: {peak if peak is not None else 'none of those tried'}")
        print(f"server resident memory: {_rss_mb(server.pid) + sum(_rss_mb(int(c)) for c in _children(server.pid)):.0f} MB")
        recorded = sum(1 for _ in audit.open()) if audit.exists() else 0
        print(f"audit records: {recorded} for {sent} requests")
        counted = _scrape_requests(port, ctx)
        print(f"/metrics request counter: {', '.join(f'{n:.0f}' for n in counted)} in {len(counted)} scrapes for {sent} requests"
              + ("" if set(counted) == {sent} else "  <-- MISMATCH"))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()

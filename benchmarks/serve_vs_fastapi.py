"""`edgeml serve` vs a hand-written FastAPI + uvicorn + onnxruntime endpoint, same model, on loopback.

Both servers run as subprocesses on free loopback ports and serve the same fp32 ONNX artifact of a
16-feature MLP (scikit-learn 16->64->32->2, converted with `edgeml convert`) with one intra-op
thread, and take the same Open Inference Protocol request body. One load generator drives both: a
Python client with keep-alive `http.client` connections, one per thread; concurrency 1 (sequential)
and 8 (threads). Each measurement is bounded by a request count and a time limit. Rounds alternate
the servers (and their order) so machine noise hits both alike; the report gives medians over
rounds and the edgeml/fastapi ratio of each round's figures (median of the paired ratios).

Targets (issue 4, Performance 2 and 3): >= 2x requests/s, p99 <= 2 ms at concurrency 1; cold start to
first prediction <= 1 s and RSS <= 120 MB for `edgeml serve`.

    python benchmarks/serve_vs_fastapi.py [--rounds 5] [--requests 2000] [--seconds 4]

Writes benchmarks/results/serve_vs_fastapi.json. Needs fastapi and uvicorn (`pip install 'edgeml[fleet]'`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results"
CONCURRENCY = (1, 8)
MODEL = "mlp"
INFER_PATH = f"/v2/models/{MODEL}/infer"
HEADERS = {"Content-Type": "application/json"}


def infer_body(x: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}]}).encode()


@dataclass
class Server:
    """A server subprocess started with --port 0; it prints the URL it listens on to stderr."""

    name: str
    command: list[str]
    port: int = 0
    proc: subprocess.Popen | None = None
    log: Path | None = None  # the server's stderr, quoted when it fails
    cold_start_s: float = 0.0
    rss_mb: float = 0.0

    def start(self, body: bytes, timeout: float = 60.0) -> "Server":
        """Start the process and time it to the first answered prediction (polling every 2 ms)."""
        self.log = Path(tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")[1])
        t0 = time.perf_counter()
        with self.log.open("wb") as log:
            # A session of its own: signals meant for this script's process group do not reach it.
            self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        while True:
            try:
                self.port = self.port or self._port_from_log()
                status = one_request(self.port, body)
                if status == 200:
                    break
                raise RuntimeError(f"{self.name}: first infer answered {status}\n{self.log_tail()}")
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {' '.join(self.command)}\n"
                                       f"{self.log_tail()}") from None
                if time.perf_counter() - t0 > timeout:
                    raise RuntimeError(f"{self.name} did not answer within {timeout} s") from None
                time.sleep(0.002)
        self.cold_start_s = time.perf_counter() - t0
        return self

    def _port_from_log(self) -> int:
        found = re.search(rb"http://127\.0\.0\.1:(\d+)", self.log.read_bytes())
        if found is None:
            raise ConnectionRefusedError("not listening yet")
        return int(found.group(1))

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log else ""

    def measure_rss(self) -> None:
        import psutil

        self.rss_mb = psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.unlink(missing_ok=True)


def one_request(port: int, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", INFER_PATH, body, HEADERS)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def drive(port: int, body: bytes, concurrency: int, count: int, seconds: float) -> dict:
    """`count` requests (or as many as fit in `seconds`) from `concurrency` keep-alive clients."""
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    issued = iter(range(count))  # next() on a shared iterator is atomic under the GIL
    start = threading.Barrier(concurrency + 1, timeout=30)
    deadline = [0.0]
    failures: list[BaseException] = []

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, clock = latencies[i], time.perf_counter
        try:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start.wait()
            for _ in issued:
                t = clock()
                if t > deadline[0]:
                    break
                conn.request("POST", INFER_PATH, body, HEADERS)
                response = conn.getresponse()
                response.read()
                mine.append(clock() - t)
                if response.status != 200:
                    errors[i] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller; the others must not wait
            failures.append(exc)
            start.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    try:
        start.wait()
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if failures:
        raise RuntimeError(f"a client failed on port {port}: {failures[0]!r}") from failures[0]
    times = sorted(x for per in latencies for x in per)
    return {"requests": len(times), "errors": sum(errors), "seconds": round(wall, 3),
            "requests_per_s": len(times) / wall, "p50_ms": percentile(times, 50) * 1000,
            "p99_ms": percentile(times, 99) * 1000}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def servers(artifact: Path, bundle: Path) -> list[Server]:
    edgeml = Server("edgeml", [sys.executable, "-m", "edgeml", "serve", str(bundle), "--port", "0",
                               "--threads", "1", "--precision", "fp32", "--backend", "onnxruntime"])
    fastapi = Server("fastapi", [sys.executable, str(HERE / "fastapi_endpoint.py"), str(artifact), "--name", MODEL,
                                 "--port", "0", "--threads", "1"])
    return [edgeml, fastapi]


def summarize(rounds: list[dict[str, dict]]) -> dict:
    """Medians over rounds per server, and the median of the per-round edgeml/fastapi ratios."""
    out: dict = {}
    for name in ("edgeml", "fastapi"):
        out[name] = {k: round(statistics.median(r[name][k] for r in rounds), 3)
                     for k in ("requests_per_s", "p50_ms", "p99_ms")}
        out[name]["requests"] = sum(r[name]["requests"] for r in rounds)
        out[name]["errors"] = sum(r[name]["errors"] for r in rounds)
    out["ratio"] = {
        "requests_per_s": round(statistics.median(r["edgeml"]["requests_per_s"] / r["fastapi"]["requests_per_s"] for r in rounds), 2),
        "p50_latency": round(statistics.median(r["edgeml"]["p50_ms"] / r["fastapi"]["p50_ms"] for r in rounds), 3),
        "p99_latency": round(statistics.median(r["edgeml"]["p99_ms"] / r["fastapi"]["p99_ms"] for r in rounds), 3),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per concurrency level")
    parser.add_argument("--requests", type=int, default=2000, help="requests per server per round (upper bound)")
    parser.add_argument("--seconds", type=float, default=4.0, help="time limit per server per round")
    parser.add_argument("--warmup", type=int, default=300, help="untimed requests per server before measuring")
    parser.add_argument("--out", type=Path, default=RESULTS / "serve_vs_fastapi.json")
    args = parser.parse_args()

    from runtime_overhead import build_mlp_bundle

    import fastapi
    import uvicorn

    body = infer_body(np.random.default_rng(1).normal(size=(1, 16)).astype(np.float32))
    results: dict = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                                 "machine": platform.machine()},
                     "versions": {"fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__},
                     "settings": {"rounds": args.rounds, "requests": args.requests, "seconds": args.seconds,
                                  "body_bytes": len(body)}}
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_mlp_bundle(Path(tmp))
        manifest = json.loads((bundle / "manifest.json").read_text())
        artifact = bundle / next(a["path"] for a in manifest["artifacts"] if a["format"] == "onnx" and a["precision"] == "fp32")
        pair = servers(artifact, bundle)
        try:
            for server in pair:
                server.start(body)
                server.measure_rss()
                drive(server.port, body, 1, args.warmup, 30)
                drive(server.port, body, 8, args.warmup, 30)
            per_level: dict[int, list[dict]] = {c: [] for c in CONCURRENCY}
            for r in range(args.rounds):
                for c in CONCURRENCY:
                    order = pair if r % 2 == 0 else pair[::-1]
                    per_level[c].append({s.name: drive(s.port, body, c, args.requests, args.seconds) for s in order})
            for server in pair:
                server.measure_rss()  # after the load: the resident size while serving
        finally:
            for server in pair:
                server.stop()
    results["footprint"] = {s.name: {"cold_start_s": round(s.cold_start_s, 3), "rss_mb": round(s.rss_mb, 1)} for s in pair}
    results["load"] = {f"concurrency_{c}": summarize(rounds) for c, rounds in per_level.items()}
    results["rounds"] = {f"concurrency_{c}": rounds for c, rounds in per_level.items()}
    report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


def report(results: dict) -> None:
    from edgeml.table import print_table

    rows = []
    for level, s in results["load"].items():
        c = level.split("_")[1]
        for name in ("edgeml", "fastapi"):
            rows.append([c, name, s[name]["requests_per_s"], s[name]["p50_ms"], s[name]["p99_ms"], s[name]["errors"]])
        ratio = s["ratio"]
        rows.append([c, "edgeml/fastapi", f"{ratio['requests_per_s']}x", ratio["p50_latency"], ratio["p99_latency"], ""])
    print_table("OIP infer, MLP 16 features, loopback, keep-alive (medians over rounds)",
                ["clients", "server", "req/s", "p50 ms", "p99 ms", "errors"], rows)
    f = results["footprint"]
    e, a = f["edgeml"], f["fastapi"]
    print_table("Footprint (process start to first prediction answered; RSS after the load)",
                ["server", "cold start s", "RSS MB"],
                [["edgeml", e["cold_start_s"], e["rss_mb"]], ["fastapi", a["cold_start_s"], a["rss_mb"]],
                 ["edgeml/fastapi", round(e["cold_start_s"] / a["cold_start_s"], 2), round(e["rss_mb"] / a["rss_mb"], 2)]])
    c1 = results["load"]["concurrency_1"]
    checks = [("requests/s ratio >= 2 at concurrency 1", c1["ratio"]["requests_per_s"] >= 2),
              ("requests/s ratio >= 2 at concurrency 8", results["load"]["concurrency_8"]["ratio"]["requests_per_s"] >= 2),
              ("edgeml p99 <= 2 ms at concurrency 1", c1["edgeml"]["p99_ms"] <= 2.0),
              ("edgeml cold start <= 1 s", e["cold_start_s"] <= 1.0), ("edgeml RSS <= 120 MB", e["rss_mb"] <= 120)]
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISSED'}] {text}")


if __name__ == "__main__":
    main()

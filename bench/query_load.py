"""Load generation for ``bench.query`` and part (a): ``wrk`` (or an asyncio httpx loop) against
the cached ``/v1/query`` answer and against a bare FastAPI endpoint serving the same JSON."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._common import median, percentile
from bench.query_stack import COLLECTION, Stack

CONCURRENCY = (1, 16, 64)


# --------------------------------------------------------------------------- load generation


@dataclass
class Load:
    concurrency: int
    requests: int
    errors: int
    qps: float
    p50_ms: float
    p99_ms: float
    generator: str


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = %(auth)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"errors\\": %%d, "
    .. "\\"p50_us\\": %%d, \\"p99_us\\": %%d}\\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def load_wrk(url: str, body: dict[str, Any], key: str, concurrency: int, duration_s: float) -> Load:
    script = _WRK_SCRIPT % {
        "body": _lua_string(json.dumps(body, ensure_ascii=False)),
        "auth": _lua_string(f"Bearer {key}"),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        threads = min(2, concurrency)
        output = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s",
             "--timeout", "10s", "-s", f.name, url],
            check=True, capture_output=True, text=True, timeout=duration_s + 60,
        ).stdout  # fmt: skip
    finally:
        os.unlink(f.name)
    line = next(x for x in output.splitlines() if x.startswith("WRKJSON "))
    data = json.loads(line.removeprefix("WRKJSON "))
    seconds = data["duration_us"] / 1e6
    return Load(
        concurrency, data["requests"], data["errors"], data["requests"] / seconds,
        data["p50_us"] / 1000, data["p99_us"] / 1000, "wrk",
    )  # fmt: skip


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


async def load_httpx(
    url: str, body: dict[str, Any], key: str, concurrency: int, duration_s: float
) -> Load:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
        deadline = time.perf_counter() + duration_s

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Load(
        concurrency, len(latencies), errors, len(latencies) / elapsed,
        percentile(latencies, 50), percentile(latencies, 99), "httpx",
    )  # fmt: skip


def run_load(url: str, body: dict[str, Any], key: str, concurrency: int, duration_s: float) -> Load:
    if shutil.which("wrk"):
        return load_wrk(url, body, key, concurrency, duration_s)
    return asyncio.run(load_httpx(url, body, key, concurrency, duration_s))


def ensure_load_generator() -> None:
    """wrk (Debian's package) when it can be had: an httpx client in Python saturates before a
    FastAPI server does, which would understate both sides of the cached-vs-bare ratio."""
    from deploy import install

    try:
        install.ensure_debian_tool("wrk", "wrk")
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"wrk unavailable ({exc}); measuring with an httpx client instead")


# --------------------------------------------------------------------------- (a) cached vs bare


def serve_bare(port: int, body_file: Path) -> None:
    """The baseline: a FastAPI app with one POST route returning a stored JSON object."""
    import uvicorn
    from fastapi import FastAPI

    payload = json.loads(body_file.read_text())
    app = FastAPI()

    @app.post("/v1/query")
    async def query() -> dict[str, Any]:
        return payload

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=30)


class BareServer:
    """``python -m bench.query --serve-bare`` in its own process group, like the services."""

    def __init__(self, payload: dict[str, Any], workdir: Path) -> None:
        from deploy import processes, stack

        self._processes = processes
        self.port = processes.free_port()
        body_file = workdir / "bare-body.json"
        body_file.write_text(json.dumps(payload, ensure_ascii=False))
        self.spec = processes.ProcessSpec(
            name="bench-bare",
            command=[sys.executable, "-m", "bench.query", "--serve-bare", str(self.port),
                     str(body_file)],
            log_path=workdir / "bench-bare.log",
            pid_path=workdir / "bench-bare.pid",
            env=stack.SERVICE_THREAD_ENV,
            cwd=Path(__file__).resolve().parents[1],
        )  # fmt: skip
        self._ready = stack.http_ready(f"http://127.0.0.1:{self.port}/docs")
        self.url = f"http://127.0.0.1:{self.port}/v1/query"

    def __enter__(self) -> BareServer:
        self._processes.start(self.spec)
        self._processes.wait_until_ready(self.spec, self._ready, timeout_s=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._processes.stop(self.spec.pid_path)


def cached_vs_bare(
    stack: Stack,
    question: str,
    duration_s: float,
    rounds: int,
    workdir: Path,
    collection: str = COLLECTION,
) -> dict[str, Any]:
    body = {"collection": collection, "question": question}
    url = f"{stack.query_url}/v1/query"
    with httpx.Client(headers=stack.query_headers, timeout=600) as client:
        first = client.post(url, json=body)
        first.raise_for_status()
        second = client.post(url, json=body)
        second.raise_for_status()
    cached = bool(second.json().get("cached"))
    print(f"(a) first answer in {first.elapsed.total_seconds() * 1000:.0f} ms, repeat "
          f"{second.elapsed.total_seconds() * 1000:.1f} ms, cached={cached}, "
          f"{len(second.content)} bytes")  # fmt: skip
    results: dict[str, list[Load]] = {"cached": [], "bare": []}
    with BareServer(second.json(), workdir) as bare:
        bare_body_size = len(httpx.post(bare.url, json=body, timeout=10).content)
        for _ in range(rounds):
            for c in CONCURRENCY:
                results["bare"].append(run_load(bare.url, body, stack.query_key, c, duration_s))
                results["cached"].append(run_load(url, body, stack.query_key, c, duration_s))
    with httpx.Client(headers=stack.query_headers, timeout=60) as client:
        still_cached = bool(client.post(url, json=body).json().get("cached"))
    return {
        "question": question,
        "cached_response": cached and still_cached,
        "response_bytes": len(second.content),
        "bare_response_bytes": bare_body_size,
        "by_concurrency": {
            c: {
                kind: _median_load([r for r in runs if r.concurrency == c])
                for kind, runs in results.items()
            }
            for c in CONCURRENCY
        },
    }


def _median_load(runs: Sequence[Load]) -> dict[str, Any]:
    return {
        "qps": median([r.qps for r in runs]),
        "p50_ms": median([r.p50_ms for r in runs]),
        "p99_ms": median([r.p99_ms for r in runs]),
        "requests": sum(r.requests for r in runs),
        "errors": sum(r.errors for r in runs),
        "rounds": len(runs),
        "generator": runs[0].generator,
    }

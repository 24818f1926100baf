"""vllm-router (the vLLM project's Rust router, from PyPI) on the same simulated cluster and the
same jobs as docqa's pool, for ``bench.pool_prefix``.

The router runs in a venv of its own under ``.docqa/venvs/vllm-router`` (installed once with
pip: it is a benchmark baseline, not a dependency of the services). Each of its policies gets a
fresh cluster (cold caches), like each of ours; requests go to its OpenAI-compatible endpoint as
streams, and time to first token is taken at the first chunk that carries text, as our pool does.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import orjson

from bench._common import docqa_home
from bench.pool_load import MODEL, Job, LoadResult
from deploy import processes, stack

ROUTER_REQUIREMENT = "vllm-router==0.1.17"
ROUTER_POLICIES = ("round_robin", "power_of_two", "cache_aware")


def ensure_router() -> Path:
    """The ``vllm-router`` executable, installed into its own venv on first use."""
    venv = docqa_home() / "venvs" / "vllm-router"
    binary = venv / "bin" / "vllm-router"
    if binary.exists():
        return binary
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", ROUTER_REQUIREMENT]
    subprocess.run(pip, check=True)
    return binary


def start_router(
    binary: Path, worker_urls: Sequence[str], policy: str, runtime: Path
) -> tuple[processes.ProcessSpec, str]:
    port = processes.free_port()
    workers = [url.removesuffix("/v1") for url in worker_urls]
    spec = processes.ProcessSpec(
        name=f"vllm-router-{policy}",
        command=[
            str(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--policy",
            policy,
            "--worker-urls",
            *workers,
            "--log-level",
            "warning",
        ],
        log_path=runtime / f"router-{policy}.log",
        pid_path=runtime / f"router-{policy}.pid",
    )
    processes.start(spec)
    url = f"http://127.0.0.1:{port}"
    processes.wait_until_ready(spec, stack.http_ready(f"{url}/health"), timeout_s=60)
    return spec, url


async def one_request(client: httpx.AsyncClient, job: Job, result: LoadResult) -> None:
    body = {"model": MODEL, "messages": job.messages, "max_tokens": job.max_tokens,
            "temperature": 0, "stream": True}  # fmt: skip
    started = time.perf_counter()
    first: float | None = None
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                result.failed[f"http_{response.status_code}"] += 1
                return
            async for line in response.aiter_lines():
                if first is None and _carries_text(line):
                    first = time.perf_counter()
    except httpx.HTTPError as exc:
        result.failed[type(exc).__name__] += 1
        return
    if first is not None:
        result.ttft_ms.append((first - started) * 1000)
    result.latencies_ms.append((time.perf_counter() - started) * 1000)


def _carries_text(line: str) -> bool:
    if not line.startswith("data: {"):
        return False
    choices = orjson.loads(line[6:]).get("choices") or [{}]
    return bool((choices[0].get("delta") or {}).get("content"))


async def open_loop(url: str, jobs: Sequence[Job]) -> LoadResult:
    result = LoadResult()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        started = time.perf_counter()
        tasks = []
        for job in jobs:
            delay = started + job.at_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one_request(client, job, result)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - started
    return result

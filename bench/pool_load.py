"""Load for ``bench.pool``: the replayed workload (Poisson arrivals over fixed conversations),
the open and closed loops that drive it through the real :class:`LLMPool`, and the pool's
per-request overhead next to straight requests."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from bench._common import median, percentile
from docqa_core.errors import DependencyUnavailable, RateLimited
from query_engine.llm.breaker import BreakerConfig
from query_engine.llm.endpoints import StaticDiscovery
from query_engine.llm.policy import PolicyName, prefix_key_of
from query_engine.llm.pool import LLMPool, PoolConfig, Route
from query_engine.llm.pooled_llm import PooledLLM

MODEL = "smollm2"
SLOTS = 4  # batch slots per fake replica
TOKEN_RATE = 100.0  # tokens/s per sequence on a fast replica
SLOWDOWN = 3.0
ANSWER_TOKENS = (16, 32, 64, 128)
SESSIONS = 40


# ---------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Job:
    at_s: float
    stream: bool
    max_tokens: int
    session: str
    messages: list[dict[str, str]]


def session_history(session: int) -> str:
    """A conversation's earlier turns: ~50 or ~1,500 tokens, the same on every request."""
    words = 40 if session % 2 else 1200
    return " ".join(f"turn{session}-{i}" for i in range(words))


def workload(rate: float, seconds: float, seed: int) -> list[Job]:
    rng = random.Random(seed)
    jobs: list[Job] = []
    at = 0.0
    while True:
        at += rng.expovariate(rate)
        if at >= seconds:
            return jobs
        session = rng.randrange(SESSIONS)
        messages = [
            {"role": "system", "content": session_history(session)},
            {"role": "user", "content": f"question {len(jobs)}"},
        ]
        jobs.append(Job(at, rng.random() < 0.5, rng.choice(ANSWER_TOKENS), f"s{session}", messages))


def capacity_rps(slowdowns: Sequence[float]) -> float:
    """Requests/s the cluster finishes when every slot is busy (mean answer, decode only)."""
    mean_s = statistics.mean(ANSWER_TOKENS) / TOKEN_RATE
    return sum(SLOTS / (mean_s * s) for s in slowdowns)


# ---------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    failed: Counter[str] = field(default_factory=Counter)
    per_endpoint: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        done = len(self.latencies_ms)
        return {
            "requests": done + sum(self.failed.values()),
            "ok": done,
            "p50_ms": round(median(self.latencies_ms), 1),
            "p99_ms": round(percentile(self.latencies_ms, 99), 1),
            "ttft_p50_ms": round(median(self.ttft_ms), 1),
            "throughput_rps": round(done / self.seconds, 2) if self.seconds else math.nan,
            "failed": dict(self.failed),
            "per_endpoint": dict(self.per_endpoint),
        }


def pool_config(policy: PolicyName) -> PoolConfig:
    return PoolConfig(
        model=MODEL,
        policy=policy,
        max_in_flight=64,
        queue_size=4096,
        queue_timeout_s=300,
        request_timeout_s=300,
        first_token_timeout_s=120,
        connect_timeout_s=2,
        health_interval_s=1,
        metrics_interval_s=0.5,
        breaker=BreakerConfig(failure_threshold=3, cooldown_s=2, max_cooldown_s=16),
    )


async def one_request(pool: LLMPool, job: Job, policy: PolicyName, result: LoadResult) -> None:
    body = {"messages": job.messages, "max_tokens": job.max_tokens, "temperature": 0}
    route = route_for(job, policy)
    started = time.perf_counter()
    try:
        if job.stream:
            stream = await pool.stream_chat(body, route)
            result.ttft_ms.append((time.perf_counter() - started) * 1000)
            try:
                async for _ in stream:
                    pass
            except DependencyUnavailable:
                result.failed["stream_after_first_token"] += 1
                return
        else:
            await pool.chat(body, route)
    except (DependencyUnavailable, RateLimited) as exc:
        kind = "stream_before_first_token" if job.stream else "non_streamed"
        result.failed[f"{kind}:{type(exc).__name__}"] += 1
        return
    result.latencies_ms.append((time.perf_counter() - started) * 1000)


def route_for(job: Job, policy: PolicyName) -> Route:
    """What ``PooledLLM`` sends the pool: the session, and the prompt's prefix key."""
    affine = policy in ("session_affinity", "prefix_affinity")
    prefix = prefix_key_of(job.messages) if policy == "prefix_affinity" else None
    return Route(MODEL, job.session if affine and job.session else None, prefix)


async def open_loop(
    urls: Sequence[str],
    policy: PolicyName,
    jobs: Sequence[Job],
    *,
    during: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> LoadResult:
    async def send_on_schedule(pool: LLMPool, result: LoadResult, started: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        for job in jobs:
            delay = started + job.at_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one_request(pool, job, policy, result)))
        await asyncio.gather(*tasks)

    return await _drive(urls, policy, send_on_schedule, during)


async def _drive(
    urls: Sequence[str],
    policy: PolicyName,
    load: Callable[[LLMPool, LoadResult, float], Awaitable[None]],
    during: Callable[[], Coroutine[Any, Any, None]] | None,
) -> LoadResult:
    """A pool over ``urls`` running ``load`` (given the pool, the result to fill and its start
    time) with ``during`` beside it; the result with its duration and requests per endpoint."""
    pool = LLMPool(pool_config(policy), StaticDiscovery(urls))
    await pool.start()
    result = LoadResult()
    side = asyncio.create_task(during()) if during else None
    started = time.perf_counter()
    try:
        await load(pool, result, started)
        result.seconds = time.perf_counter() - started
        if side is not None:
            await side
    finally:
        if side is not None:
            side.cancel()
        result.per_endpoint = Counter({s.url: s.requests for s in pool.snapshot()})
        await pool.aclose()
    return result


async def overhead(url: str, rounds: int) -> dict[str, float]:
    """Median latency of the same tiny request straight, through the pool, and through the
    LlamaIndex LLM, interleaved so that drift hits all three alike."""
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    payload = orjson.dumps({**body, "model": MODEL, "stream": False})
    headers = {"Authorization": "Bearer EMPTY", "Content-Type": "application/json"}
    direct_client = httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=None, max_keepalive_connections=None)
    )
    pool = LLMPool(pool_config("least_loaded"), StaticDiscovery([url]))
    await pool.start()
    llm = PooledLLM(pool=pool, model=MODEL, max_tokens=1)
    from llama_index.core.llms import ChatMessage

    messages = [ChatMessage(role="user", content="hi")]

    async def direct() -> None:
        response = await direct_client.post(
            f"{url}/chat/completions", content=payload, headers=headers
        )
        orjson.loads(response.content)

    async def pooled() -> None:
        await pool.chat(body, Route(MODEL))

    async def llama() -> None:
        await llm.achat(messages)

    samples: dict[str, list[float]] = {"direct": [], "pool": [], "pooled_llm": []}
    try:
        for n in range(rounds + 30):
            for name, call in (("direct", direct), ("pool", pooled), ("pooled_llm", llama)):
                started = time.perf_counter()
                await call()
                if n >= 30:  # warm-up
                    samples[name].append((time.perf_counter() - started) * 1000)
    finally:
        await pool.aclose()
        await direct_client.aclose()
    medians = {name: median(values) for name, values in samples.items()}

    def paired(name: str) -> float:
        """Median of the per-round differences: drift and load from other processes, which
        hit a round's three calls alike, cancel out (the difference of medians does not)."""
        return median([a - b for a, b in zip(samples[name], samples["direct"], strict=True)])

    return {
        "direct_median_ms": round(medians["direct"], 3),
        "pool_median_ms": round(medians["pool"], 3),
        "pooled_llm_median_ms": round(medians["pooled_llm"], 3),
        "overhead_median_ms": round(paired("pool"), 3),
        "pooled_llm_overhead_median_ms": round(paired("pooled_llm"), 3),
        "rounds": rounds,
    }


# ---------------------------------------------------------------------------- real replicas


async def closed_loop(
    urls: Sequence[str],
    policy: PolicyName,
    requests: int,
    workers: int,
    *,
    stream_every: int = 2,
    during: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> LoadResult:
    jobs = [
        Job(0, n % stream_every == 0, 32, f"s{n % 4}", [{"role": "user", "content": f"Say {n}."}])
        for n in range(requests)
    ]
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def workers_until_empty(pool: LLMPool, result: LoadResult, _: float) -> None:
        async def worker() -> None:
            while not queue.empty():
                await one_request(pool, queue.get_nowait(), policy, result)

        await asyncio.gather(*(worker() for _ in range(workers)))

    return await _drive(urls, policy, workers_until_empty, during)

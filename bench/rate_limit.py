"""What the per-key rate limiter adds to a cached ``POST /v1/query``.

    python -m bench.rate_limit [--requests 2000] [--rounds 5]

The query app (``build_app``: the real factory, body limit, rate-limit middleware and front door)
runs in process (``httpx.ASGITransport``), with a fake answerer whose lookup finds every question
in the cache (a ``CachedHit``, as the answer cache hands one back from its in-memory copy). It is
measured without a limiter and with the real limiter over a real redis-server started here on a
free port (one Lua script call per request; the limit is high enough never to refuse), next to a
bare Redis ``PING``: the floor of what one round trip costs. Rounds
alternate between the two so that drift on this shared machine hits both alike. Prints the median
cached-hit latency of each and their ratio; writes ``bench/results/rate_limit.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from redis.asyncio import Redis

from bench._common import median, ratio, table, write_results
from deploy import processes, stack
from query_engine.answer import Answer, Grounding
from query_engine.answering import AnswerRequest, CachedHit, Lookup
from query_engine.cache import CachedAnswer
from services.common.rate_limit_settings import RateLimitSettings
from services.common.rate_limits import RateLimiter
from services.common.settings import AuthSettings, QuerySettings
from services.query_api.app import build_app as build_query_app

KEY = "bench-key-" + "k" * 20
KEYS = AuthSettings(query_keys=[SecretStr(KEY)], admin_keys=[SecretStr(KEY)])
HEADERS = {"Authorization": f"Bearer {KEY}"}
BODY = {"collection": "kb", "question": "How often are the burrs brushed?"}
STORED = Answer(
    answer="Every 2 weeks [1].",
    citations=[],
    grounding=Grounding(verified=True, unsupported=[], checked_claims=1),
    not_found=False,
    timings_ms={},
).model_dump_json(exclude={"cached", "coalesced", "timings_ms"})


class CachedAnswerer:
    async def lookup(self, request: AnswerRequest) -> Lookup:
        hit = CachedHit(CachedAnswer(STORED.encode()), {"total": 0.1})
        return Lookup(request, request.question, [], early=hit)

    async def remember(self, request: AnswerRequest, answer: Any) -> None:
        return None


def query_app(limiter: RateLimiter | None) -> FastAPI:
    settings = QuerySettings(log_level="warning", auth=KEYS)
    app = build_query_app(settings)
    app.state.runtime = SimpleNamespace(settings=settings, answerer=CachedAnswerer())
    app.state.rate_limiter = limiter
    return app


async def latencies(client: httpx.AsyncClient, requests: int) -> list[float]:
    taken = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.post("/v1/query", json=BODY, headers=HEADERS)
        taken.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{response.status_code}: {response.text}")
    return taken


async def ping_latencies(redis: Redis, requests: int) -> list[float]:
    taken = []
    for _ in range(requests):
        started = time.perf_counter()
        await redis.ping()
        taken.append((time.perf_counter() - started) * 1000)
    return taken


async def run(redis_url: str, requests: int, rounds: int) -> dict[str, Any]:
    redis = Redis.from_url(redis_url)
    limits = RateLimitSettings(queries_per_minute=10_000_000)
    limiter = RateLimiter(redis, prefix="bench", settings=limits)
    apps = {"without": query_app(None), "with": query_app(limiter)}
    clients = {
        name: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b")
        for name, app in apps.items()
    }
    measured: dict[str, list[float]] = {name: [] for name in apps}
    try:
        for client in clients.values():
            await latencies(client, 200)  # warm up
        for _ in range(rounds):
            for name, client in clients.items():
                measured[name].append(median(await latencies(client, requests)))
        checked = await clients["with"].post("/v1/query", json=BODY, headers=HEADERS)
        assert "x-ratelimit-remaining" in checked.headers
        ping = median(await ping_latencies(redis, requests))
    finally:
        for client in clients.values():
            await client.aclose()
        await redis.aclose()
    without, with_ = median(measured["without"]), median(measured["with"])
    return {
        "requests_per_round": requests,
        "rounds": rounds,
        "median_ms_without_limiter": round(without, 4),
        "median_ms_with_limiter": round(with_, 4),
        "ratio_with_over_without": round(ratio(with_, without), 3),
        "overhead_ms": round(with_ - without, 4),
        "redis_ping_ms": round(ping, 4),  # one bare round trip: the floor of the overhead
        "round_medians_ms": {k: [round(v, 4) for v in vs] for k, vs in measured.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    stack.ensure_redis_server()
    with tempfile.TemporaryDirectory() as tmp:
        port = processes.free_port()
        spec = stack.redis_spec(stack.StackPaths(Path(tmp)), port, name="bench-ratelimit-redis")
        processes.start(spec)
        try:
            processes.wait_until_ready(spec, stack.redis_ready(port), timeout_s=30)
            url = f"redis://127.0.0.1:{port}/0"
            results = asyncio.run(run(url, args.requests, args.rounds))
        finally:
            processes.stop(spec.pid_path)
    rows = [
        ["cached /v1/query, no limiter", results["median_ms_without_limiter"]],
        ["cached /v1/query, limiter (Redis)", results["median_ms_with_limiter"]],
        ["ratio with / without", results["ratio_with_over_without"]],
        ["bare Redis PING (one round trip)", results["redis_ping_ms"]],
    ]
    print(table(["measure", "median ms / ratio"], rows, digits=3))
    print(f"wrote {write_results('rate_limit', results)}")


if __name__ == "__main__":
    main()

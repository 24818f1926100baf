"""Settings → the vLLM pool and the LlamaIndex LLM the query service uses (built in its lifespan,
started there, closed on shutdown)."""

from __future__ import annotations

from query_engine.llm.breaker import BreakerConfig
from query_engine.llm.endpoints import Discovery, DnsDiscovery, StaticDiscovery
from query_engine.llm.pool import LLMPool, PoolConfig
from query_engine.llm.pooled_llm import PooledLLM
from services.common.settings import LLMSettings


def pool_config(settings: LLMSettings) -> PoolConfig:
    return PoolConfig(
        model=settings.model,
        api_key=settings.api_key.get_secret_value(),
        policy=settings.policy,
        max_in_flight=settings.max_in_flight,
        queue_size=settings.queue_size,
        queue_timeout_s=settings.queue_timeout_s,
        retries=settings.retries,
        connect_timeout_s=settings.connect_timeout_s,
        first_token_timeout_s=settings.first_token_timeout_s,
        request_timeout_s=settings.request_timeout_s,
        health_interval_s=settings.health_interval_s,
        metrics_interval_s=settings.metrics_interval_s,
        discovery_interval_s=settings.discovery_interval_s,
        affinity_max_load=settings.affinity_max_load,
        breaker=BreakerConfig(
            failure_threshold=settings.breaker_failures,
            cooldown_s=settings.breaker_cooldown_s,
            max_cooldown_s=max(
                settings.breaker_cooldown_s, min(8 * settings.breaker_cooldown_s, 300)
            ),
        ),
    )


def discovery_from(settings: LLMSettings) -> Discovery:
    if settings.discovery == "dns":
        return DnsDiscovery(settings.endpoints)
    return StaticDiscovery(settings.endpoints)


def build_pooled_llm(settings: LLMSettings) -> PooledLLM:
    """Nothing connects here: ``await llm.pool.start()`` does (in the lifespan)."""
    pool = LLMPool(pool_config(settings), discovery_from(settings))
    return PooledLLM(
        pool=pool,
        lora_adapters=settings.lora_adapters,
        model=settings.model,
        context_window=settings.context_window,
        max_tokens=settings.max_answer_tokens,
        temperature=settings.temperature,
    )

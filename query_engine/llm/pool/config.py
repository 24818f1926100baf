"""The pool's settings, where one request may go (:class:`Route`), and what is built from the
settings alone: the shared HTTP client and the request headers."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from query_engine.llm.breaker import BreakerConfig
from query_engine.llm.policy import PolicyName


@dataclass(frozen=True)
class PoolConfig:
    model: str
    api_key: str = field(default="EMPTY", repr=False)  # never in a log line or an error
    policy: PolicyName = "least_loaded"
    max_in_flight: int = 64
    queue_size: int = 256
    queue_timeout_s: float = 30.0
    retries: int = 1
    connect_timeout_s: float = 5.0
    first_token_timeout_s: float = 60.0
    request_timeout_s: float = 120.0
    health_interval_s: float = 5.0
    metrics_interval_s: float = 2.0
    discovery_interval_s: float = 10.0
    affinity_max_load: float = 0.8
    breaker: BreakerConfig = field(default_factory=BreakerConfig)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request may go: endpoints serving ``model`` (the base model or a LoRA adapter);
    ``session_id`` keeps a conversation on one server under ``session_affinity``."""

    model: str
    session_id: str | None = None
    prefix_key: str | None = None  # the prompt's stable prefix, for ``prefix_affinity``


def request_headers(config: PoolConfig) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {config.api_key}",
        "Content-Type": "application/json",
    }


def build_client(config: PoolConfig) -> httpx.AsyncClient:
    """One client for every endpoint. Its own connection cap is off: the pool's max in-flight
    per endpoint is the cap (httpx's default of 100 connections in total would queue requests
    invisibly behind it)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
    )

"""What the pool knows about one endpoint, and the probes that keep it current.

Per endpoint: the requests *we* have in flight (counted exactly, on dispatch and release), the
load gauges of vLLM's ``/metrics`` (scraped every ``metrics_interval_s``; they include other
query-api pods' requests), the models ``/v1/models`` lists (the base model and LoRA adapters),
and a circuit breaker fed by requests and by ``/health`` probes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.metrics import Gauge

from query_engine.llm import metrics
from query_engine.llm.breaker import BreakerState, CircuitBreaker
from query_engine.llm.endpoints import server_root
from query_engine.llm.failover import EndpointFailure, FailureKind, failure_from_exception
from query_engine.llm.policy import Candidate
from query_engine.llm.stats import EngineStats, parse_vllm_metrics, served_models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EndpointStatus:
    """A read-only snapshot, for readiness messages, tests and the benchmark."""

    url: str
    state: str
    healthy: bool
    in_flight: int
    models: tuple[str, ...]
    requests: int
    failures: int
    last_error: str | None
    stats: EngineStats


class EndpointState:
    def __init__(self, url: str, breaker: CircuitBreaker) -> None:
        self.url = url
        self.root = server_root(url)
        self.breaker = breaker
        self.in_flight = 0
        self.models: frozenset[str] | None = None  # unknown until the first probe answers
        self.healthy = False
        self.last_error: str | None = None
        self.requests = 0
        self.failures = 0
        self.stats = EngineStats()
        self.stats_at: float | None = None  # loop time of the last good scrape
        self.in_flight_at_scrape = 0
        self.first_probe = asyncio.Event()
        self.watcher: asyncio.Task[None] | None = None
        self.in_flight_gauge: Gauge = metrics.IN_FLIGHT.labels(url)
        self._state_gauge: Gauge = metrics.ENDPOINT_STATE.labels(url)

    def serves(self, model: str) -> bool:
        return self.models is not None and model in self.models

    def can_take(self, model: str) -> bool:
        """May be handed a request for ``model`` now (room is the policy's business)."""
        return self.serves(model) and self.breaker.allows_request()

    def available(self, model: str) -> bool:
        """In service for ``model`` (not ejected), whether or not it is busy."""
        return self.serves(model) and self.breaker.state is not BreakerState.OPEN

    def candidate(self, max_in_flight: int, now: float, stale_after_s: float) -> Candidate:
        if self.stats_at is None or now - self.stats_at > stale_after_s:
            return Candidate(self.url, self.in_flight, max_in_flight)
        stats = self.stats
        # vLLM's gauges count our requests too: what exceeds our count at scrape time is others'
        others = max(0.0, stats.load - self.in_flight_at_scrape)
        return Candidate(
            self.url, self.in_flight, max_in_flight, others, stats.waiting, stats.kv_cache_usage
        )

    def publish_state(self) -> None:
        self._state_gauge.set(metrics.BREAKER_LEVEL[self.breaker.state.value])

    def status(self) -> EndpointStatus:
        return EndpointStatus(
            url=self.url,
            state=self.breaker.state.value,
            healthy=self.healthy,
            in_flight=self.in_flight,
            models=tuple(sorted(self.models or ())),
            requests=self.requests,
            failures=self.failures,
            last_error=self.last_error,
            stats=self.stats,
        )


async def probe_health(
    client: httpx.AsyncClient, endpoint: EndpointState, *, timeout_s: float, headers: Any
) -> None:
    """``/health`` must answer 200 and ``/v1/models`` list what the server serves. A refused
    connection or an unhealthy answer ejects the endpoint at once; a slow answer only counts
    as one failure (a busy server answers late but still answers)."""
    try:
        health = await client.get(f"{endpoint.root}/health", timeout=timeout_s)
        if health.status_code != 200:
            raise EndpointFailure(
                FailureKind.SERVER_ERROR, f"/health answered {health.status_code}"
            )
        listing = await client.get(f"{endpoint.url}/models", timeout=timeout_s, headers=headers)
        if listing.status_code != 200:
            raise EndpointFailure(
                FailureKind.SERVER_ERROR, f"/v1/models answered {listing.status_code}"
            )
        models = served_models(listing.json())
    except (httpx.HTTPError, EndpointFailure, ValueError, KeyError) as exc:
        failure = _probe_failure(exc)
        slow = failure.kind is FailureKind.TOTAL_TIMEOUT
        if endpoint.healthy or endpoint.last_error is None:
            log.warning("LLM endpoint %s failed its health probe: %s", endpoint.url, failure)
        # A slow answer leaves the endpoint in the pool: a server busy generating (or our own
        # event loop busy embedding) answers /health late, and taking the only server out for
        # that turned answers into fallbacks. The breaker still opens after repeated timeouts.
        endpoint.healthy = endpoint.healthy and slow
        endpoint.last_error = str(failure)
        endpoint.breaker.record_failure(hard=not slow)
    else:
        endpoint.models = models
        endpoint.healthy = True
        endpoint.last_error = None
        if endpoint.breaker.state is BreakerState.HALF_OPEN:
            log.info("LLM endpoint %s is healthy again: back in the pool", endpoint.url)
            endpoint.breaker.record_success()
    finally:
        endpoint.first_probe.set()
        endpoint.publish_state()


def _probe_failure(exc: BaseException) -> EndpointFailure:
    if isinstance(exc, ValueError | KeyError):
        return EndpointFailure(FailureKind.BROKEN, f"/v1/models: {exc}")
    return failure_from_exception(exc)


async def scrape_metrics(
    client: httpx.AsyncClient, endpoint: EndpointState, *, timeout_s: float, now: float
) -> None:
    """A failed scrape only makes the stats stale (the policy then uses our own count).

    vLLM's gauges were read at some moment during the scrape; our in-flight count at that moment
    is unknown, so the larger of the counts before and after is taken as ours: a request that
    finished meanwhile must not look like another client's load."""
    before = endpoint.in_flight
    try:
        response = await client.get(f"{endpoint.root}/metrics", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError:
        return
    endpoint.stats = parse_vllm_metrics(response.text)
    endpoint.stats_at = now
    endpoint.in_flight_at_scrape = max(before, endpoint.in_flight)

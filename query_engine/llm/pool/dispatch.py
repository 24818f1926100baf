"""Handing requests endpoint slots: the policy (``policy.py``, pure) picks an endpoint that
serves the model and has room; with none free the request waits in the bounded queue
(``admission.py``) or is refused with :class:`~docqa_core.errors.RateLimited`. Releasing a
slot feeds the endpoint's circuit breaker and wakes the next waiter.

Everything runs on one event loop; the slot bookkeeping is synchronous, so it cannot race.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping

from docqa_core.errors import DependencyUnavailable, RateLimited
from query_engine.llm import metrics
from query_engine.llm.admission import QueueFull, QueueTimeout, WaitQueue
from query_engine.llm.failover import ENDPOINT_FAULTS, EndpointFailure, is_hard_failure
from query_engine.llm.policy import RouteRequest, choose
from query_engine.llm.pool.config import PoolConfig, Route
from query_engine.llm.pool.errors import NoEndpoint
from query_engine.llm.state import EndpointState


class Dispatcher:
    """The slots of ``endpoints`` (the pool's, read only here) and the queue in front of them."""

    def __init__(
        self, config: PoolConfig, endpoints: Mapping[str, EndpointState], rng: random.Random
    ) -> None:
        self._config = config
        self._endpoints = endpoints
        self._rng = rng
        self._queue: WaitQueue[EndpointState] = WaitQueue(
            config.queue_size, on_depth=metrics.QUEUE_DEPTH.set
        )
        self._sequence = 0
        self._avg_request_s = 1.0  # moving average of request time: the Retry-After estimate
        self._stale_after_s = 3 * config.metrics_interval_s

    @property
    def queued(self) -> int:
        return len(self._queue)

    def wake(self) -> None:
        """A slot may have freed (or an endpoint come back): serve the waiters that now fit."""
        self._queue.wake()

    def fail_all(self, error: BaseException) -> None:
        self._queue.fail_all(error)

    async def acquire(self, route: Route, exclude: frozenset[str], *, retry: bool) -> EndpointState:
        """A slot on an endpoint not in ``exclude``; a ``retry`` goes ahead of the queue."""
        started = time.perf_counter()
        try:
            endpoint = await self._queue.admit(
                lambda: self._pick(route, exclude),
                timeout_s=self._config.queue_timeout_s,
                abandon=lambda ep: self.release(ep, 0.0, abandoned=True),
                key=(route.model, exclude),
                priority=retry,
            )
        except QueueFull:
            raise self._rate_limited("queue_full") from None
        except QueueTimeout:
            raise self._rate_limited("queue_timeout") from None
        except NoEndpoint:
            raise self._no_endpoint(route.model) from None
        metrics.QUEUE_WAIT_SECONDS.observe(time.perf_counter() - started)
        return endpoint

    def release(
        self,
        endpoint: EndpointState,
        started: float,
        failure: EndpointFailure | None = None,
        *,
        abandoned: bool = False,
    ) -> None:
        """Frees the slot taken at ``started`` (``perf_counter``) and gives the breaker its
        verdict: success, a failure that is the server's fault, or none at all."""
        endpoint.in_flight -= 1
        endpoint.in_flight_gauge.dec()
        endpoint.requests += 1
        if abandoned:
            endpoint.breaker.record_abandoned()
            outcome = "abandoned"
        elif failure is None:
            endpoint.breaker.record_success()
            took = time.perf_counter() - started
            self._avg_request_s += 0.1 * (took - self._avg_request_s)
            outcome = "ok"
        elif failure.kind in ENDPOINT_FAULTS:
            endpoint.failures += 1
            endpoint.last_error = str(failure)
            endpoint.breaker.record_failure(hard=is_hard_failure(failure.kind))
            outcome = failure.kind.value
        else:
            endpoint.breaker.record_abandoned()  # the request's fault: no verdict on the server
            outcome = failure.kind.value
        metrics.REQUESTS.labels(endpoint.url, outcome).inc()
        endpoint.publish_state()
        self._queue.wake()

    def _pick(self, route: Route, exclude: frozenset[str]) -> EndpointState | None:
        usable = [
            ep
            for url, ep in self._endpoints.items()
            if url not in exclude and ep.can_take(route.model)
        ]
        if not usable:
            if any(
                ep.available(route.model)
                for url, ep in self._endpoints.items()
                if url not in exclude
            ):
                return None  # e.g. the only one left is half-open with its trial running
            raise NoEndpoint(route.model)
        now = time.monotonic()
        cap = self._config.max_in_flight
        candidates = [ep.candidate(cap, now, self._stale_after_s) for ep in usable]
        chosen = choose(
            self._config.policy,
            candidates,
            RouteRequest(route.session_id, self._sequence, route.prefix_key),
            self._rng,
            affinity_max_load=self._config.affinity_max_load,
        )
        if chosen is None:
            return None
        self._sequence += 1
        endpoint = self._endpoints[chosen.url]
        endpoint.in_flight += 1
        endpoint.in_flight_gauge.inc()
        endpoint.breaker.on_dispatch()
        return endpoint

    def _rate_limited(self, reason: str) -> RateLimited:
        metrics.REJECTED.labels(reason).inc()
        slots = sum(
            self._config.max_in_flight
            for ep in self._endpoints.values()
            if ep.available(self._config.model)
        )
        retry_after = self._avg_request_s * (len(self._queue) + 1) / max(1, slots)
        return RateLimited(
            "every LLM server is busy and the wait queue is full; retry later",
            retry_after_s=min(60.0, max(1.0, retry_after)),
            detail={"reason": reason, "queued": len(self._queue)},
        )

    def _no_endpoint(self, model: str) -> DependencyUnavailable:
        if model != self._config.model and any(
            ep.available(self._config.model) for ep in self._endpoints.values()
        ):
            message = f"no healthy LLM server serves the LoRA adapter {model!r}"
        else:
            message = "no LLM server is healthy"
        # an ejected server gets its next trial after the breaker's cooldown
        return DependencyUnavailable(
            "llm", message, detail={"model": model}, retry_after_s=self._config.breaker.cooldown_s
        )

"""Which endpoints are in the pool: those discovery reports now. Each endpoint that joins gets
its state (with a circuit breaker) and a watcher task; one that leaves has its watcher
cancelled and its metrics dropped. Discovery is re-run periodically unless the list is static.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from query_engine.llm import metrics
from query_engine.llm.breaker import CircuitBreaker
from query_engine.llm.endpoints import (
    Discovery,
    EndpointDiff,
    EndpointRefresher,
    StaticDiscovery,
)
from query_engine.llm.pool.config import PoolConfig
from query_engine.llm.state import EndpointState

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Watch = Callable[[EndpointState], Coroutine[Any, Any, None]]


class Membership:
    """Keeps ``endpoints`` (shared with the rest of the pool, which only reads it) equal to
    what discovery reports; ``watch`` runs for each endpoint while it is in the pool, and
    ``on_change`` is called after every change (waiters may now fit somewhere)."""

    def __init__(
        self,
        config: PoolConfig,
        discovery: Discovery,
        endpoints: dict[str, EndpointState],
        *,
        watch: Watch,
        on_change: Callable[[], None],
        clock: Clock,
    ) -> None:
        self._config = config
        self._discovery = discovery
        self._endpoints = endpoints
        self._watch = watch
        self._on_change = on_change
        self._clock = clock
        self._refresher = EndpointRefresher(
            discovery,
            current=self._endpoints.keys,
            apply=self.apply_diff,
            interval_s=config.discovery_interval_s,
        )

    async def start(self) -> None:
        """Discover, wait for every endpoint's first probe (so readiness is right from the
        start), then keep discovering. Never fails: a failed lookup is retried later."""
        try:
            await self._refresher.refresh_once()
        except Exception as exc:
            log.warning("LLM endpoint discovery failed at start: %s: %s", type(exc).__name__, exc)
        probes = [asyncio.create_task(ep.first_probe.wait()) for ep in self._endpoints.values()]
        if probes:
            await asyncio.wait(probes, timeout=2 * self._config.connect_timeout_s + 1)
            for probe in probes:
                probe.cancel()
        if not isinstance(self._discovery, StaticDiscovery):
            self._refresher.start()

    async def stop_discovery(self) -> None:
        await self._refresher.aclose()

    async def remove_all(self) -> None:
        for url in list(self._endpoints):
            await self._remove(url)

    def apply_diff(self, diff: EndpointDiff) -> None:
        for url in diff.added:
            self._add(url)
        for url in diff.removed:
            endpoint = self._endpoints.pop(url, None)
            if endpoint is not None and endpoint.watcher is not None:
                endpoint.watcher.cancel()
            metrics.forget_endpoint(url)
        self._on_change()

    def _add(self, url: str) -> None:
        if url in self._endpoints:
            return
        endpoint = EndpointState(url, CircuitBreaker(self._config.breaker, self._clock))
        endpoint.publish_state()
        self._endpoints[url] = endpoint
        endpoint.watcher = asyncio.create_task(self._watch(endpoint), name=f"llm-watch {url}")

    async def _remove(self, url: str) -> None:
        endpoint = self._endpoints.pop(url, None)
        if endpoint is not None and endpoint.watcher is not None:
            endpoint.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await endpoint.watcher
        metrics.forget_endpoint(url)

"""Watching each endpoint: ``/health`` + ``/v1/models`` probes every ``health_interval_s`` and
``/metrics`` scrapes every ``metrics_interval_s`` (the probes and scrapes themselves are in
``query_engine.llm.state``), and the readiness check built on the probes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

import httpx

from query_engine.llm.pool.config import PoolConfig
from query_engine.llm.state import EndpointState, probe_health, scrape_metrics

log = logging.getLogger(__name__)


class HealthWatch:
    """Probes and scrapes through ``http()`` (the pool's client, once started); ``on_probe`` is
    called after every probe, since an endpoint that came back may take waiting requests."""

    def __init__(
        self,
        config: PoolConfig,
        http: Callable[[], httpx.AsyncClient],
        headers: Mapping[str, str],
        *,
        on_probe: Callable[[], None],
    ) -> None:
        self._config = config
        self._http = http
        self._headers = headers
        self._on_probe = on_probe

    async def watch(self, endpoint: EndpointState) -> None:
        """Health probes every ``health_interval_s``, metric scrapes every
        ``metrics_interval_s``, both right away for a new endpoint."""
        next_health = next_scrape = 0.0
        while True:
            now = time.monotonic()
            try:
                if now >= next_health:
                    next_health = now + self._config.health_interval_s
                    await self.probe(endpoint)
                if now >= next_scrape:
                    next_scrape = now + self._config.metrics_interval_s
                    await scrape_metrics(
                        self._http(),
                        endpoint,
                        timeout_s=self._config.connect_timeout_s,
                        now=time.monotonic(),
                    )
            except Exception:  # a bug here must not silently stop watching the endpoint
                log.exception("watching LLM endpoint %s failed", endpoint.url)
            await asyncio.sleep(max(0.0, min(next_health, next_scrape) - time.monotonic()))

    async def probe(self, endpoint: EndpointState) -> None:
        await probe_health(
            self._http(), endpoint, timeout_s=self._config.connect_timeout_s, headers=self._headers
        )
        self._on_probe()  # it may have come back

    async def check_ready(self, endpoints: Mapping[str, EndpointState]) -> None:
        """Readiness: at least one endpoint is healthy and serves the base model. When none
        is, probe them all once more first (one may have come up since its last probe)."""
        model = self._config.model
        if any(ep.available(model) and ep.healthy for ep in endpoints.values()):
            return
        await asyncio.gather(*(self.probe(ep) for ep in list(endpoints.values())))
        if any(ep.available(model) and ep.healthy for ep in endpoints.values()):
            return
        states = "; ".join(
            f"{s.url}: {s.state}, models {list(s.models)}, {s.last_error or 'no error'}"
            for s in (ep.status() for ep in endpoints.values())
        )
        raise RuntimeError(f"no LLM endpoint is healthy and serves {model!r} ({states or 'none'})")

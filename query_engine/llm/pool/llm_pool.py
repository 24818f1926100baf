"""``LLMPool``: the pool as its users see it. It owns the shared endpoint table and the HTTP
client, and composes the pieces that do the work: :class:`~.membership.Membership` (which
endpoints there are), :class:`~.health.HealthWatch` (probes, scrapes, readiness),
:class:`~.dispatch.Dispatcher` (slots and the wait queue) and
:class:`~.completions.CompletionRunner` (requests with failover)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from typing import Any

import httpx

from docqa_core.errors import DependencyUnavailable
from query_engine.llm.endpoints import Discovery, EndpointDiff
from query_engine.llm.pool.completions import CompletionRunner
from query_engine.llm.pool.config import PoolConfig, Route, build_client, request_headers
from query_engine.llm.pool.dispatch import Dispatcher
from query_engine.llm.pool.health import HealthWatch
from query_engine.llm.pool.membership import Clock, Membership
from query_engine.llm.pool.stream import PoolStream
from query_engine.llm.state import EndpointState, EndpointStatus


class LLMPool:
    def __init__(
        self,
        config: PoolConfig,
        discovery: Discovery,
        *,
        client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self._given_client = client
        self._client: httpx.AsyncClient | None = client
        headers = request_headers(config)
        # written by the membership only; the other pieces read it
        self._endpoints: dict[str, EndpointState] = {}
        self._dispatch = Dispatcher(config, self._endpoints, rng or random.Random())
        self._health = HealthWatch(config, self._http, headers, on_probe=self._dispatch.wake)
        self._membership = Membership(
            config,
            discovery,
            self._endpoints,
            watch=self._health.watch,
            on_change=self._dispatch.wake,
            clock=clock,
        )
        self._completions = CompletionRunner(config, self._dispatch, self._http, headers)
        self.loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Discover, probe every endpoint once (so readiness is right from the start), then keep
        watching. Never fails: endpoints that are not up yet join when their probe succeeds."""
        self.loop = asyncio.get_running_loop()
        if self._client is None:
            self._client = build_client(self.config)
        await self._membership.start()

    async def aclose(self) -> None:
        await self._membership.stop_discovery()
        self._dispatch.fail_all(DependencyUnavailable("llm", "the LLM pool is shutting down"))
        await self._membership.remove_all()
        if self._client is not None and self._given_client is None:
            await self._client.aclose()
        self._client = None

    def apply_diff(self, diff: EndpointDiff) -> None:
        self._membership.apply_diff(diff)

    # ------------------------------------------------------------------ requests

    async def chat(self, body: Mapping[str, Any], route: Route) -> dict[str, Any]:
        """A non-streamed chat completion (the OpenAI response body), with failover."""
        return await self._completions.chat(body, route)

    async def stream_chat(self, body: Mapping[str, Any], route: Route) -> PoolStream:
        """A streamed chat completion, returned once its first token is in."""
        return await self._completions.stream_chat(body, route)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the LLM pool is not started")
        return self._client

    # ------------------------------------------------------------------ status

    def snapshot(self) -> list[EndpointStatus]:
        return [ep.status() for ep in self._endpoints.values()]

    @property
    def queued(self) -> int:
        return self._dispatch.queued

    async def check_ready(self) -> None:
        """Readiness: at least one endpoint is healthy and serves the base model."""
        await self._health.check_ready(self._endpoints)

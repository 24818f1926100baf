"""The vLLM pool: spreads chat completions over many vLLM servers, fails over, pushes back.

``LLMPool`` owns the endpoints (from a :class:`~query_engine.llm.endpoints.Discovery`), one
watcher task per endpoint (``/health`` + ``/v1/models`` probes, ``/metrics`` scrapes), the
bounded wait queue and one shared httpx client. A request:

1. is admitted: the policy (``policy.py``) picks an endpoint that serves the requested model and
   has room; when none has room it waits in the queue, and when the queue is full (or the wait
   too long) it is refused with :class:`~docqa_core.errors.RateLimited` (HTTP 429 + Retry-After);
2. runs on that endpoint; a failure that is the server's fault is retried on *another* endpoint
   (``failover.py``): a non-streamed request until it completes, a streamed one until its first
   token; after that the caller gets :class:`~docqa_core.errors.DependencyUnavailable`;
3. releases its slot, feeding the endpoint's circuit breaker, and wakes the next waiter.

Everything runs on one event loop; the slot bookkeeping is synchronous, so it cannot race.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import httpx
import orjson

from docqa_core.errors import DependencyUnavailable, RateLimited
from query_engine.llm import metrics
from query_engine.llm.admission import QueueFull, QueueTimeout, WaitQueue
from query_engine.llm.breaker import BreakerConfig, CircuitBreaker
from query_engine.llm.endpoints import (
    Discovery,
    EndpointDiff,
    EndpointRefresher,
    StaticDiscovery,
)
from query_engine.llm.failover import (
    ENDPOINT_FAULTS,
    EndpointFailure,
    FailureKind,
    is_hard_failure,
    may_retry,
)
from query_engine.llm.policy import PolicyName, RouteRequest, choose
from query_engine.llm.state import EndpointState, EndpointStatus, probe_health, scrape_metrics
from query_engine.llm.transport import Chunk, SseReader, has_token, open_stream, post_json

log = logging.getLogger(__name__)

Clock = Callable[[], float]

T = TypeVar("T")

# one try on one endpoint: gets the endpoint and when the try started (for its request time)
_Attempt = Callable[[EndpointState, float], Awaitable[T]]


@dataclass(frozen=True)
class PoolConfig:
    model: str
    api_key: str = "EMPTY"
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


class NoEndpoint(Exception):
    """No endpoint could serve the route at all (none healthy, or none serves the model)."""


@dataclass(frozen=True, slots=True)
class _Succeeded(Generic[T]):
    """The attempt that worked: its result and the endpoint slot it still holds."""

    endpoint: EndpointState
    started: float
    result: T


class _StreamHead(NamedTuple):
    """A stream opened up to its first token; the rest is read through ``PoolStream``."""

    response: httpx.Response
    reader: SseReader
    head: list[Chunk]


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
        self._discovery = discovery
        self._given_client = client
        self._client: httpx.AsyncClient | None = client
        self._rng = rng or random.Random()
        self._clock = clock
        self._endpoints: dict[str, EndpointState] = {}
        self._queue: WaitQueue[EndpointState] = WaitQueue(
            config.queue_size, on_depth=metrics.QUEUE_DEPTH.set
        )
        self._sequence = 0
        self._avg_request_s = 1.0  # moving average of request time: the Retry-After estimate
        self._headers = {
            "Authorization": f"Bearer {config.api_key}",
            "Content-Type": "application/json",
        }
        self._stale_after_s = 3 * config.metrics_interval_s
        self._refresher = EndpointRefresher(
            discovery,
            current=self._endpoints.keys,
            apply=self.apply_diff,
            interval_s=config.discovery_interval_s,
        )
        self.loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Discover, probe every endpoint once (so readiness is right from the start), then keep
        watching. Never fails: endpoints that are not up yet join when their probe succeeds."""
        self.loop = asyncio.get_running_loop()
        if self._client is None:
            self._client = _build_client(self.config)
        try:
            await self._refresher.refresh_once()
        except Exception as exc:
            log.warning("LLM endpoint discovery failed at start: %s: %s", type(exc).__name__, exc)
        probes = [asyncio.create_task(ep.first_probe.wait()) for ep in self._endpoints.values()]
        if probes:
            await asyncio.wait(probes, timeout=2 * self.config.connect_timeout_s + 1)
            for probe in probes:
                probe.cancel()
        if not isinstance(self._discovery, StaticDiscovery):
            self._refresher.start()

    async def aclose(self) -> None:
        await self._refresher.aclose()
        self._queue.fail_all(DependencyUnavailable("llm", "the LLM pool is shutting down"))
        for url in list(self._endpoints):
            await self._remove(url)
        if self._client is not None and self._given_client is None:
            await self._client.aclose()
        self._client = None

    # ------------------------------------------------------------------ endpoints

    def apply_diff(self, diff: EndpointDiff) -> None:
        for url in diff.added:
            self._add(url)
        for url in diff.removed:
            endpoint = self._endpoints.pop(url, None)
            if endpoint is not None and endpoint.watcher is not None:
                endpoint.watcher.cancel()
            metrics.forget_endpoint(url)
        self._queue.wake()

    def _add(self, url: str) -> None:
        if url in self._endpoints:
            return
        endpoint = EndpointState(url, CircuitBreaker(self.config.breaker, self._clock))
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

    async def _watch(self, endpoint: EndpointState) -> None:
        """Health probes every ``health_interval_s``, metric scrapes every
        ``metrics_interval_s``, both right away for a new endpoint."""
        next_health = next_scrape = 0.0
        while True:
            now = time.monotonic()
            try:
                if now >= next_health:
                    next_health = now + self.config.health_interval_s
                    await self._probe(endpoint)
                if now >= next_scrape:
                    next_scrape = now + self.config.metrics_interval_s
                    await scrape_metrics(
                        self._http(),
                        endpoint,
                        timeout_s=self.config.connect_timeout_s,
                        now=time.monotonic(),
                    )
            except Exception:  # a bug here must not silently stop watching the endpoint
                log.exception("watching LLM endpoint %s failed", endpoint.url)
            await asyncio.sleep(max(0.0, min(next_health, next_scrape) - time.monotonic()))

    async def _probe(self, endpoint: EndpointState) -> None:
        await probe_health(
            self._http(), endpoint, timeout_s=self.config.connect_timeout_s, headers=self._headers
        )
        self._queue.wake()  # it may have come back

    # ------------------------------------------------------------------ admission

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
        cap = self.config.max_in_flight
        candidates = [ep.candidate(cap, now, self._stale_after_s) for ep in usable]
        chosen = choose(
            self.config.policy,
            candidates,
            RouteRequest(route.session_id, self._sequence),
            self._rng,
            affinity_max_load=self.config.affinity_max_load,
        )
        if chosen is None:
            return None
        self._sequence += 1
        endpoint = self._endpoints[chosen.url]
        endpoint.in_flight += 1
        endpoint.in_flight_gauge.inc()
        endpoint.breaker.on_dispatch()
        return endpoint

    async def _acquire(
        self, route: Route, exclude: frozenset[str], *, retry: bool
    ) -> EndpointState:
        started = time.perf_counter()
        try:
            endpoint = await self._queue.admit(
                lambda: self._pick(route, exclude),
                timeout_s=self.config.queue_timeout_s,
                abandon=lambda ep: self._release(ep, 0.0, abandoned=True),
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

    def _release(
        self,
        endpoint: EndpointState,
        started: float,
        failure: EndpointFailure | None = None,
        *,
        abandoned: bool = False,
    ) -> None:
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

    def _rate_limited(self, reason: str) -> RateLimited:
        metrics.REJECTED.labels(reason).inc()
        slots = sum(
            self.config.max_in_flight
            for ep in self._endpoints.values()
            if ep.available(self.config.model)
        )
        retry_after = self._avg_request_s * (len(self._queue) + 1) / max(1, slots)
        return RateLimited(
            "every LLM server is busy and the wait queue is full; retry later",
            retry_after_s=min(60.0, max(1.0, retry_after)),
            detail={"reason": reason, "queued": len(self._queue)},
        )

    def _no_endpoint(self, model: str) -> DependencyUnavailable:
        if model != self.config.model and any(
            ep.available(self.config.model) for ep in self._endpoints.values()
        ):
            message = f"no healthy LLM server serves the LoRA adapter {model!r}"
        else:
            message = "no LLM server is healthy"
        return DependencyUnavailable("llm", message, detail={"model": model})

    # ------------------------------------------------------------------ requests

    async def chat(self, body: Mapping[str, Any], route: Route) -> dict[str, Any]:
        """A non-streamed chat completion (the OpenAI response body). Retried on another
        endpoint after a server-side failure at any point, since the caller has seen nothing."""
        payload = orjson.dumps({**body, "model": route.model, "stream": False})
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout_s

        async def post(endpoint: EndpointState, started: float) -> dict[str, Any]:
            return await post_json(
                self._http(),
                f"{endpoint.url}/chat/completions",
                payload,
                self._headers,
                deadline=deadline,
            )

        done = await self._with_failover(route, post)
        self._release(done.endpoint, done.started)
        return done.result

    async def stream_chat(self, body: Mapping[str, Any], route: Route) -> PoolStream:
        """A streamed chat completion, returned once its first token is in: queueing, connecting
        and failover all happen before this returns, so their errors come from here."""
        payload = orjson.dumps({**body, "model": route.model, "stream": True})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout_s

        async def open_until_first_token(endpoint: EndpointState, started: float) -> _StreamHead:
            # each attempt gets its own first-token budget, counted from its own start
            first_deadline = min(deadline, loop.time() + self.config.first_token_timeout_s)
            response: httpx.Response | None = None
            try:
                response = await open_stream(
                    self._http(),
                    f"{endpoint.url}/chat/completions",
                    payload,
                    self._headers,
                    deadline=first_deadline,
                )
                reader = SseReader(response)
                head = await _until_first_token(reader, first_deadline, deadline)
            except BaseException:
                # drop the connection before the failover runner frees the endpoint's slot
                await _close(response)
                raise
            return _StreamHead(response, reader, head)

        done = await self._with_failover(route, open_until_first_token)
        stream = done.result
        # the stream keeps the endpoint's slot and releases it when it ends
        return PoolStream(
            self, done.endpoint, stream.response, stream.reader, stream.head, deadline, done.started
        )

    async def _with_failover(self, route: Route, run_attempt: _Attempt[T]) -> _Succeeded[T]:
        """Runs ``run_attempt`` on an admitted endpoint and, after a server-side failure, on
        another one, as ``failover.py`` allows. An attempt ends before any of the answer reaches
        the caller (a stream's at its first token), so a retry never repeats what was shown.

        A failed or abandoned attempt's slot is released here. The one that succeeds keeps its
        slot: the caller releases it, at once for a whole answer, at the end for a stream."""
        exclude: frozenset[str] = frozenset()
        attempts = 0
        last_failure: EndpointFailure | None = None
        while True:
            attempts += 1
            endpoint = await self._acquire_attempt(route, exclude, last_failure)
            started = time.perf_counter()
            try:
                result = await run_attempt(endpoint, started)
            except EndpointFailure as failure:
                self._release(endpoint, started, failure)
                if not self._retrying(failure, attempts, tokens_sent=False):
                    raise self._failed(failure, attempts) from failure
                last_failure = failure
                exclude |= {endpoint.url}  # a retry goes elsewhere
                continue
            except BaseException:  # cancelled, or a bug: free the slot, no verdict on the server
                self._release(endpoint, started, abandoned=True)
                raise
            return _Succeeded(endpoint, started, result)

    async def _acquire_attempt(
        self, route: Route, exclude: frozenset[str], last_failure: EndpointFailure | None
    ) -> EndpointState:
        if last_failure is None:
            return await self._acquire(route, exclude, retry=False)
        try:
            return await self._acquire(route, exclude, retry=True)
        except DependencyUnavailable:  # no other endpoint: report what went wrong before
            raise self._failed(last_failure, len(exclude)) from last_failure

    def _retrying(self, failure: EndpointFailure, attempt: int, *, tokens_sent: bool) -> bool:
        retry = may_retry(
            failure.kind, tokens_sent=tokens_sent, attempt=attempt, retries=self.config.retries
        )
        if retry:
            metrics.RETRIES.inc()
            log.info("LLM request failed (%s); retrying on another endpoint", failure)
        return retry

    def _failed(self, failure: EndpointFailure, attempts: int) -> DependencyUnavailable:
        if failure.kind is FailureKind.REJECTED:
            message = f"the LLM server rejected the request: {failure.message}"
        else:
            message = f"the LLM servers failed ({failure.kind.value}, {attempts} attempt(s))"
        return DependencyUnavailable(
            "llm", message, detail={"reason": failure.kind.value, "attempts": attempts}
        )

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("the LLM pool is not started")
        return self._client

    # ------------------------------------------------------------------ status

    def snapshot(self) -> list[EndpointStatus]:
        return [ep.status() for ep in self._endpoints.values()]

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def check_ready(self) -> None:
        """Readiness: at least one endpoint is healthy and serves the base model. When none
        is, probe them all once more first (one may have come up since its last probe)."""
        model = self.config.model
        if any(ep.available(model) and ep.healthy for ep in self._endpoints.values()):
            return
        await asyncio.gather(*(self._probe(ep) for ep in list(self._endpoints.values())))
        if any(ep.available(model) and ep.healthy for ep in self._endpoints.values()):
            return
        states = "; ".join(
            f"{s.url}: {s.state}, models {list(s.models)}, {s.last_error or 'no error'}"
            for s in self.snapshot()
        )
        raise RuntimeError(f"no LLM endpoint is healthy and serves {model!r} ({states or 'none'})")


class PoolStream:
    """The rest of a streamed completion, after its first token. Errors from here on are final
    (the caller has shown tokens already); ``aclose`` releases the endpoint early."""

    def __init__(
        self,
        pool: LLMPool,
        endpoint: EndpointState,
        response: httpx.Response,
        reader: SseReader,
        head: list[Chunk],
        deadline: float,
        started: float,
    ) -> None:
        self._pool = pool
        self._endpoint = endpoint
        self._response = response
        self._reader = reader
        self._head = head
        self._deadline = deadline
        self._started = started
        self._done = not head  # an empty head means [DONE] came first
        self.endpoint_url = endpoint.url
        if self._done:
            pool._release(endpoint, started)

    def __aiter__(self) -> PoolStream:
        return self

    async def __anext__(self) -> Chunk:
        if self._head:
            return self._head.pop(0)
        if self._done:
            await self._response.aclose()
            raise StopAsyncIteration
        try:
            chunk = await self._reader.next_chunk(self._deadline, FailureKind.TOTAL_TIMEOUT)
        except EndpointFailure as failure:
            await self._finish(failure)
            raise self._pool._failed(failure, 1) from failure
        except BaseException:
            await self._finish(None, abandoned=True)
            raise
        if chunk is None:
            await self._finish(None)
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if not self._done:
            await self._finish(None, abandoned=True)
        await self._response.aclose()

    async def _finish(self, failure: EndpointFailure | None, *, abandoned: bool = False) -> None:
        if self._done:
            return
        self._done = True
        self._pool._release(self._endpoint, self._started, failure, abandoned=abandoned)
        await self._response.aclose()


async def _until_first_token(
    reader: SseReader, first_deadline: float, deadline: float
) -> list[Chunk]:
    """Chunks up to and including the first that carries text (vLLM first sends the role);
    empty when the stream ended before any."""
    kind = (
        FailureKind.FIRST_TOKEN_TIMEOUT if first_deadline < deadline else FailureKind.TOTAL_TIMEOUT
    )
    head: list[Chunk] = []
    while True:
        chunk = await reader.next_chunk(first_deadline, kind)
        if chunk is None:
            return head if any(has_token(c) for c in head) else []
        head.append(chunk)
        if has_token(chunk):
            return head


async def _close(response: httpx.Response | None) -> None:
    if response is not None:
        with contextlib.suppress(httpx.HTTPError):
            await response.aclose()


def _build_client(config: PoolConfig) -> httpx.AsyncClient:
    """One client for every endpoint. Its own connection cap is off: the pool's max in-flight
    per endpoint is the cap (httpx's default of 100 connections in total would queue requests
    invisibly behind it)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(config.request_timeout_s, connect=config.connect_timeout_s),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
    )

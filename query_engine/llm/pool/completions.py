"""Running one chat completion on the pool: each attempt gets an endpoint slot from the
:class:`~query_engine.llm.pool.dispatch.Dispatcher`, and a failure that is the server's fault
is retried on *another* endpoint as ``failover.py`` allows (a non-streamed request until it
completes, a streamed one until its first token); after that the caller gets
:class:`~docqa_core.errors.DependencyUnavailable`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import httpx
import orjson

from docqa_core.errors import DependencyUnavailable
from query_engine.llm import metrics
from query_engine.llm.failover import EndpointFailure, may_retry
from query_engine.llm.pool.config import PoolConfig, Route
from query_engine.llm.pool.dispatch import Dispatcher
from query_engine.llm.pool.errors import failure_error
from query_engine.llm.pool.stream import PoolStream, close_quietly, until_first_token
from query_engine.llm.state import EndpointState
from query_engine.llm.transport import Chunk, SseReader, open_stream, post_json

log = logging.getLogger(__name__)

T = TypeVar("T")

# one try on one endpoint: gets the endpoint and when the try started (for its request time)
_Attempt = Callable[[EndpointState, float], Awaitable[T]]


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


class CompletionRunner:
    """Sends chat completions through ``http()`` (the pool's client, once started)."""

    def __init__(
        self,
        config: PoolConfig,
        slots: Dispatcher,
        http: Callable[[], httpx.AsyncClient],
        headers: Mapping[str, str],
    ) -> None:
        self._config = config
        self._slots = slots
        self._http = http
        self._headers = headers

    async def chat(self, body: Mapping[str, Any], route: Route) -> dict[str, Any]:
        """A non-streamed chat completion (the OpenAI response body). Retried on another
        endpoint after a server-side failure at any point, since the caller has seen nothing."""
        payload = orjson.dumps({**body, "model": route.model, "stream": False})
        deadline = asyncio.get_running_loop().time() + self._config.request_timeout_s

        async def post(endpoint: EndpointState, started: float) -> dict[str, Any]:
            return await post_json(
                self._http(),
                f"{endpoint.url}/chat/completions",
                payload,
                self._headers,
                deadline=deadline,
            )

        done = await self._with_failover(route, post)
        self._slots.release(done.endpoint, done.started)
        return done.result

    async def stream_chat(self, body: Mapping[str, Any], route: Route) -> PoolStream:
        """A streamed chat completion, returned once its first token is in: queueing, connecting
        and failover all happen before this returns, so their errors come from here."""
        payload = orjson.dumps({**body, "model": route.model, "stream": True})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.request_timeout_s

        async def open_until_first_token(endpoint: EndpointState, started: float) -> _StreamHead:
            # each attempt gets its own first-token budget, counted from its own start
            first_deadline = min(deadline, loop.time() + self._config.first_token_timeout_s)
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
                head = await until_first_token(reader, first_deadline, deadline)
            except BaseException:
                # drop the connection before the failover runner frees the endpoint's slot
                await close_quietly(response)
                raise
            return _StreamHead(response, reader, head)

        done = await self._with_failover(route, open_until_first_token)
        stream = done.result
        # the stream keeps the endpoint's slot and releases it when it ends
        return PoolStream(
            self._slots,
            done.endpoint,
            stream.response,
            stream.reader,
            stream.head,
            deadline,
            done.started,
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
                self._slots.release(endpoint, started, failure)
                if not self._retrying(failure, attempts, tokens_sent=False):
                    raise failure_error(failure, attempts) from failure
                last_failure = failure
                exclude |= {endpoint.url}  # a retry goes elsewhere
                continue
            except BaseException:  # cancelled, or a bug: free the slot, no verdict on the server
                self._slots.release(endpoint, started, abandoned=True)
                raise
            return _Succeeded(endpoint, started, result)

    async def _acquire_attempt(
        self, route: Route, exclude: frozenset[str], last_failure: EndpointFailure | None
    ) -> EndpointState:
        if last_failure is None:
            return await self._slots.acquire(route, exclude, retry=False)
        try:
            return await self._slots.acquire(route, exclude, retry=True)
        except DependencyUnavailable:  # no other endpoint: report what went wrong before
            raise failure_error(last_failure, len(exclude)) from last_failure

    def _retrying(self, failure: EndpointFailure, attempt: int, *, tokens_sent: bool) -> bool:
        retry = may_retry(
            failure.kind, tokens_sent=tokens_sent, attempt=attempt, retries=self._config.retries
        )
        if retry:
            metrics.RETRIES.inc()
            log.info("LLM request failed (%s); retrying on another endpoint", failure)
        return retry

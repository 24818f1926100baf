"""A streamed completion after its first token (:class:`PoolStream`), and the reading of a
stream up to that first token, which is as far as failover may go."""

from __future__ import annotations

import contextlib

import httpx

from query_engine.llm.failover import EndpointFailure, FailureKind
from query_engine.llm.pool.dispatch import Dispatcher
from query_engine.llm.pool.errors import failure_error
from query_engine.llm.state import EndpointState
from query_engine.llm.transport import Chunk, SseReader, has_token


class PoolStream:
    """The rest of a streamed completion, after its first token. Errors from here on are final
    (the caller has shown tokens already); ``aclose`` releases the endpoint early."""

    def __init__(
        self,
        slots: Dispatcher,
        endpoint: EndpointState,
        response: httpx.Response,
        reader: SseReader,
        head: list[Chunk],
        deadline: float,
        started: float,
    ) -> None:
        self._slots = slots
        self._endpoint = endpoint
        self._response = response
        self._reader = reader
        self._head = head
        self._deadline = deadline
        self._started = started
        self._done = not head  # an empty head means [DONE] came first
        self.endpoint_url = endpoint.url
        if self._done:
            slots.release(endpoint, started)

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
            raise failure_error(failure, 1) from failure
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
        self._slots.release(self._endpoint, self._started, failure, abandoned=abandoned)
        await self._response.aclose()


async def until_first_token(
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


async def close_quietly(response: httpx.Response | None) -> None:
    if response is not None:
        with contextlib.suppress(httpx.HTTPError):
            await response.aclose()

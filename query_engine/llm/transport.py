"""One attempt on one endpoint: an OpenAI ``/chat/completions`` call over httpx, with every way
it can fail mapped to an :class:`EndpointFailure` (see ``failover.py``).

Deadlines are absolute (``loop.time()``) and applied to each await separately: a timeout around
a ``yield`` would fire inside whatever the consumer of the stream is doing at that moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson

from query_engine.llm.failover import (
    EndpointFailure,
    FailureKind,
    failure_from_exception,
    failure_from_status,
)

Chunk = dict[str, Any]


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    payload: bytes,
    headers: Mapping[str, str],
    *,
    deadline: float,
) -> dict[str, Any]:
    """A non-streamed completion; the whole answer, or an EndpointFailure."""
    try:
        async with asyncio.timeout_at(deadline):
            response = await client.post(url, content=payload, headers=headers)
    except TimeoutError:
        raise EndpointFailure(FailureKind.TOTAL_TIMEOUT, "no complete answer in time") from None
    except httpx.HTTPError as exc:
        raise failure_from_exception(exc) from exc
    if response.status_code >= 400:
        raise failure_from_status(response.status_code, response.text)
    try:
        body: dict[str, Any] = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise EndpointFailure(FailureKind.BROKEN, f"answer is not JSON: {exc}") from exc
    if "error" in body and "choices" not in body:
        raise EndpointFailure(FailureKind.SERVER_ERROR, str(body["error"])[:300])
    return body


async def open_stream(
    client: httpx.AsyncClient,
    url: str,
    payload: bytes,
    headers: Mapping[str, str],
    *,
    deadline: float,
) -> httpx.Response:
    """The response of a streamed completion, headers read, body not yet."""
    request = client.build_request("POST", url, content=payload, headers=headers)
    try:
        async with asyncio.timeout_at(deadline):
            response = await client.send(request, stream=True)
    except TimeoutError:
        raise EndpointFailure(FailureKind.FIRST_TOKEN_TIMEOUT, "no response headers") from None
    except httpx.HTTPError as exc:
        raise failure_from_exception(exc) from exc
    if response.status_code >= 400:
        try:
            body = (await response.aread()).decode(errors="replace")
        except httpx.HTTPError:
            body = ""
        finally:
            await response.aclose()
        raise failure_from_status(response.status_code, body)
    return response


class SseReader:
    """Server-sent events of an OpenAI stream, one JSON chunk at a time, until ``[DONE]``."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines: AsyncIterator[str] = response.aiter_lines()

    async def next_chunk(self, deadline: float, timeout_kind: FailureKind) -> Chunk | None:
        """The next chunk, or None at ``[DONE]``; ``timeout_kind`` names a missed deadline."""
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    line = await anext(self._lines)
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event names
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return None
                    return _chunk(data)
        except TimeoutError:
            raise EndpointFailure(timeout_kind, "the stream stalled") from None
        except StopAsyncIteration:
            raise EndpointFailure(FailureKind.BROKEN, "the stream ended without [DONE]") from None
        except httpx.HTTPError as exc:
            raise failure_from_exception(exc) from exc


def _chunk(data: str) -> Chunk:
    try:
        chunk: Chunk = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EndpointFailure(FailureKind.BROKEN, f"chunk is not JSON: {exc}") from exc
    if "error" in chunk and "choices" not in chunk:
        raise EndpointFailure(FailureKind.SERVER_ERROR, str(chunk["error"])[:300])
    return chunk


def has_token(chunk: Chunk) -> bool:
    """A chunk that carries answer text or ends the answer: the "first token" of failover."""
    for choice in chunk.get("choices") or ():
        if (choice.get("delta") or {}).get("content") or choice.get("finish_reason"):
            return True
    return False


def delta_text(chunk: Chunk) -> str:
    choices = chunk.get("choices") or ()
    if not choices:
        return ""
    return str((choices[0].get("delta") or {}).get("content") or "")

"""Query HTTP API: thin routes that validate input and call ``query_engine``.

``POST /v1/query`` enters through :mod:`services.query_api.front_door`, which has already done
the lookup (session context, FAQ, cache) when the route runs: the route generates.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from llama_index.core.schema import QueryBundle

from docqa_core.errors import DependencyUnavailable, DocqaError, InvalidRequest, NotFound
from query_engine.answer import Answer, citations_from
from query_engine.answering import AnswerStream, CachedHit
from query_engine.cache import REDIS_ERRORS
from query_engine.retrieval import RetrievalTrace
from services.common.auth import Scope, check_collection, require_scope
from services.common.errors import envelope
from services.common.metrics import QUERY_STAGE_SECONDS
from services.query_api.deps import RuntimeDep, runtime_of
from services.query_api.front_door import lookup_for
from services.query_api.outcomes import observe
from services.query_api.requests import (
    answer_request,
    owner_of,
    validated_filters,
    validated_top_k,
)
from services.query_api.schemas import QueryIn, QueryOut, RetrieveOut

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["query"], dependencies=[Depends(require_scope(Scope.QUERY))])

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SessionNotFound(NotFound):
    code = "session_not_found"


@router.post(
    "/query",
    response_model=QueryOut,
    summary="Answer a question from a collection, with citations",
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE"}},
)
async def query(body: QueryIn, request: Request) -> Answer | StreamingResponse | Response:
    """With ``"stream": true`` the answer arrives as Server-Sent Events: ``token`` events
    (``{"text"}``), then one ``done`` event holding the same object as the JSON response (its
    ``answer`` is final: the grounding policy may have changed the streamed text), or an
    ``error`` event in the error envelope if the LLM fails mid-answer."""
    # read from app.state rather than injected: every dependency resolved costs the hot route
    runtime = runtime_of(request)
    check_collection(request, body.collection)
    asked = answer_request(body, request, runtime.settings)
    looked_up = lookup_for(request, asked)
    if body.stream:
        stream = await runtime.answerer.stream(asked, looked_up)
        return StreamingResponse(
            sse_events(stream), media_type="text/event-stream", headers=SSE_HEADERS
        )
    result = await runtime.answerer.answer(asked, looked_up)
    if isinstance(result, CachedHit):  # sent as stored: no parsing, no re-validation
        observe(None)
        return Response(content=result.body(), media_type="application/json")
    observe(result)
    return result


async def sse_events(stream: AnswerStream) -> AsyncIterator[str]:
    try:
        async for token in stream.tokens():
            yield sse("token", {"text": token})
        final = await stream.final()
        observe(final)
        yield sse("done", final.model_dump())
    except DocqaError as exc:
        yield sse("error", envelope(exc.code, exc.message, exc.detail))
    except Exception:  # the status line is gone: the client can only learn of it here
        log.exception("answer stream failed")
        yield sse("error", envelope("internal_error", "internal server error (this is a bug)"))
    finally:
        await stream.aclose()


def retrieve_timings(trace: RetrievalTrace, total_ms: float) -> dict[str, float]:
    timings = {"embed": trace.embed_ms, "rerank": trace.rerank.ms, "total": total_ms}
    # "rerank" only when the stage was tried (DOCQA_RERANK_URL set and not cooling down)
    return {stage: round(ms, 2) for stage, ms in timings.items() if ms or stage != "rerank"}


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/retrieve", response_model=RetrieveOut, summary="Ranked sources for a question, no generation"
)
async def retrieve(body: QueryIn, request: Request, runtime: RuntimeDep) -> RetrieveOut:
    check_collection(request, body.collection)
    top_k = validated_top_k(body.collection, body.question, body.top_k, runtime.settings)
    filters = validated_filters(body.filters)
    started = time.perf_counter()
    retriever = runtime.retriever(body.collection, top_k, filters, as_of=body.as_of, parents=False)
    nodes = await retriever.aretrieve(QueryBundle(body.question))
    total = (time.perf_counter() - started) * 1000
    QUERY_STAGE_SECONDS.labels("retrieve").observe(total / 1000)
    return RetrieveOut(
        citations=citations_from(nodes),
        timings_ms=retrieve_timings(retriever.trace, total),
    )


@router.delete("/sessions/{session_id}", status_code=204, summary="Forget a conversation's memory")
async def delete_session(session_id: str, request: Request, runtime: RuntimeDep) -> Response:
    if len(session_id) > 128:
        raise InvalidRequest("session_id has at most 128 characters")
    try:
        existed = await runtime.sessions.delete(owner_of(request), session_id)
    except REDIS_ERRORS as exc:
        raise DependencyUnavailable("redis", "sessions are unavailable: Redis is down") from exc
    if not existed:
        raise SessionNotFound(f"no session {session_id!r} for this API key")
    return Response(status_code=204)

"""Query HTTP API: thin routes that validate input and call ``query_engine``."""

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
from indexing import schema
from query_engine.answering import (
    Answerer,
    AnswerRequest,
    AnswerStream,
    CachedHit,
    citations_from,
)
from query_engine.cache import REDIS_ERRORS
from query_engine.memory import key_fingerprint
from services.common.auth import Scope, bearer_token, require_scope
from services.common.errors import envelope
from services.common.metrics import QUERY_OUTCOMES, QUERY_STAGE_SECONDS
from services.common.settings import QuerySettings
from services.query_api.deps import SessionsDep, SettingsDep
from services.query_api.schemas import Citation, QueryIn, QueryOut, RetrieveOut
from services.query_api.wiring import build_retriever

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["query"], dependencies=[Depends(require_scope(Scope.QUERY))])

CACHED_OUTCOMES = QUERY_OUTCOMES.labels("cached")  # looked up once: the hot path counts it

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SessionNotFound(NotFound):
    code = "session_not_found"


def validated_top_k(
    collection: str, question: str, top_k: int | None, settings: QuerySettings
) -> int:
    schema.validate_collection_name(collection)
    if len(question) > settings.limits.max_question_chars:
        raise InvalidRequest(
            f"the question has {len(question)} characters; the limit is "
            f"{settings.limits.max_question_chars}"
        )
    top_k = top_k or settings.retrieval.top_k
    if top_k > settings.limits.max_top_k:
        raise InvalidRequest(f"top_k may be at most {settings.limits.max_top_k}")
    return top_k


def owner_of(request: Request) -> str:
    """Sessions belong to the API key that asked (auth already admitted the key)."""
    return key_fingerprint(bearer_token(request) or "")


def answer_request(body: QueryIn, request: Request, settings: QuerySettings) -> AnswerRequest:
    return AnswerRequest(
        collection=body.collection,
        question=body.question,
        top_k=validated_top_k(body.collection, body.question, body.top_k, settings),
        filters=body.filters,
        session_id=body.session_id,
        owner=owner_of(request),
    )


def observe(answer: QueryOut) -> None:
    """Stage histograms for work done now; cached and FAQ answers count only as outcomes."""
    if answer.faq is not None:
        QUERY_OUTCOMES.labels("faq").inc()
    elif answer.cached:
        CACHED_OUTCOMES.inc()
    elif answer.coalesced:
        QUERY_OUTCOMES.labels("coalesced").inc()
    else:
        QUERY_OUTCOMES.labels("not_found" if answer.not_found else "answered").inc()
        for stage, ms in answer.timings_ms.items():
            QUERY_STAGE_SECONDS.labels(stage).observe(ms / 1000)


@router.post(
    "/query",
    response_model=QueryOut,
    summary="Answer a question from a collection, with citations",
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE"}},
)
async def query(body: QueryIn, request: Request) -> QueryOut | StreamingResponse | Response:
    """With ``"stream": true`` the answer arrives as Server-Sent Events: ``token`` events
    (``{"text"}``), then one ``done`` event holding the same object as the JSON response (its
    ``answer`` is final: the grounding policy may have changed the streamed text), or an
    ``error`` event in the error envelope if the LLM fails mid-answer."""
    # read from app.state rather than injected: resolving two more dependencies per request
    # cost a cached answer ~8% of its time (FastAPI 0.165), and this is the hot route
    settings: QuerySettings = request.app.state.settings
    answerer: Answerer = request.app.state.answerer
    answer_req = answer_request(body, request, settings)
    if body.stream:
        stream = await answerer.stream(answer_req)
        return StreamingResponse(
            sse_events(stream), media_type="text/event-stream", headers=SSE_HEADERS
        )
    result = await answerer.answer(answer_req)
    if isinstance(result, CachedHit):  # sent as stored: no parsing, no re-validation
        CACHED_OUTCOMES.inc()
        return Response(content=result.body(), media_type="application/json")
    answer = QueryOut(**result)
    observe(answer)
    return answer


async def sse_events(stream: AnswerStream) -> AsyncIterator[str]:
    try:
        async for token in stream.tokens():
            yield sse("token", {"text": token})
        final = QueryOut(**await stream.final())
        observe(final)
        yield sse("done", final.model_dump())
    except DocqaError as exc:
        yield sse("error", envelope(exc.code, exc.message, exc.detail))
    except Exception:  # the status line is gone: the client can only learn of it here
        log.exception("answer stream failed")
        yield sse("error", envelope("internal_error", "internal server error (this is a bug)"))
    finally:
        await stream.aclose()


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post(
    "/retrieve", response_model=RetrieveOut, summary="Ranked sources for a question, no generation"
)
async def retrieve(body: QueryIn, request: Request, settings: SettingsDep) -> RetrieveOut:
    top_k = validated_top_k(body.collection, body.question, body.top_k, settings)
    started = time.perf_counter()
    retriever = build_retriever(request.app, body.collection, top_k, body.filters)
    nodes = await retriever.aretrieve(QueryBundle(body.question))
    total = (time.perf_counter() - started) * 1000
    QUERY_STAGE_SECONDS.labels("retrieve").observe(total / 1000)
    return RetrieveOut(
        citations=[Citation(**c) for c in citations_from(nodes)],
        timings_ms={"embed": round(retriever.trace.embed_ms, 2), "total": round(total, 2)},
    )


@router.delete("/sessions/{session_id}", status_code=204, summary="Forget a conversation's memory")
async def delete_session(session_id: str, request: Request, sessions: SessionsDep) -> Response:
    if len(session_id) > 128:
        raise InvalidRequest("session_id has at most 128 characters")
    try:
        existed = await sessions.delete(owner_of(request), session_id)
    except REDIS_ERRORS as exc:
        raise DependencyUnavailable("redis", "sessions are unavailable: Redis is down") from exc
    if not existed:
        raise SessionNotFound(f"no session {session_id!r} for this API key")
    return Response(status_code=204)

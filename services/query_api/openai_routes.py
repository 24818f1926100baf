"""OpenAI-compatible ``POST /v1/chat/completions`` and ``GET /v1/models``: the official ``openai``
client works as is.

``model`` names the collection (``GET /v1/models`` lists them). The last user message is the
question; earlier user/assistant messages are the conversation (condensed for retrieval like a
session's); system/developer messages are extra instructions appended to docqa's own system
prompt, which keeps its grounding and citation rules. ``max_tokens``, ``temperature`` and
``stop`` apply to this request's LLM call; they and the instructions are part of the answer-cache
key. What the request may hold is in :mod:`services.query_api.openai_schemas`; errors leave in
OpenAI's shape (:mod:`services.query_api.openai_errors`).

docqa's extras (``top_k``, ``filters``, ``session_id``, ``answer_mode``) go in the request body
(``extra_body`` in the client); the response carries citations, grounding and timings in an extra
top-level ``docqa`` field (and, when streaming, in the last chunk with a choice). ``usage`` is an
estimate (see :mod:`query_engine.usage`); when streaming it comes with
``stream_options: {"include_usage": true}``, in a last chunk with no choices, as OpenAI sends it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from docqa_core.errors import DocqaError
from query_engine.answer import Answer
from query_engine.answering import AnswerStream, CachedHit, Lookup
from query_engine.usage import estimate_usage
from services.common.auth import Scope, check_collection, grant_from, require_scope
from services.query_api.deps import RuntimeDep
from services.query_api.openai_errors import OpenAIRoute, docqa_error_body, error_body
from services.query_api.openai_schemas import (
    ChatCompletionIn,
    check_size,
    generation_options,
    question_and_history,
    unsupported_parameter,
)
from services.query_api.outcomes import observe
from services.query_api.requests import build_answer_request
from services.query_api.routes import SSE_HEADERS

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1",
    tags=["openai"],
    dependencies=[Depends(require_scope(Scope.QUERY))],
    route_class=OpenAIRoute,
)


@router.get("/models", summary="The collections, as OpenAI models")
async def list_models(request: Request, runtime: RuntimeDep) -> dict[str, Any]:
    """Only the collections the key may see."""
    grant = grant_from(request)
    collections = [c for c in await runtime.clients.store.list_collections() if grant.sees(c.name)]
    return {
        "object": "list",
        "data": [
            {"id": c.name, "object": "model", "created": c.created, "owned_by": "docqa"}
            for c in collections
        ],
    }


@router.post("/chat/completions", summary="OpenAI-compatible chat completion over a collection")
async def chat_completions(body: ChatCompletionIn, request: Request, runtime: RuntimeDep) -> Any:
    check_collection(request, body.model)
    check_size(body.messages, runtime.settings.limits)
    refused = unsupported_parameter(body)
    if refused is not None:
        raise refused
    question, history = question_and_history(body.messages)
    generation = generation_options(body, runtime.settings.llm.max_answer_tokens)
    asked = build_answer_request(
        request,
        runtime.settings,
        collection=body.model,
        question=question,
        top_k=body.top_k,
        filters=body.filters,
        session_id=body.session_id,
        history=history,
        answer_mode=body.answer_mode,
        generation=generation,
        as_of=body.as_of,
    )
    # looked up here, not inside answer/stream: the usage estimate needs the conversation
    found = await runtime.answerer.lookup(asked)
    reply = Reply(body.model, found, include_usage=body.include_usage)
    if body.stream:
        stream = await runtime.answerer.stream(asked, found)
        return StreamingResponse(
            completion_chunks(stream, reply), media_type="text/event-stream", headers=SSE_HEADERS
        )
    result = await runtime.answerer.answer(asked, found)
    answer = result.to_answer() if isinstance(result, CachedHit) else result
    observe(answer)
    return reply.completion(answer)


@dataclass
class Reply:
    """One completion's identity (id, model, time) and the bodies it is sent in."""

    model: str
    found: Lookup
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def usage(self, answer: Answer) -> dict[str, int]:
        return estimate_usage(
            answer,
            question=self.found.question,
            history=self.found.history,
            instructions=self.found.request.generation.instructions,
        ).to_dict()

    def completion(self, answer: Answer) -> dict[str, Any]:
        return {
            **self._head("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.answer},
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage(answer),
            "docqa": answer.model_dump(),
        }

    def chunk(self, delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
        body = {
            **self._head("chat.completion.chunk"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **({"usage": None} if self.include_usage else {}),
            **extra,
        }
        return sse_data(body)

    def usage_chunk(self, answer: Answer) -> str:
        """OpenAI's last chunk with ``include_usage``: no choices, the usage."""
        head = self._head("chat.completion.chunk")
        return sse_data({**head, "choices": [], "usage": self.usage(answer)})

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}


def sse_data(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def completion_chunks(stream: AnswerStream, reply: Reply) -> AsyncIterator[str]:
    try:
        yield reply.chunk({"role": "assistant", "content": ""}, None)
        async for token in stream.tokens():
            yield reply.chunk({"content": token}, None)
        final = await stream.final()
        observe(final)
        yield reply.chunk({}, "stop", docqa=final.model_dump())
        if reply.include_usage:
            yield reply.usage_chunk(final)
    except DocqaError as exc:
        yield sse_data(docqa_error_body(exc))
    except Exception:
        log.exception("chat completion stream failed")
        yield sse_data(error_body(500, "internal server error (this is a bug)", "internal_error"))
    finally:
        await stream.aclose()
    yield "data: [DONE]\n\n"

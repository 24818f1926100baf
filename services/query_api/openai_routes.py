"""OpenAI-compatible ``POST /v1/chat/completions``: the official ``openai`` client works as is.

``model`` names the collection. The last user message is the question; earlier user/assistant
messages are the conversation (condensed for retrieval like a session's). System messages are
ignored: docqa's own system prompt decides how answers are written. docqa's extras
(``top_k``, ``filters``, ``session_id``) go in the request body (``extra_body`` in the client);
the response carries citations, grounding and timings in an extra top-level ``docqa`` field (and,
when streaming, in the last chunk).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from docqa_core.errors import DocqaError, InvalidRequest
from query_engine.answer import AnswerMode
from query_engine.answering import AnswerStream, CachedHit
from query_engine.memory import Turn
from services.common.auth import Scope, require_scope
from services.common.errors import envelope
from services.query_api.deps import RuntimeDep
from services.query_api.outcomes import observe
from services.query_api.requests import build_answer_request
from services.query_api.routes import SSE_HEADERS

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1", tags=["openai"], dependencies=[Depends(require_scope(Scope.QUERY))]
)

MAX_MESSAGES = 100


class ChatMessageIn(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """Plain text of the message; OpenAI content parts of type ``text`` are joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


class ChatCompletionIn(BaseModel):
    model: str = Field(min_length=1, max_length=64, description="the collection to answer from")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    top_k: int | None = Field(None, ge=1, le=200)
    filters: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = Field(None, max_length=128)
    answer_mode: AnswerMode | None = Field(None, description="as in POST /v1/query")
    # accepted for compatibility; docqa's answer length and sampling are server settings
    max_tokens: int | None = None
    temperature: float | None = None


def question_and_history(messages: list[ChatMessageIn]) -> tuple[str, list[Turn]]:
    if messages[-1].role != "user" or not messages[-1].text().strip():
        raise InvalidRequest("the last message must be a non-empty user message")
    turns: list[Turn] = []
    pending: str | None = None
    for message in messages[:-1]:
        if message.role == "user":
            pending = message.text()
        elif message.role == "assistant" and pending is not None:
            turns.append(Turn(question=pending, answer=message.text()))
            pending = None
    return messages[-1].text().strip(), turns


@router.post("/chat/completions", summary="OpenAI-compatible chat completion over a collection")
async def chat_completions(body: ChatCompletionIn, request: Request, runtime: RuntimeDep) -> Any:
    question, history = question_and_history(body.messages)
    answer_req = build_answer_request(
        request,
        runtime.settings,
        collection=body.model,
        question=question,
        top_k=body.top_k,
        filters=body.filters,
        session_id=body.session_id,
        history=history,
        answer_mode=body.answer_mode,
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if body.stream:
        stream = await runtime.answerer.stream(answer_req)
        return StreamingResponse(
            completion_chunks(stream, completion_id, body.model),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    result = await runtime.answerer.answer(answer_req)
    answer = result.to_answer() if isinstance(result, CachedHit) else result
    observe(answer)
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.answer},
                "finish_reason": "stop",
            }
        ],
        "docqa": answer.model_dump(),
    }


async def completion_chunks(
    stream: AnswerStream, completion_id: str, model: str
) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""}, None)
        async for token in stream.tokens():
            yield chunk({"content": token}, None)
        final = await stream.final()
        observe(final)
        yield chunk({}, "stop", docqa=final.model_dump())
    except DocqaError as exc:
        yield f"data: {json.dumps(envelope(exc.code, exc.message, exc.detail))}\n\n"
    except Exception:
        log.exception("chat completion stream failed")
        failure = envelope("internal_error", "internal server error (this is a bug)")
        yield f"data: {json.dumps(failure)}\n\n"
    finally:
        await stream.aclose()
    yield "data: [DONE]\n\n"

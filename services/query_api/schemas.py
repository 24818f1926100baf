"""Request and response bodies of the query API.

Responses are the engine's own typed answer (``query_engine.answer``): the route, the SSE
``done`` event, the OpenAI route and the cache serialise the same objects.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, Field, field_validator

from query_engine.answer import Answer, AnswerMode, Citation, FaqMatch, Grounding

__all__ = ["Citation", "FaqMatch", "Grounding", "QueryIn", "QueryOut", "RetrieveOut"]

QueryOut = Answer


class QueryIn(BaseModel):
    collection: str = Field(min_length=1, max_length=64, examples=["samples"])
    question: str = Field(min_length=1, examples=["출장 일비는 얼마인가요?"])
    top_k: int | None = Field(
        None, ge=1, le=200, description="sources to use (default from settings)"
    )
    filters: dict[str, Any] = Field(
        default_factory=dict,
        description='{"doc_ids": [...]} and/or metadata equality, e.g. {"source": "a.md"}',
    )
    session_id: str | None = Field(None, max_length=128)
    stream: bool = False
    answer_mode: AnswerMode | None = Field(
        None,
        description="generative (the LLM writes it), extractive (the source sentence that "
        "answers, no LLM) or auto (generative, extractive when that fails its checks or the LLM "
        "is unavailable); default from the server's DOCQA_ANSWER_MODE",
    )
    as_of: date | None = Field(
        None,
        description="search the versions of dated documents in force on this date (YYYY-MM-DD; "
        "default: today); see effective_from / effective_to / version_of in the README",
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question must not be empty")
        return value.strip()


class RetrieveOut(BaseModel):
    citations: list[Citation]
    timings_ms: dict[str, float]

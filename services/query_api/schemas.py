"""Request and response bodies of the query API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator


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

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question must not be empty")
        return value.strip()


class Citation(BaseModel):
    n: int
    doc_id: str
    title: str
    section: str
    page: int | None
    char_start: int | None
    char_end: int | None
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
    cited: bool = Field(False, description="the answer refers to this source as [n]")
    text: str


class Grounding(BaseModel):
    verified: bool
    unsupported: list[dict[str, Any]]
    checked_claims: int


class FaqHit(BaseModel):
    id: str
    question: str = Field(description="the curated question that matched")
    score: float = Field(description="1.0 for an exact match, else the embedding similarity")
    match: str = Field(description='"exact" or "similar"')


class QueryOut(BaseModel):
    answer: str
    citations: list[Citation]
    grounding: Grounding
    not_found: bool
    cached: bool = Field(False, description="served from the answer cache")
    coalesced: bool = Field(
        False, description="an identical concurrent question computed this answer"
    )
    faq: FaqHit | None = Field(None, description="answered from the collection's FAQ")
    standalone_question: str | None = Field(
        None, description="a follow-up in a session, rewritten for retrieval"
    )
    timings_ms: dict[str, float]


class RetrieveOut(BaseModel):
    citations: list[Citation]
    timings_ms: dict[str, float]

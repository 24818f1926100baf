"""The answer to one question, as one typed object from the engine to every wire format.

The JSON route, the SSE ``done`` event, the OpenAI route's ``docqa`` field and the answer cache
all serialise the same :class:`Answer`. Its JSON schema is fingerprinted
(:data:`ANSWER_SCHEMA_FINGERPRINT`) and the fingerprint is part of every answer-cache key, so a
deploy that changes the answer's fields never serves answers cached in the old shape.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import NodeWithScore
from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Citation(_Frozen):
    """Source ``[n]`` of an answer: everything a UI needs to show and highlight the passage."""

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


class UnsupportedClaim(_Frozen):
    sentence: str
    claim: str
    kind: str


class Grounding(_Frozen):
    verified: bool
    unsupported: list[UnsupportedClaim]
    checked_claims: int


class FaqMatch(_Frozen):
    id: str
    question: str = Field(description="the curated question that matched")
    score: float = Field(description="1.0 for an exact match, else the embedding similarity")
    match: str = Field(description='"exact" or "similar"')


class Answer(_Frozen):
    answer: str
    citations: list[Citation]
    grounding: Grounding
    not_found: bool
    cached: bool = Field(False, description="served from the answer cache")
    coalesced: bool = Field(
        False, description="an identical concurrent question computed this answer"
    )
    faq: FaqMatch | None = Field(None, description="answered from the collection's FAQ")
    standalone_question: str | None = Field(
        None, description="a follow-up in a session, rewritten for retrieval"
    )
    timings_ms: dict[str, float]

    def stored_json(self) -> bytes:
        """The answer as the cache stores it: without the fields that belong to one response."""
        return self.model_dump_json(exclude=set(VOLATILE_FIELDS)).encode()


# per response, not per answer: never stored, set on the way out
VOLATILE_FIELDS = ("cached", "coalesced", "timings_ms")

VERIFIED_WITHOUT_CLAIMS = Grounding(verified=True, unsupported=[], checked_claims=0)


def _schema_fingerprint() -> str:
    schema = json.dumps(Answer.model_json_schema(), sort_keys=True)
    return hashlib.sha256(schema.encode()).hexdigest()[:12]


ANSWER_SCHEMA_FINGERPRINT = _schema_fingerprint()


def citations_from(
    nodes: Sequence[NodeWithScore], cited: frozenset[int] = frozenset()
) -> list[Citation]:
    """Source ``[n]`` is ``nodes[n - 1]``."""
    return [_citation(n, node, n in cited) for n, node in enumerate(nodes, start=1)]


def _citation(n: int, node: NodeWithScore, cited: bool) -> Citation:
    meta: dict[str, Any] = node.node.metadata
    return Citation(
        n=n,
        doc_id=str(meta.get("doc_id") or ""),
        title=str(meta.get("title") or ""),
        section=str(meta.get("section") or ""),
        page=meta.get("page"),
        char_start=meta.get("char_start"),
        char_end=meta.get("char_end"),
        score=round(float(node.score or 0.0), 6),
        dense_score=meta.get("dense_score"),
        bm25_score=meta.get("bm25_score"),
        cited=cited,
        text=node.node.get_content(),
    )

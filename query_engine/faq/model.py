"""What the FAQ is made of: its settings, an entry as sent and as stored, a match, and the
results of the admin calls. Plain frozen data; the checks on incoming entries are in
``validation.py``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from docqa_core.errors import NotFound

MatchKind = Literal["exact", "similar"]


class FaqEntryNotFound(NotFound):
    code = "faq_entry_not_found"


@dataclass(frozen=True)
class FaqConfig:
    enabled: bool = True
    similarity_threshold: float = 0.97
    max_entries_per_collection: int = 5000
    max_entries_per_request: int = 500
    max_question_chars: int = 2000
    max_answer_chars: int = 8000
    model: str = "multilingual-e5-small"  # vectors of another model are not compared
    cached_collections: int = 256  # snapshots kept in process (least recently used dropped)


@dataclass(frozen=True)
class FaqEntryIn:
    """One entry as an admin sends it; ``id`` defaults to a hash of the normalized question."""

    question: str
    answer: str
    id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: str
    answer: str
    normalized: str
    created_at: str
    updated_at: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What the admin API shows: everything but the vector."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class FaqMatch:
    id: str
    question: str  # the curated question that matched, not the one asked
    answer: str
    score: float  # 1.0 for an exact match, else the cosine similarity
    match: MatchKind
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "score": round(self.score, 4),
            "match": self.match,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class FaqPage:
    total: int
    entries: list[FaqEntry]


@dataclass(frozen=True)
class PutResult:
    ids: list[str]  # in the order of the request
    created: int
    updated: int
    unchanged: int

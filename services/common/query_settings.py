"""Settings only the query service reads: the answer cache, conversations, the FAQ and admission
control. Kept apart from ``settings.py`` (which re-exports them) so each file holds one subject."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator


class CacheSettings(BaseModel):
    enabled: bool = Field(True, description="answer cache and coalescing of identical questions")
    answer_ttl_s: int = Field(3600, ge=1, le=30 * 86400, description="answer cache entry lifetime")
    embedding_ttl_s: int = Field(
        86400, ge=1, le=30 * 86400, description="query-embedding cache entry lifetime"
    )
    coalesce_wait_s: float = Field(
        120.0, gt=0, le=3600, description="how long a duplicate waits for another replica's answer"
    )
    hot_entries: int = Field(
        4096,
        ge=0,
        le=1_000_000,
        description="answers each replica also keeps in memory, served without Redis (0: off)",
    )
    version_max_age_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="longest a replica trusts its copy of an index or FAQ version between "
        "announced bumps (it drops the copy at once when a bump is announced)",
    )


class SessionSettings(BaseModel):
    ttl_s: int = Field(86400, ge=60, le=30 * 86400, description="idle time before a session ends")
    max_history_tokens: int = Field(
        512, ge=0, le=100_000, description="earlier turns kept in the prompt (oldest dropped)"
    )
    max_turns: int = Field(20, ge=1, le=1000, description="turns stored per session")
    condense_timeout_s: float = Field(
        20.0, gt=0, le=600, description="time allowed to rewrite a follow-up as standalone"
    )


class FaqSettings(BaseModel):
    enabled: bool = Field(True, description="answer questions that match a curated FAQ entry")
    similarity_threshold: float = Field(
        0.97,
        ge=0.5,
        le=1.0,
        description="cosine of the question to an FAQ question that counts as the same question "
        "(calibrated for multilingual-e5-small by bench/faq.py: recalibrate for another embedder)",
    )
    max_entries_per_collection: int = Field(5000, ge=1, le=100_000)
    max_entries_per_request: int = Field(
        500, ge=1, le=100_000, description="entries one PUT may hold (each is embedded)"
    )
    max_answer_chars: int = Field(8000, ge=10, le=1_000_000)


class AdmissionSettings(BaseModel):
    """Retrieval/extraction one query replica runs at once; beyond: 503 ``overloaded``."""

    max_active: int = Field(4, ge=1, le=1024, description="stages running at once (~2x cores)")
    max_queued: int = Field(32, ge=0, le=100_000, description="stages waiting for a turn")
    max_wait_s: float = Field(5.0, gt=0, le=300, description="longest a question waits its turn")


class RerankSettings(BaseModel):
    """The optional cross-encoder stage (``query_engine.rerank``): off while ``url`` is empty."""

    url: str = Field(
        "",
        description="the rerank endpoint itself, e.g. http://reranker:8000/v1/rerank (vLLM, "
        "Cohere, Jina, Infinity) or http://tei:8080/rerank (api=tei); empty: no rerank stage",
    )
    model: str = Field("", description="model name sent with each request (api=cohere)")
    api_key: SecretStr = SecretStr("")
    api: Literal["cohere", "tei"] = Field("cohere", description="the endpoint's request shape")
    candidates: int = Field(
        30, ge=2, le=200, description="first fused candidates the reranker re-orders"
    )
    timeout_s: float = Field(
        1.0, gt=0, le=60, description="longest a question waits for the reranker (then: fused)"
    )
    cooldown_s: float = Field(
        5.0, ge=0, le=600, description="after a failed call, questions skip the stage this long"
    )
    max_chars: int = Field(2000, ge=100, le=100_000, description="of each passage sent")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("DOCQA_RERANK_URL must be an http(s) URL")
        return value

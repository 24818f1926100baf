"""Per-API-key rate limits and quotas (``DOCQA_RATE_LIMIT_*``); enforced by
:mod:`services.common.rate_limits`. A limit of 0 means unlimited."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, model_validator
from pydantic_settings import NoDecode


class KeyLimits(BaseModel):
    """The limits of one API key."""

    queries_per_minute: int = Field(
        600,
        ge=0,
        le=10_000_000,
        description="query service: /v1/query, /v1/retrieve and /v1/chat/completions requests "
        "per minute, smoothed (GCRA: the whole minute's worth may come at once)",
    )
    concurrent_streams: int = Field(
        8, ge=0, le=100_000, description="query service: streamed answers open at once"
    )
    ingest_bytes_per_day: int = Field(
        2 * 1024**3,
        ge=0,
        le=2**50,
        description="indexing service: bytes of uploaded files or JSON documents per 24 hours",
    )


class KeyLimitsOverride(BaseModel):
    """What an entry of ``DOCQA_RATE_LIMIT_PER_KEY`` may set; unset fields keep the defaults."""

    model_config = {"extra": "forbid"}

    queries_per_minute: int | None = Field(None, ge=0, le=10_000_000)
    concurrent_streams: int | None = Field(None, ge=0, le=100_000)
    ingest_bytes_per_day: int | None = Field(None, ge=0, le=2**50)


def _json_map(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.strip()
        try:
            return json.loads(stripped) if stripped else {}
        except ValueError as exc:
            raise ValueError(
                "DOCQA_RATE_LIMIT_PER_KEY must be a JSON object, e.g. "
                '{"<key fingerprint>": {"queries_per_minute": 60}}'
            ) from exc
    return value


PerKey = Annotated[dict[str, KeyLimitsOverride], NoDecode, BeforeValidator(_json_map)]


class RateLimitSettings(KeyLimits):
    per_key: PerKey = Field(
        default_factory=dict,
        description="JSON {fingerprint: {queries_per_minute?, concurrent_streams?, "
        "ingest_bytes_per_day?}}; a fingerprint is the first 16 hex digits of the key's SHA-256",
    )

    @model_validator(mode="after")
    def _fingerprints(self) -> RateLimitSettings:
        for name in self.per_key:
            if not name.strip():
                raise ValueError("DOCQA_RATE_LIMIT_PER_KEY: empty key fingerprint")
        return self

    def for_key(self, fingerprint: str) -> KeyLimits:
        defaults = KeyLimits(
            queries_per_minute=self.queries_per_minute,
            concurrent_streams=self.concurrent_streams,
            ingest_bytes_per_day=self.ingest_bytes_per_day,
        )
        override = self.per_key.get(fingerprint)
        if override is None:
            return defaults
        return defaults.model_copy(update=override.model_dump(exclude_none=True))

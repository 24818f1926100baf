"""The one error taxonomy of docqa.

Domain code raises these; the services turn them into the HTTP error envelope. Each error knows
its stable machine-readable ``code`` and the HTTP status a client should see, so that mapping is
not repeated in every route.
"""

from __future__ import annotations

import math
from typing import Any


class DocqaError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidRequest(DocqaError):
    code = "invalid_request"
    http_status = 422


class NotFound(DocqaError):
    code = "not_found"
    http_status = 404


class CollectionNotFound(NotFound):
    code = "collection_not_found"

    @classmethod
    def named(cls, collection: str) -> CollectionNotFound:
        """The one body of an unknown collection: auth refuses a collection a key may not see
        with exactly this error, so the answer tells nothing about whether it exists."""
        return cls(f"collection {collection!r} does not exist", detail={"collection": collection})


class DocumentNotFound(NotFound):
    code = "document_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"

    @classmethod
    def named(cls, job_id: str) -> JobNotFound:
        """The one body of an unknown job (also of another tenant's job)."""
        return cls(f"job {job_id!r} does not exist (or has expired)")


class Conflict(DocqaError):
    code = "conflict"
    http_status = 409


class PayloadTooLarge(DocqaError):
    code = "payload_too_large"
    http_status = 413


class UnsupportedMediaType(DocqaError):
    code = "unsupported_media_type"
    http_status = 415


class RateLimited(DocqaError):
    code = "rate_limited"
    http_status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.retry_after_s = retry_after_s
        # sent with the 429 besides Retry-After (e.g. the X-RateLimit-* headers of a quota)
        self.headers = dict(headers or {})


class DependencyUnavailable(DocqaError):
    """A backing service (Milvus, Redis, the LLM pool, the embedder) cannot be reached.

    Sent as 503 with ``Retry-After: retry_after_s``: an outage is expected to pass (a restarted
    server, a breaker's cooldown), and clients should come back rather than give up."""

    code = "dependency_unavailable"
    http_status = 503

    def __init__(
        self, dependency: str, message: str, *, detail: Any = None, retry_after_s: float = 5.0
    ) -> None:
        super().__init__(message, detail=detail)
        self.dependency = dependency
        self.retry_after_s = retry_after_s


def retry_after_header(exc: DocqaError) -> dict[str, str]:
    """``Retry-After`` (whole seconds, at least 1) of a 429 or 503; empty for other errors."""
    if isinstance(exc, (RateLimited, DependencyUnavailable)):
        return {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
    return {}

"""Failover rules: which failures are the server's fault, and when a request may go elsewhere.

A request that failed because of the *server* (it could not be reached, answered 5xx, broke the
response off, or produced no first token in time) is retried on another endpoint, at most
``retries`` times, as long as nothing of the answer has reached the caller: a non-streamed
request until it completes, a streamed one until its first token. A request the server refused
as malformed (4xx) would be refused everywhere, and running out of the total time budget leaves
no time for a second try, so neither is retried.
"""

from __future__ import annotations

from enum import StrEnum

import httpx


class FailureKind(StrEnum):
    CONNECT = "connect_error"  # refused, unreachable, DNS: nothing was sent
    SERVER_ERROR = "server_error"  # HTTP 5xx
    BROKEN = "broken_response"  # connection dropped or garbage mid-response
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"
    TOTAL_TIMEOUT = "total_timeout"
    REJECTED = "rejected"  # HTTP 4xx: the request itself is wrong for this server


RETRYABLE = frozenset(
    {
        FailureKind.CONNECT,
        FailureKind.SERVER_ERROR,
        FailureKind.BROKEN,
        FailureKind.FIRST_TOKEN_TIMEOUT,
    }
)
# failures that say something about the endpoint's health (fed to its circuit breaker)
ENDPOINT_FAULTS = RETRYABLE | {FailureKind.TOTAL_TIMEOUT}


class EndpointFailure(Exception):
    """One attempt on one endpoint failed; ``kind`` decides what happens next."""

    def __init__(self, kind: FailureKind, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.status = status


def may_retry(kind: FailureKind, *, tokens_sent: bool, attempt: int, retries: int) -> bool:
    """``attempt`` counts from 1: the first try is attempt 1, its retry attempt 2."""
    return kind in RETRYABLE and not tokens_sent and attempt <= retries


def is_hard_failure(kind: FailureKind) -> bool:
    """A refused connection means the server is down, not slow: eject it at once."""
    return kind is FailureKind.CONNECT


def failure_from_status(status: int, body: str) -> EndpointFailure:
    kind = FailureKind.SERVER_ERROR if status >= 500 else FailureKind.REJECTED
    return EndpointFailure(kind, f"HTTP {status}: {body[:300]}", status=status)


def failure_from_exception(exc: BaseException) -> EndpointFailure:
    """httpx's transport errors in the taxonomy above."""
    if isinstance(exc, EndpointFailure):
        return exc
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        kind = FailureKind.CONNECT
    elif isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout):
        kind = FailureKind.TOTAL_TIMEOUT
    else:
        kind = FailureKind.BROKEN
    return EndpointFailure(kind, f"{type(exc).__name__}: {exc}"[:300])

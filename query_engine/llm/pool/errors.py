"""What the pool's callers are told when no endpoint could serve them: shared by the request
runner and by streams, whose failures after the first token are final."""

from __future__ import annotations

from docqa_core.errors import DependencyUnavailable
from query_engine.llm.failover import EndpointFailure, FailureKind


class NoEndpoint(Exception):
    """No endpoint could serve the route at all (none healthy, or none serves the model)."""


def failure_error(failure: EndpointFailure, attempts: int) -> DependencyUnavailable:
    """The error for a request that failed for good after ``attempts`` attempts."""
    if failure.kind is FailureKind.REJECTED:
        message = f"the LLM server rejected the request: {failure.message}"
    else:
        message = f"the LLM servers failed ({failure.kind.value}, {attempts} attempt(s))"
    return DependencyUnavailable(
        "llm", message, detail={"reason": failure.kind.value, "attempts": attempts}
    )

"""How each answer counts in the metrics: its outcome, and stage timings for work done now."""

from __future__ import annotations

from query_engine.answer import Answer
from services.common.metrics import QUERY_OUTCOMES, QUERY_STAGE_SECONDS

CACHED_OUTCOMES = QUERY_OUTCOMES.labels("cached")  # looked up once: the hot path counts it


def observe(answer: Answer | None) -> None:
    """``None`` is a cache hit sent as stored bytes. Cached and FAQ answers count only as
    outcomes; stage histograms are for work done for this request."""
    if answer is None or answer.cached:
        CACHED_OUTCOMES.inc()
    elif answer.faq is not None:
        QUERY_OUTCOMES.labels("faq").inc()
    elif answer.coalesced:
        QUERY_OUTCOMES.labels("coalesced").inc()
    else:
        QUERY_OUTCOMES.labels("not_found" if answer.not_found else "answered").inc()
        for stage, ms in answer.timings_ms.items():
            QUERY_STAGE_SECONDS.labels(stage).observe(ms / 1000)

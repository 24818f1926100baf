"""Prometheus metrics of the vLLM pool (the process-wide default registry, which the services'
``/metrics`` route exports together with ``services/common/metrics.py``)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge(
    "docqa_llm_queue_depth", "LLM requests waiting for a free endpoint (all at max in-flight)"
)
QUEUE_WAIT_SECONDS = Histogram(
    "docqa_llm_queue_wait_seconds",
    "Time an LLM request waited for a free endpoint (0 when one was free at once)",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REJECTED = Counter(
    "docqa_llm_rejected_total",
    "LLM requests refused with 429 (queue_full, queue_timeout)",
    ["reason"],
)
REQUESTS = Counter(
    "docqa_llm_requests_total",
    "LLM requests per endpoint and outcome (ok, or the failure kind)",
    ["endpoint", "outcome"],
)
RETRIES = Counter("docqa_llm_retries_total", "LLM requests retried on another endpoint")
IN_FLIGHT = Gauge("docqa_llm_in_flight", "LLM requests this process has in flight", ["endpoint"])
ENDPOINT_STATE = Gauge(
    "docqa_llm_endpoint_state",
    "Circuit breaker of each endpoint: 0 closed (in use), 1 half-open (on trial), 2 open (ejected)",
    ["endpoint"],
)
BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}


def forget_endpoint(url: str) -> None:
    """Drop an endpoint's per-endpoint gauges once discovery removed it."""
    for gauge in (IN_FLIGHT, ENDPOINT_STATE):
        with contextlib.suppress(KeyError):
            gauge.remove(url)

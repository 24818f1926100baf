"""Prometheus metrics shared by both services (one registry per process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.responses import Response

from indexing.ingest_metrics import Stage

HTTP_REQUESTS = Counter(
    "docqa_http_requests_total", "HTTP requests served", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "docqa_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUERY_STAGE_SECONDS = Histogram(
    "docqa_query_stage_seconds",
    "Time spent in each stage of answering a question",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INGESTED_DOCUMENTS = Counter(
    "docqa_ingested_documents_total", "Documents processed by ingestion", ["outcome"]
)
INGESTED_CHUNKS = Counter("docqa_ingested_chunks_total", "Chunks written to Milvus")
INGESTED_BYTES = Counter(
    "docqa_ingested_bytes_total", "UTF-8 bytes of document text written (indexed documents)"
)
INGEST_FAILURES = Counter(
    "docqa_ingest_failures_total",
    "Documents that failed, by the stage that failed them (parse, plan, write)",
    ["stage"],
)
INGEST_STAGE_SECONDS = Histogram(
    "docqa_ingest_stage_seconds",
    "Time of each ingestion stage: parse (one file), plan, embed, write (one group of documents)",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)


class PrometheusIngestionMetrics:
    """``indexing.ingest_metrics.IngestionMetrics`` on this process's Prometheus registry."""

    def count_document(
        self, outcome: str, *, chunks: int = 0, text_bytes: int = 0, failed_at: Stage | None = None
    ) -> None:
        INGESTED_DOCUMENTS.labels(outcome).inc()
        if outcome == "indexed":
            INGESTED_CHUNKS.inc(chunks)
            INGESTED_BYTES.inc(text_bytes)
        elif outcome == "failed":
            INGEST_FAILURES.labels(failed_at or "plan").inc()

    def observe_stage(self, stage: Stage, seconds: float) -> None:
        INGEST_STAGE_SECONDS.labels(stage).observe(seconds)


_request_children: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}


def count_request(service: str, method: str, route: str, status: int, elapsed_s: float) -> None:
    """One request in the HTTP counters. The labelled children are kept: ``labels()`` on every
    request took a lock, a tuple of strings and a dict lookup inside prometheus_client."""
    key = (service, method, route, status)
    children = _request_children.get(key)
    if children is None:
        children = (
            HTTP_REQUESTS.labels(service, method, route, str(status)),
            HTTP_LATENCY.labels(service, method, route),
        )
        _request_children[key] = children
    counter, latency = children
    counter.inc()
    latency.observe(elapsed_s)


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


QUERY_OUTCOMES = Counter(
    "docqa_query_outcomes_total",
    "Questions by how they were answered (answered, not_found, cached, coalesced, faq)",
    ["outcome"],
)
RERANK_CALLS = Counter(
    "docqa_rerank_total",
    "Questions by what the rerank stage did: reranked, failed (the fused order stood), "
    "cooling_down (skipped after a failure), too_few (fewer than two candidates)",
    ["outcome"],
)


def record_rerank(status: str, ms: float) -> None:
    """``query_engine.rerank``'s report of one question (its trace status and milliseconds)."""
    outcome = status.split(":", 1)[0].replace(" ", "_")
    RERANK_CALLS.labels("too_few" if outcome == "too_few_candidates" else outcome).inc()
    if ms:
        QUERY_STAGE_SECONDS.labels("rerank").observe(ms / 1000)

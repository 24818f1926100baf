"""What ingestion reports while it runs: documents by outcome, chunks and bytes written, failures
by the stage that failed them, and the time spent in each stage.

``indexing`` knows no metrics library (it takes plain objects, see DESIGN.md): the services give
the pipeline, the job worker and ``docqa ingest`` an :class:`IngestionMetrics` that feeds
Prometheus (``services.common.metrics``); without one nothing is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Protocol

# parse: a file or upload → documents (PDF, DOCX, HWPX and HTML in a child process); plan: the
# lookup of what is stored, chunking and BM25 analysis; embed; write: upsert, generation switch,
# deletion of old chunks, version bump
Stage = Literal["parse", "plan", "embed", "write"]


class IngestionMetrics(Protocol):
    def count_document(
        self, outcome: str, *, chunks: int = 0, text_bytes: int = 0, failed_at: Stage | None = None
    ) -> None:
        """One document settled: ``indexed`` (its ``chunks`` and ``text_bytes`` were written),
        ``unchanged`` or ``failed`` (at stage ``failed_at``)."""

    def observe_stage(self, stage: Stage, seconds: float) -> None:
        """One run of ``stage`` (a file, or a group of documents) took ``seconds``."""


class NoMetrics:
    """Records nothing: for callers that do not export metrics."""

    def count_document(
        self, outcome: str, *, chunks: int = 0, text_bytes: int = 0, failed_at: Stage | None = None
    ) -> None:
        return None

    def observe_stage(self, stage: Stage, seconds: float) -> None:
        return None


@contextmanager
def timed(metrics: IngestionMetrics, stage: Stage) -> Iterator[None]:
    """Observe the block's wall time as ``stage``, whether it ends well or not."""
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.observe_stage(stage, time.perf_counter() - started)

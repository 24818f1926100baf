"""The ``hybrid+rerank`` mode of ``bench.retrieval_eval``: the service's hybrid retrieval with the
rerank stage (``query_engine.rerank``) behind it, asked of a real ``/rerank`` endpoint.

``--rerank-url URL [--rerank-model NAME]`` measures a reranker you run (vLLM serving a
cross-encoder, TEI, …); ``--rerank-local`` starts ``deploy.rerank_server`` (the local chat model
served by vLLM as a pooling model, a bi-encoder: it measures the stage's cost on this machine, not
what a cross-encoder would gain). Each answerable question is retrieved once more through a
:class:`HybridRetriever` holding the stage, reranking the first ``candidates`` of the fused
ranking; the mode's ranking is the documents of the first RERANK_DEPTH sources. The stage's own
latency and its failures are reported next to the figures, under ``"rerank"``.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from bench.retrieval_collect import RECORDED_MODES, QuestionHits

MODE = "hybrid+rerank"
RERANK_DEPTH = 10  # sources read: recall@10 is the deepest figure reported


@dataclass
class RerankRun:
    """What the mode saw: the stage's milliseconds and outcome per question."""

    url: str
    model: str
    candidates: int
    timeout_s: float
    ms: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        reranked = [ms for ms, s in zip(self.ms, self.statuses, strict=True) if s == "reranked"]
        return {
            "url": self.url,
            "model": self.model,
            "candidates": self.candidates,
            "timeout_s": self.timeout_s,
            "questions": len(self.statuses),
            "reranked": len(reranked),
            "not_reranked": "; ".join(sorted({s for s in self.statuses if s != "reranked"}))
            or "none",
            "p50_ms": round(statistics.median(reranked), 1) if reranked else None,
        }


def register(run: RerankRun) -> None:
    """Adds ``hybrid+rerank`` to the modes recorded during collection."""
    from query_engine.rerank import HttpReranker, RerankConfig

    stage = HttpReranker(
        RerankConfig(
            url=run.url,
            model=run.model,
            candidates=run.candidates,
            timeout_s=run.timeout_s,
            cooldown_s=0,  # a benchmark wants every question tried
        )
    )

    async def reranked(
        collection: str, question: str, clients: Any, config: Any, row: QuestionHits
    ) -> list[str]:
        from query_engine.retrieval import HybridRetriever

        retriever = HybridRetriever(
            store=clients.store,
            embedder=clients.embedder,
            collection=collection,
            config=replace(config, top_k=RERANK_DEPTH, parent_tokens=0),
            reranker=stage,
        )
        nodes = await retriever.aretrieve(question)
        run.ms.append(retriever.trace.rerank.ms)
        run.statuses.append(retriever.trace.rerank.status)
        doc_ids = [str(n.node.metadata.get("doc_id") or "") for n in nodes]
        return list(dict.fromkeys(doc_ids))

    RECORDED_MODES[MODE] = reranked


@contextlib.contextmanager
def local_rerank_server() -> Iterator[str]:
    """``deploy.rerank_server`` on a free port for the run (log: ``.docqa/logs/bench-rerank.log``);
    yields its ``/v1/rerank`` URL."""
    from deploy import processes, stack
    from deploy.rerank_server import rerank_spec, rerank_url

    paths = stack.default_paths()
    stack.setup(paths)
    port = processes.free_port()
    spec = rerank_spec(paths, port, name="bench-rerank")
    processes.start(spec)
    try:
        ready = stack.http_ready(f"http://127.0.0.1:{port}/health")
        processes.wait_until_ready(spec, ready, timeout_s=300)
        yield rerank_url(port)
    finally:
        processes.stop(spec.pid_path)

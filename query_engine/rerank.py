"""The optional rerank stage: the first candidates of the fused ranking re-ordered by a
cross-encoder served over HTTP, within a latency budget, falling back to the fused order.

A cross-encoder reads the question and a passage together, which a bi-encoder (our dense side)
and BM25 cannot; it is the usual way to make the *first* hit right. No cross-encoder's weights
ship in a PyPI package (see BENCHMARKS.md), so docqa does not run one itself: it calls the
``/rerank`` endpoint that production servers provide, in one of two shapes:

- ``cohere`` (vLLM's ``/rerank`` and ``/v1/rerank``, Cohere, Jina, Infinity):
  ``{"model", "query", "documents", "top_n"}`` → ``{"results": [{"index", "relevance_score"}]}``
- ``tei`` (Hugging Face text-embeddings-inference): ``{"query", "texts"}`` →
  ``[{"index", "score"}]``

The stage never makes an answer fail: a timeout, an error or a malformed reply leaves the fused
order as it was and says why in the retrieval trace. After a failure the endpoint is left alone
for ``cooldown_s``, so a dead reranker costs one timeout per cool-down, not one per question.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from llama_index.core.schema import NodeWithScore

log = logging.getLogger(__name__)

RerankApi = Literal["cohere", "tei"]


@dataclass(frozen=True, slots=True)
class RerankConfig:
    url: str  # the endpoint itself, e.g. http://reranker:8000/v1/rerank
    model: str = ""
    api_key: str = ""
    api: RerankApi = "cohere"
    candidates: int = 30  # the first this many fused candidates are reranked
    timeout_s: float = 1.0  # the whole call; beyond it the fused order stands
    cooldown_s: float = 5.0  # after a failure, questions skip the stage this long
    max_chars: int = 2000  # of each passage sent (cross-encoders read ~512 tokens)


@dataclass(frozen=True, slots=True)
class RerankTrace:
    """What the stage did for one question: ``status`` is ``reranked`` or why it did not."""

    status: str = "off"
    ms: float = 0.0
    candidates: int = 0


class RerankFailed(Exception):
    """The endpoint did not give one score per passage in time."""


class HttpReranker:
    """One rerank endpoint, shared by every question of a replica (one connection pool)."""

    def __init__(
        self,
        config: RerankConfig,
        client: httpx.AsyncClient | None = None,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        """``observe(status, ms)``: told what the stage did for each question (metrics)."""
        self.config = config
        self._observe = observe or (lambda status, ms: None)
        self._headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = client or httpx.AsyncClient()
        self._resting_until = 0.0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def rerank(
        self, question: str, nodes: list[NodeWithScore]
    ) -> tuple[list[NodeWithScore], RerankTrace]:
        """``nodes`` with their first ``candidates`` re-ordered by the reranker's scores (which
        become their scores); the rest follow as they were. Never raises for the endpoint."""
        ranked, trace = await self._rerank(question, nodes)
        self._observe(trace.status, trace.ms)
        return ranked, trace

    async def _rerank(
        self, question: str, nodes: list[NodeWithScore]
    ) -> tuple[list[NodeWithScore], RerankTrace]:
        head = nodes[: self.config.candidates]
        if len(head) < 2:
            return nodes, RerankTrace("too few candidates", candidates=len(head))
        if time.monotonic() < self._resting_until:
            return nodes, RerankTrace("cooling down", candidates=len(head))
        started = time.perf_counter()
        try:
            scores = await self.scores(question, [_passage(n) for n in head])
        except RerankFailed as exc:
            self._resting_until = time.monotonic() + self.config.cooldown_s
            log.warning("rerank skipped: %s", exc)
            ms = (time.perf_counter() - started) * 1000
            return nodes, RerankTrace(f"failed: {exc}"[:200], ms, len(head))
        ranked = sorted(zip(scores, range(len(head)), strict=True), key=lambda s: (-s[0], s[1]))
        reordered = [NodeWithScore(node=head[i].node, score=score) for score, i in ranked]
        ms = (time.perf_counter() - started) * 1000
        return [*reordered, *nodes[len(head) :]], RerankTrace("reranked", ms, len(head))

    async def scores(self, question: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage, in their order."""
        texts = [p[: self.config.max_chars] for p in passages]
        try:
            async with asyncio.timeout(self.config.timeout_s):
                response = await self._client.post(
                    self.config.url, json=self._body(question, texts), headers=self._headers
                )
        except TimeoutError as exc:
            raise RerankFailed(f"no reply within {self.config.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise RerankFailed(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise RerankFailed(f"HTTP {response.status_code}: {response.text[:120]}")
        try:
            return _scores_of(response.json(), self.config.api, len(texts))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise RerankFailed(f"unreadable reply ({type(exc).__name__}: {exc})") from exc

    def _body(self, question: str, texts: list[str]) -> dict[str, Any]:
        if self.config.api == "tei":
            return {"query": question, "texts": texts, "truncate": True}
        body: dict[str, Any] = {"query": question, "documents": texts, "top_n": len(texts)}
        if self.config.model:
            body["model"] = self.config.model
        return body


def _scores_of(reply: Any, api: RerankApi, count: int) -> list[float]:
    """The reply's scores put back in the passages' order; every passage must have one."""
    items = reply if api == "tei" else reply["results"]
    key = "score" if api == "tei" else "relevance_score"
    scores: list[float | None] = [None] * count
    for item in items:
        index = int(item["index"])
        if not 0 <= index < count:
            raise IndexError(f"index {index} of {count} passages")
        score = float(item[key])
        if not math.isfinite(score):  # NaN would leave the sort's order undefined
            raise ValueError(f"score {score} for passage {index}")
        scores[index] = score
    if any(s is None for s in scores):
        raise ValueError(f"{scores.count(None)} of {count} passages have no score")
    return [float(s) for s in scores if s is not None]


def _passage(node: NodeWithScore) -> str:
    """What the cross-encoder reads: the chunk under its title and section, as a reader would."""
    metadata = node.node.metadata
    heading = " > ".join(str(v) for v in (metadata.get("title"), metadata.get("section")) if v)
    text = node.node.get_content()
    return f"{heading}\n{text}" if heading else text

"""Hybrid retrieval: dense (e5 ``query:``) and BM25 over app-analyzed text, fused by weighted RRF.

The two searches run concurrently and are fused here rather than in Milvus, because the fusion
needs each side's raw scores: the best dense cosine decides whether anything relevant was found at
all (then the engine can answer "not found" without calling the LLM), and both scores go into the
citations for debugging and evaluation.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from indexing import schema
from indexing.analysis import analyze
from indexing.embedding import Embedder
from indexing.errors import InvalidRequest
from indexing.store import ChunkStore, Hit, quote

_METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FilterValue = str | int | float | bool
MAX_FILTER_VALUES = 100


@dataclass(frozen=True)
class RetrievalConfig:
    top_k: int = 4
    candidates: int = 20
    rrf_k: int = 60
    dense_weight: float = 1.0
    sparse_weight: float = 1.0
    min_dense_score: float = 0.80


@dataclass
class RetrievalTrace:
    """What the last retrieval did, for timings and the "nothing relevant" decision."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    best_dense_score: float | None = None
    dense_hits: int = 0
    sparse_hits: int = 0
    relevant: bool = False


class HybridRetriever(BaseRetriever):
    def __init__(
        self,
        *,
        store: ChunkStore,
        embedder: Embedder,
        collection: str,
        config: RetrievalConfig,
        filters: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._store = store
        self._embedder = embedder
        self._collection = collection
        self._config = config
        self._expr = filter_expression(filters or {})
        self.trace = RetrievalTrace()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return asyncio.run(self._aretrieve(query_bundle))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        question = query_bundle.query_str
        await self._store.require(self._collection)
        started = time.perf_counter()
        vector = await self._embedder.embed_query(question)
        embedded = time.perf_counter()
        dense, sparse = await asyncio.gather(
            self._store.search_dense(
                self._collection, vector.tolist(), limit=self._config.candidates, expr=self._expr
            ),
            self._store.search_sparse(
                self._collection, analyze(question), limit=self._config.candidates, expr=self._expr
            ),
        )
        self.trace = RetrievalTrace(
            embed_ms=(embedded - started) * 1000,
            search_ms=(time.perf_counter() - embedded) * 1000,
            best_dense_score=dense[0].score if dense else None,
            dense_hits=len(dense),
            sparse_hits=len(sparse),
        )
        self.trace.relevant = bool(dense) and dense[0].score >= self._config.min_dense_score
        fused = fuse(dense, sparse, self._config)
        return fused[: self._config.top_k]


def fuse(
    dense: Sequence[Hit], sparse: Sequence[Hit], config: RetrievalConfig
) -> list[NodeWithScore]:
    """Weighted reciprocal-rank fusion; ties keep the dense order."""
    scores: dict[str, float] = {}
    hits: dict[str, Hit] = {}
    dense_score = {hit.chunk_id: hit.score for hit in dense}
    sparse_score = {hit.chunk_id: hit.score for hit in sparse}
    for weight, ranked in ((config.dense_weight, dense), (config.sparse_weight, sparse)):
        for rank, hit in enumerate(ranked):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (
                config.rrf_k + rank + 1
            )
            hits.setdefault(hit.chunk_id, hit)
    ordered = sorted(scores, key=lambda cid: scores[cid], reverse=True)
    return [
        NodeWithScore(
            node=node_from_hit(hits[cid], dense_score.get(cid), sparse_score.get(cid)),
            score=scores[cid],
        )
        for cid in ordered
    ]


def node_from_hit(hit: Hit, dense_score: float | None, sparse_score: float | None) -> TextNode:
    entity = hit.entity
    metadata = dict(entity.get(schema.METADATA) or {})
    metadata.update(
        {
            "doc_id": entity.get(schema.DOC_ID),
            "chunk_index": entity.get(schema.CHUNK_INDEX),
            "dense_score": dense_score,
            "bm25_score": abs(sparse_score) if sparse_score is not None else None,
        }
    )
    return TextNode(id_=hit.chunk_id, text=entity.get(schema.TEXT, ""), metadata=metadata)


def filter_expression(filters: Mapping[str, Any]) -> str:
    """Request filters → a Milvus boolean expression.

    ``doc_ids`` selects documents; any other key filters on the chunk metadata (title, source,
    page, section, or a key the caller stored), by equality or, for a list, membership.
    """
    clauses = []
    for key, value in filters.items():
        if key == "doc_ids":
            literal = _literal_list(value, key)
            if not all(isinstance(v, str) for v in value):
                raise InvalidRequest("filter 'doc_ids' takes a list of strings")
            clauses.append(f"{schema.DOC_ID} in {literal}")
            continue
        if not _METADATA_KEY.fullmatch(key):
            raise InvalidRequest(f"filter key {key!r} is not a valid metadata key")
        field_ref = f'{schema.METADATA}["{key}"]'
        if isinstance(value, list):
            clauses.append(f"{field_ref} in {_literal_list(value, key)}")
        else:
            clauses.append(f"{field_ref} == {_literal(value, key)}")
    return " and ".join(clauses)


def _literal(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidRequest(f"filter {key!r} takes finite numbers only")
        return json.dumps(value)
    if isinstance(value, str):
        return quote(value)
    raise InvalidRequest(f"filter {key!r} takes a string, number, boolean or a list of them")


def _literal_list(values: Any, key: str) -> str:
    if not isinstance(values, list) or not values or len(values) > MAX_FILTER_VALUES:
        raise InvalidRequest(f"filter {key!r} takes a list of 1 to {MAX_FILTER_VALUES} values")
    return "[" + ", ".join(_literal(v, key) for v in values) + "]"

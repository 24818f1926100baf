"""Hybrid retrieval: dense (e5 ``query:``) and BM25 over app-analyzed text, fused by score.

The two searches run concurrently and are fused here rather than in Milvus, because the fusion
needs each side's raw scores: the best dense cosine decides whether anything relevant was found at
all (then the engine can answer "not found" without calling the LLM), and both scores go into the
citations for debugging and evaluation. How the fusion was chosen: see :func:`fused_ranking`.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Literal

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from docqa_core.errors import InvalidRequest
from indexing import schema
from indexing.analysis import analyze
from indexing.embedding import Embedder
from indexing.generations import CurrentGenerationFilter
from indexing.store import ChunkStore, Hit, quote
from query_engine.admission import WorkAdmission, unlimited
from query_engine.dated_versions import (
    drop_documents,
    out_of_force,
    validity_expression,
    versions_in_force,
    without_documents,
)
from query_engine.parent_context import with_parent_context
from query_engine.prompts import estimate_llm_tokens
from query_engine.rerank import HttpReranker, RerankTrace
from query_engine.section_refs import (
    ArticleRef,
    article_references,
    names_clause,
    section_expression,
)

_METADATA_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FilterValue = str | int | float | bool
MAX_FILTER_VALUES = 100
PARENT_READ_AHEAD = 3  # ranked hits read per source wanted when touching hits merge


FusionMethod = Literal["convex", "rrf"]


@dataclass(frozen=True)
class RetrievalConfig:
    """How the dense and BM25 candidate lists become one ranking (see :func:`fused_ranking`).

    ``convex``: weighted sum of each side's scores min-max scaled over its candidates.
    ``rrf``: weighted reciprocal rank fusion, ``weight / (rrf_k + rank)``.
    """

    top_k: int = 4
    candidates: int = 20
    fusion: FusionMethod = "convex"
    rrf_k: int = 60
    dense_weight: float = 0.4
    sparse_weight: float = 0.6
    min_dense_score: float = 0.81
    # "제8조 제2항" in a question puts that article's chunks first (see query_engine.section_refs)
    section_refs: bool = True
    # > 0: each source grows with its neighbouring chunks of the same section up to this many
    # (prompt) tokens, and touching hits merge (query_engine.parent_context); 0: chunks as found
    parent_tokens: int = 0


@dataclass
class RetrievalTrace:
    """What the last retrieval did, for timings and the "nothing relevant" decision."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    best_dense_score: float | None = None
    dense_hits: int = 0
    sparse_hits: int = 0
    relevant: bool = False
    as_of: str = ""  # the date whose versions were searched
    superseded: int = 0  # versions left out: another of their group is in force at as_of
    pinned: int = 0  # chunks of articles the question names, put first
    rerank: RerankTrace = field(default_factory=RerankTrace)


@dataclass(frozen=True)
class _Search:
    """One question's search inputs, for the searches that follow the first."""

    vector: list[float]
    terms: Awaitable[str]
    as_of: date


class HybridRetriever(BaseRetriever):
    """Dense + BM25 over one collection, fused; only document versions in force at ``as_of``
    (default: today) are searched, and articles the question names come first."""

    def __init__(
        self,
        *,
        store: ChunkStore,
        embedder: Embedder,
        collection: str,
        config: RetrievalConfig,
        filters: Mapping[str, Any] | None = None,
        generations: CurrentGenerationFilter | None = None,
        as_of: date | None = None,
        admission: WorkAdmission | None = None,
        reranker: HttpReranker | None = None,
    ) -> None:
        super().__init__()
        self._reranker = reranker  # None: the fused order is the ranking
        # one bound for every caller (/v1/retrieve, /v1/query, the OpenAI route): see admission.py
        self._admission = admission or unlimited()
        self._generations = generations  # None: no Redis at hand, every hit is kept
        self._store = store
        self._embedder = embedder
        self._collection = collection
        self._config = config
        self._expr = filter_expression(filters or {})
        self._as_of = as_of
        self.trace = RetrievalTrace()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return asyncio.run(self._aretrieve(query_bundle))

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        async with self._admission.slot():
            return await self._search_question(query_bundle.query_str)

    async def _search_question(self, question: str) -> list[NodeWithScore]:
        await self._store.require(self._collection)
        as_of = self._as_of or date.today()
        # validity windows are checked on the hits, not in the search filter: see dated_versions
        expr = self._expr
        started = time.perf_counter()
        # Kiwi's analysis is CPU work growing with the question (a condensed follow-up holds the
        # previous question too): in a thread, so the event loop keeps serving other requests.
        # BM25 needs no vector: it runs in Milvus while the embedder works in its thread, which
        # hides one of the two searches (milvus-lite runs searches one at a time)
        terms = asyncio.ensure_future(asyncio.to_thread(analyze, question))
        sparse_search = asyncio.ensure_future(self._search_sparse(terms, expr))
        try:
            vector = (await self._embedder.embed_query(question)).tolist()
            embedded = time.perf_counter()
            dense = await self._search_dense(vector, expr)
            sparse = await sparse_search
        finally:
            _settle(sparse_search, terms)
        search = _Search(vector, terms, as_of)
        dense, sparse, expr = await self._in_force(search, (dense, sparse), expr)
        dense, sparse = await self._current(dense, sparse)
        superseded = await versions_in_force(self._store, self._collection, (dense, sparse), as_of)
        if superseded:  # search again without them, so they take no candidate slots
            expr = _all_of(expr, without_documents(superseded))
            found = await self._search_both(vector, terms, expr)
            dense, sparse, expr = await self._in_force(search, found, expr)
            dense, sparse = await self._current(dense, sparse)
            # groups first seen now: dropped rather than searched for a third time
            late = await versions_in_force(self._store, self._collection, (dense, sparse), as_of)
            dense, sparse = drop_documents(dense, late), drop_documents(sparse, late)
        refs = article_references(question) if self._config.section_refs else []
        pinned = await self._pinned(refs, search, expr)
        self.trace = RetrievalTrace(
            embed_ms=(embedded - started) * 1000,
            search_ms=(time.perf_counter() - embedded) * 1000,
            best_dense_score=dense[0].score if dense else None,
            dense_hits=len(dense),
            sparse_hits=len(sparse),
            as_of=as_of.isoformat(),
            superseded=len(superseded),
            pinned=len(pinned),
        )
        self.trace.relevant = bool(dense) and dense[0].score >= self._config.min_dense_score
        top_k = self._config.top_k
        # merged hits free places in the sources: the ranking is read further to fill them
        read = top_k * PARENT_READ_AHEAD if self._config.parent_tokens > 0 else top_k
        if self._reranker is not None:
            read = max(read, self._reranker.config.candidates)
        fused = fuse(dense, sparse, replace(self._config, top_k=read))
        if self._reranker is not None:
            fused, self.trace.rerank = await self._reranker.rerank(question, fused)
        if pinned:
            ids = {n.node.node_id for n in pinned}
            fused = [*pinned, *(n for n in fused if n.node.node_id not in ids)]
        return await self._sources(fused, expr)

    async def known_terms(self, terms: Sequence[str]) -> set[str]:
        """The analyzed ``terms`` some chunk this retriever searches holds, under the request's
        filters; a term only a version out of force holds counts as known too (the validity
        filter costs a scan of every chunk's metadata: see dated_versions)."""
        return await self._store.known_terms(self._collection, terms, expr=self._expr)

    async def _sources(self, fused: list[NodeWithScore], expr: str) -> list[NodeWithScore]:
        """The first ``top_k`` of ``fused``, grown to their parent context when configured."""
        if self._config.parent_tokens <= 0:
            return fused[: self._config.top_k]
        return await with_parent_context(
            fused,
            self._store,
            self._collection,
            top_k=self._config.top_k,
            budget_tokens=self._config.parent_tokens,
            count_tokens=estimate_llm_tokens,
            expr=expr,
        )

    async def _in_force(
        self, search: _Search, found: tuple[list[Hit], list[Hit]], expr: str
    ) -> tuple[list[Hit], list[Hit], str]:
        """``found`` (searched under ``expr``) when every hit is in force at the search's date;
        else searched again with the validity filter added, and that ``expr``. The filter is
        sent only then: milvus-lite evaluates it on every chunk's metadata (dated_versions)."""
        if not out_of_force(*found, as_of=search.as_of):
            return *found, expr
        expr = _all_of(expr, validity_expression(search.as_of))
        return *await self._search_both(search.vector, search.terms, expr), expr

    async def _pinned(
        self, refs: list[ArticleRef], search: _Search, expr: str
    ) -> list[NodeWithScore]:
        """The chunks of the articles ``refs`` name (in force), best first, those of a named 항
        before the rest of their article (see ``query_engine.section_refs``)."""
        if not refs:
            return []
        filtered = _all_of(expr, section_expression(refs))
        found = await self._search_both(search.vector, search.terms, filtered)
        dense, sparse, _ = await self._in_force(search, found, filtered)
        dense, sparse = await self._current(dense, sparse)
        ranked = fuse(dense, sparse, self._config)
        return sorted(ranked, key=lambda n: not names_clause(_section(n), refs))  # stable

    async def _current(self, dense: list[Hit], sparse: list[Hit]) -> tuple[list[Hit], list[Hit]]:
        if self._generations is None:
            return dense, sparse
        # a document being replaced shows one generation
        kept = await self._generations.keep_current(self._collection, dense, sparse)
        return kept[0], kept[1]

    async def _search_both(
        self, vector: list[float], terms: Awaitable[str], expr: str
    ) -> tuple[list[Hit], list[Hit]]:
        sparse = await self._search_sparse(terms, expr)
        return await self._search_dense(vector, expr), sparse

    async def _search_dense(self, vector: list[float], expr: str) -> list[Hit]:
        return await self._store.search_dense(
            self._collection, vector, limit=self._config.candidates, expr=expr
        )

    async def _search_sparse(self, terms: Awaitable[str], expr: str) -> list[Hit]:
        return await self._store.search_sparse(
            self._collection, await terms, limit=self._config.candidates, expr=expr
        )


def _settle(*futures: asyncio.Future[Any]) -> None:
    """Cancel what is still running (the embedder or the dense search failed); mark what
    failed as seen, so no "exception never retrieved" warning follows our own error."""
    for future in futures:
        if future.done():
            _retrieve_outcome(future)
        else:
            future.cancel()
            # a task can still end in an error instead of "cancelled" (a client library that
            # turns the cancellation into its own error, as pymilvus did in CI while recovering
            # a connection): its outcome is read when it ends
            future.add_done_callback(_retrieve_outcome)


def _retrieve_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _all_of(*expressions: str) -> str:
    return " and ".join(f"({e})" for e in expressions if e)


def _section(node: NodeWithScore) -> str:
    return str(node.node.metadata.get("section") or "")


def fuse(
    dense: Sequence[Hit], sparse: Sequence[Hit], config: RetrievalConfig
) -> list[NodeWithScore]:
    """The first ``config.top_k`` of the fused ranking, as LlamaIndex nodes carrying both
    sides' raw scores (nodes are built for those only: the rest would be thrown away)."""
    hits = {hit.chunk_id: hit for hit in (*sparse, *dense)}
    dense_score = {hit.chunk_id: hit.score for hit in dense}
    sparse_score = {hit.chunk_id: hit.score for hit in sparse}
    return [
        NodeWithScore(
            node=node_from_hit(hits[cid], dense_score.get(cid), sparse_score.get(cid)),
            score=score,
        )
        for cid, score in fused_ranking(dense, sparse, config)[: config.top_k]
    ]


def fused_ranking(
    dense: Sequence[Hit], sparse: Sequence[Hit], config: RetrievalConfig
) -> list[tuple[str, float]]:
    """(chunk id, fused score), best first; ties keep the dense order, then the BM25 order.

    ``convex`` (the default) adds each side's min-max scaled score times its weight; ``rrf``
    adds ``weight / (rrf_k + rank)``. A side whose weight is 0 is left out entirely (its hits
    are not added at the bottom), so weights 1/0 and 0/1 give dense-only and BM25-only.

    Chosen with ``bench/retrieval_eval.py`` on en_xquad (1,190 questions over paragraphs),
    en_covidqa_long (1,380 over whole papers) and 90 Korean questions over the shared seeds,
    where the better single retriever differs: BM25 leads dense by 9 points of R@1 on the
    papers, dense leads BM25 at R@5 on xquad. Rank fusion could not serve both: equal-weight
    RRF lost 2 points of R@1 to BM25 on the papers, and no RRF setting swept (k 5 to 60, dense
    weight 0.5 to 1.5, 10 to 50 candidates) kept hybrid at or above the better single retriever
    on every set and metric. Scores carry what ranks hide (BM25's first hit matching far more
    of the question than its second). The convex combination meets that bar with dense weights
    from 0.3 to 0.45 and 10 to 50 candidates; 0.4/0.6 over 20 is the middle of that band, not a
    value tuned to one set.
    """
    scores: dict[str, float] = {}
    for weight, contributions in (
        (config.dense_weight, _side_scores(dense, config, is_dense=True)),
        (config.sparse_weight, _side_scores(sparse, config, is_dense=False)),
    ):
        if weight > 0:
            for cid, value in contributions:
                scores[cid] = scores.get(cid, 0.0) + weight * value
    ordered = sorted(scores, key=lambda cid: scores[cid], reverse=True)  # stable: ties keep order
    return [(cid, scores[cid]) for cid in ordered]


def _side_scores(
    hits: Sequence[Hit], config: RetrievalConfig, *, is_dense: bool
) -> list[tuple[str, float]]:
    """One retriever's contribution per chunk, before its weight."""
    if config.fusion == "rrf":
        return [(hit.chunk_id, 1.0 / (config.rrf_k + rank + 1)) for rank, hit in enumerate(hits)]
    # milvus-lite reports BM25 as a negative distance: its magnitude is the score
    values = [hit.score if is_dense else abs(hit.score) for hit in hits]
    return [(hit.chunk_id, v) for hit, v in zip(hits, _min_max(values), strict=True)]


def _min_max(values: Sequence[float]) -> list[float]:
    """Scores min-max scaled over this question's candidates.

    Neither side's raw scale means much across questions: e5 puts nearly every passage at a
    cosine between 0.7 and 0.9, and BM25 grows with the question's length. Where a candidate
    sits between this question's best and worst is comparable. All equal: each counts fully.
    """
    if not values:
        return []
    high, low = max(values), min(values)
    spread = high - low
    return [(v - low) / spread if spread > 0 else 1.0 for v in values]


def node_from_hit(hit: Hit, dense_score: float | None, sparse_score: float | None) -> TextNode:
    entity = hit.entity
    metadata = dict(entity.get(schema.METADATA) or {})
    metadata.update(
        {
            "doc_id": entity.get(schema.DOC_ID),
            "chunk_index": entity.get(schema.CHUNK_INDEX),
            "content_hash": entity.get(schema.CONTENT_HASH),
            "chunk_count": entity.get(schema.CHUNK_COUNT),
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
            # an `or` of equalities: milvus-lite rejects `in` on a JSON field ("left side of
            # 'in' must be a field reference"), and a request must not become a 500
            _literal_list(value, key)  # validates: 1 to MAX_FILTER_VALUES literals
            equalities = " or ".join(f"{field_ref} == {_literal(v, key)}" for v in value)
            clauses.append(f"({equalities})")
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

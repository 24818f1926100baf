"""Article references in questions (제8조 제2항, 8조 2항, 제8조의2, Article 8(2)) become a filter
on the section path, and the retriever puts the filtered hits first; dated versions make the
retriever search again without superseded versions. The store is a fake of our own seam that
answers by the filter expression it is given."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any, cast

import numpy as np
import pytest
from llama_index.core.schema import QueryBundle

from indexing import schema
from indexing.embedding import Embedder
from indexing.store import ChunkStore, Hit
from query_engine import dated_versions
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from query_engine.section_refs import ArticleRef, article_references, section_expression

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("제8조 제2항은?", [ArticleRef(8, None, 2)]),
        ("제8조의2에 따르면 휴관일은?", [ArticleRef(8, 2)]),
        ("8조 2항 내용이 뭐야", [ArticleRef(8, None, 2)]),
        ("제 3 조 제1항 제2호", [ArticleRef(3, None, 1, 2)]),
        ("제3조제1항제2호", [ArticleRef(3, None, 1, 2)]),
        ("제8조의 내용은?", [ArticleRef(8)]),  # 의 as a particle, not 제8조의N
        ("제8조와 제9조의 차이", [ArticleRef(8), ArticleRef(9)]),
        ("What does Article 8(2) say?", [ArticleRef(8, None, 2)]),
        ("art. 12, paragraph 3", [ArticleRef(12, None, 3)]),
        ("예산이 5조 원이다", []),  # amounts, not articles
        ("3조 5천억 원", []),
        ("1조원", []),
        ("출장 일비는 얼마인가요?", []),
    ],
)
def test_article_references_are_read_from_questions(
    question: str, expected: list[ArticleRef]
) -> None:
    assert article_references(question) == expected


def test_the_section_filter_matches_whole_path_components_only() -> None:
    expr = section_expression([ArticleRef(8, 2)])
    field = 'metadata["section"]'
    assert expr == (
        f'({field} == "제8조의2" or {field} like "제8조의2(%" or {field} like "제8조의2 > %" '
        f'or {field} like "% > 제8조의2" or {field} like "% > 제8조의2(%" '
        f'or {field} like "% > 제8조의2 > %")'
    )


def hit(chunk_id: str, score: float, section: str = "", **metadata: str) -> Hit:
    entity = {
        schema.CHUNK_ID: chunk_id,
        schema.DOC_ID: metadata.pop("doc_id", chunk_id),
        schema.TEXT: chunk_id,
        schema.METADATA: {"section": section, **metadata},
    }
    return Hit(chunk_id=chunk_id, score=score, entity=entity)


class Embedder1:
    async def embed_query(self, text: str) -> Any:
        return np.ones(4, dtype=np.float32)


class FilteringStore:
    """Unfiltered searches find articles that cite 제8조 before 제8조 itself; a search filtered
    on the section finds 제8조's two 항 chunks, ② ranked second by score."""

    def __init__(self) -> None:
        self.dense_exprs: list[str] = []
        self.sparse_exprs: list[str] = []

    async def require(self, collection: str) -> str:
        return collection

    def _hits(self, expr: str, dense: bool) -> list[Hit]:
        sign = 1 if dense else -1
        if 'metadata["section"]' in expr:
            return [
                hit("art8-1", 0.85 * sign, "제2장 > 제8조(신고) > ①"),
                hit("art8-2", 0.84 * sign, "제2장 > 제8조(신고) > ②"),
            ]
        return [
            hit("art9", 0.9 * sign, "제2장 > 제9조(처리)"),
            hit("art10", 0.88 * sign, "제2장 > 제10조(보고)"),
            hit("art8-2", 0.84 * sign, "제2장 > 제8조(신고) > ②"),
        ]

    async def search_dense(
        self, collection: str, vector: Any, *, limit: int, expr: str = ""
    ) -> Any:
        self.dense_exprs.append(expr)
        return self._hits(expr, dense=True)

    async def search_sparse(
        self, collection: str, query: str, *, limit: int, expr: str = ""
    ) -> Any:
        self.sparse_exprs.append(expr)
        return self._hits(expr, dense=False)


def retriever(store: Any, *, refs: bool = True, **kwargs: Any) -> HybridRetriever:
    return HybridRetriever(
        store=cast(ChunkStore, store),
        embedder=cast(Embedder, Embedder1()),
        collection="kb",
        config=RetrievalConfig(top_k=4, candidates=10, section_refs=refs),
        **kwargs,
    )


def ids(question: str, store: Any, **kwargs: Any) -> list[str]:
    nodes = asyncio.run(retriever(store, **kwargs).aretrieve(QueryBundle(question)))
    return [n.node.node_id for n in nodes]


def test_a_named_article_and_clause_come_first_then_the_ordinary_ranking() -> None:
    store = FilteringStore()
    assert ids("제8조 제2항에 따른 신고 기한은?", store) == ["art8-2", "art8-1", "art9", "art10"]
    filtered = [e for e in store.dense_exprs if 'metadata["section"]' in e]
    assert len(filtered) == 1 and '"% > 제8조(%"' in filtered[0]
    assert len(store.sparse_exprs) == 2


def test_without_a_reference_or_with_refs_off_there_is_one_search_per_side() -> None:
    for question, refs in (("신고 기한은?", True), ("제8조 제2항에 따른 신고 기한은?", False)):
        store = FilteringStore()
        assert ids(question, store, refs=refs) == ["art9", "art10", "art8-2"]
        assert len(store.dense_exprs) == len(store.sparse_exprs) == 1
        assert all('metadata["section"]' not in e for e in store.dense_exprs)
        # no hit is dated: no JSON validity filter, which milvus-lite evaluates row by row
        assert all("effective_" not in e for e in store.dense_exprs + store.sparse_exprs)


class VersionedStore(FilteringStore):
    """Two versions of one regulation; the old one ranks first until it is excluded."""

    def __init__(self) -> None:
        super().__init__()
        self.version_queries: list[str] = []

    def _hits(self, expr: str, dense: bool) -> list[Hit]:
        sign = 1 if dense else -1
        found = [
            hit(
                "old", 0.9 * sign, doc_id="v2024", version_of="travel", effective_from="2024-01-01"
            ),
            hit(
                "new", 0.8 * sign, doc_id="v2025", version_of="travel", effective_from="2025-03-01"
            ),
            hit("other", 0.7 * sign),
        ]
        return [h for h in found if f'"{h.entity[schema.DOC_ID]}"' not in expr]

    async def query_first_chunks(self, collection: str, expr: str, *, limit: int) -> Any:
        self.version_queries.append(expr)
        return [
            {schema.DOC_ID: "v2024", schema.METADATA: {"version_of": "travel",
                                                       "effective_from": "2024-01-01"}},
            {schema.DOC_ID: "v2025", schema.METADATA: {"version_of": "travel",
                                                       "effective_from": "2025-03-01"}},
        ]  # fmt: skip


def test_superseded_versions_are_searched_away_and_take_no_slot() -> None:
    store = VersionedStore()
    assert ids("일비는?", store, as_of=date(2025, 3, 1)) == ["new", "other"]
    assert 'doc_id not in ["v2024"]' in store.dense_exprs[-1]
    assert store.version_queries[0] == 'metadata["version_of"] == "travel"'
    store = VersionedStore()
    assert ids("일비는?", store, as_of=date(2025, 2, 28)) == ["old", "other"]
    # validity is checked on the hits first (a JSON filter scans every chunk in milvus-lite);
    # a hit out of its window (v2025 before 2025-03-01) makes the search run again filtered
    assert '<= "2025-02-28"' not in store.dense_exprs[0]
    assert '<= "2025-02-28"' in store.dense_exprs[1]


class ExpiredAfterSupersededStore(VersionedStore):
    """Searched again without the superseded version, a document that expired before the date
    shows up (it ranked below the candidates until then); a filtered search honours windows."""

    def _hits(self, expr: str, dense: bool) -> list[Hit]:
        found = super()._hits(expr, dense)
        if "not in" in expr:
            found.append(hit("expired", 0.75 if dense else -0.75, effective_to="2025-01-31"))
        if "effective_" in expr:
            found = [h for h in found if dated_versions.in_force(h, date(2025, 3, 1))]
        return found


def test_hits_out_of_force_stay_out_of_the_search_after_superseded_versions() -> None:
    store = ExpiredAfterSupersededStore()
    assert ids("일비는?", store, as_of=date(2025, 3, 1)) == ["new", "other"]
    assert "effective_" not in store.dense_exprs[0]  # the first search found none out of force


def test_article_pinning_can_be_turned_off_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.settings import QuerySettings
    from services.query_api.runtime import retrieval_config

    assert retrieval_config(QuerySettings(), 4).section_refs is True
    monkeypatch.setenv("DOCQA_RETRIEVAL_SECTION_REFS", "false")
    assert retrieval_config(QuerySettings(), 4).section_refs is False

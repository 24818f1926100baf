"""The extractive answer's vocabulary gate: "not found" when the collection does not know what
the question is about (most of its topic terms are held by no chunk at all).

The pure parts are computed by hand; the engine is driven with our own store seam standing in
for Milvus (the real store's ``known_terms`` is tested in tests/integration/test_known_terms.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any, cast

from llama_index.core.llms.mock import MockLLM
from llama_index.core.schema import NodeWithScore, TextNode

from indexing.analysis import analyze_many
from indexing.embedding import Embedder
from indexing.store import ChunkStore
from query_engine.engine import DocqaQueryEngine, EngineConfig, PreparedQuery
from query_engine.extractive import ExtractiveConfig, question_topic, unknown_share
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from services.common.settings import QuerySettings
from services.query_api.runtime import retrieval_fingerprint

LEAVE = "제2조(연차휴가) ① 회사는 매년 1월 1일에 직원에게 연차휴가 16일을 부여한다."
QUESTION = "매년 부여되는 연차휴가는 며칠인가요?"


def test_the_topic_is_the_questions_content_terms_without_question_words() -> None:
    assert question_topic(QUESTION, analyze_many) == {"연차", "휴가", "부여"}
    assert question_topic("How many physicians does the Amazon basin have?", analyze_many) == {
        "physicians",
        "amazon",
        "basin",
    }
    assert question_topic("얼마인가요?", analyze_many) == set()


def test_the_unknown_share_counts_topic_terms_the_collection_lacks() -> None:
    topic = {"장비", "분실", "신고", "경찰서"}
    assert unknown_share(topic, {"장비", "분실", "신고", "반납"}) == 0.25
    assert unknown_share(topic, set()) == 1.0
    assert unknown_share(topic, topic) == 0.0
    assert unknown_share(set(), set()) == 0.0  # nothing asked about: no evidence either way


class _Store:
    """Our store seam: holds the terms of the chunks it was given, records what was asked."""

    def __init__(self, vocabulary: set[str]) -> None:
        self.vocabulary = vocabulary
        self.asked: list[list[str]] = []

    async def known_terms(self, collection: str, terms: Sequence[str], *, expr: str = "") -> set:
        self.asked.append(list(terms))
        return {t for t in terms if t in self.vocabulary}


def _engine(store: _Store, ceiling: float) -> DocqaQueryEngine:
    unused = cast(Any, object())
    extractive = replace(ExtractiveConfig(), max_unknown_korean=ceiling)
    return DocqaQueryEngine(
        retriever=HybridRetriever(
            store=cast(ChunkStore, store),
            embedder=cast(Embedder, unused),
            collection="kb",
            config=RetrievalConfig(),
        ),
        llm=MockLLM(),  # extract() never calls an LLM
        config=EngineConfig(extractive=extractive),
    )


async def _extract(store: _Store, ceiling: float) -> tuple[str, bool]:
    node = NodeWithScore(node=TextNode(text=LEAVE, metadata={"doc_id": "leave"}), score=1.0)
    prepared = PreparedQuery(QUESTION, "ko", [node], [], not_found=False)
    response = await _engine(store, ceiling).extract(prepared)
    return str(response.response), bool((response.metadata or {})["not_found"])


async def test_a_question_about_terms_no_chunk_holds_is_not_found() -> None:
    # the retrieved article answers; the collection "does not know" 연차 and 휴가 (2 of 3)
    store = _Store({"부여", "직원"})
    answer, not_found = await _extract(store, ceiling=0.5)
    assert not_found, answer
    assert store.asked == [["부여", "연차", "휴가"]]


async def test_a_question_the_collection_knows_is_answered() -> None:
    answer, not_found = await _extract(_Store({"연차", "휴가", "부여"}), ceiling=0.5)
    assert not not_found
    assert "16일" in answer


async def test_under_the_ceiling_the_answer_stands() -> None:
    answer, not_found = await _extract(_Store({"연차", "휴가"}), ceiling=0.5)  # 1 of 3 unknown
    assert not not_found and "16일" in answer


async def test_no_ceiling_asks_the_store_nothing() -> None:
    store = _Store(set())
    answer, not_found = await _extract(store, ceiling=1.0)
    assert not not_found and "16일" in answer
    assert store.asked == []


def test_the_answer_cache_key_holds_the_extractive_gates() -> None:
    """A deploy that moves a gate must not serve the answers the old gates gave."""
    fingerprint = json.loads(retrieval_fingerprint(QuerySettings()))
    assert fingerprint["extractive"] == asdict(ExtractiveConfig())
    assert fingerprint["extractive"]["max_unknown_korean"] == ExtractiveConfig().max_unknown_korean

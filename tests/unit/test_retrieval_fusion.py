"""Unit tests for the pure parts of query_engine.retrieval: fusion (convex and RRF) and filters.

Inputs are built as ``indexing.store.Hit`` rows, the way ``ChunkStore`` returns them from Milvus.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from docqa_core.errors import InvalidRequest
from indexing import schema
from indexing.store import Hit
from query_engine.retrieval import (
    MAX_FILTER_VALUES,
    FusionMethod,
    RetrievalConfig,
    filter_expression,
    fuse,
)
from services.common.settings import RetrievalSettings


def hit(chunk_id: str, score: float = 0.5, **metadata: Any) -> Hit:
    return Hit(
        chunk_id=chunk_id,
        score=score,
        entity={
            schema.CHUNK_ID: chunk_id,
            schema.DOC_ID: f"doc-{chunk_id}",
            schema.CHUNK_INDEX: 0,
            schema.TEXT: f"text of {chunk_id}",
            schema.METADATA: {"title": f"title {chunk_id}", **metadata},
        },
    )


def ids(fused: Sequence[Any]) -> list[str]:
    return [n.node.node_id for n in fused]


def rrf(rank: int, weight: float = 1.0, k: int = 60) -> float:
    """What one list contributes for a hit at 0-based ``rank``."""
    return weight / (k + rank + 1)


EQUAL = RetrievalConfig(top_k=50, fusion="rrf", rrf_k=60, dense_weight=1.0, sparse_weight=1.0)
CONVEX = RetrievalConfig(top_k=50, fusion="convex", dense_weight=0.5, sparse_weight=0.5)


def scores_of(fused: Sequence[Any]) -> dict[str, float]:
    return {n.node.node_id: n.score for n in fused}


# --------------------------------------------------------------------------- fuse, either method


def test_the_default_is_the_convex_combination() -> None:
    assert RetrievalConfig().fusion == "convex"


@pytest.mark.parametrize("config", [EQUAL, CONVEX], ids=["rrf", "convex"])
def test_fuse_of_nothing_is_nothing(config: RetrievalConfig) -> None:
    assert fuse([], [], config) == []


@pytest.mark.parametrize("config", [EQUAL, CONVEX], ids=["rrf", "convex"])
def test_single_list_keeps_its_order(config: RetrievalConfig) -> None:
    dense = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)]
    sparse = [hit("a", -9.0), hit("b", -8.0), hit("c", -7.0)]

    assert ids(fuse(dense, [], config)) == ["a", "b", "c"]
    assert ids(fuse([], sparse, config)) == ["a", "b", "c"]


@pytest.mark.parametrize("config", [EQUAL, CONVEX], ids=["rrf", "convex"])
def test_a_hit_found_by_both_ranks_above_hits_found_by_one(config: RetrievalConfig) -> None:
    dense = [hit("dense-only", 0.90), hit("both", 0.89), hit("d", 0.80)]
    sparse = [hit("sparse-only", -10.0), hit("both", -9.5), hit("s", -2.0)]

    fused = ids(fuse(dense, sparse, config))

    assert fused[0] == "both"
    assert set(fused) == {"both", "dense-only", "sparse-only", "d", "s"}
    assert len(fused) == 5  # no duplicates


@pytest.mark.parametrize("config", [EQUAL, CONVEX], ids=["rrf", "convex"])
def test_output_is_sorted_by_fused_score(config: RetrievalConfig) -> None:
    dense = [hit(f"d{i}", 0.9 - i / 100) for i in range(6)]
    sparse = [hit(f"d{i}", -float(i)) for i in (5, 3, 1)] + [hit("s9", -0.5)]

    scores = [n.get_score(raise_error=True) for n in fuse(dense, sparse, config)]

    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("fusion", ["rrf", "convex"])
def test_weights_change_the_order(fusion: FusionMethod) -> None:
    dense = [hit("semantic", 0.9), hit("x", 0.8)]
    sparse = [hit("keyword", -5.0), hit("y", -1.0)]

    favour_sparse = RetrievalConfig(fusion=fusion, dense_weight=0.3, sparse_weight=0.7)
    favour_dense = RetrievalConfig(fusion=fusion, dense_weight=0.7, sparse_weight=0.3)

    assert ids(fuse(dense, sparse, favour_sparse))[0] == "keyword"
    assert ids(fuse(dense, sparse, favour_dense))[0] == "semantic"


@pytest.mark.parametrize("fusion", ["rrf", "convex"])
def test_a_zero_weight_leaves_that_side_out(fusion: FusionMethod) -> None:
    dense = [hit("a", 0.9), hit("b", 0.8)]
    sparse = [hit("c", -3.0), hit("a", -1.0)]

    dense_only = RetrievalConfig(fusion=fusion, dense_weight=1.0, sparse_weight=0.0)
    bm25_only = RetrievalConfig(fusion=fusion, dense_weight=0.0, sparse_weight=1.0)

    assert ids(fuse(dense, sparse, dense_only)) == ["a", "b"]
    assert ids(fuse(dense, sparse, bm25_only)) == ["c", "a"]


@pytest.mark.parametrize("config", [EQUAL, CONVEX], ids=["rrf", "convex"])
def test_ties_keep_the_dense_order_then_the_bm25_order(config: RetrievalConfig) -> None:
    # equal weights, mirrored lists: rank r of dense and rank r of BM25 score exactly the same
    # (normalized: dense 1, 0.5, 0 by min-max; BM25 1, 0.5, 0 over the best)
    dense = [hit("d0", 0.9), hit("d1", 0.8), hit("d2", 0.7)]
    sparse = [hit("s0", -4.0), hit("s1", -2.0), hit("s2", 0.0)]

    assert ids(fuse(dense, sparse, config)) == ["d0", "s0", "d1", "s1", "d2", "s2"]


@pytest.mark.parametrize("config", [EQUAL, CONVEX], ids=["rrf", "convex"])
def test_only_the_first_top_k_come_back(config: RetrievalConfig) -> None:
    dense = [hit(f"d{i}", 0.9 - i / 100) for i in range(6)]
    sparse = [hit(f"s{i}", -10.0 + i) for i in range(6)]
    everything = ids(fuse(dense, sparse, config))

    assert ids(fuse(dense, sparse, replace(config, top_k=3))) == everything[:3]


# --------------------------------------------------------------------------- rrf


def test_rrf_scores_are_weighted_reciprocal_ranks() -> None:
    config = RetrievalConfig(fusion="rrf", rrf_k=10, dense_weight=2.0, sparse_weight=0.5)
    dense = [hit("a"), hit("b")]
    sparse = [hit("b"), hit("c")]

    scores = scores_of(fuse(dense, sparse, config))

    assert scores["a"] == pytest.approx(rrf(0, 2.0, 10))
    assert scores["b"] == pytest.approx(rrf(1, 2.0, 10) + rrf(0, 0.5, 10))
    assert scores["c"] == pytest.approx(rrf(1, 0.5, 10))


def test_rrf_a_hit_low_in_both_lists_beats_the_top_of_one() -> None:
    dense = [hit("d0"), hit("d1"), hit("d2"), hit("shared")]
    sparse = [hit("s0"), hit("s1"), hit("s2"), hit("shared")]

    # 2/(60+4) > 1/(60+1): agreement of two retrievers outweighs one retriever's top spot
    assert ids(fuse(dense, sparse, EQUAL))[0] == "shared"


def test_rrf_ignores_score_values() -> None:
    close = [hit("a", 0.90), hit("b", 0.89)]
    far = [hit("a", 0.90), hit("b", 0.10)]

    assert scores_of(fuse(close, [], EQUAL)) == scores_of(fuse(far, [], EQUAL))


# --------------------------------------------------------------------------- convex


def test_convex_scores_are_weighted_min_max_scaled_scores() -> None:
    config = RetrievalConfig(top_k=10, fusion="convex", dense_weight=0.4, sparse_weight=0.6)
    dense = [hit("a", 0.90), hit("b", 0.85), hit("c", 0.80)]
    sparse = [hit("b", -8.0), hit("d", -4.0), hit("e", -2.0)]

    scores = scores_of(fuse(dense, sparse, config))

    # min-max over each side's candidates: dense a 1, b 0.5, c 0; BM25 b 1, d 1/3, e 0
    assert scores["a"] == pytest.approx(0.4 * 1.0)
    assert scores["b"] == pytest.approx(0.4 * 0.5 + 0.6 * 1.0)
    assert scores["c"] == pytest.approx(0.0)
    assert scores["d"] == pytest.approx(0.6 / 3)
    assert scores["e"] == pytest.approx(0.0)
    assert ids(fuse(dense, sparse, config)) == ["b", "a", "d", "c", "e"]


def test_convex_uses_score_gaps_that_ranks_hide() -> None:
    # BM25's first hit matches far more terms than its second: its lead survives fusion
    dense = [hit("semantic", 0.86), hit("keyword", 0.85), hit("x", 0.80)]
    sparse = [hit("keyword", -20.0), hit("semantic", -2.0)]

    assert ids(fuse(dense, sparse, CONVEX))[0] == "keyword"
    assert ids(fuse(dense, sparse, EQUAL))[0] == "semantic"  # rank fusion: a tie, dense first


def test_convex_single_hit_counts_fully() -> None:
    assert scores_of(fuse([hit("only", 0.81)], [], CONVEX)) == {"only": pytest.approx(0.5)}
    assert scores_of(fuse([], [hit("only", -1.5)], CONVEX)) == {"only": pytest.approx(0.5)}


def test_convex_equal_scores_count_fully() -> None:
    dense = scores_of(fuse([hit("a", 0.8), hit("b", 0.8)], [], CONVEX))
    sparse = scores_of(fuse([], [hit("a", -3.0), hit("b", -3.0)], CONVEX))

    assert dense == sparse == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}


def test_convex_takes_bm25_distances_of_either_sign() -> None:
    negative = scores_of(fuse([], [hit("a", -4.0), hit("b", -2.0), hit("c", -1.0)], CONVEX))
    positive = scores_of(fuse([], [hit("a", 4.0), hit("b", 2.0), hit("c", 1.0)], CONVEX))

    expected = {"a": pytest.approx(0.5), "b": pytest.approx(0.5 / 3), "c": pytest.approx(0.0)}
    assert negative == positive == expected


# --------------------------------------------------------------------------- nodes


def test_both_scores_are_carried_into_metadata() -> None:
    dense = [hit("both", 0.91), hit("dense-only", 0.85)]
    sparse = [hit("sparse-only", 12.5), hit("both", 7.25)]

    nodes = {n.node.node_id: n.node for n in fuse(dense, sparse, EQUAL)}

    assert nodes["both"].metadata["dense_score"] == 0.91
    assert nodes["both"].metadata["bm25_score"] == 7.25
    assert nodes["dense-only"].metadata["dense_score"] == 0.85
    assert nodes["dense-only"].metadata["bm25_score"] is None
    assert nodes["sparse-only"].metadata["dense_score"] is None
    assert nodes["sparse-only"].metadata["bm25_score"] == 12.5


def test_negative_bm25_distances_are_reported_as_positive_scores() -> None:
    nodes = fuse([], [hit("x", -3.5)], EQUAL)

    assert nodes[0].node.metadata["bm25_score"] == 3.5


def test_nodes_carry_text_ids_and_stored_metadata() -> None:
    [node_with_score] = fuse([hit("c1", 0.9, page=3, section="제1장 > 제2조")], [], EQUAL)
    node = node_with_score.node

    assert node.node_id == "c1"
    assert node.get_content() == "text of c1"
    assert node.metadata["doc_id"] == "doc-c1"
    assert node.metadata["chunk_index"] == 0
    assert node.metadata["title"] == "title c1"
    assert node.metadata["page"] == 3
    assert node.metadata["section"] == "제1장 > 제2조"


def test_stored_metadata_cannot_fake_the_scores() -> None:
    [node] = fuse([hit("c1", 0.9, dense_score=1.0, doc_id="forged")], [], EQUAL)

    assert node.node.metadata["dense_score"] == 0.9
    assert node.node.metadata["doc_id"] == "doc-c1"


def test_fuse_does_not_change_the_hits() -> None:
    original = hit("c1", 0.9)
    before = dict(original.entity[schema.METADATA])

    fuse([original], [original], EQUAL)

    assert original.entity[schema.METADATA] == before


# --------------------------------------------------------------------------- filter_expression


def test_no_filters_is_an_empty_expression() -> None:
    assert filter_expression({}) == ""


def test_doc_ids_select_documents() -> None:
    assert filter_expression({"doc_ids": ["a", "b"]}) == 'doc_id in ["a", "b"]'


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("규정", '"규정"'),
        (3, "3"),
        (-2, "-2"),
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
    ],
)
def test_metadata_equality(value: Any, literal: str) -> None:
    assert filter_expression({"page": value}) == f'metadata["page"] == {literal}'


def test_list_value_is_membership() -> None:
    # milvus-lite rejects `in` on a JSON field: an `or` of equalities
    assert filter_expression({"source": ["a.txt", "b.md"]}) == (
        '(metadata["source"] == "a.txt" or metadata["source"] == "b.md")'
    )


def test_mixed_list_values_are_each_quoted_by_type() -> None:
    assert filter_expression({"tag": ["x", 1, True]}) == (
        '(metadata["tag"] == "x" or metadata["tag"] == 1 or metadata["tag"] == true)'
    )


def test_filters_are_joined_with_and_in_order() -> None:
    expression = filter_expression({"doc_ids": ["d1"], "title": "Rules", "page": 2})

    assert (
        expression == 'doc_id in ["d1"] and metadata["title"] == "Rules" and metadata["page"] == 2'
    )


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ('say "hi"', r'"say \"hi\""'),
        ("C:\\docs\\", r'"C:\\docs\\"'),
        ('\\"', r'"\\\""'),  # a backslash then a quote: both escaped, the quote stays closed
        ('" or 1 == 1 or "', r'"\" or 1 == 1 or \""'),
    ],
    ids=["quotes", "backslashes", "backslash-quote", "injection"],
)
def test_strings_are_escaped(value: str, literal: str) -> None:
    assert filter_expression({"title": value}) == f'metadata["title"] == {literal}'
    assert filter_expression({"doc_ids": [value]}) == f"doc_id in [{literal}]"


@pytest.mark.parametrize(
    "key",
    ["", "1abc", "has space", 'a"]', "a-b", "title.x", "ä", "x" * 65, 'x"] or true or ["'],
)
def test_invalid_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidRequest, match="not a valid metadata key"):
        filter_expression({key: "v"})


@pytest.mark.parametrize("key", ["_private", "title", "a1_b2", "x" * 64])
def test_valid_keys_are_accepted(key: str) -> None:
    assert filter_expression({key: 1}) == f'metadata["{key}"] == 1'


def test_key_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(InvalidRequest):
        filter_expression({"title\n": "v"})


@pytest.mark.parametrize("value", [None, {"a": 1}, b"bytes", [["nested"]], [None]], ids=repr)
def test_invalid_values_are_rejected(value: Any) -> None:
    with pytest.raises(InvalidRequest, match="'title'"):
        filter_expression({"title": value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_are_rejected(value: float) -> None:
    with pytest.raises(InvalidRequest):
        filter_expression({"page": value})


@pytest.mark.parametrize("value", [[], "a", "abc", 1, None], ids=repr)
def test_doc_ids_must_be_a_non_empty_list(value: Any) -> None:
    with pytest.raises(InvalidRequest, match=f"1 to {MAX_FILTER_VALUES} values"):
        filter_expression({"doc_ids": value})


def test_empty_membership_list_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match=f"1 to {MAX_FILTER_VALUES} values"):
        filter_expression({"source": []})


def test_list_length_is_bounded() -> None:
    at_limit = [f"d{i}" for i in range(MAX_FILTER_VALUES)]

    assert filter_expression({"doc_ids": at_limit}).count('"d') == MAX_FILTER_VALUES
    with pytest.raises(InvalidRequest):
        filter_expression({"doc_ids": [*at_limit, "one-more"]})


def test_doc_ids_must_be_strings() -> None:
    with pytest.raises(InvalidRequest):
        filter_expression({"doc_ids": [1, 2]})


def test_newline_in_a_value_does_not_break_the_literal() -> None:
    expression = filter_expression({"title": "line one\nline two"})

    assert "\n" not in expression  # escaped, as Milvus string literals require


# --------------------------------------------------------------------------- settings


def test_settings_refuse_turning_both_retrievers_off() -> None:
    with pytest.raises(ValidationError, match="cannot both be 0"):
        RetrievalSettings(dense_weight=0, sparse_weight=0)


def test_one_retriever_alone_is_allowed() -> None:
    assert RetrievalSettings(dense_weight=0, sparse_weight=1).sparse_weight == 1


def test_parent_context_is_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.common.settings import QuerySettings
    from services.query_api.runtime import retrieval_config

    assert retrieval_config(QuerySettings(), top_k=4).parent_tokens == 600  # the default
    monkeypatch.setenv("DOCQA_RETRIEVAL_PARENT_TOKENS", "0")
    assert retrieval_config(QuerySettings(), top_k=4).parent_tokens == 0
    with pytest.raises(ValidationError):
        RetrievalSettings(parent_tokens=-1)

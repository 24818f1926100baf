"""deploy.milvus_lite_server: BM25 over several segments scores like BM25 over one, and index
parameters sent flat reach the index builders.

The segment indexes here are milvus-lite's own ``SparseInvertedIndex``; only the statistics they
are scored with come from ``collection_stats``.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
from milvus_lite.index.sparse_inverted import SparseInvertedIndex

from deploy.milvus_lite_server import (
    CollectionStats,
    bm25_search,
    collection_stats,
    folded_index_params,
)
from tests.bm25_reference import textbook_bm25

K1, B = 1.2, 0.75


def _corpus(seed: int, docs: int = 120) -> list[dict[int, float]]:
    rng = random.Random(seed)
    vocab = range(60)
    weights = [1 / (term + 1) for term in vocab]  # Zipf-like: common and rare terms
    documents = [Counter(rng.choices(vocab, weights, k=rng.randint(3, 30))) for _ in range(docs)]
    return [{term: float(tf) for term, tf in document.items()} for document in documents]


def _index(vectors: list[dict[int, float]]) -> SparseInvertedIndex:
    index = SparseInvertedIndex(k1=K1, b=B)
    index.build(vectors)
    return index


def _reference_scores(corpus: list[dict[int, float]], query: dict[int, float]) -> list[float]:
    return textbook_bm25(corpus, query, k1=K1, b=B)


def _split_scores(parts: list[list[dict[int, float]]], query: dict[int, float]) -> list[float]:
    indexes = [_index(part) for part in parts]
    stats = collection_stats(indexes, [], query)
    scores: list[float] = []
    for index, part in zip(indexes, parts, strict=True):
        ids, distances = bm25_search(index, [query], len(part), stats)
        by_id = {int(i): -float(d) for i, d in zip(ids[0], distances[0], strict=True) if i >= 0}
        scores.extend(by_id.get(local_id, 0.0) for local_id in range(len(part)))
    return scores


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_segments_score_like_one_collection(seed: int) -> None:
    corpus = _corpus(seed)
    query = {0: 1.0, 7: 1.0, 31: 2.0}
    parts = [corpus[:70], corpus[70:110], corpus[110:]]  # uneven, like flushes of a job
    assert _split_scores(parts, query) == pytest.approx(_reference_scores(corpus, query), rel=1e-5)


def test_per_segment_statistics_do_differ() -> None:
    """The defect being fixed: milvus-lite's own search ranks differently across segments."""
    corpus = _corpus(4)
    query = {5: 1.0, 40: 1.0}
    parts = [corpus[:100], corpus[100:]]
    own = []
    for part in parts:
        ids, distances = _index(part).search([query], len(part))
        by_id = {int(i): -float(d) for i, d in zip(ids[0], distances[0], strict=True) if i >= 0}
        own.extend(by_id.get(local_id, 0.0) for local_id in range(len(part)))
    assert own != pytest.approx(_reference_scores(corpus, query), rel=1e-3)


def test_growing_rows_count_in_the_statistics() -> None:
    corpus = _corpus(5)
    sealed, growing = corpus[:90], corpus[90:]
    query = {2: 1.0, 11: 1.0}
    stats = collection_stats([_index(sealed)], growing, query)
    assert stats.doc_count == len(corpus)
    assert stats.total_length == pytest.approx(sum(sum(doc.values()) for doc in corpus))
    assert stats.doc_freq == {term: sum(1 for doc in corpus if term in doc) for term in query}


def test_filtered_rows_are_not_returned_but_still_counted() -> None:
    corpus = _corpus(6)
    index = _index(corpus)
    query = {1: 1.0}
    stats = collection_stats([index], [], query)
    mask = np.array([i % 2 == 0 for i in range(len(corpus))])
    ids, _ = bm25_search(index, [query], len(corpus), stats, valid_mask=mask)
    assert all(int(i) % 2 == 0 for i in ids[0] if i >= 0)


def test_an_empty_collection_finds_nothing() -> None:
    ids, distances = bm25_search(_index([]), [{1: 1.0}], 3, CollectionStats(0, 0.0))
    assert (ids == -1).all() and np.isinf(distances).all()


def test_flat_index_parameters_are_folded_into_params() -> None:
    pairs = {"index_type": "HNSW", "metric_type": "COSINE", "M": "16", "efConstruction": "200"}
    decoded = {"index_type": "HNSW", "metric_type": "COSINE", "params": {}, "search_params": {}}
    folded = folded_index_params(pairs, decoded)
    assert folded["params"] == {"M": 16, "efConstruction": 200}
    assert {k: v for k, v in folded.items() if k != "params"} == {
        k: v for k, v in decoded.items() if k != "params"
    }


def test_a_json_params_entry_wins_and_unknown_keys_are_left_out() -> None:
    pairs = {"bm25_k1": "1.2", "inverted_index_algo": "DAAT_MAXSCORE", "mmap.enabled": "true"}
    decoded = {"index_type": "SPARSE_INVERTED_INDEX", "params": {"bm25_k1": 2.0}}
    folded = folded_index_params(pairs, decoded)["params"]
    assert folded == {"bm25_k1": 2.0, "inverted_index_algo": "DAAT_MAXSCORE"}


def test_nothing_flat_leaves_the_reading_alone() -> None:
    decoded = {"index_type": "HNSW", "params": {}}
    assert folded_index_params({"index_type": "HNSW"}, decoded) is decoded

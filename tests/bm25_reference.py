"""Textbook BM25, written out independently of milvus-lite and of deploy.milvus_lite_server, for
the tests that check the scores those produce."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence


def textbook_bm25(
    corpus: Sequence[Mapping[Hashable, float]],
    query: Mapping[Hashable, float],
    *,
    k1: float,
    b: float,
) -> list[float]:
    """Each document's score for ``query``; documents and query map a term to its frequency."""
    n = len(corpus)
    avgdl = sum(sum(doc.values()) for doc in corpus) / n
    scores = []
    for doc in corpus:
        dl = sum(doc.values())
        score = 0.0
        for term, weight in query.items():
            if term in doc:
                df = sum(1 for other in corpus if term in other)
                idf = math.log((n - df + 0.5) / (df + 0.5) + 1)
                tf = doc[term]
                score += weight * idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
        scores.append(score)
    return scores

"""Ranking modes and metrics for ``bench.retrieval_eval``: a mode is the service's fusion
replayed over the recorded candidates (dense, BM25, hybrid, their question-word variants, or a
recorded ranking); documents rank where their best chunk does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bench.retrieval_collect import QuestionHits
from bench.retrieval_stats import per_question, split_of

BASE_MODES = ("dense", "bm25", "hybrid")
KS = (1, 5, 10)


# --------------------------------------------------------------------------- metrics


def hits_of(rows: Sequence[tuple[str, str, float]], depth: int) -> list[Any]:
    from indexing import schema
    from indexing.store import Hit

    return [Hit(cid, score, {schema.DOC_ID: doc}) for cid, doc, score in rows[:depth]]


def mode_config(config: Any, mode: str) -> Any:
    base = mode.removesuffix(QW)
    if base == "dense":
        return replace(config, dense_weight=1.0, sparse_weight=0.0)
    if base == "bm25":
        return replace(config, dense_weight=0.0, sparse_weight=1.0)
    return config


QW = "-qw"  # the mode with QUESTION_FRAME_TERMS dropped from the BM25 query


def ranked_docs(q: QuestionHits, config: Any, mode: str = "hybrid") -> list[str]:
    """Documents in the order of their best chunk in the mode's fused ranking (or the ranking
    a recorded mode wrote)."""
    from query_engine.retrieval import fused_ranking

    if mode in q.extra:
        return q.extra[mode]
    sparse_rows = q.sparse_qw if mode.endswith(QW) and q.sparse_qw is not None else q.sparse
    config = mode_config(config, mode)
    doc_of = {cid: doc for cid, doc, _ in (*q.dense, *sparse_rows)}
    dense, sparse = hits_of(q.dense, config.candidates), hits_of(sparse_rows, config.candidates)
    docs: dict[str, None] = {}
    for cid, _ in fused_ranking(dense, sparse, config):
        docs.setdefault(doc_of[cid], None)
    return list(docs)


def found_at(questions: Sequence[QuestionHits], config: Any, mode: str) -> list[int | None]:
    """Per question, the rank of its first gold document (None: not among those ranked)."""
    ranks = []
    for q in questions:
        gold = set(q.gold)
        docs = ranked_docs(q, config, mode)
        ranks.append(next((i + 1 for i, d in enumerate(docs) if d in gold), None))
    return ranks


def metrics(
    questions: Sequence[QuestionHits], config: Any, mode: str = "hybrid"
) -> dict[str, float]:
    values = per_question(found_at(questions, config, mode), KS)
    n = len(questions) or 1
    return {metric: sum(v) / n for metric, v in values.items()}


def modes_of(questions: Sequence[QuestionHits]) -> list[str]:
    """The base modes, the -qw ones where Korean questions were recorded, the recorded ones."""
    modes = list(BASE_MODES)
    if any(q.sparse_qw is not None for q in questions):
        modes += ["bm25" + QW, "hybrid" + QW]
    return modes + sorted({m for q in questions for m in q.extra})


def mode_metrics(questions: Sequence[QuestionHits], config: Any) -> dict[str, dict[str, float]]:
    return {mode: metrics(questions, config, mode) for mode in BASE_MODES}


def hybrid_not_worse(by_mode: dict[str, dict[str, float]], tolerance: float = 0.0) -> bool:
    return all(
        by_mode["hybrid"][m] + tolerance >= max(by_mode["dense"][m], by_mode["bm25"][m])
        for m in by_mode["hybrid"]
    )


def in_split(name: str, questions: Sequence[QuestionHits], split: str) -> list[QuestionHits]:
    return (
        list(questions)
        if split == "all"
        else [q for q in questions if split_of(name, q.qid) == split]
    )

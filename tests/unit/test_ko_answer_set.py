"""The project's Korean answer set (``bench/data/ko_answers``) is sound, and the answer
evaluation's unanswerable split and scoring (``bench/answer_sets.py``) do what they say."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench.answer_sets import (
    ANSWERABLE,
    HELD_OUT,
    KO_ANSWERS_DIR,
    NO_ANSWER,
    build_answer_set,
    held_out_sample,
    score_row,
    summarize,
)
from docqa_core.scripts import detect_language

QUESTION_WORDS = ("얼마", "언제", "몇", "며칠", "누구", "누가", "어디", "어느", "무엇")
MAX_ANSWER_CHARS = 20


def _jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), f"{path} has a blank line"
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return _jsonl(KO_ANSWERS_DIR / "documents.jsonl")


@pytest.fixture(scope="module")
def questions() -> list[dict[str, Any]]:
    return _jsonl(KO_ANSWERS_DIR / "questions.jsonl")


def test_documents_are_korean_regulations(documents: list[dict[str, Any]]) -> None:
    assert 5 <= len(documents) <= 8
    ids = [d["doc_id"] for d in documents]
    assert len(set(ids)) == len(ids)
    for doc in documents:
        assert set(doc) == {"doc_id", "title", "text"}
        assert detect_language(doc["text"]) == "ko"
        assert len(re.findall(r"제\d+조\([^)]+\)", doc["text"])) >= 5, doc["doc_id"]
        assert "①" in doc["text"] and "②" in doc["text"], doc["doc_id"]


def test_every_answer_occurs_in_its_gold_document(
    documents: list[dict[str, Any]], questions: list[dict[str, Any]]
) -> None:
    texts = {d["doc_id"]: d["text"] for d in documents}
    for q in questions:
        assert set(q) == {"qid", "question", "answers", "gold_doc_ids"}, q["qid"]
        for answer in q["answers"]:
            assert 0 < len(answer) <= MAX_ANSWER_CHARS, (q["qid"], answer)
            assert any(answer in texts[doc] for doc in q["gold_doc_ids"]), (q["qid"], answer)


def test_ids_are_unique_and_unanswerables_have_no_gold(questions: list[dict[str, Any]]) -> None:
    qids = [q["qid"] for q in questions]
    assert len(set(qids)) == len(qids)
    assert len({q["question"] for q in questions}) == len(questions)
    unanswerable = [q for q in questions if not q["answers"]]
    assert 5 <= len(unanswerable) <= 8
    assert all(q["gold_doc_ids"] == [] for q in unanswerable)
    assert all(q["gold_doc_ids"] for q in questions if q["answers"])
    assert 35 <= len(questions) <= 50


def test_questions_are_korean_and_cover_the_question_types(
    questions: list[dict[str, Any]],
) -> None:
    assert all(detect_language(q["question"]) == "ko" for q in questions)
    used = Counter(w for q in questions for w in QUESTION_WORDS if w in q["question"])
    for words in (
        ("얼마",),
        ("언제",),
        ("몇", "며칠"),
        ("누구", "누가"),
        ("어디", "어느"),
        ("무엇",),
    ):
        assert any(used[w] for w in words), words


# --------------------------------------------------------------------------- the split


def _toy_set() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    documents = [{"doc_id": f"d{i}", "title": "", "text": f"text {i}"} for i in range(10)]
    questions = [
        {
            "qid": f"q{i}",
            "question": f"question {i}?",
            "answers": [f"a{i}"],
            "gold_doc_ids": [f"d{i}"],
        }
        for i in range(10)
    ] + [{"qid": "none", "question": "nobody knows?", "answers": [], "gold_doc_ids": []}]
    return documents, questions


def test_split_leaves_out_the_gold_documents_of_a_seeded_fifth() -> None:
    documents, questions = _toy_set()
    answer_set = build_answer_set("toy", documents, questions)
    assert len(answer_set.held_out) == 2  # 20% of 10 answerable
    assert answer_set.held_out == sorted(held_out_sample("toy", questions[:10]))  # deterministic
    gone = {f"d{q[1:]}" for q in answer_set.held_out}
    assert {d["doc_id"] for d in answer_set.split_documents} == {f"d{i}" for i in range(10)} - gone
    kinds = Counter(a.kind for a in answer_set.asks)
    assert kinds == {ANSWERABLE: 10, HELD_OUT: 2, NO_ANSWER: 1}
    held = [a for a in answer_set.asks if a.kind == HELD_OUT]
    assert all(a.split and a.unanswerable for a in held)
    assert not any(a.split for a in answer_set.asks if a.kind != HELD_OUT)


def test_the_ko_set_gets_a_non_empty_split(
    documents: list[dict[str, Any]], questions: list[dict[str, Any]]
) -> None:
    answer_set = build_answer_set(KO_ANSWERS_DIR.name, documents, questions)
    assert answer_set.held_out
    assert 0 < len(answer_set.split_documents) < len(documents)


# --------------------------------------------------------------------------- scoring


def test_rows_score_and_summarize() -> None:
    documents, questions = _toy_set()
    answer_set = build_answer_set("toy", documents, questions, fraction=0.1)
    asks = {(a.qid, a.kind): a for a in answer_set.asks}
    right = asks[("q0", ANSWERABLE)]
    refused = asks[("q1", ANSWERABLE)]
    unanswerable = asks[("none", NO_ANSWER)]
    cite = [{"n": 1, "doc_id": "d0", "cited": True}, {"n": 2, "doc_id": "d1", "cited": False}]
    rows = [
        {"kind": right.kind, "latency_ms": 100.0, **score_row(right, {
            "answer": "It is a0 [1].", "citations": cite, "grounding": {"verified": True},
            "not_found": False})},
        {"kind": refused.kind, "latency_ms": 300.0, **score_row(refused, {
            "answer": "I could not find this in the documents.", "citations": cite,
            "grounding": {"verified": False}, "not_found": True})},
        {"kind": unanswerable.kind, "latency_ms": 200.0, **score_row(unanswerable, {
            "answer": "It is a5.", "citations": [], "grounding": {"verified": True},
            "not_found": False})},
        {"kind": ANSWERABLE, "latency_ms": 1.0, "error": "500 boom"},
    ]  # fmt: skip
    summary = summarize(rows)
    assert summary["n"] == 2 and summary["n_unanswerable"] == 1 and summary["n_errors"] == 1
    assert summary["em"] == 0.0  # "it is a0" is not "a0"
    assert summary["f1"] == 0.25  # q0: [it, is, a0] vs [a0] → 2 * 1/3 * 1 / (4/3) = 0.5
    assert summary["containment"] == 0.5
    assert summary["citation_accuracy"] == 0.5  # d0 cited for q0; d1 is not marked cited
    assert summary["grounded_rate"] == 0.5
    assert summary["refusal_rate_answerable"] == 0.5
    assert summary["hallucination_rate_unanswerable"] == 1.0
    assert summary["latency_p50_ms"] == 200.0
    assert summary["latency_p95_ms"] == 290.0

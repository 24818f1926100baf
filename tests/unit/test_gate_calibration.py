"""The gate calibration's rates and choice, on hand-made scores."""

from __future__ import annotations

import pytest

from bench.gate_calibration import NO_SCORE, choose, rates


def row(kind: str, score: float) -> dict[str, object]:
    return {"kind": kind, "score": score, "qid": f"{kind}-{score}"}


ROWS = [
    row("answerable", 0.9),
    row("answerable", 0.6),
    row("answerable", 0.3),
    row("answerable", NO_SCORE),  # refused by retrieval: refused at every threshold
    row("held_out", 0.5),
    row("held_out", 0.2),
    row("no_answer", 0.1),
    row("no_answer", NO_SCORE),
]


def test_rates_count_refusals_and_answers_to_unanswerable_questions() -> None:
    at = rates(ROWS, 0.4)
    assert at["refusal_rate_answerable"] == pytest.approx(2 / 4)  # 0.3 and no score
    assert at["hallucination_rate_unanswerable"] == pytest.approx(1 / 4)  # 0.5
    assert (at["n"], at["n_unanswerable"]) == (4, 4)


def test_the_chosen_threshold_minimises_both_errors() -> None:
    chosen, curve = choose(ROWS)
    assert chosen == pytest.approx(0.55)  # refuses 0.3 and none; answers no unanswerable
    assert curve[0]["threshold"] == 0.0 and curve[0]["refusal_rate_answerable"] == 0.25


def test_the_similarity_floor_refuses_what_the_lexical_gate_lets_through() -> None:
    from bench.gate_calibration import choose_similarity

    rows = [
        {"kind": "answerable", "score": 0.9, "similarity": 0.91, "qid": "a"},
        {"kind": "answerable", "score": 0.6, "similarity": 0.86, "qid": "b"},
        {"kind": "held_out", "score": 0.7, "similarity": 0.80, "qid": "c"},  # lexically fine
        {"kind": "no_answer", "score": 0.5, "similarity": 0.84, "qid": "d"},
    ]
    assert rates(rows, 0.35)["hallucination_rate_unanswerable"] == 1.0
    floor, curve = choose_similarity(rows, 0.35)
    assert floor == pytest.approx(0.85)  # the lowest floor that answers neither unanswerable
    at = rates(rows, 0.35, floor)
    assert (at["refusal_rate_answerable"], at["hallucination_rate_unanswerable"]) == (0.0, 0.0)
    assert curve[0]["min_similarity"] == 0.0
    strict = [*rows, {"kind": "answerable", "score": 0.9, "similarity": 0.83, "qid": "e"}]
    strict_floor, _ = choose_similarity(strict, 0.35)  # 0.85 would refuse 1 of 3 answerable
    assert strict_floor == pytest.approx(0.81)  # the unanswerable at 0.84 stays answered


def test_the_service_refuses_a_sentence_under_the_similarity_floor() -> None:
    from query_engine.extractive import Extracted, ExtractiveConfig
    from query_engine.extractive import choose as choose_sentence

    ranked = [Extracted(1, "a", 0, 1, 0.8), Extracted(2, "b", 0, 1, 0.7)]
    gated = ExtractiveConfig(min_similarity=0.85)
    assert choose_sentence(ranked, [0.80, 0.84], gated) is None
    found = choose_sentence(ranked, [0.80, 0.95], gated)
    assert found is not None and found.n == 2  # the re-ranked best, over the floor
    assert choose_sentence(ranked, (), gated) is not None  # no embedder: lexical gate only


def test_the_coverage_floor_is_chosen_with_the_other_gates_fixed() -> None:
    from bench.gate_calibration import choose_coverage

    rows = [
        {"kind": "answerable", "score": 0.9, "similarity": 0.9, "coverage": 1.0, "qid": "a"},
        {"kind": "answerable", "score": 0.6, "similarity": 0.9, "coverage": 0.67, "qid": "b"},
        {"kind": "held_out", "score": 0.7, "similarity": 0.9, "coverage": 0.33, "qid": "c"},
        {"kind": "no_answer", "score": 0.5, "similarity": 0.9, "coverage": 0.5, "qid": "d"},
        # under the similarity floor: refused whatever its coverage
        {"kind": "no_answer", "score": 0.5, "similarity": 0.7, "coverage": 1.0, "qid": "e"},
    ]
    floor, curve = choose_coverage(rows, 0.35, 0.8)
    assert floor == pytest.approx(0.55)  # the lowest floor over 0.5 and under 0.67
    at = rates(rows, 0.35, 0.8, floor)
    assert (at["refusal_rate_answerable"], at["hallucination_rate_unanswerable"]) == (0.0, 0.0)
    assert curve[0]["hallucination_rate_unanswerable"] == pytest.approx(2 / 3)
    # a floor per language applies to each row by its language
    korean = [{**r, "language": "ko"} for r in rows[:3]] + rows[3:]
    per_language = rates(korean, 0.35, 0.8, {"ko": 0.55, "other": 0.0})
    assert per_language["hallucination_rate_unanswerable"] == pytest.approx(1 / 3)  # d, at 0.5


def test_a_floor_that_refuses_paraphrased_questions_is_not_chosen() -> None:
    from bench.gate_calibration import choose_coverage

    rows = [
        {"kind": "answerable", "score": 0.9, "similarity": 0.9, "coverage": 1.0, "qid": "a"},
        {"kind": "held_out", "score": 0.7, "similarity": 0.9, "coverage": 0.32, "qid": "c"},
        {"kind": "held_out", "score": 0.7, "similarity": 0.9, "coverage": 0.6, "qid": "d"},
    ]
    literal, _ = choose_coverage(rows, 0.35, 0.8)
    assert literal == pytest.approx(0.65)  # the literal set alone would take 0.65
    # paraphrased questions whose gold passages hold 0.3 to 0.7 of their terms: at most 10% of
    # them may fall under the floor
    paraphrased = [0.3, 0.4, 0.5, 0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7]
    floor, curve = choose_coverage(rows, 0.35, 0.8, paraphrased)
    assert floor == pytest.approx(0.35)  # refuses c and one paraphrased question; d answered
    assert next(p for p in curve if p["min_coverage"] == 0.65)["refusal_paraphrased"] == 0.7

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

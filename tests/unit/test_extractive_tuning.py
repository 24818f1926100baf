"""The extractive tuning's answers, rates and choice, on hand-made rows and sentences."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.extractive_tuning import Scored, answer, choose, evaluate, rates
from query_engine.extractive import Extracted, ExtractiveConfig, SourceText, answer_text

TEXT = "The office opens at 9 am. Lunch costs 8 euros a day. Parking is free."
SOURCE = SourceText(1, TEXT)
OPENS = Extracted(1, "The office opens at 9 am.", 0, 25, 0.70)
LUNCH = Extracted(1, "Lunch costs 8 euros a day.", 26, 52, 0.40)
PARKING = Extracted(1, "Parking is free.", 53, 69, 0.36)
NO_RUNNER_UP = ExtractiveConfig(runner_up_margin=None)


def item(
    kind: str,
    ranked: list[Extracted],
    similarities: list[float],
    answers: tuple[str, ...] = (),
    set_name: str = "s",
) -> Scored:
    row = {"kind": kind, "question": "How much is lunch?", "answers": list(answers),
           "language": "en", "qid": f"{kind}-{len(ranked)}-{similarities}"}  # fmt: skip
    return Scored(row, set_name, [SOURCE], ranked, similarities)


# the lexical best (OPENS) does not say what lunch costs; the embedding says LUNCH does
LUNCH_ASKED = item("answerable", [OPENS, LUNCH, PARKING], [0.83, 0.95, 0.80], ("8 euros",))


def test_the_dense_weight_decides_between_the_lexical_and_the_similar_sentence() -> None:
    light = replace(NO_RUNNER_UP, dense_weight=2.0)  # 0.70+1.66=2.36 beats 0.40+1.90=2.30
    heavy = replace(NO_RUNNER_UP, dense_weight=3.0)  # 0.70+2.49=3.19 loses to 0.40+2.85=3.25
    assert answer(LUNCH_ASKED, light) == "The office opens at 9 am. [1]"
    assert answer(LUNCH_ASKED, heavy) == "Lunch costs 8 euros a day. [1]"
    assert rates([LUNCH_ASKED], light)["containment"] == 0.0
    assert rates([LUNCH_ASKED], heavy)["containment"] == 1.0


def test_answer_is_the_engine_path_and_applies_the_lexical_gate_first() -> None:
    config = replace(NO_RUNNER_UP, dense_weight=3.0)
    assert answer(LUNCH_ASKED, config) == answer_text(
        "How much is lunch?", [OPENS, LUNCH, PARKING], [0.83, 0.95, 0.80], [SOURCE], config
    )
    weak = item("answerable", [replace(OPENS, score=0.2)], [0.99], ("9 am",))
    assert answer(weak, config) == ""  # under min_score: not found, however similar
    assert answer(item("answerable", [], []), config) == ""  # no sources


def test_rates_count_containment_refusals_and_answers_to_unanswerable_questions() -> None:
    config = replace(NO_RUNNER_UP, dense_weight=3.0)
    unanswerable = item("held_out", [PARKING], [0.90])  # answered: a hallucination
    dissimilar = item("no_answer", [PARKING], [0.70])  # under the similarity floor: refused
    refused = item("answerable", [replace(OPENS, score=0.1)], [0.9], ("9 am",))
    got = rates([LUNCH_ASKED, refused, unanswerable, dissimilar], config)
    assert got["containment"] == pytest.approx(1 / 2)
    assert got["refusal_rate_answerable"] == pytest.approx(1 / 2)
    assert got["hallucination_rate_unanswerable"] == pytest.approx(1 / 2)
    assert (got["n"], got["n_unanswerable"]) == (2, 2)


def test_the_choice_is_the_best_containment_no_worse_on_refusals_and_hallucinations() -> None:
    other_set = replace(LUNCH_ASKED, set_name="t")
    items = [LUNCH_ASKED, other_set, item("held_out", [PARKING], [0.70])]
    current = replace(NO_RUNNER_UP, dense_weight=1.0, runner_up_margin=None)
    best, grid = choose(items, current)
    assert best["mean_containment"] == 1.0
    # without a runner-up, 3.0 is the smallest weight choosing LUNCH; a margin of 0.5 quotes it
    # after OPENS even at 0.5 (1.115 against 0.875), and the smaller weight wins the tie
    assert (best["dense_weight"], best["runner_up_margin"]) == (0.5, 0.5)
    no_second = [g for g in grid if g["runner_up_margin"] is None and g["mean_containment"] == 1]
    assert min(g["dense_weight"] for g in no_second) == 3.0
    assert len(grid) == 20
    on_current = evaluate(items, current)
    assert on_current["mean_containment"] == 0.0 and set(on_current["sets"]) == {"s", "t"}


def test_the_runner_up_is_quoted_only_from_the_best_sentence_s_document() -> None:
    guide = SourceText(1, TEXT, doc_id="guide")
    notice = SourceText(2, "Lunch is served in the canteen.", doc_id="notice")
    canteen = Extracted(2, "Lunch is served in the canteen.", 0, 31, 0.38)
    config = replace(NO_RUNNER_UP, dense_weight=3.0, runner_up_margin=0.5)
    question = "How much is lunch?"
    # LUNCH (0.40 + 2.85) and the notice's sentence (0.38 + 2.79) are within the margin
    ranked, sims = [LUNCH, canteen], [0.95, 0.93]
    same = answer_text(question, ranked, sims, [guide, SourceText(2, notice.text, doc_id="guide")],
                       config)  # fmt: skip
    assert same == "Lunch costs 8 euros a day. [1]\nLunch is served in the canteen. [2]"
    assert answer_text(question, ranked, sims, [guide, notice], config) == (
        "Lunch costs 8 euros a day. [1]"
    )

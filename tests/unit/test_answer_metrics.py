"""Unit tests for ``bench/answer_metrics.py``: hand-computed normalisations and scores."""

from __future__ import annotations

import math

import pytest

from bench.answer_metrics import (
    containment,
    exact_match,
    is_refusal,
    normalize_answer,
    percentile,
    token_f1,
)

# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  a  cat,  an   owl and THE dog. ", "cat owl and dog"),
        ("Denver Broncos' (2015)", "denver broncos 2015"),
        ("50,000 dollars", "50000 dollars"),
        ("theory", "theory"),  # "the" is dropped as a word only
    ],
)
def test_english_normalisation_is_squad_style(text: str, expected: str) -> None:
    assert normalize_answer(text, "en") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("부서장에게는", "부서장"),
        ("대표이사입니다.", "대표이사"),
        ("대표이사로 한다", "대표이사"),
        ("30만 원이다", "30만원"),  # 만 of a number stays; the unit joins the number
        ("30만원을", "30만원"),
        ("50,000원", "50000원"),
        ("교육비는 1인당 연간 300만 원까지", "교육비 1인당 연간 300만원"),
        ("14일 이내에", "14일 이내"),
        ("ＬＬＭ의 「규정」", "llm 규정"),  # NFKC, Latin lowercased, brackets gone
        ("① 회사는", "회사"),  # paragraph mark dropped, not turned into "1"
        ("1.5배", "1.5배"),  # a decimal point is kept
        ("연차휴가를", "연차휴"),  # repeated stripping: same as "연차휴가" below
        ("연차휴가", "연차휴"),
        ("이", "이"),  # never stripped to nothing
    ],
)
def test_korean_normalisation(text: str, expected: str) -> None:
    assert normalize_answer(text, "ko") == expected


def test_language_is_detected_when_not_given() -> None:
    assert normalize_answer("부서장이") == "부서장"
    assert normalize_answer("The Answer.") == "answer"


# --------------------------------------------------------------------------- exact match


def test_exact_match_english_ignores_case_articles_and_punctuation() -> None:
    assert exact_match("The Broncos.", ["Denver Broncos", "broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0


def test_exact_match_korean_ignores_particles_spacing_and_separators() -> None:
    assert exact_match("25,000원입니다.", ["25000원"]) == 1.0
    assert exact_match("30만원", ["30만 원"]) == 1.0
    assert exact_match("소속 부서장이", ["부서장", "소속 부서장"]) == 1.0
    assert exact_match("3일", ["30일"]) == 0.0


def test_citation_marks_are_not_part_of_the_answer() -> None:
    assert normalize_answer("Denver Broncos [1], [2, 3].", "en") == "denver broncos"
    assert exact_match("16일입니다 [1].", ["16일"]) == 1.0
    assert exact_match("The Broncos [2]", ["Broncos"]) == 1.0


def test_exact_match_without_golds_is_zero() -> None:
    assert exact_match("anything", []) == 0.0


# --------------------------------------------------------------------------- token F1


def test_token_f1_english_worked_example() -> None:
    # prediction tokens [denver, broncos, won]; gold [broncos, won, super, bowl]
    # common 2: precision 2/3, recall 2/4, F1 = 2 * (2/3) * (1/2) / (2/3 + 1/2) = 4/7
    assert token_f1("Denver Broncos won", ["The Broncos won the Super Bowl"]) == pytest.approx(
        4 / 7
    )


def test_token_f1_korean_worked_example() -> None:
    # "연차휴가는 16일입니다" → [연차휴, 16일]; gold "16일" → [16일]
    # common 1: precision 1/2, recall 1/1, F1 = 2 * 0.5 * 1 / 1.5 = 2/3
    assert token_f1("연차휴가는 16일입니다", ["16일"]) == pytest.approx(2 / 3)


def test_token_f1_is_the_best_over_golds_and_zero_without_overlap() -> None:
    assert token_f1("본부장", ["부서장", "본부장의 승인"]) == pytest.approx(2 / 3)
    assert token_f1("재무팀", ["인사팀"]) == 0.0
    assert token_f1("재무팀", []) == 0.0


# --------------------------------------------------------------------------- containment


def test_containment_finds_the_gold_inside_a_sentence() -> None:
    assert containment("The race was won by the Denver Broncos in 2016.", ["Denver Broncos"]) == 1.0
    assert containment("출장 일비는 하루 25,000원입니다 [1].", ["25,000원"]) == 1.0
    assert containment("숙박비 상한은 10만원입니다.", ["10만 원"]) == 1.0


def test_containment_respects_token_boundaries() -> None:
    assert containment("대여 기간은 11일입니다.", ["1일"]) == 0.0
    assert containment("대여 기간은 11일입니다.", ["11일"]) == 1.0
    assert containment("a broncos fan", ["Denver Broncos"]) == 0.0


def test_containment_max_over_golds() -> None:
    assert containment("장비보관실에 반납합니다", ["본사 2층 장비보관실", "장비보관실"]) == 1.0
    assert containment("총무팀에 반납합니다", ["본사 2층 장비보관실", "장비보관실"]) == 0.0


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("answer", "flag", "expected"),
    [
        ("제공된 문서에서 답을 찾을 수 없습니다.", False, True),
        ("I could not find this in the documents.", False, True),
        ("I could not find this in the documents [1]", False, True),
        ("죄송하지만 문서에서 답을 찾을 수 없습니다.", False, True),
        ("The documents do not mention the fee.", False, True),
        ("", False, True),
        ("연차휴가는 16일입니다 [1].", False, False),
        ("The fee is 20 dollars [2].", False, False),
        ("연차휴가는 16일입니다 [1].", True, True),  # the server's not_found flag wins
    ],
)
def test_is_refusal(answer: str, flag: bool, expected: bool) -> None:
    assert is_refusal(answer, flag) is expected


# --------------------------------------------------------------------------- percentile


def test_percentile_interpolates_between_ranks() -> None:
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(values, 95) == pytest.approx(38.5)  # 30 + 0.85 * (40 - 30)
    assert percentile(values, 0) == 10.0
    assert math.isnan(percentile([], 50))

"""The one citation-marker parser (docqa_core.citations): grounding and the API read the same
numbers from an answer."""

from __future__ import annotations

import pytest

from docqa_core.citations import all_cited, cited_numbers
from query_engine.grounding import check_grounding

SOURCES = {
    1: "제8조 국내 출장의 일비는 1일 50,000원으로 한다.",
    2: "제9조 숙박비는 1박 100,000원 이내의 실비로 한다.",
    3: "제10조 식비는 1일 30,000원으로 한다.",
}


@pytest.mark.parametrize(
    ("answer", "numbers"),
    [
        ("일비는 25,000원입니다 [1], 숙박비는 실비 [2, 3] … 부칙 [10].", {1, 2, 3, 10}),
        ("A [1,2] and B [2 , 4].", {1, 2, 4}),
        ("Repeated [1] [1] [1].", {1}),
        ("No citations here.", set()),
        ("Not citations: [] [a] [1.5] (1) [2024]", set()),
        ("Years like 2024 and amounts like 25,000 are not citations.", set()),
        ("Adjacent[7][8]", {7, 8}),
        ("A range [1-3].", {1, 2, 3}),
        ("An en-dash range [2–4] and a tilde [6~7].", {2, 3, 4, 6, 7}),
        ("Full-width comma [1，2].", {1, 2}),
        ("A reversed range keeps its ends [5-2].", {2, 5}),
        ("A huge range is not expanded [1-999].", {1, 999}),
    ],
)
def test_all_cited(answer: str, numbers: set[int]) -> None:
    assert all_cited(answer) == numbers


def test_no_marker_differs_from_markers_of_nothing() -> None:
    assert cited_numbers("no marker") is None
    assert cited_numbers("one [3]") == frozenset({3})


@pytest.mark.parametrize("marker", ["[1-3]", "[1,2,3]", "[1][2][3]", "[1, 2, 3]"])
def test_grounding_and_api_read_the_same_sources(marker: str) -> None:
    """A claim supported only by source 3 passes grounding exactly when the API would report
    source 3 as cited: both follow the same parse of the marker."""
    answer = f"식비는 1일 30,000원입니다 {marker}."
    grounding = check_grounding(answer, SOURCES)
    assert grounding.verified
    assert all_cited(answer) == {1, 2, 3}


def test_grounding_refuses_a_claim_its_marker_does_not_cover() -> None:
    answer = "식비는 1일 30,000원입니다 [1-2]."
    assert not check_grounding(answer, SOURCES).verified
    assert 3 not in all_cited(answer)

"""The extractive answer and the answer-type check, on the project's own regulation sample."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from indexing.analysis import analyze_many
from query_engine.answer_types import answers_question, expected_type
from query_engine.extractive import SourceText, extract_answer, extractive_text, quoted_together

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "출장여비규정.txt"
ARTICLES = re.split(r"\n(?=제\d+조)", SAMPLE.read_text(encoding="utf-8"))
SOURCES = [SourceText(n, text) for n, text in enumerate(ARTICLES, start=1)]
ENGLISH = [
    SourceText(1, "The grinder has 40 settings. Brush the burrs every 2 weeks."),
    SourceText(2, "Kestrel was founded in 2011 by Mara Quill in Leeds. It employs 35 people."),
]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("국내 출장의 일비는 하루에 얼마인가요?", "1일 50,000원"),
        ("임원의 일비는 얼마인가요?", "70,000원"),
        ("당일 출장의 일비는 얼마인가요?", "2분의 1"),
        ("미국 출장 숙박비 상한은 얼마인가요?", "250달러"),
        ("3일 이내 국내출장의 승인권자는 누구인가요?", "소속 부서장"),
        ("국외출장 신청은 언제까지 해야 하나요?", "14일 전까지"),
    ],
)
def test_the_answering_sentence_is_quoted_with_its_source(question: str, expected: str) -> None:
    found = extract_answer(question, SOURCES, analyze_many)
    assert found is not None
    assert expected in found.sentence
    source = SOURCES[found.n - 1].text
    assert source[found.char_start : found.char_end] == found.sentence  # verbatim, with its span
    assert extractive_text(found).endswith(f"[{found.n}]")


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How often should the burrs be brushed?", "every 2 weeks"),
        ("Who founded Kestrel?", "Mara Quill"),
        ("How many people does Kestrel employ?", "35 people"),
    ],
)
def test_english_questions_pick_the_right_sentence(question: str, expected: str) -> None:
    found = extract_answer(question, ENGLISH, analyze_many)
    assert found is not None and expected in found.sentence


@pytest.mark.parametrize(
    "question", ["회사 주차장 이용 요금은 얼마인가요?", "What is the boiling point of mercury?"]
)
def test_a_question_no_sentence_answers_gets_nothing(question: str) -> None:
    assert extract_answer(question, [*SOURCES, *ENGLISH], analyze_many) is None


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("일비는 얼마인가요?", "amount"),
        ("How much is the fee?", "amount"),
        ("신청은 언제까지 하나요?", "time"),
        ("When was it founded?", "time"),
        ("참석 인원은 몇 명인가요?", "count"),
        ("How many settings are there?", "count"),
        ("승인권자는 누구인가요?", "person"),
        ("Who founded it?", "person"),
        ("본사는 어디에 있나요?", "place"),
        ("What is the purpose of the rule?", None),
    ],
)
def test_the_asked_for_type_is_recognised(question: str, kind: str | None) -> None:
    assert expected_type(question) == kind


@pytest.mark.parametrize(
    ("question", "answer", "responsive"),
    [
        ("국내 출장의 일비는 하루에 얼마인가요?", "일비는 1일 50,000원입니다 [1].", True),
        # the README's failure: copied text of another article, no amount at all
        (
            "국내 출장의 일비는 하루에 얼마인가요?",
            "3일을 초과하는 국내출장: 소속 본부장 [1]",
            False,
        ),
        ("국외출장 신청은 언제까지 해야 하나요?", "출발 14일 전까지 제출합니다 [1].", True),
        ("국외출장 신청은 언제까지 해야 하나요?", "출장신청서를 제출합니다 [1].", False),
        ("When was Kestrel founded?", "Kestrel was founded in 2011 [2].", True),
        ("When was Kestrel founded?", "Kestrel makes coffee grinders [2].", False),
        ("What does the rule cover?", "Travel costs [1].", True),
        ("How many settings are there?", "It has many settings [1].", False),  # [1] is no count
    ],
)
def test_an_answer_must_hold_what_was_asked(question: str, answer: str, responsive: bool) -> None:
    assert answers_question(question, answer) is responsive


def test_similarity_reorders_the_lexical_top_but_the_gate_stays_lexical() -> None:
    from query_engine.extractive import Extracted, ExtractiveConfig, choose

    first = Extracted(1, "Lexically best.", 0, 15, 0.60)
    second = Extracted(1, "Semantically best.", 16, 34, 0.55)
    config = ExtractiveConfig(min_score=0.35, dense_weight=1.0)
    assert choose([first, second], [0.80, 0.90], config) == second  # 0.55 + 0.90 > 0.60 + 0.80
    assert choose([first, second], [], config) == first
    gated = ExtractiveConfig(min_score=0.65, dense_weight=1.0)
    assert choose([first, second], [0.80, 0.99], gated) is None


def test_accents_and_word_forms_do_not_hide_the_answering_sentence() -> None:
    sources = [
        SourceText(1, "The museum opened in 1990. It holds paintings of the harbour."),
        SourceText(2, "Dr. Hélène Marchetti, the curator, catalogues every acquisition."),
        SourceText(3, "A physician may dispense drugs when no pharmacy is near."),
    ]
    curator = extract_answer("Who is Helene Marchetti?", sources, analyze_many)
    assert curator is not None and curator.n == 2  # typed without the accent
    dispensing = extract_answer(
        "Who can dispense drugs where physicians are far?", sources, analyze_many
    )
    assert dispensing is not None and dispensing.n == 3  # physicians / physician


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Thomas de Maizière", "Thomas de Maiziere"),
        ("국내 출장의 일비", "국내 출장의 일비"),
        ("ascii", "ascii"),
    ],
)
def test_fold_accents_keeps_hangul_whole(text: str, folded: str) -> None:
    from query_engine.extractive import fold_accents

    assert fold_accents(text) == folded


LODGING = SourceText(
    1,
    "제3조(숙박비) 숙박비는 1박당 다음 각 호의 금액을 상한으로 하여 실비로 지급한다.\n"
    "1. 서울특별시: 10만 원\n2. 광역시: 8만 원\n3. 그 밖의 지역: 6만 원\n"
    "② 숙박하지 아니한 경우에는 숙박비를 지급하지 아니한다.",
    context="제2장 국내 여비 > 제3조(숙박비)",
)


def test_a_sentence_that_introduces_a_list_is_quoted_with_its_items() -> None:
    from query_engine.extractive import Extracted, with_list_items

    intro = LODGING.text.split("\n")[0]
    found = Extracted(1, intro, 0, len(intro), 1.0)
    quoted = with_list_items(found, [LODGING])
    assert quoted.sentence.endswith("3. 그 밖의 지역: 6만 원")  # every item, not the next 항
    assert LODGING.text[quoted.char_start : quoted.char_end] == quoted.sentence
    assert "10만 원" in extractive_text(quoted)
    plain = Extracted(1, "② 숙박하지 아니한 경우에는 숙박비를 지급하지 아니한다.", 0, 5, 1.0)
    assert with_list_items(plain, [LODGING]) is plain


def test_the_list_an_answer_needs_is_in_the_extracted_answer() -> None:
    found = extract_answer("서울 출장 시 숙박비 상한은 1박에 얼마인가요?", [LODGING], analyze_many)
    assert found is not None and "10만 원" in found.sentence


DOMESTIC_PER_DIEM = SourceText(
    1, "국내 출장자에게는 출장 1일당 25,000원의 일비를 지급한다.", "출장비 규정\n제2조(일비)"
)
REMOTE_WORK = SourceText(
    2,
    "회사는 재택근무자에게 모니터 1대를 대여하고, 월 3만 원의 통신비를 지급한다.",
    "재택근무 규정\n제5조(장비 지원)",
)


@pytest.mark.parametrize(
    ("question", "coverage"),
    [
        ("국내 출장 일비는 얼마인가요?", 1.0),  # every topic term in the chunk
        # Kiwi reads the question's 일비 as 일 + 비, one-syllable morphemes that do not count:
        # of 해외 and 출장, 해외 is not in the chunk, which is another article's amount
        ("해외 출장 일비는 얼마인가요?", 1 / 2),
    ],
)
def test_topic_coverage_is_the_share_of_question_terms_the_chunk_holds(
    question: str, coverage: float
) -> None:
    from query_engine.extractive import rank_sentences

    ranked = rank_sentences(question, [DOMESTIC_PER_DIEM], analyze_many)
    assert ranked and ranked[0].coverage == pytest.approx(coverage)


def test_the_coverage_floor_refuses_an_amount_of_another_topic() -> None:
    from query_engine.extractive import ExtractiveConfig

    question = "재택근무자에게 지급되는 점심 식대는 얼마인가요?"  # 통신비 is in the chunk, 식대 not
    assert extract_answer(question, [REMOTE_WORK], analyze_many) is not None  # no floor: answered
    gated = ExtractiveConfig(min_coverage_korean=0.7)
    assert extract_answer(question, [REMOTE_WORK], analyze_many, gated) is None
    answerable = "재택근무자에게 지급되는 통신비는 얼마인가요?"
    assert extract_answer(answerable, [REMOTE_WORK], analyze_many, gated) is not None
    english_only = ExtractiveConfig(min_coverage_other=0.7)  # the Korean question's floor is 0
    assert extract_answer(question, [REMOTE_WORK], analyze_many, english_only) is not None


def test_a_close_runner_up_is_quoted_too_in_reading_order() -> None:
    from query_engine.extractive import Extracted, ExtractiveConfig, choose, runner_up

    text = "Brewing takes four minutes. Use 60 grams per litre. Stir once."
    earlier = Extracted(1, "Brewing takes four minutes.", 0, 27, 0.50)
    later = Extracted(1, "Use 60 grams per litre.", 28, 51, 0.60)
    far = Extracted(2, "Stir once.", 0, 10, 0.10)
    ranked = [later, earlier, far]
    config = ExtractiveConfig(min_score=0.35, min_similarity=0.82, runner_up_margin=0.2)
    best = choose(ranked, [0.90, 0.88, 0.95], config)
    assert best == later  # 1.50 against 1.38 and 1.05
    second = runner_up(ranked, [0.90, 0.88, 0.95], later, config)
    assert second == earlier  # 0.12 behind: within the margin
    assert text[second.char_start : second.char_end] == second.sentence
    # the same source: read in its order, each sentence citing it
    answer = extractive_text(quoted_together(later, second))
    assert answer == "Brewing takes four minutes. [1]\nUse 60 grams per litre. [1]"
    # further behind than the margin, under the similarity floor, or the margin off: one sentence
    assert runner_up(ranked, [0.90, 0.60, 0.95], later, config) is None
    assert runner_up(ranked, [0.90, 0.80, 0.95], later, config) is None
    assert runner_up(ranked, [0.90, 0.88], later, replace(config, runner_up_margin=None)) is None
    assert quoted_together(later, far) == [later, far]  # another source: the best first


def test_a_runner_up_inside_the_quoted_list_is_not_repeated() -> None:
    from query_engine.extractive import Extracted, quoted_together

    intro = Extracted(1, "Allowances are as follows:\n1. 50 euros a day", 0, 44, 0.9)
    item = Extracted(1, "1. 50 euros a day", 27, 44, 0.8)
    assert quoted_together(intro, item) == [intro]
    assert quoted_together(item, intro) == [intro]  # the best was the item: its list is quoted


def test_two_quoted_sentences_are_each_checked_against_their_own_source() -> None:
    """A quoted line without a final period ("…숙박비 미화 250달러") must not run into the next
    quote: 제9조 of the second is in source 1, not in the source the first cites."""
    from query_engine.extractive import Extracted, with_list_items
    from query_engine.grounding import check_grounding

    abroad = next(s for s in SOURCES if "250달러" in s.text)
    domestic = next(s for s in SOURCES if s.text.startswith("제9조"))
    line = next(x for x in abroad.text.splitlines() if "250달러" in x)
    start = abroad.text.index(line)
    first = Extracted(abroad.n, line, start, start + len(line), 1.0)
    intro = domestic.text.splitlines()[0]  # "제9조(숙박비) ① 숙박비는 … 다음 각 호의 …"
    second = with_list_items(Extracted(domestic.n, intro, 0, len(intro), 0.9), SOURCES)
    assert "\n1." in second.sentence  # quoted with its items: its [n] comes after them
    answer = extractive_text([first, second])
    grounding = check_grounding(answer, {s.n: s.text for s in SOURCES})
    assert grounding.verified, grounding.unsupported


def test_a_reference_marker_is_not_the_count_a_question_asks_for() -> None:
    from query_engine.extractive import rank_sentences

    paper = SourceText(
        1,
        "Cases were confirmed on the cruise ship [1] . "
        "In total, 199 cases were confirmed on the ship.",
    )
    question = "How many cases were confirmed on the cruise ship?"
    ranked = rank_sentences(question, [paper], analyze_many)
    # the first sentence holds every question word, but its "[1]" is a reference, not the count
    # asked for: it earns no count bonus, and the sentence with 199 comes first
    assert ranked[0].sentence.startswith("In total, 199 cases")

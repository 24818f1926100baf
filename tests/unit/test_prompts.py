"""Unit tests for query_engine.prompts (token estimate, source packing, messages)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from llama_index.core.llms import MessageRole

from query_engine.prompts import (
    NOT_FOUND_ANSWERS,
    SOURCE_FRAME_NEWLINE_TOKENS,
    SOURCE_SEPARATOR_TOKENS,
    SYSTEM_PROMPT,
    PromptSource,
    build_messages,
    estimate_llm_tokens,
    format_sources,
    not_found_answer,
    pack_sources,
    source_header,
    user_message,
)

QUESTION = "What is the daily allowance for domestic travel?"
KO_TEXT = "제12조(일비) ① 국내 출장의 일비는 1일 25,000원으로 한다. ② 숙박비는 실비로 지급한다."
EN_TEXT = "Section 4. The daily allowance for domestic travel is 25,000 won per day."


def source(n: int, text: str, title: str = "Travel rules", section: str = "") -> PromptSource:
    return PromptSource(n=n, title=title, section=section, text=text)


def prompt_tokens(
    question: str,
    packed: Sequence[PromptSource],
    count: Callable[[str], int] = estimate_llm_tokens,
) -> int:
    """What the two messages built from ``packed`` cost, by ``count``."""
    return count(SYSTEM_PROMPT) + count(user_message(question, packed))


def base_tokens(question: str = QUESTION, count: Callable[[str], int] = estimate_llm_tokens) -> int:
    return prompt_tokens(question, [], count)


# --------------------------------------------------------------------------- estimate_llm_tokens


def test_estimate_of_empty_text_is_the_fixed_overhead() -> None:
    assert estimate_llm_tokens("") == 4


def test_estimate_for_english_is_about_a_third_of_the_characters() -> None:
    assert estimate_llm_tokens("a" * 300) == 4 + 100
    assert estimate_llm_tokens("a" * 301) == 4 + 101  # rounded up


def test_estimate_counts_three_tokens_per_hangul_syllable() -> None:
    assert estimate_llm_tokens("가" * 100) == 4 + 300


def test_korean_counts_more_per_character_than_english() -> None:
    korean = "국내 출장의 일비는 하루에 얼마인가요"
    english = "x" * len(korean)

    assert estimate_llm_tokens(korean) > 2 * estimate_llm_tokens(english)


def test_mixed_text_adds_both_parts() -> None:
    assert estimate_llm_tokens("가나다abc") == 4 + 9 + (3 + 2) // 3


@pytest.mark.parametrize("text", [EN_TEXT, KO_TEXT, SYSTEM_PROMPT])
def test_estimate_is_at_least_one_token_per_word(text: str) -> None:
    assert estimate_llm_tokens(text) >= len(text.split())


@pytest.mark.parametrize("text", [KO_TEXT, "가나다라마바사아자차카타파하"])
def test_estimate_is_at_least_one_token_per_hangul_syllable(text: str) -> None:
    syllables = sum(1 for ch in text if "가" <= ch <= "힣")

    assert estimate_llm_tokens(text) >= syllables


def test_estimate_grows_with_the_text() -> None:
    pieces = [EN_TEXT, KO_TEXT, " ", "\n", "…"]
    text = ""
    previous = estimate_llm_tokens(text)
    for piece in pieces * 3:
        text += piece
        current = estimate_llm_tokens(text)
        assert current >= previous
        previous = current


@pytest.mark.parametrize(
    "text",
    ["1234567890" * 10, "第十二條年次休暇勞動者", "①②③④⑤⑥⑦⑧⑨⑩"],
    ids=["digits", "hanja", "circled-numbers"],
)
def test_estimate_is_at_least_one_token_per_digit_or_cjk_symbol(text: str) -> None:
    assert estimate_llm_tokens(text) >= len(text)


# --------------------------------------------------------------------------- headers and messages


@pytest.mark.parametrize(
    ("title", "section", "header"),
    [
        ("Rules", "", '<source id="3">\n[3] Rules'),
        ("Rules", "제2장 > 제12조", '<source id="3">\n[3] Rules — 제2장 > 제12조'),
        ("", "", '<source id="3">\n[3] untitled'),
        ("", "Intro", '<source id="3">\n[3] untitled — Intro'),
    ],
)
def test_source_header(title: str, section: str, header: str) -> None:
    assert source_header(PromptSource(3, title, section, "text")) == header


def test_sources_are_numbered_frames_separated_by_blank_lines() -> None:
    formatted = format_sources([source(1, "  first  "), source(2, "second", title="B")])

    assert formatted == (
        '<source id="1">\n[1] Travel rules\nfirst\n</source>\n\n'
        '<source id="2">\n[2] B\nsecond\n</source>'
    )


def test_build_messages_starts_with_the_stable_system_prompt() -> None:
    first = build_messages("질문 하나?", [source(1, KO_TEXT)])
    second = build_messages("another question", [source(1, EN_TEXT), source(2, "x")])

    assert [m.role for m in first] == [MessageRole.SYSTEM, MessageRole.USER]
    assert first[0].content == SYSTEM_PROMPT
    assert second[0].content == SYSTEM_PROMPT  # same prefix for every question: prefix cache


def test_user_message_holds_sources_then_the_question() -> None:
    [_, user] = build_messages(f"  {QUESTION}  ", [source(1, EN_TEXT, section="§4")])

    content = user.content
    assert isinstance(content, str)
    assert content.startswith(
        f'Sources:\n\n<source id="1">\n[1] Travel rules — §4\n{EN_TEXT}\n</source>\n\n'
    )
    assert content.endswith(f"Question: {QUESTION}\nAnswer:")
    assert content.index(EN_TEXT) < content.index(QUESTION)


def test_system_prompt_quotes_both_not_found_answers() -> None:
    for answer in NOT_FOUND_ANSWERS.values():
        assert answer in SYSTEM_PROMPT


@pytest.mark.parametrize(
    ("language", "answer"),
    [
        ("ko", "제공된 문서에서 답을 찾을 수 없습니다."),
        ("en", "I could not find this in the documents."),
        ("fr", "I could not find this in the documents."),
        ("", "I could not find this in the documents."),
    ],
)
def test_not_found_answer_per_language(language: str, answer: str) -> None:
    assert not_found_answer(language) == answer


# --------------------------------------------------------------------------- pack_sources


def test_everything_fits_in_a_large_budget() -> None:
    sources = [source(1, EN_TEXT), source(2, KO_TEXT), source(3, "short")]

    packed = pack_sources(QUESTION, sources, budget_tokens=100_000)

    assert packed == sources


def test_packing_keeps_the_given_best_first_order() -> None:
    sources = [source(3, "third-ranked"), source(1, "best"), source(2, "second")]

    assert [s.n for s in pack_sources(QUESTION, sources, budget_tokens=100_000)] == [3, 1, 2]


def test_no_sources_pack_to_nothing() -> None:
    assert pack_sources(QUESTION, [], budget_tokens=100_000) == []


def test_a_budget_below_the_fixed_prompt_packs_nothing() -> None:
    assert pack_sources(QUESTION, [source(1, EN_TEXT)], budget_tokens=10) == []


def test_the_first_source_that_does_not_fit_is_cut_and_the_rest_dropped() -> None:
    long_text = "\n".join(f"Line {i}: travel allowance detail number {i}." for i in range(200))
    sources = [source(1, EN_TEXT), source(2, long_text, title="Long"), source(3, "tiny")]
    budget = base_tokens() + 300

    packed = pack_sources(QUESTION, sources, budget_tokens=budget)

    assert [s.n for s in packed] == [1, 2]  # 3 would fit, but never jumps ahead of a cut source
    assert packed[0] == sources[0]
    cut = packed[1]
    assert (cut.n, cut.title, cut.section) == (2, "Long", "")
    assert cut.text.endswith(" …")
    kept = cut.text.removesuffix(" …")
    assert kept and long_text.startswith(kept)
    assert len(kept) < len(long_text)


def test_cut_source_keeps_the_longest_prefix_that_fits() -> None:
    text = "word " * 2000
    budget = base_tokens() + 200

    [cut] = pack_sources(QUESTION, [source(1, text)], budget_tokens=budget)

    kept = cut.text.removesuffix(" …")
    # one more word would not have fitted: the prefix is as long as the budget allows
    assert estimate_llm_tokens(text[: len(kept) + 5]) > estimate_llm_tokens(kept)
    assert prompt_tokens(QUESTION, [cut]) <= budget


def test_a_source_with_too_little_room_is_dropped_not_cut() -> None:
    sources = [source(1, EN_TEXT), source(2, "word " * 500)]
    first_only = prompt_tokens(QUESTION, sources[:1])

    packed = pack_sources(QUESTION, sources, budget_tokens=first_only + 20)

    assert packed == sources[:1]


def test_a_korean_source_is_cut_by_its_larger_token_count() -> None:
    korean = KO_TEXT * 40
    budget = base_tokens() + 400

    [cut] = pack_sources(QUESTION, [source(1, korean)], budget_tokens=budget)

    assert korean.startswith(cut.text.removesuffix(" …"))
    assert prompt_tokens(QUESTION, [cut]) <= budget


def sweep_sources() -> list[PromptSource]:
    return [
        source(1, EN_TEXT * 3, section="§4"),
        source(2, KO_TEXT * 5, title="출장여비규정", section="제2장 > 제12조"),
        source(3, "\n".join(["short line"] * 30), title=""),
        source(4, "tail " * 80),
    ]


@pytest.mark.parametrize("extra", range(0, 1400, 7))
def test_packed_prompt_stays_within_budget(extra: int) -> None:
    budget = base_tokens() + extra

    packed = pack_sources(QUESTION, sweep_sources(), budget_tokens=budget)

    assert prompt_tokens(QUESTION, packed) <= budget


def test_packing_uses_the_given_counter() -> None:
    def words(text: str) -> int:
        return len(text.split())

    sources = [source(1, "one two three four five"), source(2, "six seven eight nine ten")]
    # the header '<source id="1">\n[1] Travel rules' is 5 words, the text 5, "</source>" 1;
    # every source is charged the frame's newlines, and each later one the blank line before it
    first = 5 + 5 + 1 + SOURCE_FRAME_NEWLINE_TOKENS
    later = first + SOURCE_SEPARATOR_TOKENS
    base = base_tokens(count=words)

    def pack(budget: int) -> list[PromptSource]:
        return pack_sources(QUESTION, sources, budget_tokens=budget, count_tokens=words)

    assert pack(base + first) == sources[:1]
    assert pack(base + first + later) == sources
    assert pack(base + first - 1) == []  # 4 words of room: too little to cut into


def test_packed_prompt_stays_within_budget_with_an_exact_counter() -> None:
    def characters(text: str) -> int:  # exact and additive, like a real tokenizer on ASCII
        return len(text)

    sources = [source(n, "x" * 50, title="T") for n in (1, 2, 3)]
    # a frame is 21 characters of header ('<source id="1">\n[1] T'), 2 newlines and 9 of
    # "</source>": two whole sources (82 + 84 characters with the blank line between them) and
    # a third cut to 40 characters
    budget = base_tokens(count=characters) + 82 + 84 + 34 + len(" …") + 40

    packed = pack_sources(QUESTION, sources, budget_tokens=budget, count_tokens=characters)

    assert len(packed) == 3
    assert prompt_tokens(QUESTION, packed, characters) <= budget

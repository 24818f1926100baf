"""What kind of answer a question asks for, and whether a text is that kind of answer.

Deterministic and cheap, for two uses: the grounding check reports ``answers_question`` (an
answer whose every fact is in the sources but that gives no amount for 얼마 / "how much" does not
answer the question), and the extractive answerer prefers sentences of the asked-for type.

Types: ``amount`` (얼마, how much), ``time`` (언제, 기한, when, what year), ``count`` (몇, how many,
how long), ``person`` (누구, who), ``place`` (어디, where). A question of another shape (무엇,
what, why, yes/no) asks for no checkable type: :func:`expected_type` is None and any answer
passes the type check.
"""

from __future__ import annotations

import re
from typing import Literal

from docqa_core.citations import CITATION_MARKER_RE

AnswerType = Literal["amount", "time", "count", "person", "place"]

# Order matters: "몇 원" is an amount, "몇 년에" a time, "how much time" a count-like duration.
_QUESTION_PATTERNS: tuple[tuple[AnswerType, re.Pattern[str]], ...] = (
    (
        "amount",
        re.compile(r"얼마|금액|비용|몇\s*원|how much|what (?:is the )?(?:cost|price|fee)", re.I),
    ),
    (
        "time",
        re.compile(
            r"언제|며칠까지|기한|날짜|몇\s*(?:년도|월|시)|"
            r"\bwhen\b|what (?:year|date|day|month|time|century)|which (?:year|date|day|month)",
            re.I,
        ),
    ),
    ("count", re.compile(r"몇|how (?:many|long|old|far|often|large|big|tall)|what percent", re.I)),
    ("person", re.compile(r"누구|누가|\bwho\b|\bwhom\b|whose", re.I)),
    ("place", re.compile(r"어디|\bwhere\b|what (?:city|country|place|region)", re.I)),
)

_DIGIT = r"[0-9０-９]"
_NUMBER = rf"{_DIGIT}[0-9０-９,.]*"
_KOREAN_NUMERALS = r"(?:한|두|세|네|다섯|여섯|일곱|여덟|아홉|열|스물|서른|백|천|만|억)"
_ENGLISH_NUMBERS = (
    r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
    r"fifty|hundred|thousand|million|billion|dozen|half)\b"
)
_ANSWER_PATTERNS: dict[AnswerType, re.Pattern[str]] = {
    "amount": re.compile(
        rf"{_NUMBER}\s*(?:만|천|억|조)?\s*(?:원|달러|유로|엔|위안|파운드|%|퍼센트)|"
        rf"[$₩€£¥]\s*{_DIGIT}|{_NUMBER}\s*(?:won|dollars?|euros?|pounds?|yen|usd|krw|percent)|"
        rf"분의\s*{_DIGIT}|실비|전액|반액|절반|무료|free of charge|\bhalf\b",
        re.I,
    ),
    "time": re.compile(
        rf"{_NUMBER}\s*(?:년|월|일|시|분|주|개월|시간)|"
        rf"\b(?:1[0-9]{{3}}|20[0-9]{{2}})\b|"
        r"\b(?:january|february|march|april|may|june|july|august|september|october|november|"
        r"december|monday|tuesday|wednesday|thursday|friday|saturday|sunday|century|decade)\b|"
        r"지체 없이|즉시|매년|매월|매주|이전|이후|전까지|이내|까지|"
        rf"{_ENGLISH_NUMBERS}\s+(?:days?|weeks?|months?|years?|hours?)|"
        r"\b(?:before|after|during|until|since)\b",
        re.I,
    ),
    "count": re.compile(
        rf"{_DIGIT}|{_KOREAN_NUMERALS}\s*(?:명|개|회|번|곳|건|가지|일|년|달)|{_ENGLISH_NUMBERS}",
        re.I,
    ),
    # a role or title (부서장, 대표이사, 담당자, 위원회) or a capitalized English name
    "person": re.compile(
        r"[가-힣]*(?:장|자|이사|위원회|위원|담당|관|사장|부|팀|실|원)(?![가-힣])|"
        r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z.]+)*",
    ),
    "place": re.compile(
        r"[가-힣]+(?:시|도|군|구|국|도시|지역|본사|지사|센터|사무소|공항|역|실|층|관)(?![가-힣])|"
        r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*",
    ),
}


def expected_type(question: str) -> AnswerType | None:
    """The answer type ``question`` asks for, or None when it asks for no checkable type."""
    for answer_type, pattern in _QUESTION_PATTERNS:
        if pattern.search(question):
            return answer_type
    return None


def has_type(text: str, answer_type: AnswerType) -> bool:
    return _ANSWER_PATTERNS[answer_type].search(text) is not None


def answers_question(question: str, answer: str) -> bool:
    """True when ``answer`` holds the kind of thing ``question`` asks for (always True when the
    question asks for no checkable type)."""
    wanted = expected_type(question)
    # a citation marker's digits are not a count: "[1]" answers no "how many"
    return wanted is None or has_type(CITATION_MARKER_RE.sub(" ", answer), wanted)

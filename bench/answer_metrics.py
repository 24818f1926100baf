"""Answer-level metrics for the answer evaluation: exact match, token F1, containment, refusals.

Pure functions (no I/O). Answers are compared after a language-aware normalisation
(:func:`normalize_answer`), citation marks ("[1]", "[1, 2]") removed first in either language:

- English (and any non-Korean text): SQuAD's — lowercase, punctuation removed, the articles
  a/an/the dropped, whitespace collapsed.
- Korean: paragraph marks (①②) dropped, Unicode NFKC, Latin letters lowercased, thousands
  separators removed ("50,000원" → "50000원"), punctuation and symbols removed (a decimal point
  between digits is kept), the trailing particles and copula endings of every whitespace token
  stripped (은/는/이/가/을/를/의/에/에서/으로/로/와/과/도/만/까지/부터/이다/입니다/이며 …,
  longest first, repeated until none is left, so "연차휴가를" and "연차휴가" end the same; never
  down to an empty token, and never off a number: "30만" keeps its 만), a bare "한다"/"합니다"/
  "이다"/"입니다" token dropped ("대표이사로 한다" → "대표이사"), and a number joined to the
  unit token after it ("30만 원" → "30만원").

Korean spacing is inconsistent, so Korean exact match compares the normalised tokens with the
spaces removed, and containment looks for the gold among runs of whole prediction tokens (so
"1일" is not found in "11일"). Token F1 is SQuAD's, over the normalised tokens.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

from bench._common import percentile
from docqa_core.scripts import detect_language
from query_engine.prompts import NOT_FOUND_ANSWERS

__all__ = [
    "containment",
    "exact_match",
    "is_refusal",
    "normalize_answer",
    "percentile",
    "token_f1",
    "tokens",
]

# longest first: the first ending that matches is the one removed
KOREAN_ENDINGS = tuple(
    sorted(
        {
            *("입니다", "이에요", "이라고", "에게서", "에서는", "에게는", "으로는", "으로써"),
            *("으로서", "에서도", "까지는", "부터는", "이라는"),
            *("이다", "이며", "이고", "이나", "이라", "라고", "에서", "에게", "으로", "까지"),
            *("부터", "마다", "처럼", "보다", "께서", "한테", "이랑", "예요", "와의", "과의"),
            *("은", "는", "이", "가", "을", "를", "의", "에", "로", "와", "과", "도", "만"),
            *("나", "며", "랑", "요"),
        },
        key=lambda e: (-len(e), e),
    )
)
# a whole token that only closes the sentence: "… 대표이사로 한다", "… 30만 원이다"
KOREAN_CLOSING_TOKENS = frozenset({"한다", "합니다", "이다", "입니다", "된다", "됩니다"})
KOREAN_UNITS = frozenset(
    "원 달러 일 명 개월 년 월 시간 회 시 분 초 주 주일 배 개 건 권 곳 박 세 퍼센트 달 차 층 점"
    " 자 km kg".split()
)
REFUSAL_PATTERNS = re.compile(
    r"답을\s*찾을\s*수\s*없|찾을\s*수\s*없습니다|문서에\s*(?:없|나와\s*있지\s*않|포함되어\s*있지\s*않)|"
    r"정보가\s*없|알\s*수\s*없습니다|"
    r"(?:could\s*not|couldn't|cannot|can't|can\s*not|unable\s*to)\s+find|"
    r"not\s+(?:found|mentioned|stated|provided|given|contained)\s+in\s+the\s+"
    r"(?:documents?|sources?|context|provided)|"
    r"(?:documents?|sources?)\s+do(?:es)?\s*(?:not|n't)\s+(?:contain|mention|say|provide)|"
    r"\bi\s+(?:do\s*not|don't)\s+know\b|no\s+information\s+(?:about|on|in)",
    re.IGNORECASE,
)

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ENGLISH_PUNCTUATION = frozenset(string.punctuation)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CITATION_MARK = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_NUMBER_TOKEN = re.compile(r"\d[\d.]*(?:십|백|천|만|억|조)*")
# paragraph marks (①②, ⑴, ⒈ …) number a regulation's paragraphs; NFKC would make them digits
_ENCLOSED_NUMBERS = re.compile(r"[\u2460-\u24ff\u2776-\u2793]")


def _language(text: str, language: str | None) -> str:
    return language or detect_language(text)


def normalize_answer(text: str, language: str | None = None) -> str:
    """``text`` normalised for comparison (see the module's docstring); tokens joined by one
    space. ``language`` is "ko", "en" or "other"; detected from ``text`` when not given."""
    return " ".join(tokens(text, language))


def tokens(text: str, language: str | None = None) -> list[str]:
    """The normalised tokens of ``text`` (what :func:`normalize_answer` joins)."""
    text = _CITATION_MARK.sub(" ", text)
    if _language(text, language) == "ko":
        return _korean_tokens(text)
    return _english_tokens(text)


def _english_tokens(text: str) -> list[str]:
    lowered = text.lower()
    no_punctuation = "".join(ch for ch in lowered if ch not in _ENGLISH_PUNCTUATION)
    return _ARTICLES.sub(" ", no_punctuation).split()


def _korean_tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", _ENCLOSED_NUMBERS.sub(" ", text)).lower()
    text = _THOUSANDS.sub("", text)
    text = _strip_punctuation(text)
    words = [_strip_endings(w) for w in text.split()]
    if len(words) > 1:
        words = [w for w in words if w not in KOREAN_CLOSING_TOKENS] or words[:1]
    return _join_units(words)


def _strip_punctuation(text: str) -> str:
    """Punctuation (Unicode P*) and symbols (S*) become spaces, except a decimal point."""
    out = []
    for i, ch in enumerate(text):
        category = unicodedata.category(ch)
        decimal_point = (
            ch == "." and 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()
        )
        out.append(" " if category[0] in "PS" and not decimal_point else ch)
    return "".join(out)


def _strip_endings(word: str) -> str:
    """Trailing particles off ``word``, repeatedly, longest first; never to empty and never
    off a number (the 만 of "30만" is a numeral, not "only")."""
    while True:
        ending = next((e for e in KOREAN_ENDINGS if word.endswith(e) and len(word) > len(e)), None)
        if ending is None:
            return word
        stem = word[: -len(ending)]
        if stem[-1].isdigit():
            return word
        word = stem


def _join_units(words: list[str]) -> list[str]:
    joined: list[str] = []
    for word in words:
        if joined and word in KOREAN_UNITS and _NUMBER_TOKEN.fullmatch(joined[-1]):
            joined[-1] += word
        else:
            joined.append(word)
    return joined


def _golds(golds: str | Iterable[str]) -> list[str]:
    return [golds] if isinstance(golds, str) else [g for g in golds if g and g.strip()]


def _pair_language(prediction: str, golds: Sequence[str], language: str | None) -> str:
    return _language(" ".join([prediction, *golds]), language)


def exact_match(prediction: str, golds: str | Iterable[str], language: str | None = None) -> float:
    """1.0 when the normalised prediction equals a normalised gold, else 0.0 (0.0 without
    golds). Korean compares without spaces. ``language`` defaults to that of all the texts."""
    gold_list = _golds(golds)
    lang = _pair_language(prediction, gold_list, language)
    pred = tokens(prediction, lang)
    for gold in gold_list:
        gold_tokens = tokens(gold, lang)
        if lang == "ko" and "".join(pred) == "".join(gold_tokens):
            return 1.0
        if pred == gold_tokens:
            return 1.0
    return 0.0


def token_f1(prediction: str, golds: str | Iterable[str], language: str | None = None) -> float:
    """SQuAD token F1 over the normalised tokens, the best over ``golds`` (0.0 without golds).

    Worked example: "연차휴가는 16일입니다" → [연차휴, 16일]; gold "16일" → [16일]; one common
    token: precision 1/2, recall 1/1, F1 = 2 * 0.5 * 1 / 1.5 = 0.667.
    """
    gold_list = _golds(golds)
    lang = _pair_language(prediction, gold_list, language)
    pred = tokens(prediction, lang)
    best = 0.0
    for gold in gold_list:
        gold_tokens = tokens(gold, lang)
        if not pred or not gold_tokens:
            best = max(best, float(pred == gold_tokens))
            continue
        same = sum((Counter(pred) & Counter(gold_tokens)).values())
        if same:
            precision, recall = same / len(pred), same / len(gold_tokens)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def containment(prediction: str, golds: str | Iterable[str], language: str | None = None) -> float:
    """1.0 when a normalised gold occurs in the normalised prediction on token boundaries,
    else 0.0. English: the gold's tokens are a contiguous run of the prediction's. Korean: the
    gold without spaces equals a contiguous run of prediction tokens glued together."""
    gold_list = _golds(golds)
    lang = _pair_language(prediction, gold_list, language)
    pred = tokens(prediction, lang)
    for gold in gold_list:
        gold_tokens = tokens(gold, lang)
        if not gold_tokens:
            continue
        if lang == "ko" and _glued_run(pred, "".join(gold_tokens)):
            return 1.0
        width = len(gold_tokens)
        if any(pred[i : i + width] == gold_tokens for i in range(len(pred) - width + 1)):
            return 1.0
    return 0.0


def _glued_run(words: Sequence[str], target: str) -> bool:
    for start in range(len(words)):
        glued = ""
        for word in words[start:]:
            glued += word
            if glued == target:
                return True
            if len(glued) >= len(target) or not target.startswith(glued):
                break
    return False


_REFUSAL_TEXTS = frozenset(
    " ".join(_english_tokens(_CITATION_MARK.sub(" ", text))) for text in NOT_FOUND_ANSWERS.values()
)


def is_refusal(answer: str, not_found_flag: bool = False) -> bool:
    """Whether the server declined to answer: its ``not_found`` flag, one of its refusal texts
    (:data:`query_engine.prompts.NOT_FOUND_ANSWERS`, citation marks and punctuation aside), or
    an answer that plainly says the documents do not hold it (답을 찾을 수 없 / could not find …).
    """
    if not_found_flag:
        return True
    text = _CITATION_MARK.sub(" ", answer or "")
    if not text.strip():
        return True
    if " ".join(_english_tokens(text)) in _REFUSAL_TEXTS:
        return True
    return REFUSAL_PATTERNS.search(text) is not None

"""Language-aware text analysis for BM25 keyword search.

Milvus's built-in analyzers cannot segment Korean, so the app analyzes text itself and stores the
terms space-joined in the BM25 input field; Milvus's ``standard`` analyzer then only splits that
string on whitespace and lowercases it. Queries go through the same :func:`analyze`, so
"서울은" in a document and "서울" in a question both become the term ``서울``.

- Text containing Hangul is analyzed by kiwipiepy, keeping content morphemes only: nouns
  (including bound nouns such as 원, 년), numerals, roots, Hanja, foreign words and the stems of
  verbs and adjectives except a few light ones (하다, 있다, 되다, …). 납부하다, 납부한 and
  납부해야 all yield ``납부``; 빨라졌다 yields ``빠르``. Kiwi's splits of compounds (경영지원팀 →
  ``경영 지원 팀``) are kept as separate terms. Particles, endings, affixes and symbols are
  dropped. Amounts with Korean units also yield their value: "5만원" → ``5 만 원 50000``.
- Everything else, and every Latin or digit run inside Korean text, goes through one plain rule, so
  a term is the same whichever path produced it: runs of letters and runs of digits, lowercased,
  English stopwords removed, "1,000" → ``1000``, "3.14" → ``3_14``. No stemming: Porter2 moved
  recall@1 by +0.8 points on en_xquad (26 questions won, 16 lost), +0.5 on covidQA cut into
  200-word windows (89 won, 83 lost) and -2.9 on whole covidQA papers; not worth a dependency.
- Every term is a run of letters and digits, with ``_`` only inside a decimal number. Milvus's
  ``standard`` analyzer splits on ``.``, ``,``, ``-`` and ``@`` but keeps ``_`` inside a token and
  does not split letters from digits (measured on milvus-lite 3.2.2); were it ever to split on
  ``_``, ``3_14`` would become ``3`` and ``14`` on both sides alike.

Measured (BM25 k1=1.2 b=0.75, recall@1): 45 Korean questions over 552 seed paragraphs 0.96
against 0.60 for whitespace tokens; 25 questions over the sample regulation's articles 0.84
against 0.52; en_xquad 0.93 against 0.80.

The Kiwi instance is created once per process on first use (loading takes ~3 s; call
:func:`warm_up` at start-up to pay that early) and shared by all threads: kiwipiepy ≥ 0.22 makes
``Kiwi`` safe to call concurrently.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from docqa_core.scripts import has_hangul

if TYPE_CHECKING:
    from kiwipiepy import Kiwi, Token

__all__ = [
    "analyze",
    "analyze_many",
    "extract_korean_proper_nouns",
    "warm_up",
]


# Kiwi tags whose morpheme is emitted as is. Irregular stems carry a suffix (VV-I, VA-R); it is
# stripped before the lookup.
_KOREAN_CONTENT_TAGS = frozenset({"NNG", "NNP", "NNB", "NR", "XR", "SH", "VV", "VA"})
# Tags whose surface is re-tokenized by the plain rule: foreign words, numbers, URLs, e-mails,
# hashtags, mentions and serials ("1.2.3").
_PLAIN_TAGS = frozenset({"SL", "SN"})
_PLAIN_TAG_PREFIX = "W_"
# Verb and adjective stems that say little about a topic (하다, 있다, 되다, 위하다, 받다, 가다, …).
# Kept, they outweighed the nouns of short questions: "일비를 하루에 얼마 받나요" matched articles
# about "받아야" and "가려는"; dropping them raised recall@1 on the sample regulation's questions
# from 0.68 to 0.84 and left the seed questions unchanged.
_LIGHT_STEMS = frozenset(
    """
    가 가지 같 그렇 나오 대하 되 두 들 따르 말 받 보
    싶 않 알 어떻 없 오 위하 이 이렇 있 주 지 통하 하
    """.split()
)
# Particles that Kiwi now and then tags as a noun right after a number or Latin word ("3.1을").
# Not 도 or 만: after a number they are mostly units (30도, 5만).
_PARTICLE_FORMS = frozenset("을 를 이 가 은 는 의 에 과 와 로".split())

_NUMERAL_DIGITS = {ch: value for value, ch in enumerate("일이삼사오육칠팔구", start=1)}
_SMALL_UNITS = {"십": 10, "백": 100, "천": 1000}
_LARGE_UNITS = {"만": 10**4, "억": 10**8, "조": 10**12}

# Dropping these raised recall@1 on en_xquad from 0.919 to 0.929. Not "a" and "i": a letter
# beside digits is part of a name (A100, Type I), and dropping them gained nothing.
_ENGLISH_STOPWORDS = frozenset(
    """
    an and are as at be been being but by can could did do does doing for from had has have
    having he her hers him his how if in into is it its itself me my no nor not of on or our
    ours she should so than that the their theirs them then there these they this those to too
    us was we were what when where which while who whom why will with would you your yours
    s t ll re ve
    """.split()
)

# A number with its separators ("1,000", "3.14", "1.2.3"), or a run of letters of any script.
_PLAIN_TOKEN_RE = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+")
_THOUSANDS_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DIGITS_RE = re.compile(r"\d+")
# Letters and digits of any script, without "_" (kept only in decimal terms such as 3_14).
_WORD_RE = re.compile(r"[^\W_]+")
# Full-width ASCII (Ａ, １, ＠) → ASCII; Kiwi tags full-width letters as symbols otherwise.
_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

_kiwi: Kiwi | None = None
_kiwi_lock = threading.Lock()


def warm_up(num_workers: int | None = None) -> None:
    """Load the Kiwi model now instead of on the first call.

    ``num_workers`` is the size of Kiwi's own thread pool, used by :func:`analyze_many`; the
    default is every core. It only takes effect if the model is not loaded yet.
    """
    _get_kiwi(num_workers)


def _get_kiwi(num_workers: int | None = None) -> Kiwi:
    global _kiwi
    if _kiwi is None:
        with _kiwi_lock:
            if _kiwi is None:
                from kiwipiepy import Kiwi

                kiwi = Kiwi(num_workers=-1 if num_workers is None else num_workers)
                kiwi.tokenize("")  # Kiwi finishes loading lazily on the first call
                _kiwi = kiwi
    return _kiwi


def _prepare(text: str) -> str:
    return text.translate(_FULLWIDTH)


def analyze(text: str) -> str:
    """Return the space-joined BM25 terms of ``text`` (a document chunk or a query)."""
    text = _prepare(text)
    if not has_hangul(text):
        return " ".join(_plain_terms(text))
    return " ".join(_korean_terms(_get_kiwi().tokenize(text)))


def analyze_many(texts: Sequence[str]) -> list[str]:
    """:func:`analyze` for many texts; Korean ones go to Kiwi in one batch on its thread pool."""
    prepared = [_prepare(text) for text in texts]
    results = [" ".join(_plain_terms(text)) for text in prepared]
    korean = [i for i, text in enumerate(prepared) if has_hangul(text)]
    if korean:
        batches = _get_kiwi().tokenize([prepared[i] for i in korean])
        for i, tokens in zip(korean, batches, strict=True):
            results[i] = " ".join(_korean_terms(tokens))
    return results


def _korean_terms(analyzed: Iterable[Token]) -> Iterator[str]:
    tokens = list(analyzed)
    previous: Token | None = None
    for token in tokens:
        tag = token.tag
        if _is_plain(tag):
            yield from _plain_terms(token.form)
        elif _is_content(token, previous):
            # A multi-word dictionary entry ("자연어 처리") holds a space; keep word runs only.
            yield from (word.lower() for word in _WORD_RE.findall(token.form))
            if tag == "NNP" and len(token.form) >= 3 and has_hangul(token.form):
                yield from _proper_noun_parts(token.form)
        previous = token
    yield from _korean_amounts(tokens)


@functools.lru_cache(maxsize=1 << 16)
def _proper_noun_parts(form: str) -> tuple[str, ...]:
    """The parts of a compound proper noun that Kiwi kept whole (서울특별시 → 서울 특별시).

    Kiwi splits 서울특별시 in "서울특별시에서" but not in "서울특별시 및 광역시"; adding the parts
    of the whole form lets "서울" match both. Only a split into nouns of two syllables or more, one
    of them proper, counts: forced splits of loanwords are nonsense (싱가포르 → 싱가포 르).
    """
    parts = _get_kiwi().tokenize(form, blocklist=[form])
    if (
        len(parts) > 1
        and all(part.tag in ("NNG", "NNP") and len(part.form) >= 2 for part in parts)
        and any(part.tag == "NNP" for part in parts)
    ):
        return tuple(part.form for part in parts)
    return ()


def _korean_amounts(tokens: Sequence[Token]) -> Iterator[str]:
    """Amounts written with Korean units (5만, 3억 5천만, 백만) also as one number.

    Then "5만원" in a question matches "50,000원" in a document: both yield the term ``50000``.
    """
    run: list[Token] = []
    for token in [*tokens, None]:
        if token is not None and run and _continues_amount(run[-1], token):
            run.append(token)
            continue
        if any(t.tag == "NR" for t in run):
            value = _amount_value(run)
            if value is not None:
                yield value
        run = [token] if token is not None and token.tag in ("SN", "NR") else []


def _continues_amount(last: Token, token: Token) -> bool:
    # "5만", "12만3천", "3억 5천만": a unit follows a number, a number follows a unit.
    if token.start - last.end > 1:
        return False
    return token.tag == "NR" or (token.tag == "SN" and last.tag == "NR")


def _amount_value(run: Sequence[Token]) -> str | None:
    total = section = Decimal(0)
    number: Decimal | None = None
    for token in run:
        if token.tag == "SN":
            try:
                number = Decimal(token.form.replace(",", ""))
            except InvalidOperation:
                return None
            continue
        for ch in token.form:
            if ch in _NUMERAL_DIGITS:
                number = Decimal(_NUMERAL_DIGITS[ch])
            elif ch in _SMALL_UNITS:
                section += (1 if number is None else number) * _SMALL_UNITS[ch]
                number = None
            elif ch in _LARGE_UNITS:
                total += ((section + (number or 0)) or 1) * _LARGE_UNITS[ch]
                section, number = Decimal(0), None
            else:
                return None  # a numeral word such as 하나 or 첫째
    value = total + section + (number or 0)
    return _number_term(format(value.normalize(), "f"))


def _is_content(token: Token, previous: Token | None) -> bool:
    tag = token.tag.split("-", 1)[0]
    if tag not in _KOREAN_CONTENT_TAGS:
        return False
    if tag in ("VV", "VA"):
        return token.form not in _LIGHT_STEMS
    return not _is_glued_particle(token, previous)


def _is_plain(tag: str) -> bool:
    return tag in _PLAIN_TAGS or tag.startswith(_PLAIN_TAG_PREFIX)


def _is_glued_particle(token: Token, previous: Token | None) -> bool:
    """Kiwi sometimes tags a particle glued to a number or Latin word as a noun ("3.1을")."""
    return (
        token.form in _PARTICLE_FORMS
        and previous is not None
        and previous.end == token.start
        and _is_plain(previous.tag)
    )


def _plain_terms(text: str) -> Iterator[str]:
    for match in _PLAIN_TOKEN_RE.finditer(text):
        token = match.group()
        if token[0].isdigit():
            yield _number_term(token)
        elif any(ch.isalpha() for ch in token):
            word = token.lower()
            if word not in _ENGLISH_STOPWORDS:
                yield word


def _number_term(token: str) -> str:
    if _THOUSANDS_RE.fullmatch(token):
        token = token.replace(",", "")
    return "_".join(_DIGITS_RE.findall(token))


def extract_korean_proper_nouns(text: str) -> list[str]:
    """Korean proper nouns (Kiwi tag NNP) as they appear in ``text``, once each, in order."""
    if not has_hangul(text):
        return []
    seen: dict[str, None] = {}
    for token in _get_kiwi().tokenize(_prepare(text)):  # _prepare keeps offsets
        if token.tag == "NNP":
            seen.setdefault(text[token.start : token.end], None)
    return list(seen)

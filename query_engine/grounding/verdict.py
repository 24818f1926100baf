"""The verdict: source index, support checks per claim kind, check_grounding and apply_policy."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from docqa_core.citations import cited_numbers
from docqa_core.scripts import has_hangul, main_script
from query_engine.grounding.attachment import misattached_numbers
from query_engine.grounding.claims import extract_claims
from query_engine.grounding.claims.dates import _DateParts, _parse_date_key
from query_engine.grounding.claims.extract import _structured_claims
from query_engine.grounding.claims.laws import _CIRCLED_RE, _LAW_SUBPART_RE
from query_engine.grounding.claims.names import _NAME_CONNECTORS
from query_engine.grounding.claims.numbers import _plain_numbers
from query_engine.grounding.sentences import _sentence_spans, split_sentences
from query_engine.grounding.text import _fold_width
from query_engine.grounding.types import (
    MISATTACHED,
    Claim,
    ClaimKind,
    GroundingPolicy,
    GroundingResult,
    UnsupportedClaim,
)

# ---------------------------------------------------------------------------------------------
# Source index: everything a claim can be matched against, built once per distinct source text.


@dataclass(frozen=True, slots=True)
class _SourceFacts:
    numbers: frozenset[str]
    times: frozenset[str]
    dates: tuple[_DateParts, ...]
    laws: frozenset[str]
    spaced: str  # lowercased, whitespace collapsed: English names on word boundaries
    compact: str  # lowercased, whitespace removed: Korean names as substrings
    language: str  # "ko", "en" or "other", by majority of words


@lru_cache(maxsize=4096)
def _source_facts(source: str) -> _SourceFacts:
    """Index one source. Cached by text: the same chunks are retrieved for many questions."""
    text = _fold_width(source)
    found, _ = _structured_claims(text)
    numbers = {f.key for f in found if f.kind == "number" and ":" not in f.key}
    # Every digit run counts as a number too, so "15" is supported by "15일" or "제15조", and the
    # year of a date is available on its own.
    numbers |= _plain_numbers(text)
    laws = {f.key for f in found if f.kind == "law_ref"}
    laws.update(f"paragraph {ord(c) - 0x245F}" for c in _CIRCLED_RE.findall(text))
    lowered = text.replace("’", "'").lower()
    return _SourceFacts(
        numbers=frozenset(numbers),
        times=frozenset(f.key for f in found if ":" in f.key),
        dates=tuple(_parse_date_key(f.key) for f in found if f.kind == "date" and "-" in f.key),
        laws=frozenset(laws),
        spaced=" ".join(lowered.split()),
        compact="".join(lowered.split()),
        language=main_script(text),
    )


def _number_supported(key: str, facts: _SourceFacts) -> bool:
    if ":" not in key:
        return key in facts.numbers
    if key in facts.times:
        return True
    hour, minute = (int(p) for p in key.split(":"))
    # "15:30" against "오후 3시 30분" or "15시 30분": hours and minutes written as bare numbers.
    hour_ok = str(hour) in facts.numbers or str(hour - 12) in facts.numbers
    return hour_ok and (minute == 0 or str(minute) in facts.numbers)


def _date_supported(key: str, facts: _SourceFacts) -> bool:
    year, month, day = _parse_date_key(key)
    if month is None:
        return str(year) in facts.numbers
    for s_year, s_month, s_day in facts.dates:
        if s_month != month or (day is not None and s_day != day):
            continue
        if year is None or s_year == year:
            return True
        if s_year is None and str(year) in facts.numbers:
            return True  # "2024년도 시행 … 3월 1일부터": the year is stated elsewhere
    return False


def _law_supported(key: str, facts: _SourceFacts) -> bool:
    if key in facts.laws:
        return True
    # "Section 4(b)" against a source with "Section 4" and a "(b)" item in its body.
    subparts = _LAW_SUBPART_RE.findall(key)
    base = _LAW_SUBPART_RE.sub("", key)
    return (
        bool(subparts)
        and base in facts.laws
        and all(
            part in facts.spaced or f"paragraph {part[1:-1]}" in facts.laws for part in subparts
        )
    )


def _contains_word(haystack: str, needle: str) -> bool:
    """``needle`` in ``haystack`` not glued to letters or digits ("Kim" is not in "Kimberly")."""
    start = haystack.find(needle)
    while start >= 0:
        end = start + len(needle)
        before = haystack[start - 1] if start else " "
        after = haystack[end] if end < len(haystack) else " "
        if not (before.isascii() and before.isalnum()) and not (
            after.isascii() and after.isalnum()
        ):
            return True
        start = haystack.find(needle, start + 1)
    return False


def _name_supported(key: str, facts: _SourceFacts) -> bool:
    if has_hangul(key):
        return key in facts.compact
    if _contains_word(facts.spaced, key):
        return True
    # A run of capitalized words may join two names ("Samsung Electronics CEO Lee Jae-yong"):
    # it is also supported when each of its words is in the source. A made-up name still fails
    # on its own word ("Yonsei University" against a source naming only Seoul National University).
    words = [w for w in key.split(" ") if w not in _NAME_CONNECTORS]
    return len(words) > 1 and all(_contains_word(facts.spaced, w) for w in words)


_SUPPORT_CHECKS: dict[ClaimKind, Callable[[str, _SourceFacts], bool]] = {
    "number": _number_supported,
    "date": _date_supported,
    "law_ref": _law_supported,
    "name": _name_supported,
}


def _verdict(claim: Claim, pool: list[_SourceFacts]) -> bool | None:
    """True if supported, False if not, None if the claim cannot be checked against ``pool``."""
    check = _SUPPORT_CHECKS[claim.kind]
    if any(check(claim.normalized, facts) for facts in pool):
        return True
    if claim.kind == "name" and pool:
        # A name is only checkable in its own script: an English answer over a Korean document
        # translates "근로기준법" to "Labor Standards Act", which no string match can confirm.
        script = "ko" if has_hangul(claim.normalized) else "en"
        if all(facts.language != script for facts in pool):
            return None
    return False


# ---------------------------------------------------------------------------------------------
# Public entry points


def _pool_numbers(sentence: str, indexed: Mapping[int, _SourceFacts]) -> list[int]:
    """The sources a sentence's claims are checked against: those it cites, or all of them
    when it cites none. Unknown numbers are ignored; citing only unknown numbers leaves
    nothing to support a claim."""
    cited = cited_numbers(sentence)
    if cited is None:
        return list(indexed)
    return [n for n in sorted(cited) if n in indexed]


def check_grounding(answer: str, sources: Mapping[int, str]) -> GroundingResult:
    """Check every claim of ``answer`` against the sources its sentence cites.

    ``sources`` maps a citation number to that source's text (include its title and section path
    if the answer may cite those). Each distinct source text is indexed once and kept in an LRU
    cache, since the same chunks come back for many questions. Deterministic, no I/O; safe to
    call from many threads.
    """
    indexed = {number: _source_facts(text) for number, text in sources.items()}
    unsupported: list[UnsupportedClaim] = []
    checked = 0
    for index, sentence in enumerate(split_sentences(answer)):
        claims = extract_claims(sentence)
        if not claims:
            continue
        pool_numbers = _pool_numbers(sentence, indexed)
        pool = [indexed[n] for n in pool_numbers]
        for claim in claims:
            verdict = _verdict(claim, pool)
            if verdict is None:
                continue
            checked += 1
            if not verdict:
                unsupported.append(UnsupportedClaim(index, sentence, claim.text, claim.kind))
        unsupported += [
            UnsupportedClaim(index, sentence, claim.text, claim.kind, MISATTACHED)
            for claim in misattached_numbers(sentence, claims, [sources[n] for n in pool_numbers])
            if not any(u.sentence_index == index and u.claim == claim.text for u in unsupported)
        ]
    return GroundingResult(
        verified=not unsupported, unsupported=tuple(unsupported), checked_claims=checked
    )


# A line left holding only list markers, bullets or heading marks after its sentences were dropped.
_EMPTY_ITEM_RE = re.compile(
    r"[ \t]*(?:(?:#{1,6}|>|[-*+•·▪‣◦]|\(?[0-9]{1,3}[.)]|\(?[A-Za-z]\))[ \t]*)*"
)
_EXTRA_BLANK_LINES_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def _drop_sentences(answer: str, result: GroundingResult) -> str:
    spans = _sentence_spans(answer)
    drop: set[int] = set()
    for item in result.unsupported:
        index = item.sentence_index
        if index >= len(spans) or answer[slice(*spans[index])] != item.sentence:
            raise ValueError("grounding result does not belong to this answer")
        drop.add(index)
    text = answer
    for index in sorted(drop, reverse=True):  # right to left keeps earlier offsets valid
        start, end = spans[index]
        while end < len(text) and text[end] in " \t":
            end += 1
        text = text[:start] + text[end:]
    # Sentences never span lines, so line i of the result is line i of the answer.
    kept = [
        line.rstrip()
        for line, original in zip(text.split("\n"), answer.split("\n"), strict=True)
        if not (original.strip() and _EMPTY_ITEM_RE.fullmatch(line))
    ]
    return _EXTRA_BLANK_LINES_RE.sub("\n\n", "\n".join(kept)).strip()


def apply_policy(
    answer: str, result: GroundingResult, policy: GroundingPolicy, *, refusal: str
) -> str:
    """Act on a grounding result.

    ``flag`` returns the answer unchanged (the caller reports ``result``); ``drop`` removes every
    sentence holding an unsupported claim and returns ``refusal`` if no sentence is left;
    ``refuse`` returns ``refusal`` if any claim is unsupported.
    """
    if policy == "flag":
        return answer
    if policy == "refuse":
        return refusal if result.unsupported else answer
    if policy == "drop":
        if not result.unsupported:
            return answer
        remaining = _drop_sentences(answer, result)
        return remaining if split_sentences(remaining) else refusal
    raise ValueError(f"unknown grounding policy: {policy!r}")

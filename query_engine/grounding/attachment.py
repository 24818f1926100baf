"""Numbers said of the right thing: a number can be in the cited source and still be wrong.

Presence is not support. "대출 기간은 7일입니다 [1]" passes a presence check against "대출 기간은
14일로 하며, 한 차례에 한하여 7일 연장할 수 있다": 7 is there, as the extension. "Setting 12 suits
espresso" passes against "Setting 4 suits espresso, setting 12 suits pour-over". A small model
copies numbers from the right passage onto the wrong fact exactly this way.

So each number of an answer is also looked up by what the answer says around it. The answer's
sentence and the sources are cut into clauses (at commas, semicolons, Korean connective endings
such as 하며/하고, English "and"/"but"); the words of the answer's clause around the number, the
number itself left out, are compared with every source clause that holds a number. The number is
**said of something else** when the source clause that best matches those words holds other
numbers but not this one, and matches clearly better (:data:`MIN_BEST_SHARE`,
:data:`MIN_LEAD`) than every clause that does hold it. A sentence quoted from the source is never
flagged: its own clause matches all of its words.

Words are compared as the BM25 analyzer reads them (:func:`indexing.analysis.analyze`: Kiwi
morphemes without particles and endings for Korean, lowercased words for English), English words
by their first five letters ("suits"/"suit", "brushed"/"brush" meet); digits and one-syllable
Korean morphemes (일, 수: units and auxiliaries) tell nothing about the fact. Deterministic, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from indexing.analysis import analyze
from query_engine.grounding.claims.extract import _prepare_sentence, _structured_claims
from query_engine.grounding.claims.numbers import _plain_numbers
from query_engine.grounding.sentences import split_sentences
from query_engine.grounding.text import _fold_width
from query_engine.grounding.types import Claim

# a clause ends at , ; : (before a space), after a Korean connective ending (하며 / 하고 / 이나
# followed by a space), before an English conjunction, or at a line break
_CLAUSE_END_RE = re.compile(
    r"[,;:][ \t]+|(?<=[가-힣][며고나])[ \t]+|[ \t]+(?=(?:and|but|while|whereas|or)\b)|\n"
)
_ENGLISH_STOPWORDS = frozenset(
    "the and but for with from that this these those are was were has have had its their per "
    "not any all can may will shall should must than then also into onto about after before "
    "which what when where who whom whose how does did been being each every".split()
)
MIN_CONTEXT_FEATURES = 2  # an answer that says too little around its number cannot be judged
MIN_BEST_SHARE = 0.6  # the best clause holds at least this share of the answer's words ...
MIN_LEAD = 0.3  # ... and that much more than every clause holding the number


@dataclass(frozen=True, slots=True)
class _Clause:
    features: frozenset[str]
    numbers: frozenset[str]


def features(text: str) -> frozenset[str]:
    """Comparable words of ``text``: English word stems and Korean morphemes."""
    found: set[str] = set()
    for term in analyze(text).split():
        if term.isdigit():
            continue
        if term.isascii():
            if len(term) >= 3 and term not in _ENGLISH_STOPWORDS:
                found.add(term[:5])
        elif len(term) >= 2:
            found.add(term)
    return frozenset(found)


def _numbers(text: str) -> frozenset[str]:
    found, _ = _structured_claims(text)
    keys = {f.key for f in found if f.kind == "number" and ":" not in f.key}
    return frozenset(keys | _plain_numbers(text))


def clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE_END_RE.split(text) if c.strip()]


@lru_cache(maxsize=4096)
def _source_clauses(source: str) -> tuple[_Clause, ...]:
    """The clauses of ``source`` that hold a number. Cached by text, like the source index."""
    found = []
    for sentence in split_sentences(_fold_width(source)):
        for clause in clauses(sentence):
            numbers = _numbers(clause)
            if numbers:
                found.append(_Clause(features(clause), numbers))
    return tuple(found)


def misattached_numbers(
    sentence: str, claims: Sequence[Claim], sources: Sequence[str]
) -> list[Claim]:
    """The number claims of ``sentence`` that its ``sources`` (the texts it may cite) hold, but
    say of something else than ``sentence`` does (see the module docstring)."""
    numbers = [c for c in claims if c.kind == "number" and ":" not in c.normalized]
    if not numbers:
        return []
    source_clauses = [c for s in sources for c in _source_clauses(s)]
    answer_clauses = clauses(_prepare_sentence(sentence))
    flagged = []
    for claim in numbers:
        clause = next((c for c in answer_clauses if claim.text in c), "")
        context = features(clause.replace(claim.text, " ")) - features(claim.text)
        # the clause's other numbers: its words may be about them ("the fee is $1,200 at 3.5%")
        others = {c.normalized for c in numbers if c is not claim and c.text in clause}
        if _said_of_something_else(claim, context, others, source_clauses):
            flagged.append(claim)
    return flagged


def _said_of_something_else(
    claim: Claim,
    context: frozenset[str],
    other_numbers: set[str],
    source_clauses: Sequence[_Clause],
) -> bool:
    if len(context) < MIN_CONTEXT_FEATURES:
        return False
    holding = [c for c in source_clauses if claim.normalized in c.numbers]
    if not holding:
        return False  # not in any clause as a number: the presence check decides

    def share(clause: _Clause) -> float:
        return len(context & clause.features) / len(context)

    own = max(share(c) for c in holding)
    best = max(source_clauses, key=share)
    return (
        claim.normalized not in best.numbers
        and not other_numbers & best.numbers
        and share(best) >= MIN_BEST_SHARE
        and share(best) - own >= MIN_LEAD
    )

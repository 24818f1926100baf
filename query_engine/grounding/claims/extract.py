"""Claim extraction of one sentence: markers blanked out, then law refs, dates, numbers, names.

Also used to index sources (:func:`_structured_claims`).
"""

from __future__ import annotations

import re

from docqa_core.citations import CITATION_MARKER_RE
from query_engine.grounding.claims.dates import _find_english_dates
from query_engine.grounding.claims.laws import _find_korean_law_refs
from query_engine.grounding.claims.names import _name_claims
from query_engine.grounding.claims.numeric import _find_numeric
from query_engine.grounding.sentences import _LINE_PREFIX_RE
from query_engine.grounding.text import _fold_width, _mask
from query_engine.grounding.types import Claim, _Found

# Citation markers

_CITATION_FILL = "¦"
# "Document 2", "Source 1", "문서 1", "출처 2": the model naming a source in words. Its number is
# about the retrieval, not a fact of the source, so it is not a claim (nor a citation: "문서 3개"
# is "three documents").
_SOURCE_REF_RE = re.compile(
    r"(?<![A-Za-z])(?:[Dd]ocuments?|[Ss]ources?|[Cc]ontext|[Pp]assages?|문서|자료|출처)"
    r"[ \t]*(?:#|No\.)?[ \t]*[0-9]{1,3}(?![0-9]|[.,][0-9])"
)


def _prepare_sentence(sentence: str) -> str:
    """Width-folded sentence with citation markers and a leading list marker blanked out."""
    text = _fold_width(sentence)
    prefix = _LINE_PREFIX_RE.match(text)
    if prefix and prefix.end():
        text = _mask(text, [(0, prefix.end())])
    # A symbol, not a space: "PubMed [63] MIMIC" must not read as one name.
    spans = [m.span() for m in CITATION_MARKER_RE.finditer(text)]
    spans += [m.span() for m in _SOURCE_REF_RE.finditer(_mask(text, spans))]
    return _mask(text, spans, fill=_CITATION_FILL)


def _structured_claims(text: str) -> tuple[list[_Found], str]:
    """Law refs, dates and numbers of ``text``, and the text the name finders should read.

    Korean law refs and English dates are masked before the digit pass so the 12 of 제12조 and
    the 1 of "March 1" are not read again; English law refs come out of the digit pass. The name
    text has law refs and English dates masked ("Article", "March" are not names) but keeps the
    other digits, since names may hold them ("Galaxy S24").
    """
    found = _find_korean_law_refs(text)
    found += _find_english_dates(_mask(text, ((f.start, f.end) for f in found)))
    text = _mask(text, ((f.start, f.end) for f in found))
    numeric = _find_numeric(text)
    names_text = _mask(text, ((f.start, f.end) for f in numeric if f.kind == "law_ref"))
    return [*found, *numeric], names_text


def extract_claims(sentence: str) -> list[Claim]:
    """The checkable facts of one sentence, in order, each (kind, normalized) once.

    Citation markers and a leading list marker are not claims.
    """
    text = _prepare_sentence(sentence)
    found, names_text = _structured_claims(text)
    found += _name_claims(names_text)
    claims: list[Claim] = []
    seen: set[tuple[str, str]] = set()
    for item in sorted(found, key=lambda f: (f.start, f.end)):
        if (item.kind, item.key) in seen:
            continue
        seen.add((item.kind, item.key))
        claims.append(Claim(item.kind, sentence[item.start : item.end].strip(), item.key))
    return claims

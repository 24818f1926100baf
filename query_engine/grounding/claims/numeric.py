"""The digit pass: numeric dates, times, amounts, numbers and English law references."""

from __future__ import annotations

import re

from query_engine.grounding.claims.dates import (
    _ISO_DATE_RE,
    _KO_MONTH_RE,
    _KO_YEAR_RE,
    _MONTH_DAY_DOT_RE,
    _US_DATE_RE,
    _YEAR_MONTH_RE,
    _date_found,
)
from query_engine.grounding.claims.laws import _english_law_ref_at
from query_engine.grounding.claims.numbers import (
    _DIGIT_RUN_RE,
    _NUMBER_RE,
    _TIME_RE,
    _number_found,
    _time_found,
)
from query_engine.grounding.types import _Found

# Numbers, times and dates. Everything that starts with a digit is read in one left-to-right
# pass: at each digit run the character after it picks the few patterns worth trying (anchored
# ``match``, not a full-text scan per pattern), and the first that fits consumes the text.


def _numeric_candidates(text: str, run_end: int) -> tuple[re.Pattern[str], ...]:
    """The date/time patterns worth trying for a digit run, chosen by what follows it."""
    following = text[run_end : run_end + 1]
    if following in ("-", "/", "."):
        return (_ISO_DATE_RE, _US_DATE_RE, _YEAR_MONTH_RE, _MONTH_DAY_DOT_RE)
    if following == ":":
        return (_TIME_RE,)
    following = text[run_end : run_end + 2].lstrip(" \t")[:1]
    if following == "년":
        return (_KO_YEAR_RE,)
    if following == "월":
        return (_KO_MONTH_RE,)
    return ()


def _numeric_at(text: str, start: int, run_end: int) -> _Found | None:
    law_ref = _english_law_ref_at(text, start)
    if law_ref is not None:
        return law_ref
    for pattern in _numeric_candidates(text, run_end):
        match = pattern.match(text, start)
        if match is None:
            continue
        found = _time_found(match) if pattern is _TIME_RE else _date_found(match)
        if found is not None:
            return found
    match = _NUMBER_RE.match(text, start)
    return _number_found(text, match) if match else None


def _find_numeric(text: str) -> list[_Found]:
    """Numeric dates, times, amounts and numbers, left to right, none overlapping."""
    found: list[_Found] = []
    consumed = 0
    for run in _DIGIT_RUN_RE.finditer(text):
        if run.start() < consumed:
            continue  # inside what an earlier match took ("000" of "1,000")
        item = _numeric_at(text, run.start(), run.end())
        if item is not None:
            found.append(item)
            consumed = item.end
    return found

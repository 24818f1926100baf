"""Dates: numeric, Korean and English date patterns, their parts and normalized keys."""

from __future__ import annotations

import re

from query_engine.grounding.types import _Found

# Dates. Normalized keys are ISO-like: 2024-03-01, 2024-03, 2024, --03-01 (month-day), --03.

_DateParts = tuple[int | None, int | None, int | None]

_MONTH_NAMES = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH = (
    r"(?<![A-Za-z])(?P<mon>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?"
    r"|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\b\.?"
)
# English dates need a month name; this cheap literal scan skips their patterns otherwise.
_MONTH_HINT_RE = re.compile(r"Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec")
_YEAR = r"(?:19|20)[0-9]{2}"
# 2024-03-01, 2024/3/1, 2024.3.1, 2024. 3. 1.
_ISO_DATE_RE = re.compile(
    rf"(?<![0-9.])(?P<y>{_YEAR})[ \t]?(?P<sep>[-/.])[ \t]?(?P<m>[0-9]{{1,2}})[ \t]?(?P=sep)"
    r"[ \t]?(?P<d>[0-9]{1,2})(?![0-9])\.?"
)
# 03/01/2024 (US order)
_US_DATE_RE = re.compile(
    rf"(?<![0-9/])(?P<m>[0-9]{{1,2}})/(?P<d>[0-9]{{1,2}})/(?P<y>{_YEAR})(?![0-9])"
)
# 2024-03, 2024/03, 2024. 3.
_YEAR_MONTH_RE = re.compile(
    rf"(?<![0-9.])(?P<y>{_YEAR})(?:[-/](?P<m>[0-9]{{1,2}})(?![0-9/-])"
    r"|\.[ \t](?P<m2>[0-9]{1,2})\.(?![ \t]?[0-9]))"
)
# 3. 1. (Korean month-day without a year; the space after the first dot keeps "3.1" a decimal)
_MONTH_DAY_DOT_RE = re.compile(r"(?<![0-9.])(?P<m>[0-9]{1,2})\.[ \t](?P<d>[0-9]{1,2})\.(?![0-9])")
# 2024년 3월 1일, 2024년 3월, 2024년
_KO_YEAR_RE = re.compile(
    r"(?P<y>[0-9]{4})[ \t]?년(?:[ \t]?(?P<m>[0-9]{1,2})[ \t]?월"
    r"(?:[ \t]?(?P<d>[0-9]{1,2})[ \t]?일)?)?"
)
# 3월 1일, 3월
_KO_MONTH_RE = re.compile(r"(?P<m>[0-9]{1,2})[ \t]?월(?:[ \t]?(?P<d>[0-9]{1,2})[ \t]?일)?")
# English dates are matched where a month name starts (found by the literal scan above).
# March 1, 2024; Mar. 1st; March 1
_MONTH_DAY_YEAR_RE = re.compile(
    rf"{_MONTH}[ \t]+(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?(?![0-9])"
    rf"(?:,?[ \t]+(?P<y>{_YEAR})(?![0-9]))?"
)
# 1 March 2024, 1st of March (matched from the day, found by looking back from the month)
_DAY_MONTH_YEAR_RE = re.compile(
    rf"(?<![0-9])(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?{_MONTH}"
    rf"(?:,?[ \t]+(?P<y>{_YEAR})(?![0-9]))?"
)
_DAY_BEFORE_MONTH_RE = re.compile(r"(?<![0-9])[0-9]{1,2}(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?$")
# March 2024
_MONTH_YEAR_RE = re.compile(rf"{_MONTH},?[ \t]+(?P<y>{_YEAR})(?![0-9])")


def _group(match: re.Match[str], *names: str) -> str | None:
    groups = match.groupdict()
    return next((groups[n] for n in names if groups.get(n)), None)


def _date_parts(match: re.Match[str]) -> _DateParts | None:
    year_text = _group(match, "y")
    month_text = _group(match, "m", "m2")
    day_text = _group(match, "d")
    month_name = _group(match, "mon")
    year = int(year_text) if year_text else None
    month = _MONTH_NAMES[month_name[:3].lower()] if month_name else None
    if month_text:
        month = int(month_text)
    day = int(day_text) if day_text else None
    if month is not None and not 1 <= month <= 12:
        return None
    if day is not None and not 1 <= day <= 31:
        return None
    return year, month, day


def _date_key(parts: _DateParts) -> str:
    year, month, day = parts
    pieces = [f"{year:04d}" if year is not None else "-"]
    if month is not None:
        pieces.append(f"{month:02d}")
    if day is not None:
        pieces.append(f"{day:02d}")
    return "-".join(pieces)


def _parse_date_key(key: str) -> _DateParts:
    """Inverse of :func:`_date_key`."""
    year_text, _, rest = key.partition("-") if not key.startswith("--") else ("", "", key[2:])
    parts: list[int | None] = [int(p) for p in rest.split("-")] if rest else []
    parts += [None] * (2 - len(parts))
    return (int(year_text) if year_text else None), parts[0], parts[1]


def _date_found(match: re.Match[str]) -> _Found | None:
    parts = _date_parts(match)
    return None if parts is None else _Found(match.start(), match.end(), "date", _date_key(parts))


def _english_date_at(text: str, month_start: int) -> _Found | None:
    match = _MONTH_DAY_YEAR_RE.match(text, month_start)
    if match is None:
        day = _DAY_BEFORE_MONTH_RE.search(text, max(0, month_start - 12), month_start)
        match = _DAY_MONTH_YEAR_RE.match(text, day.start()) if day else None
    if match is None:
        match = _MONTH_YEAR_RE.match(text, month_start)
    return _date_found(match) if match else None


def _find_english_dates(text: str) -> list[_Found]:
    found: list[_Found] = []
    consumed = 0
    for hint in _MONTH_HINT_RE.finditer(text):
        if hint.start() < consumed:
            continue
        item = _english_date_at(text, hint.start())
        if item is not None:
            found.append(item)
            consumed = item.end
    return found

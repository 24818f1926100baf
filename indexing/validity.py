"""When a document is in force: dated versions of regulations.

A document may carry ``effective_from`` (the first day it is in force) and ``effective_to`` (the
last day, inclusive), as ISO dates in its ingestion metadata. Without ``effective_from`` in the
metadata it is read from the text when the text states it in one of the usual forms (see
:func:`effective_from_text`): a 부칙 "이 규정은 2025년 3월 1일부터 시행한다", a law header
"[시행 2025. 3. 1.]", or "This regulation takes effect on March 1, 2025". A metadata value of
``null`` turns that reading off. Documents that share ``version_of`` are versions of one
regulation: at a date, the one in force is the one with the latest ``effective_from`` (a newer
version ends an older one even when the older one states no ``effective_to``).

Every chunk stores the dates as ISO strings in its metadata, which order like the dates, so the
read side filters with plain string comparisons in Milvus (``query_engine.dated_versions``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date
from typing import Any, Final

from docqa_core.errors import InvalidRequest

EFFECTIVE_FROM: Final = "effective_from"
EFFECTIVE_TO: Final = "effective_to"
VERSION_OF: Final = "version_of"
MAX_VERSION_OF_CHARS: Final = 256

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_MONTH_NAME = "|".join(sorted(_MONTHS, key=len, reverse=True))

# 2025년 3월 1일 | 2025. 3. 1. | 2025.3.1 | 2025-03-01 | 2025/3/1
_NUMERIC_DATE = (
    r"(?P<y>\d{4})\s*(?:년\s*|[.\-/]\s*)"
    r"(?P<m>\d{1,2})\s*(?:월\s*|[.\-/]\s*)"
    r"(?P<d>\d{1,2})\s*(?:일|\.)?"
)
# Only a statement about the document itself counts: "이 규정은 …부터 시행한다", not any
# sentence with 시행 ("…에 따라 시행한 사업"), so a report quoting a date does not get dated.
_KOREAN_SUBJECT = (
    r"(?:이|본)\s*(?:[가-힣]{0,10}?)"
    r"(?:규정|법|법률|규칙|지침|세칙|령|훈령|예규|내규|정관|기준|요령|약관)"
)
_KOREAN_FORMS = (
    re.compile(_KOREAN_SUBJECT + r"\s*[은는]\s*" + _NUMERIC_DATE + r"\s*부터\s*(?:이를\s*)?시행"),
    re.compile(r"\[\s*시행\s*(?:일\s*)?[:：]?\s*" + _NUMERIC_DATE + r"\s*\]"),
    re.compile(r"시행\s*일\s*[:：]\s*" + _NUMERIC_DATE),
)
_ENGLISH_DATE = (
    rf"(?:(?P<mn>{_MONTH_NAME})\.?\s+(?P<dn>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<yn>\d{{4}})"
    rf"|(?P<dn2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<mn2>{_MONTH_NAME})\.?,?\s+(?P<yn2>\d{{4}})"
    r"|(?P<yi>\d{4})-(?P<mi>\d{2})-(?P<di>\d{2}))"
)
_ENGLISH_SUBJECT = (
    r"\bthis\s+(?:[a-z-]+\s+){0,3}?"
    r"(?:regulation|rule|rules|policy|act|law|code|guideline|guidelines|directive|standard|"
    r"procedure|bylaws?|agreement|amendment|version|document)"
)
_ENGLISH_FORMS = (
    re.compile(
        _ENGLISH_SUBJECT + r"\s+(?:shall\s+|will\s+)?(?:takes?|take|came|comes?|come)\s+"
        r"(?:effect|into\s+(?:force|effect))\s+(?:on|from|as\s+of)\s+" + _ENGLISH_DATE,
        re.IGNORECASE,
    ),
    re.compile(
        _ENGLISH_SUBJECT + r"\s+(?:is|shall\s+be|becomes?|will\s+be)\s+effective\s+"
        r"(?:on|from|as\s+of)\s+" + _ENGLISH_DATE,
        re.IGNORECASE,
    ),
    re.compile(r"\beffective\s+date\s*[:：]\s*" + _ENGLISH_DATE, re.IGNORECASE),
)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_date(value: Any, *, name: str = "date") -> date:
    """A date from an ISO string (``2025-03-01``) or a ``date``; anything else is refused."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidRequest(f"{name} must be a date written YYYY-MM-DD", detail={name: value})


def effective_from_text(text: str) -> date | None:
    """The date the text says it takes effect, or None.

    Several statements (a regulation amended over the years keeps each amendment's 부칙): the
    latest date is the one of this version.
    """
    found = [
        _date_of(match)
        for pattern in (*_KOREAN_FORMS, *_ENGLISH_FORMS)
        for match in pattern.finditer(text)
    ]
    dates = [d for d in found if d is not None]
    return max(dates) if dates else None


def _date_of(match: re.Match[str]) -> date | None:
    groups = {k: v for k, v in match.groupdict().items() if v is not None}
    if "y" in groups:
        year, month, day = groups["y"], groups["m"], groups["d"]
    elif "yi" in groups:
        year, month, day = groups["yi"], groups["mi"], groups["di"]
    else:
        year = groups.get("yn") or groups["yn2"]
        month = str(_MONTHS[(groups.get("mn") or groups["mn2"]).lower()])
        day = groups.get("dn") or groups["dn2"]
    try:
        return date(int(year), int(month), int(day))
    except ValueError:  # "2025년 2월 30일": not a date, so not a statement to trust
        return None


@functools.lru_cache(maxsize=64)
def _effective_from_text_cached(text: str) -> date | None:
    # chunk metadata is built once per chunk: the document's text is read once
    return effective_from_text(text)


def document_validity(metadata: Mapping[str, Any], text: str) -> dict[str, str]:
    """The validity keys every chunk of the document stores (ISO strings; absent when open).

    Metadata wins over the text; ``null`` in the metadata means "none, do not read the text".
    Refuses dates that are not ``YYYY-MM-DD``, an end before the start, and a ``version_of``
    that is not a short string.
    """
    result: dict[str, str] = {}
    if EFFECTIVE_FROM in metadata:
        start = metadata[EFFECTIVE_FROM]
        if start is not None:
            result[EFFECTIVE_FROM] = parse_date(start, name=EFFECTIVE_FROM).isoformat()
    else:
        parsed = _effective_from_text_cached(text)
        if parsed is not None:
            result[EFFECTIVE_FROM] = parsed.isoformat()
    end = metadata.get(EFFECTIVE_TO)
    if end is not None:
        result[EFFECTIVE_TO] = parse_date(end, name=EFFECTIVE_TO).isoformat()
        if result.get(EFFECTIVE_FROM, "") > result[EFFECTIVE_TO]:
            raise InvalidRequest(
                "effective_to is before effective_from",
                detail={EFFECTIVE_FROM: result[EFFECTIVE_FROM], EFFECTIVE_TO: result[EFFECTIVE_TO]},
            )
    group = metadata.get(VERSION_OF)
    if group is not None:
        if not isinstance(group, str) or not 0 < len(group) <= MAX_VERSION_OF_CHARS:
            raise InvalidRequest(
                f"version_of must be a string of 1 to {MAX_VERSION_OF_CHARS} characters"
            )
        result[VERSION_OF] = group
    return result

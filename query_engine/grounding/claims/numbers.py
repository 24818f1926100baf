"""Numbers, amounts and times of day: patterns, values by which they compare, and matches.

Numbers compare by value, not by spelling or unit: "50,000원" = "5만 원" = "50000 won". A
source's every digit run also counts as a number (:func:`_plain_numbers`).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from query_engine.grounding.types import ClaimKind, _Found

_NUM = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?"
_DIGIT_RUN_RE = re.compile(r"[0-9]+")
_PLAIN_NUMBER_RE = re.compile(rf"(?:{_NUM})(?![0-9])")
# Korean numeral units after digits: 5만, 3천만, 1억 5천만, 2.5억. 조 is also "article" (3조), so it
# counts as trillion only before more digits, another unit or a currency. A unit without digits
# must touch the previous one (5천만) so "3천 백화점" does not read as 3,000 × 100.
_KO_UNITS = {"백": Decimal(100), "천": Decimal(1000)}
_KO_BIG_UNITS = {"만": Decimal(10**4), "억": Decimal(10**8), "조": Decimal(10**12)}
_KO_FIRST_UNIT = r"(?:[억만천백]|조(?=[ \t]?(?:[0-9]|원|달러|억|만|천)))"
_KO_NEXT_UNIT = rf"(?:[ \t]?(?:{_NUM})[조억만천백]|[조억만천백])"
_KO_UNIT_PART_RE = re.compile(rf"({_NUM})?([조억만천백])")
_EN_SCALES = {
    "thousand": Decimal(10**3),
    "million": Decimal(10**6),
    "billion": Decimal(10**9),
    "trillion": Decimal(10**12),
}
_NUMBER_RE = re.compile(
    rf"(?P<num>{_NUM})"
    rf"(?P<ko>{_KO_FIRST_UNIT}{_KO_NEXT_UNIT}*(?!큼))?"
    r"(?:[ \t]?(?P<scale>(?i:thousand|million|billion|trillion))\b)?"
    r"(?P<unit>[ \t]?(?:%|퍼센트|원|달러|엔|유로|위안))?"
    r"(?![0-9])"
)
# A currency sign before the digits belongs to the claim's text ("$1,200"), not to its value.
_CURRENCY_BEFORE_RE = re.compile(r"(?:US\$|\$|₩|€|£|¥|(?:KRW|USD|EUR|JPY)[ \t]?)$")
_CURRENCY_LAST_CHARS = frozenset("$₩€£¥WDRY")
# Times of day: 9:30, 18:00:00.
_TIME_RE = re.compile(r"(?<![0-9.:])([01]?[0-9]|2[0-3]):([0-5][0-9])(?::[0-5][0-9])?(?![0-9:])")


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None


def _canonical(value: Decimal) -> str:
    """One spelling per value: 50000, 3.5, 0.25 (no exponent, no trailing zeros)."""
    return format(value.normalize(), "f")


def _korean_amount(digits: str, units: str) -> Decimal:
    """Value of "1억 5천만" given as ("1", "억 5천만"): 천/백 scale a section, 만/억/조 close it."""
    total = Decimal(0)
    section = Decimal(0)
    for number, unit in _KO_UNIT_PART_RE.findall(digits + units):
        value = _decimal(number) if number else None
        if unit in _KO_UNITS:
            section += (value if value is not None else Decimal(1)) * _KO_UNITS[unit]
        else:
            section += value if value is not None else Decimal(0)
            total += (section or Decimal(1)) * _KO_BIG_UNITS[unit]
            section = Decimal(0)
    return total + section


def _canonical_text(number: str) -> str | None:
    """:func:`_canonical` of a written number; plain digit strings skip Decimal (most numbers)."""
    plain = number.replace(",", "")
    if plain.isdigit():
        return plain.lstrip("0") or "0"
    value = _decimal(plain)
    return None if value is None else _canonical(value)


def _number_key(match: re.Match[str]) -> str | None:
    digits = match.group("num")
    if match.group("ko"):
        return _canonical(_korean_amount(digits, match.group("ko")))
    scale = match.group("scale")
    if not scale:
        return _canonical_text(digits)
    value = _decimal(digits)
    return None if value is None else _canonical(value * _EN_SCALES[scale.lower()])


def _is_bare_year(match: re.Match[str], has_currency: bool) -> bool:
    """A plain 4-digit 1900-2099 with no currency, unit or separator reads as a year."""
    digits = match.group("num")
    if len(digits) != 4 or has_currency or not digits.isdigit():
        return False
    if match.group("ko") or match.group("scale") or match.group("unit"):
        return False
    return 1900 <= int(digits) <= 2099


def _time_found(match: re.Match[str]) -> _Found:
    key = f"{int(match.group(1))}:{match.group(2)}"
    return _Found(match.start(), match.end(), "number", key)


def _number_found(text: str, match: re.Match[str]) -> _Found | None:
    key = _number_key(match)
    if key is None:
        return None
    start = match.start()
    currency = None
    if text[max(0, start - 5) : start].rstrip(" \t")[-1:] in _CURRENCY_LAST_CHARS:
        currency = _CURRENCY_BEFORE_RE.search(text, max(0, start - 4), start)
    kind: ClaimKind = "date" if _is_bare_year(match, currency is not None) else "number"
    return _Found(currency.start() if currency else start, match.end(), kind, key)


def _plain_numbers(text: str) -> set[str]:
    """Every digit run of a source as a number, whatever surrounds it (dates, law refs, codes)."""
    numbers: set[str] = set()
    consumed = 0
    for run in _DIGIT_RUN_RE.finditer(text):
        if run.start() < consumed:
            continue
        match = _PLAIN_NUMBER_RE.match(text, run.start())
        if match and (key := _canonical_text(match.group())) is not None:
            numbers.add(key)
            consumed = match.end()
    return numbers

"""Names: runs of capitalized English words and Korean proper nouns (Kiwi NNP)."""

from __future__ import annotations

import re

from docqa_core.scripts import has_hangul
from indexing.analysis import extract_korean_proper_nouns
from query_engine.grounding.text import _WHITESPACE_RE
from query_engine.grounding.types import _Found

# Hyphens split words: "Seoul-based" is checked as "Seoul", "Jean-Paul" as "Jean" and "Paul".
_EN_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z][A-Za-z0-9]*(?:['’&.][A-Za-z0-9]+)*")
# Lower-case words allowed inside a name: "Bank of Korea", "Bank of the Philippine Islands".
# Not "and"/"&": "Samsung and LG" is two names, and "Ministry of Employment and Labor" still
# matches as "Ministry of Employment" plus "Labor".
_NAME_CONNECTORS = frozenset(
    {"of", "the", "de", "del", "da", "du", "la", "le", "van", "von", "der"}
)
# Capitalized words that are never part of a name: function words that open sentences, the
# pronoun I, honorifics, and weekday and month names (dates, not names).
_NAME_BREAKERS = frozenset(
    """
    i the a an this that these those it its in on at for from to by with as if when while where
    what which who whom whose why how however according yes no not please based also therefore
    thus there here they we you he she our your their my his her each every all some any both
    under per after before during since because although but and or so then unfortunately sorry
    note see unless only other such most many more further furthermore moreover additionally
    within without upon do does did is are was were be can could should would will shall must
    mr mrs ms dr prof sir
    monday tuesday wednesday thursday friday saturday sunday
    january february march april may june july august september october november december
    jan feb mar apr jun jul aug sep sept oct nov dec
    """.split()
)
# Single words that are capitalized but are not names worth checking (answer boilerplate).
_GENERIC_WORDS = frozenset(
    """
    pdf faq api url id ok ai llm hr it etc am pm q&a answer question source sources summary
    document documents context passage korean english
    """.split()
)
# Kiwi tags language names as NNP; answers name the language they answer in ("한국어로 답하면").
_KOREAN_GENERIC_NOUNS = frozenset({"한국어", "한글", "영어", "중국어", "일본어"})
# Characters skipped when deciding whether a word opens its sentence or clause.
_OPENING_CHARS = frozenset(" \t*_\"'“‘(「#>")


def _is_capitalized(word: str) -> bool:
    return word[0].isupper()


def _base_word(word: str) -> str:
    """The word before an apostrophe, lowercased: "I'm" → "i", "Samsung's" → "samsung"."""
    return re.split(r"['’]", word, maxsplit=1)[0].lower()


def _is_clause_initial(text: str, position: int) -> bool:
    """True when only markup separates ``position`` from the sentence start or a colon."""
    index = position - 1
    while index >= 0 and text[index] in _OPENING_CHARS:
        index -= 1
    return index < 0 or text[index] in ":："


def _name_groups(text: str) -> list[list[re.Match[str]]]:
    """Runs of capitalized words joined by spaces and lower-case connectors."""
    groups: list[list[re.Match[str]]] = []
    current: list[re.Match[str]] = []
    pending: list[re.Match[str]] = []
    previous_end = -1
    for token in _EN_TOKEN_RE.finditer(text):
        word = token.group()
        # One space joins words; a tab, two spaces or punctuation is a cell or list boundary.
        adjacent = previous_end >= 0 and text[previous_end : token.start()] == " "
        if _is_capitalized(word) and _base_word(word) not in _NAME_BREAKERS:
            if not (current and adjacent):
                groups.append(current)
                current = []
            current.extend(pending)
            current.append(token)
            pending = []
            if word.endswith(("'s", "’s")):  # "Samsung's Galaxy": the owner ends the name
                groups.append(current)
                current = []
        elif current and adjacent and word in _NAME_CONNECTORS:
            pending.append(token)
        else:
            groups.append(current)
            current, pending = [], []
        previous_end = token.end()
    groups.append(current)
    return [group for group in groups if group]


def _english_names(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for group in _name_groups(text):
        start, end = group[0].start(), group[-1].end()
        if text[end - 2 : end] in ("'s", "’s"):
            end -= 2  # possessive: "Samsung's" is checked as "Samsung"
        if len(group) == 1:
            word = text[start:end]
            if (
                len(word) == 1
                or word.lower() in _GENERIC_WORDS
                # A lone capitalized word opening a sentence is usually a common word
                # ("Employees must …"); multi-word runs there ("Seoul National University")
                # are still checked.
                or _is_clause_initial(text, start)
            ):
                continue
        spans.append((start, end))
    return spans


def _english_name_key(text: str) -> str:
    return _WHITESPACE_RE.sub(" ", text.replace("’", "'")).strip().lower()


def _korean_name_key(text: str) -> str:
    return _WHITESPACE_RE.sub("", text).lower()


def _name_claims(text: str) -> list[_Found]:
    found = [
        _Found(start, end, "name", _english_name_key(text[start:end]))
        for start, end in _english_names(text)
    ]
    if has_hangul(text):
        found += _korean_name_claims(text)
    return found


def _korean_name_claims(text: str) -> list[_Found]:
    found: list[_Found] = []
    cursor = 0
    for noun in extract_korean_proper_nouns(text):
        # One-syllable NNPs (e.g. a lone surname) are too ambiguous to check.
        if len(noun.strip()) < 2 or not has_hangul(noun) or noun in _KOREAN_GENERIC_NOUNS:
            continue
        start = text.find(noun, cursor)
        start = start if start >= 0 else text.find(noun)
        if start < 0:
            continue
        cursor = start + len(noun)
        found.append(_Found(start, cursor, "name", _korean_name_key(noun)))
    return found

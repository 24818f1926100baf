"""Which script, and so which language, a text is written in (Korean, English, other).

The answer is written in the question's language, and Korean text gets morphological analysis:
both sides need the same rule.
"""

from __future__ import annotations

import re
from typing import Literal

Language = Literal["ko", "en", "other"]

# Hangul syllables, jamo and compatibility jamo.
_HANGUL_RE = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_HANGUL_WORD_RE = re.compile(r"[\uac00-\ud7a3]+")
_LATIN_WORD_RE = re.compile(r"[A-Za-z]+")
_LATIN_LETTER_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")
_ADDRESS_RE = re.compile(r"(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# Letters and digits of any script, without "_".
_WORD_RE = re.compile(r"[^\W_]+")


def has_hangul(text: str) -> bool:
    return _HANGUL_RE.search(text) is not None


def detect_language(text: str) -> Language:
    """Tell whether ``text`` is Korean, English or something else, to answer in its language.

    Counted per word, not per letter: a Korean sentence is full of Latin terms ("LLM의
    Fine-Tuning과 RLHF를") that outnumber its Hangul letters, but Korean particles attach to
    them, so the word is Korean. A word is Korean if it holds Hangul, English if it holds a
    Latin letter, other if it holds another script's letter; ties go to Korean, then English.
    URLs and e-mail addresses are not counted.
    """
    counts = {"ko": 0, "en": 0, "other": 0}
    for word in _WORD_RE.findall(_ADDRESS_RE.sub(" ", text)):
        if has_hangul(word):
            counts["ko"] += 1
        elif _LATIN_LETTER_RE.search(word):
            counts["en"] += 1
        elif any(ch.isalpha() for ch in word):
            counts["other"] += 1
    if counts["ko"] and counts["ko"] >= max(counts["en"], counts["other"]):
        return "ko"
    if counts["en"] and counts["en"] >= counts["other"]:
        return "en"
    return "other"


def main_script(text: str) -> Language:
    """The rule of :func:`detect_language` on runs of one script only, at a fifth of its cost
    (the grounding check runs it once per source)."""
    korean = len(_HANGUL_WORD_RE.findall(text))
    latin = len(_LATIN_WORD_RE.findall(text))
    if korean and korean >= latin:
        return "ko"
    return "en" if latin else "other"

"""Claim extraction: the checkable facts of a sentence.

:mod:`.numbers` (numbers, amounts, times), :mod:`.dates`, :mod:`.laws` (제N조, "Article N",
"Section N"), :mod:`.names` (English capitalized names, Korean proper nouns), :mod:`.numeric`
(the one left-to-right pass over digit runs) and :mod:`.extract` (:func:`extract_claims`).
"""

from __future__ import annotations

from query_engine.grounding.claims.extract import extract_claims

__all__ = ["extract_claims"]

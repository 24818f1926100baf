"""Claim kinds, grounding policies and the claim/result types, shared by every module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ClaimKind = Literal["number", "date", "law_ref", "name"]
GroundingPolicy = Literal["flag", "drop", "refuse"]
# why a claim is unsupported: no cited source holds it, or the sources hold it as the value of
# another fact than the one the sentence states (:mod:`query_engine.grounding.attachment`)
NOT_IN_SOURCES = "not_in_sources"
MISATTACHED = "said_of_something_else"


@dataclass(frozen=True, slots=True)
class Claim:
    """One checkable fact of a sentence: ``text`` as written, ``normalized`` for matching."""

    kind: ClaimKind
    text: str
    normalized: str


@dataclass(frozen=True, slots=True)
class UnsupportedClaim:
    sentence_index: int
    sentence: str
    claim: str
    kind: ClaimKind
    reason: str = NOT_IN_SOURCES


@dataclass(frozen=True, slots=True)
class GroundingResult:
    """``verified`` means no claim was found unsupported (also when there was nothing to check)."""

    verified: bool
    unsupported: tuple[UnsupportedClaim, ...]
    checked_claims: int

    def to_dict(self) -> dict[str, object]:
        return {
            "verified": self.verified,
            "unsupported": [
                {"sentence": u.sentence, "claim": u.claim, "kind": u.kind, "reason": u.reason}
                for u in self.unsupported
            ],
            "checked_claims": self.checked_claims,
        }


# One claim found in a text: its span, its kind and its normalized key.
@dataclass(frozen=True, slots=True)
class _Found:
    start: int
    end: int
    kind: ClaimKind
    key: str

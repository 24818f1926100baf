"""Deterministic grounding check: are the checkable facts of an answer in the sources it cites?

The LLM answers with citation markers ([1], [1, 2], [1][2]). This module splits the answer into
sentences, pulls the *checkable* facts out of each one (numbers and amounts, dates, law
references, proper nouns) and looks each one up in the sources the sentence cites. No model is
called: the check is regexes, one Kiwi morpheme analysis per Korean sentence (the process-wide
Kiwi of :mod:`indexing.analysis`, shared and thread-safe) and set lookups, so it gives the same
answer every time and costs about a millisecond per answer once its sources are indexed.

Matching rules, chosen to keep false alarms low (flagging a correct answer costs the user the
answer; a missed paraphrased fact costs less):

- Numbers compare by value, not by spelling or unit: "50,000원" = "5만 원" = "50000 won",
  "3.5%" = "3.5 퍼센트", "$1.2 million" = "$1,200,000". A number is supported only by a whole
  number of the source, so "50" is not supported by "500". Every digit run of a source counts,
  including those inside its dates and law references.
- Dates compare by their parts: "2024년 3월 1일" = "2024-03-01" = "2024. 3. 1." = "March 1, 2024".
  A claim may leave parts out ("3월 1일", "March 2024", "2024") and then matches any source date
  with the parts it gives. A year may come from elsewhere in the source ("2024년도 … 3월 1일").
- Law references are mapped to the Korean Legislation Research Institute's English terms, so
  "제12조의2" = "Article 12-2" and "제3항" = "Paragraph 3" = a circled "③" in the source.
- Korean proper nouns (Kiwi tag NNP) are found as substrings of the source with whitespace
  removed, so particles attached in the source (김철수가, 서울특별시에) do not matter. English
  names are runs of capitalized words ("Seoul National University"), found case-insensitively
  on word boundaries, or word by word. A name is only checked against sources written mainly in
  its script: an English answer over a Korean document translates names.

Scoping: a sentence that cites [n] is checked against those sources only; a sentence without a
marker is checked against all sources. Citation numbers missing from ``sources`` are ignored, and
a sentence citing only missing numbers has every claim unsupported: a fact attributed to a
source that does not exist is not grounded.

Known limits: facts written in words ("three days", "세 개") are not claims; numbers compare
without their units; a sentence citing several sources is checked against their union, not
clause by clause; a small number in an inline list ("Steps: 1. Apply") may be read as a claim;
Kiwi tags some loanwords as NNP (프롬프트), so a respelled loanword is flagged.

Layout: :mod:`.types` (claims and results), :mod:`.text` (width folding, masking),
:mod:`.sentences` (sentence splitting), :mod:`.claims` (claim extraction: numbers, dates, law
references, names) and :mod:`.verdict` (source index, support checks, :func:`check_grounding`,
:func:`apply_policy`).
"""

from __future__ import annotations

from query_engine.grounding.claims import extract_claims
from query_engine.grounding.sentences import split_sentences
from query_engine.grounding.types import (
    Claim,
    ClaimKind,
    GroundingPolicy,
    GroundingResult,
    UnsupportedClaim,
)
from query_engine.grounding.verdict import apply_policy, check_grounding

__all__ = [
    "Claim",
    "ClaimKind",
    "GroundingPolicy",
    "GroundingResult",
    "UnsupportedClaim",
    "apply_policy",
    "check_grounding",
    "extract_claims",
    "split_sentences",
]

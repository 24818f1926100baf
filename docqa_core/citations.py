"""The one parser of citation markers: ``[1]``, ``[1, 2]``, ``[1,2]``, ``[1-3]``, ``[1][2]``.

The grounding check (which sources must support a sentence) and the API (which sources the
answer marks as cited) read markers through this module, so they cannot disagree.
"""

from __future__ import annotations

import re

# Up to three digits: "[2024]" is a year in brackets, not a citation. Separators: comma (also
# full-width), and a range dash, en dash or tilde.
CITATION_MARKER_RE = re.compile(r"\[[ \t]*[0-9]{1,3}(?:[ \t]*[,，\-–~][ \t]*[0-9]{1,3})*[ \t]*\]")
_PART_RE = re.compile(r"([0-9]+)(?:[ \t]*[\-–~][ \t]*([0-9]+))?")
MAX_CITATION_RANGE = 50  # "[1-999]" must not expand into a thousand lookups


def cited_numbers(text: str) -> frozenset[int] | None:
    """The source numbers ``text`` cites, or None when it holds no citation marker at all.

    None and an empty set differ for grounding: a sentence without a marker may be supported by
    any source, one with markers only by the sources it names."""
    cited: set[int] = set()
    found = False
    for marker in CITATION_MARKER_RE.finditer(text):
        found = True
        for part in _PART_RE.finditer(marker.group()):
            first = int(part.group(1))
            last = int(part.group(2)) if part.group(2) else first
            if first <= last <= first + MAX_CITATION_RANGE:
                cited.update(range(first, last + 1))
            else:  # a reversed or huge range: take its two ends at their word
                cited.update((first, last))
    return frozenset(cited) if found else None


def all_cited(text: str) -> frozenset[int]:
    """Every source number cited anywhere in ``text`` (empty when none)."""
    return cited_numbers(text) or frozenset()

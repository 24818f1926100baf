"""Shared text helpers: full-width folding, whitespace pattern and span masking."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Full-width ASCII (５０，０００원, ％) → ASCII, one character for one, so offsets into the
# folded text are offsets into the original.
_FULLWIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_FULLWIDTH_RE = re.compile("[\uff01-\uff5e\u3000]")
_WHITESPACE_RE = re.compile(r"\s+")

_Span = tuple[int, int]


def _fold_width(text: str) -> str:
    # str.translate walks every character through a dict; most text has nothing to fold.
    return text.translate(_FULLWIDTH) if _FULLWIDTH_RE.search(text) else text


def _mask(text: str, spans: Iterable[_Span], fill: str = " ") -> str:
    """Blank out ``spans`` with ``fill``, keeping offsets, so later patterns cannot reuse them."""
    parts: list[str] = []
    last = 0
    for start, end in sorted(spans):
        parts.append(text[last:start])
        parts.append(fill * (end - start))
        last = end
    parts.append(text[last:])
    return "".join(parts)

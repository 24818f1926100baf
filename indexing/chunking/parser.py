"""The chunking entry points: `detect_kind` and `chunk_text`, which picks the chunker."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

from indexing.chunking.budget import _TokenBudget
from indexing.chunking.laws import _chunk_law, _looks_like_law
from indexing.chunking.markdown import _chunk_markdown, _looks_like_markdown
from indexing.chunking.paragraphs import _chunk_paragraphs
from indexing.chunking.spans import (
    Chunk,
    ChunkKind,
    DocumentKind,
    TokenCounter,
    _PageMap,
    _to_chunks,
)


def detect_kind(text: str) -> DocumentKind:
    """Guess the document shape from its lines.

    Law wins over markdown: a regulation pasted into markdown is still best cut per article.
    Two article lines (or one plus a 편/장/절/부칙 heading) are needed so that a stray
    "제3조 ..." line in prose does not turn a report into a law.
    """
    if _looks_like_law(text):
        return "law"
    if _looks_like_markdown(text):
        return "markdown"
    return "paragraph"


def chunk_text(
    text: str,
    *,
    kind: ChunkKind = "auto",
    count_tokens: TokenCounter,
    max_tokens: int = 480,
    overlap_tokens: int = 48,
    page_starts: Sequence[int] | None = None,
) -> list[Chunk]:
    """Split `text` into chunks in document order, each within `max_tokens`.

    `count_tokens` must be the embedder's own counter (specials included); every chunk is
    checked against it, never against a character estimate. `overlap_tokens` is only used
    where running text had to be cut inside a paragraph, 항 or block: the later piece then
    starts up to that many tokens earlier, so those two spans overlap (it is capped at half of
    what a chunk can hold). `page_starts` are the sorted character offsets where each page
    begins; `Chunk.page` is the page holding `char_start`.

    In laws, 편/장/절/관/부칙 heading lines are in no chunk's text, only in `Chunk.section`:
    prepend the section when the heading words should be searchable.
    """
    _check_arguments(kind, max_tokens, overlap_tokens, page_starts)
    if not text or text.isspace():
        return []
    budget = _TokenBudget(text, count_tokens, max_tokens, overlap_tokens)
    pages = _PageMap(page_starts)
    resolved = detect_kind(text) if kind == "auto" else kind
    if resolved == "law":
        pieces = _chunk_law(budget)
    elif resolved == "markdown":
        pieces = _chunk_markdown(budget)
    else:
        pieces = _chunk_paragraphs(budget, pages)
    return _to_chunks(text, pieces, pages)


def _check_arguments(
    kind: str, max_tokens: int, overlap_tokens: int, page_starts: Sequence[int] | None
) -> None:
    if kind not in ("auto", "law", "markdown", "paragraph"):
        raise ValueError(f"unknown chunk kind {kind!r}")
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must not be negative, got {overlap_tokens}")
    if page_starts is not None and any(a > b for a, b in pairwise(page_starts)):
        raise ValueError("page_starts must be sorted")

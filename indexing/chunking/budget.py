"""Token counting for one document: each trimmed span is counted at most once.

Tokenizer calls dominate the cost of chunking, so counts are cached per span and a span too
long to possibly fit is rejected without being counted.
"""

from __future__ import annotations

from indexing.chunking.spans import Span, TokenCounter, _strip_span

# No natural text averages more characters per token than this, so a longer span cannot fit:
# it is cut without first paying for a count of all of it.
_MAX_CHARS_PER_TOKEN = 32


class _TokenBudget:
    """Counts tokens of (whitespace-trimmed) spans of one document, each span at most once."""

    def __init__(
        self, text: str, count_tokens: TokenCounter, max_tokens: int, overlap_tokens: int
    ) -> None:
        self.text = text
        self.max_tokens = max_tokens
        self._count_tokens = count_tokens
        self._cache: dict[Span, int] = {}
        self.overhead = _per_text_overhead(count_tokens)
        if max_tokens <= self.overhead:
            raise ValueError(
                f"max_tokens={max_tokens} leaves no room: the tokenizer adds {self.overhead} "
                "tokens to any text"
            )
        # Overlap never takes more than half of a chunk, or cut text would barely advance.
        self.overlap_tokens = min(overlap_tokens, (max_tokens - self.overhead) // 2)

    def count(self, start: int, end: int) -> int:
        start, end = _strip_span(self.text, start, end)
        if start == end:
            return self.overhead
        key = (start, end)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._count_tokens(self.text[start:end])
        return cached

    def content(self, start: int, end: int) -> int:
        """Tokens the span adds to a chunk, without the once-per-text specials."""
        return self.count(start, end) - self.overhead

    def fits(self, start: int, end: int, limit: int) -> bool:
        start, end = _strip_span(self.text, start, end)
        if end - start > _MAX_CHARS_PER_TOKEN * limit:
            return False
        return self.count(start, end) <= limit


def _per_text_overhead(count_tokens: TokenCounter) -> int:
    """Tokens the counter adds once per text (for e5: the "passage: " prefix, [CLS], [SEP]).

    Estimates add unit counts, so this is subtracted from each unit and added back once. It is
    measured from one and two copies of a word, not from "", because some tokenizers give the
    empty string an extra token.
    """
    single = count_tokens("word")
    double = count_tokens("word word")
    return max(0, min(count_tokens(""), 2 * single - double))

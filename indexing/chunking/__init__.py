"""Structure-aware chunking: cut a document into citeable spans that fit the embedder.

Three document shapes are recognised (see `detect_kind`):

- **law**: Korean laws and internal regulations. One article (조) per chunk, its 항/호/목 kept
  inside; 편/장/절/관 and 부칙 headings become the section path rather than chunks of their own.
  An article too long for the embedder is cut at 항, then 호, 목, sentences, lines and words.
- **markdown**: one chunk per heading section (the heading line included); headings inside
  code fences are ignored. A section too long is cut at blank-line blocks, then sentences.
- **paragraph**: blank-line separated paragraphs, short neighbours merged up to half the token
  limit (never across a page), long ones cut at sentences.

Every chunk is a verbatim span of the source (`text == source[char_start:char_end]`): whitespace
is trimmed by moving the span, so citations can point back into the original document. Every
chunk satisfies `count_tokens(chunk.text) <= max_tokens`; an embedder that silently truncates or
averages windows would otherwise lose text.

Tokenizer calls dominate the cost, so the text is tokenised about twice in all: every unit
(article, paragraph, sentence) is counted once, and a chunk made of several units is verified
with one real count of its text (a binary search only runs when the summed estimate was wrong).
Nothing is ever counted repeatedly while growing a chunk, which would be quadratic.

The package holds one module per subject: `parser` (the entry points: `detect_kind`,
`chunk_text`), `spans` (the `Chunk` type, lines, trimming, pages), `budget` (token counting),
`cutting` (fitting spans into the budget), and one module per document shape: `laws`,
`markdown`, `paragraphs` (paragraphs and sentences, and the running-text cuts the others share).
"""

from indexing.chunking.parser import chunk_text, detect_kind
from indexing.chunking.spans import SECTION_SEPARATOR, Chunk, ChunkKind, DocumentKind

__all__ = ["SECTION_SEPARATOR", "Chunk", "ChunkKind", "DocumentKind", "chunk_text", "detect_kind"]

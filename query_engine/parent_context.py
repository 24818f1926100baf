"""Parent-section context ("small to big"): search small chunks, answer from their sections.

Chunks are small (a 항, a paragraph of a few hundred tokens) so the ranking is precise, but the
answer to a question is often in the sentences next to the one that matched best: the next
paragraph of a paper, the item after a list's introduction. So a ranked hit becomes a source
grown with its neighbouring chunks — the same document, the same version (content hash), the
same section path, within the search's filters — alternately after and before it while the
source stays within a token budget. Hits that touch one another become one source at the rank
of the better one, instead of the same passage cited three times; the ranking is read further
down to fill the freed places.

Chunks are verbatim spans of their document (``char_start``/``char_end`` in the metadata), so
neighbours are joined without repeating the tokens consecutive chunks overlap by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from llama_index.core.schema import NodeWithScore, TextNode

from indexing import schema

Key = tuple[str, str]  # (doc id, content hash): one version of one document


class ChunksAt(Protocol):
    async def chunks_at(
        self, collection: str, wanted: Mapping[Key, Sequence[int]], expr: str = ""
    ) -> list[dict[str, Any]]: ...


@dataclass
class _Source:
    """A source being built: its first hit and the contiguous chunk indexes it covers."""

    hit: NodeWithScore
    key: Key
    low: int
    high: int
    chunks: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def hit_index(self) -> int:
        return int(self.hit.node.metadata.get("chunk_index") or 0)

    @property
    def chunk_count(self) -> int | None:
        """The document's chunks, when the hit says."""
        count = self.hit.node.metadata.get("chunk_count")
        return count if isinstance(count, int) else None

    def neighbourhood(self, window: int) -> range:
        """The chunk indexes within ``window`` of this source, inside its document."""
        end = self.high + window + 1
        return range(max(0, self.low - window), min(end, self.chunk_count or end))

    def touches(self, key: Key, index: int, section: str) -> bool:
        """``index`` of ``key`` adjoins this source's chunks, in the same section."""
        adjoins = key == self.key and self.low - 1 <= index <= self.high + 1
        return adjoins and section == _section(self.hit.node.metadata)


async def with_parent_context(
    ranked: Sequence[NodeWithScore],
    store: ChunksAt,
    collection: str,
    *,
    top_k: int,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    window: int = 2,
    expr: str = "",
) -> list[NodeWithScore]:
    """The first ``top_k`` sources of ``ranked`` (best first), each grown with up to ``window``
    neighbouring chunks a side while it fits ``budget_tokens``, hits that touch merged."""
    sources: list[_Source] = []
    for node in ranked:
        key, index = _key(node), _index(node)
        if key is None or index is None:
            if len(sources) < top_k:  # a hit without a position stays as it is
                sources.append(_Source(node, ("", node.node.node_id), 0, -1))
            continue
        section = _section(node.node.metadata)
        into = next((s for s in sources if s.touches(key, index, section)), None)
        if into is not None:  # ranked lower than a hit it adjoins: one source
            into.low, into.high = min(into.low, index), max(into.high, index)
            into.chunks.setdefault(index, _entity(node))
        elif len(sources) < top_k:
            sources.append(_Source(node, key, index, index, {index: _entity(node)}))
    # a document of one chunk has no neighbours to ask Milvus for
    wanted = {s.key: s.neighbourhood(window) for s in sources if s.chunks and s.chunk_count != 1}
    found = await store.chunks_at(collection, wanted, expr) if wanted else []
    by_key: dict[Key, dict[int, dict[str, Any]]] = {}
    for row in found:
        key = (str(row[schema.DOC_ID]), str(row[schema.CONTENT_HASH]))
        by_key.setdefault(key, {})[int(row[schema.CHUNK_INDEX])] = row
    built, claimed = [], Claimed()
    for source in sources:
        if source.chunks and claimed.holds(source.key, source.hit_index):
            continue  # a better source grew over this hit: its text is there already
        neighbours = by_key.get(source.key, {})
        grown = _grown(source, neighbours, claimed, budget_tokens, count_tokens, window)
        built.append(grown)
    return built


class Claimed:
    """The chunks already in a source, per document version: no chunk is quoted twice."""

    def __init__(self) -> None:
        self._indexes: dict[Key, set[int]] = {}

    def holds(self, key: Key, index: int) -> bool:
        return index in self._indexes.get(key, set())

    def add(self, key: Key, indexes: Sequence[int]) -> None:
        self._indexes.setdefault(key, set()).update(indexes)


def _grown(
    source: _Source,
    neighbours: Mapping[int, dict[str, Any]],
    claimed: Claimed,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    window: int,
) -> NodeWithScore:
    """``source``'s hit (and the hits merged into it) with the neighbours that fit."""
    if not source.chunks:
        return source.hit
    rows = {
        i: source.chunks.get(i) or neighbours.get(i) for i in range(source.low, source.high + 1)
    }
    chunks = {
        i: row for i, row in rows.items() if row is not None and not claimed.holds(source.key, i)
    }
    low = high = source.hit_index
    if not _contiguous(chunks, source.low, source.high):
        chunks = {low: source.chunks[low]}  # a gap in the merged hits: the best one alone
    else:
        low, high = source.low, source.high
    section = _section(source.hit.node.metadata)
    after = [high + step for step in range(1, window + 1)]
    before = [low - step for step in range(1, window + 1)]
    for index in _alternating(after, before):
        row = neighbours.get(index)
        if row is None or index not in (high + 1, low - 1) or claimed.holds(source.key, index):
            continue  # missing, past a gap on this side, or quoted by a better source
        if _section(row.get(schema.METADATA) or {}) != section:
            continue
        trial = {**chunks, index: row}
        if count_tokens(_joined([trial[i] for i in sorted(trial)])) > budget_tokens:
            continue
        chunks, low, high = trial, min(low, index), max(high, index)
    claimed.add(source.key, sorted(chunks))
    return _node(source.hit, [chunks[i] for i in sorted(chunks)])


def _alternating(after: list[int], before: list[int]) -> list[int]:
    order: list[int] = []
    for pair in zip(after, before, strict=True):
        order += pair
    return order


def _contiguous(chunks: Mapping[int, Any], low: int, high: int) -> bool:
    return all(i in chunks for i in range(low, high + 1))


def _node(hit: NodeWithScore, rows: list[dict[str, Any]]) -> NodeWithScore:
    """``hit`` with the text and span of ``rows`` (consecutive chunks of its document)."""
    if len(rows) == 1 and rows[0].get(schema.CHUNK_ID) == hit.node.node_id:
        return hit
    metadata = dict(hit.node.metadata)
    spans = [_span(row) for row in rows]
    if all(span is not None for span in spans):
        metadata["char_start"] = min(span[0] for span in spans if span is not None)
        metadata["char_end"] = max(span[1] for span in spans if span is not None)
    metadata["chunk_indexes"] = [int(row[schema.CHUNK_INDEX]) for row in rows]
    node = TextNode(id_=hit.node.node_id, text=_joined(rows), metadata=metadata)
    return NodeWithScore(node=node, score=hit.score)


def _joined(rows: Sequence[dict[str, Any]]) -> str:
    """The chunks' text in document order, each overlap with the previous chunk said once.

    Between two chunks that do not overlap lies only the whitespace the chunker trimmed (within
    one section no heading is left out): it is written as that many newlines, the paragraph and
    line breaks it almost always is, so the text stays ``document[char_start:char_end]``."""
    text, end = "", None
    for row in rows:
        chunk = str(row.get(schema.TEXT) or "")
        span = _span(row)
        if end is not None and span is not None:
            chunk = chunk[end - span[0] :] if span[0] < end else "\n" * (span[0] - end) + chunk
        elif text:
            chunk = "\n" + chunk
        text += chunk
        end = max(end or 0, span[1]) if span is not None else None
    return text


def _span(row: Mapping[str, Any]) -> tuple[int, int] | None:
    metadata = row.get(schema.METADATA) or {}
    start, end = metadata.get("char_start"), metadata.get("char_end")
    return (int(start), int(end)) if isinstance(start, int) and isinstance(end, int) else None


def _entity(node: NodeWithScore) -> dict[str, Any]:
    """A ranked hit as the row :meth:`ChunksAt.chunks_at` would return for it."""
    metadata = node.node.metadata
    return {
        schema.CHUNK_ID: node.node.node_id,
        schema.DOC_ID: metadata.get("doc_id"),
        schema.CONTENT_HASH: metadata.get("content_hash"),
        schema.CHUNK_INDEX: metadata.get("chunk_index"),
        schema.TEXT: node.node.get_content(),
        schema.METADATA: {k: metadata.get(k) for k in schema.METADATA_KEYS},
    }


def _key(node: NodeWithScore) -> Key | None:
    metadata = node.node.metadata
    doc_id, content = metadata.get("doc_id"), metadata.get("content_hash")
    return (str(doc_id), str(content)) if doc_id and content else None


def _index(node: NodeWithScore) -> int | None:
    index = node.node.metadata.get("chunk_index")
    return index if isinstance(index, int) else None


def _section(metadata: Mapping[str, Any]) -> str:
    return str(metadata.get("section") or "")

"""Parent-section context: sources grown with their neighbouring chunks, on a hand-made store."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from llama_index.core.schema import NodeWithScore, TextNode

from indexing import schema
from query_engine.parent_context import with_parent_context

# one document cut in overlapping chunks, as the chunker does: each chunk repeats the last
# words of the one before it (the overlap), and its metadata holds its span in the document
PAPER = (
    "Methods. We enrolled 120 patients. "
    "Results. The mean incubation was 5.2 days. "
    "Most cases were mild. "
    "Discussion. Masks reduced spread."
)
CUTS = [(0, 35), (25, 78), (68, 100), (94, 133)]  # chunk i = PAPER[start:end], overlapping
SECTIONS = ["Methods", "Results", "Results", "Discussion"]


def row(doc: str, index: int, version: str = "v1", section: str | None = None) -> dict[str, Any]:
    start, end = CUTS[index]
    metadata = {"section": SECTIONS[index] if section is None else section}
    return {
        schema.CHUNK_ID: f"{doc}-{version}-{index}",
        schema.DOC_ID: doc,
        schema.CONTENT_HASH: version,
        schema.CHUNK_INDEX: index,
        schema.TEXT: PAPER[start:end],
        schema.METADATA: {**metadata, "char_start": start, "char_end": end},
    }


class Store:
    """What Milvus would answer: the rows of the wanted generations at the wanted indexes."""

    def __init__(self, rows: Sequence[dict[str, Any]]) -> None:
        self.rows = list(rows)
        self.asked: list[Mapping[tuple[str, str], Sequence[int]]] = []

    async def chunks_at(
        self, collection: str, wanted: Mapping[tuple[str, str], Sequence[int]], expr: str = ""
    ) -> list[dict[str, Any]]:
        self.asked.append(wanted)
        return [
            r
            for r in self.rows
            if r[schema.CHUNK_INDEX] in wanted.get((r[schema.DOC_ID], r[schema.CONTENT_HASH]), ())
        ]


def hit(entity: dict[str, Any], score: float) -> NodeWithScore:
    metadata = {**entity[schema.METADATA], "doc_id": entity[schema.DOC_ID],
                "content_hash": entity[schema.CONTENT_HASH],
                "chunk_index": entity[schema.CHUNK_INDEX]}  # fmt: skip
    node = TextNode(id_=entity[schema.CHUNK_ID], text=entity[schema.TEXT], metadata=metadata)
    return NodeWithScore(node=node, score=score)


def grow(ranked: list[NodeWithScore], store: Store, budget: int, top_k: int = 4) -> list:
    return asyncio.run(
        with_parent_context(
            ranked, store, "c", top_k=top_k, budget_tokens=budget, count_tokens=len
        )  # tokens = characters, so budgets are easy to reason about
    )


ALL = [row("paper", i) for i in range(4)]


def test_a_hit_grows_with_its_section_and_says_the_overlap_once() -> None:
    [source] = grow([hit(ALL[1], 0.9)], Store(ALL), budget=200)
    # chunk 2 is of the same section (Results); chunks 0 and 3 are not
    assert source.node.get_content() == PAPER[25:100]
    assert source.node.metadata["char_start"] == 25 and source.node.metadata["char_end"] == 100
    assert source.node.metadata["chunk_indexes"] == [1, 2]
    assert source.node.node_id == "paper-v1-1" and source.score == 0.9


def test_the_budget_is_respected() -> None:
    [alone] = grow([hit(ALL[1], 0.9)], Store(ALL), budget=60)  # 53 characters, 75 with chunk 2
    assert alone.node.get_content() == PAPER[25:78]
    whole = [row("paper", i, section="") for i in range(4)]  # no sections: one running text
    [grown] = grow([hit(whole[1], 0.9)], Store(whole), budget=101)
    assert len(grown.node.get_content()) <= 101
    assert grown.node.get_content() == PAPER[0:100]  # after first (chunk 2), then before (0)


def test_touching_hits_merge_and_the_ranking_fills_the_freed_place() -> None:
    other = {**row("memo", 0), schema.TEXT: "Another document."}
    ranked = [hit(ALL[2], 0.9), hit(ALL[1], 0.8), hit(other, 0.7), hit(ALL[3], 0.1)]
    sources = grow(ranked, Store([*ALL, other]), budget=200, top_k=2)
    assert [s.node.node_id for s in sources] == ["paper-v1-2", "memo-v1-0"]
    # both Results chunks, once; chunk 3 touches them but is another section: not merged
    assert sources[0].node.get_content() == PAPER[25:100]
    assert sources[0].score == 0.9


def test_sources_never_cross_documents_or_versions() -> None:
    old = [row("paper", i, "v0", section="") for i in range(4)]
    new = [row("paper", i, "v1", section="") for i in range(4)]
    elsewhere = [row("other", i, section="") for i in range(4)]
    store = Store([*old, *elsewhere, *new])
    [source] = grow([hit(new[1], 0.9)], store, budget=500)
    assert source.node.metadata["chunk_indexes"] == [0, 1, 2, 3]
    assert store.asked == [{("paper", "v1"): range(0, 4)}]
    assert source.node.get_content() == PAPER  # the v1 chunks only, each overlap once


def test_a_chunk_already_quoted_is_not_quoted_again() -> None:
    whole = [row("paper", i, section="") for i in range(4)]
    first, second = grow([hit(whole[1], 0.9), hit(whole[3], 0.5)], Store(whole), budget=80)
    assert first.node.metadata["chunk_indexes"] == [1, 2]  # grew over chunk 2 first
    assert second.node.get_content() == PAPER[94:133]  # chunk 2 is taken: chunk 3 alone
    assert PAPER[78:94] not in second.node.get_content()


def test_hits_without_a_position_pass_unchanged() -> None:
    bare = NodeWithScore(node=TextNode(id_="x", text="no metadata"), score=0.3)
    store = Store(ALL)
    assert grow([bare], store, budget=200) == [bare]
    assert store.asked == []


def test_a_document_of_one_chunk_asks_the_store_nothing() -> None:
    paragraph = {**row("note", 0), schema.CHUNK_INDEX: 0}
    single = hit(paragraph, 0.8)
    single.node.metadata["chunk_count"] = 1
    store = Store([paragraph])
    assert grow([single], store, budget=200) == [single]
    assert store.asked == []
    last = hit(ALL[3], 0.7)
    last.node.metadata["chunk_count"] = 4  # the last chunk: no index past it is asked for
    grow([last], store, budget=200)
    assert store.asked == [{("paper", "v1"): range(1, 4)}]

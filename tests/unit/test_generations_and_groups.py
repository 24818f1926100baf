"""Pure parts of the write side's replacement logic: which document generation readers keep
(indexing.generations) and how the pipeline groups documents (indexing.pipeline)."""

from __future__ import annotations

import pytest

from docqa_core.errors import InvalidRequest
from indexing import schema
from indexing.generations import choose_generations, generations_of, one_generation_per_document
from indexing.pipeline import MAX_METADATA_BYTES, SourceDocument, document_groups, validate_document
from indexing.store import Hit


def hit(chunk_id: str, doc_id: str, generation: str) -> Hit:
    return Hit(chunk_id, 1.0, {schema.DOC_ID: doc_id, schema.CONTENT_HASH: generation})


OLD_A, NEW_A = hit("a-old", "a", "old"), hit("a-new", "a", "new")
OLD_A2 = hit("a-old-2", "a", "old")
B = hit("b", "b", "only")


def test_the_current_generation_wins_when_it_is_among_the_hits() -> None:
    dense, sparse = one_generation_per_document([[OLD_A, NEW_A, B], [OLD_A2]], {"a": "new"})
    assert dense == [NEW_A, B] and sparse == []


def test_without_a_current_generation_the_best_ranked_hit_decides() -> None:
    dense, sparse = one_generation_per_document([[B, NEW_A], [OLD_A, OLD_A2]], {})
    # OLD_A is rank 0 in the sparse list, NEW_A rank 1 in the dense one
    assert dense == [B] and sparse == [OLD_A, OLD_A2]


def test_a_tie_in_rank_goes_to_the_earlier_list() -> None:
    assert choose_generations([[NEW_A], [OLD_A]], {}) == {"a": "new"}


def test_a_current_generation_missing_from_the_hits_never_drops_the_document() -> None:
    # the search ran before the new chunks were visible, the generation was read after
    (dense,) = one_generation_per_document([[OLD_A, OLD_A2, B]], {"a": "new", "b": "other"})
    assert dense == [OLD_A, OLD_A2, B]


def test_every_document_keeps_exactly_one_generation() -> None:
    ranked = [[OLD_A, B, NEW_A], [NEW_A, OLD_A2]]
    for current in ({}, {"a": "old"}, {"a": "new"}, {"a": "gone"}):
        kept = one_generation_per_document(ranked, current)
        found = generations_of([h for hits in kept for h in hits])
        assert {doc: len(gens) for doc, gens in found.items()} == {"a": 1, "b": 1}


def test_no_hits_no_generations() -> None:
    assert one_generation_per_document([[], []], {"a": "new"}) == ([], [])


def doc(doc_id: str, chars: int = 10) -> SourceDocument:
    return SourceDocument(doc_id, "x" * chars)


def ids(groups: list[list[SourceDocument]]) -> list[list[str]]:
    return [[d.doc_id for d in group] for group in groups]


def test_groups_are_bounded_by_count() -> None:
    groups = list(document_groups([doc(str(i)) for i in range(5)], 2, 10_000))
    assert ids(groups) == [["0", "1"], ["2", "3"], ["4"]]


def test_groups_are_bounded_by_characters_and_a_large_document_goes_alone() -> None:
    documents = [doc("a", 40), doc("b", 40), doc("big", 500), doc("c", 10)]
    assert ids(list(document_groups(documents, 10, 100))) == [["a", "b"], ["big"], ["c"]]


def test_a_repeated_doc_id_starts_a_new_group() -> None:
    documents = [doc("a"), doc("b"), doc("a"), doc("c")]
    assert ids(list(document_groups(documents, 10, 10_000))) == [["a", "b"], ["a", "c"]]


def test_no_documents_no_groups() -> None:
    assert list(document_groups([], 10, 100)) == []


def test_oversized_metadata_fails_the_document() -> None:
    big = SourceDocument("d", "text", metadata={"blob": "x" * MAX_METADATA_BYTES})
    with pytest.raises(InvalidRequest, match="metadata"):
        validate_document(big)
    validate_document(SourceDocument("d", "text", metadata={"blob": "x" * 1000}))

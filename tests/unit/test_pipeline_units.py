"""Unit tests for the pure helpers of the write side: indexing.pipeline, indexing.schema,
indexing.jobs.final_state and indexing.loaders."""

from __future__ import annotations

from typing import Any

import pytest

from docqa_core.errors import InvalidRequest, UnsupportedMediaType
from indexing import schema
from indexing.chunking import Chunk
from indexing.jobs import final_state
from indexing.loaders import decode_text, doc_id_for_file, load_file
from indexing.pipeline import (
    DocumentOutcome,
    Outcome,
    SourceDocument,
    chunk_metadata,
    is_complete_copy,
    validate_document,
)
from indexing.store import StoredChunk

DIGEST = "a" * 64
OTHER_DIGEST = "b" * 64


def stored(index: int, count: int, digest: str = DIGEST) -> StoredChunk:
    return StoredChunk(
        chunk_id=f"c{index}", content_hash=digest, chunk_index=index, chunk_count=count
    )


# --------------------------------------------------------------------------- is_complete_copy


def test_complete_copy() -> None:
    assert is_complete_copy([stored(0, 3), stored(1, 3), stored(2, 3)], DIGEST)


def test_complete_copy_in_any_order() -> None:
    assert is_complete_copy([stored(2, 3), stored(0, 3), stored(1, 3)], DIGEST)


def test_single_chunk_document() -> None:
    assert is_complete_copy([stored(0, 1)], DIGEST)


def test_nothing_stored_is_not_a_copy() -> None:
    assert not is_complete_copy([], DIGEST)


def test_missing_chunk_is_not_complete() -> None:
    # a crash after writing two of three chunks
    assert not is_complete_copy([stored(0, 3), stored(2, 3)], DIGEST)


def test_extra_chunk_is_not_complete() -> None:
    assert not is_complete_copy([stored(0, 2), stored(1, 2), stored(2, 2)], DIGEST)


def test_duplicate_index_is_not_complete() -> None:
    assert not is_complete_copy([stored(0, 2), stored(0, 2)], DIGEST)


def test_other_content_is_not_a_copy() -> None:
    assert not is_complete_copy([stored(0, 2), stored(1, 2)], OTHER_DIGEST)


def test_mixed_hashes_are_not_a_copy() -> None:
    # new chunks written, old ones not yet deleted: half-replaced
    assert not is_complete_copy([stored(0, 2), stored(1, 2, OTHER_DIGEST)], DIGEST)


# --------------------------------------------------------------------------- chunk_metadata


def chunk(text: str = "body", **overrides: Any) -> Chunk:
    fields: dict[str, Any] = {
        "text": text,
        "char_start": 10,
        "char_end": 10 + len(text),
        "section": "제1장 > 제2조",
        "page": 4,
    }
    fields.update(overrides)
    return Chunk(**fields)


def test_chunk_metadata_holds_the_reserved_keys() -> None:
    document = SourceDocument(doc_id="d", text="x", title="Rules", source="rules.txt")

    assert chunk_metadata(document, chunk()) == {
        "title": "Rules",
        "source": "rules.txt",
        "page": 4,
        "section": "제1장 > 제2조",
        "char_start": 10,
        "char_end": 14,
    }
    assert set(chunk_metadata(document, chunk())) == set(schema.METADATA_KEYS)


def test_reserved_keys_win_over_user_metadata() -> None:
    user = {"title": "forged", "page": 999, "char_start": -1, "department": "HR", "year": 2024}
    document = SourceDocument(doc_id="d", text="x", title="Real", source="s", metadata=user)

    metadata = chunk_metadata(document, chunk())

    assert metadata["title"] == "Real"
    assert metadata["page"] == 4
    assert metadata["char_start"] == 10
    assert metadata["department"] == "HR"
    assert metadata["year"] == 2024


def test_chunk_metadata_does_not_change_the_document() -> None:
    user = {"title": "forged"}
    document = SourceDocument(doc_id="d", text="x", title="Real", metadata=user)

    chunk_metadata(document, chunk())

    assert user == {"title": "forged"}


def test_page_is_none_without_page_starts() -> None:
    document = SourceDocument(doc_id="d", text="x")

    assert chunk_metadata(document, chunk(page=None))["page"] is None


# --------------------------------------------------------------------------- validate_document


@pytest.mark.parametrize("doc_id", ["a", "x" * schema.MAX_DOC_ID_CHARS, "문서-1.txt"])
def test_valid_documents_pass(doc_id: str) -> None:
    validate_document(SourceDocument(doc_id=doc_id, text="some text"))


@pytest.mark.parametrize("doc_id", ["", "x" * (schema.MAX_DOC_ID_CHARS + 1)])
def test_doc_id_length_is_checked(doc_id: str) -> None:
    with pytest.raises(InvalidRequest, match="doc_id must be 1 to 256 characters"):
        validate_document(SourceDocument(doc_id=doc_id, text="some text"))


@pytest.mark.parametrize("text", ["", "   ", "\n\t \u3000\n"])
def test_blank_text_is_rejected(text: str) -> None:
    with pytest.raises(InvalidRequest, match="no text to index"):
        validate_document(SourceDocument(doc_id="d", text=text))


# --------------------------------------------------------------------------- schema: chunk ids


def test_chunk_id_is_stable() -> None:
    first = schema.chunk_id("doc-1", 3, "제12조 본문")

    assert first == schema.chunk_id("doc-1", 3, "제12조 본문")
    assert len(first) == 32
    int(first, 16)


@pytest.mark.parametrize(
    ("doc_id", "index", "text"),
    [("doc-2", 3, "text"), ("doc-1", 4, "text"), ("doc-1", 3, "text."), ("doc-13", 3, "text")],
    ids=["doc", "index", "text", "doc-id-prefix"],
)
def test_chunk_id_changes_with_each_part(doc_id: str, index: int, text: str) -> None:
    assert schema.chunk_id(doc_id, index, text) != schema.chunk_id("doc-1", 3, "text")


def test_chunk_id_parts_do_not_run_into_each_other() -> None:
    # without separators, ("doc-1", 12, "x") and ("doc-11", 2, "x") would hash the same bytes
    assert schema.chunk_id("doc-1", 12, "x") != schema.chunk_id("doc-11", 2, "x")
    assert schema.chunk_id("d", 1, "2x") != schema.chunk_id("d", 12, "x")


# --------------------------------------------------------------------------- schema: content hash


def test_content_hash_is_stable_and_sha256_sized() -> None:
    assert schema.content_hash("text", {"a": 1}) == schema.content_hash("text", {"a": 1})
    assert len(schema.content_hash("text")) == 64


def test_content_hash_changes_with_text() -> None:
    assert schema.content_hash("text") != schema.content_hash("text ")


def test_content_hash_changes_with_metadata() -> None:
    base = schema.content_hash("text", {"title": "A"})

    assert schema.content_hash("text", {"title": "B"}) != base
    assert schema.content_hash("text", {"title": "A", "page": 1}) != base
    assert schema.content_hash("text", {"name": "A"}) != base
    assert schema.content_hash("text") != base


def test_content_hash_tells_value_types_apart() -> None:
    assert schema.content_hash("t", {"page": 1}) != schema.content_hash("t", {"page": "1"})


def test_content_hash_ignores_metadata_order() -> None:
    assert schema.content_hash("t", {"a": 1, "b": 2}) == schema.content_hash("t", {"b": 2, "a": 1})


def test_content_hash_with_empty_metadata_equals_none() -> None:
    assert schema.content_hash("t", {}) == schema.content_hash("t")


# --------------------------------------------------------------------------- schema: names


@pytest.mark.parametrize("name", ["a", "kb", "Rules_2024", "x" * schema.MAX_COLLECTION_NAME])
def test_valid_collection_names(name: str) -> None:
    assert schema.validate_collection_name(name) == name
    assert schema.milvus_collection_name(name) == f"kb_{name}"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1abc",
        "_abc",
        "has space",
        "has-dash",
        "a.b",
        "규정",
        "x" * (schema.MAX_COLLECTION_NAME + 1),
        "a/b",
    ],
)
def test_invalid_collection_names(name: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        schema.validate_collection_name(name)

    assert caught.value.detail == {"collection": name}


def test_milvus_collection_name_validates_too() -> None:
    with pytest.raises(InvalidRequest):
        schema.milvus_collection_name("bad name")


def test_collection_name_with_trailing_newline_is_invalid() -> None:
    with pytest.raises(InvalidRequest):
        schema.validate_collection_name("kb\n")


# --------------------------------------------------------------------------- jobs.final_state


def outcome(kind: Outcome) -> DocumentOutcome:
    return DocumentOutcome(doc_id=f"doc-{kind}", outcome=kind)


@pytest.mark.parametrize(
    ("kinds", "state"),
    [
        (["indexed"], "succeeded"),
        (["indexed", "unchanged"], "succeeded"),
        (["unchanged", "unchanged"], "succeeded"),
        (["indexed", "failed"], "partial"),
        (["unchanged", "failed", "failed"], "partial"),
        (["failed"], "failed"),
        (["failed", "failed"], "failed"),
        ([], "succeeded"),
    ],
)
def test_final_state(kinds: list[Outcome], state: str) -> None:
    assert final_state([outcome(k) for k in kinds]) == state


# --------------------------------------------------------------------------- loaders.decode_text


def test_decode_utf8() -> None:
    assert decode_text("제12조 rules".encode()) == "제12조 rules"


def test_decode_strips_a_utf8_bom() -> None:
    assert decode_text(b"\xef\xbb\xbf" + "한글".encode()) == "한글"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_decode_utf16_and_utf32_with_a_bom(encoding: str) -> None:
    assert decode_text("한글 text".encode(encoding)) == "한글 text"


def test_decode_cp949_korean() -> None:
    text = "출장여비규정 제1조(목적) 이 규정은 출장 여비에 관하여 정한다."

    assert decode_text(text.encode("cp949")) == text


def test_decode_a_declared_charset_before_cp949() -> None:
    text = "Ünïcödé façade"

    assert decode_text(text.encode("latin-1"), "latin-1") == text


def test_decode_ignores_an_unknown_declared_charset() -> None:
    assert decode_text("한글".encode("cp949"), "no-such-charset") == "한글"


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfd\xfc\xfb", b"abc\xffdef", b"\x80\x80\x80"],
    ids=["invalid-bytes", "stray-ff", "lone-continuation-bytes"],
)
def test_undecodable_bytes_are_invalid_request(data: bytes) -> None:
    with pytest.raises(InvalidRequest, match="not UTF-8"):
        decode_text(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00",
        "text".encode("utf-16-le"),  # no BOM: every other byte is NUL
    ],
    ids=["png", "zip", "utf-16-without-bom"],
)
def test_binary_data_is_invalid_request(data: bytes) -> None:
    with pytest.raises(InvalidRequest, match="NUL bytes"):
        decode_text(data)


def test_a_bom_that_lies_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="BOM"):
        decode_text(b"\xef\xbb\xbf\xff\xfe")


# --------------------------------------------------------------------------- loaders.load_file


def test_markdown_file_is_markdown_kind() -> None:
    data = b"# Install guide\n\n## Linux\nRun the script.\n"

    document = load_file("docs/guide.md", "text/markdown", data)

    assert document.kind == "markdown"
    assert document.title == "Install guide"
    assert document.doc_id == "guide.md"
    assert document.source == "guide.md"
    assert document.text == data.decode()


@pytest.mark.parametrize("filename", ["notes.markdown", "NOTES.MD"])
def test_markdown_extensions_in_any_case(filename: str) -> None:
    assert load_file(filename, "text/plain", b"# T\nbody").kind == "markdown"


def test_text_file_is_auto_kind_titled_by_its_first_line() -> None:
    data = "\n\n   출장여비규정   \n제1조(목적) ...\n".encode("cp949")

    document = load_file("uploads/출장여비규정.txt", "text/plain", data)

    assert document.kind == "auto"
    assert document.title == "출장여비규정"
    assert document.doc_id == "출장여비규정.txt"
    assert document.text.startswith("\n\n   출장여비규정")


def test_title_falls_back_to_the_file_name() -> None:
    assert load_file("dir/only-marks.md", "", b"#\n##\n").title == "only-marks"


def test_long_first_line_title_is_cut() -> None:
    assert len(load_file("a.txt", "text/plain", b"x" * 500).title) == 200


def test_explicit_doc_id_wins_over_the_file_name() -> None:
    assert load_file("a.txt", "text/plain", b"body", doc_id="policy-7").doc_id == "policy-7"


def test_a_file_without_text_is_invalid_request_naming_the_file() -> None:
    with pytest.raises(InvalidRequest, match=r"^blank\.txt: "):
        load_file("blank.txt", "text/plain", b"  \n\n ")


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "TEXT/PLAIN; charset=utf-8", "application/octet-stream", ""],
)
def test_accepted_content_types(content_type: str) -> None:
    assert load_file("a.txt", content_type, b"body").text == "body"


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("report.exe", "application/octet-stream"),  # unknown extension
        ("report.pdf", "text/plain"),  # known extension, content type of another format
        ("a.txt", "application/pdf"),
        ("a.txt", "image/png"),
        ("archive.tar.gz", "application/octet-stream"),
        ("README", "text/plain"),
        ("", "text/plain"),
    ],
)
def test_unsupported_files_are_415(filename: str, content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        load_file(filename, content_type, b"body")

    error = caught.value
    assert error.http_status == 415
    assert ".txt" in error.message and ".md" in error.message
    assert error.detail == {"filename": filename, "content_type": content_type}


def test_bad_encoding_in_a_supported_file_is_invalid_request_naming_the_file() -> None:
    with pytest.raises(InvalidRequest, match=r"^a\.txt: "):
        load_file("a.txt", "text/plain", b"\xff\xfd\xfc")


def test_doc_id_for_file_uses_the_base_name() -> None:
    assert doc_id_for_file("/uploads/2024/rules.txt", b"x") == "rules.txt"


def test_doc_id_for_a_nameless_file_is_a_content_hash() -> None:
    first = doc_id_for_file("dir/", b"same bytes")

    assert first == doc_id_for_file("", b"same bytes")
    assert first != doc_id_for_file("", b"other bytes")
    assert len(first) == 32


def test_doc_id_for_file_is_bounded() -> None:
    assert len(doc_id_for_file("x" * 400 + ".txt", b"")) == schema.MAX_DOC_ID_CHARS

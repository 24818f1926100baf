"""A source document as callers hand it to the ingestion pipeline: the checks it must pass, what of
it (besides its text) goes into its content hash, and the metadata each of its chunks carries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from docqa_core.errors import InvalidRequest
from indexing import schema
from indexing.chunking import Chunk, ChunkKind
from indexing.validity import EFFECTIVE_FROM, EFFECTIVE_TO, document_validity

MAX_METADATA_BYTES = 32 * 1024  # chunk metadata is a Milvus JSON field (64 KiB per row)


@dataclass(frozen=True)
class SourceDocument:
    doc_id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    kind: ChunkKind = "auto"
    page_starts: tuple[int, ...] | None = None


def validate_document(document: SourceDocument) -> None:
    if not document.doc_id or len(document.doc_id) > schema.MAX_DOC_ID_CHARS:
        raise InvalidRequest(f"doc_id must be 1 to {schema.MAX_DOC_ID_CHARS} characters")
    if not document.text.strip():
        raise InvalidRequest("the document has no text to index")
    encoded = len(json.dumps(document.metadata, ensure_ascii=False, default=str).encode())
    if encoded > MAX_METADATA_BYTES:
        raise InvalidRequest(
            f"the document's metadata is {encoded} bytes as JSON; the limit is {MAX_METADATA_BYTES}"
        )
    document_validity(document.metadata, document.text)  # bad dates fail here, not mid-write


def hash_inputs(document: SourceDocument) -> dict[str, Any]:
    """What, besides the text, changes the stored chunks (so a retitled doc is re-written)."""
    return {
        "title": document.title,
        "source": document.source,
        "kind": document.kind,
        "metadata": document.metadata,
    }


def chunk_metadata(document: SourceDocument, chunk: Chunk) -> dict[str, Any]:
    reserved = {
        "title": document.title,
        "source": document.source,
        "page": chunk.page,
        "section": chunk.section,
        "char_start": chunk.char_start,
        "char_end": chunk.char_end,
    }
    # dates normalized to ISO (or read from the text); a null date is left out, not stored
    stored = {
        k: v
        for k, v in document.metadata.items()
        if not (k in (EFFECTIVE_FROM, EFFECTIVE_TO) and v is None)
    }
    return {**stored, **document_validity(document.metadata, document.text), **reserved}

"""The document one uploaded file becomes: its doc id (the file name), title and source."""

from __future__ import annotations

import hashlib
import os

from indexing import schema
from indexing.chunking import ChunkKind
from indexing.source_documents import SourceDocument

_TITLE_CHARS = 200


def doc_id_for_file(filename: str, data: bytes) -> str:
    """Files uploaded without a doc id are identified by name, so a new version replaces the old."""
    name = os.path.basename(filename) or hashlib.sha256(data).hexdigest()[:32]
    return name[: schema.MAX_DOC_ID_CHARS]


def _file_document(
    filename: str,
    data: bytes,
    text: str,
    *,
    kind: ChunkKind,
    title: str = "",
    page_starts: tuple[int, ...] | None = None,
) -> SourceDocument:
    """One uploaded file as one document, identified and titled the same way for every format."""
    return SourceDocument(
        doc_id=doc_id_for_file(filename, data),
        text=text,
        title=title[:_TITLE_CHARS] or _title_from(text, filename),
        source=os.path.basename(filename),
        kind=kind,
        page_starts=page_starts,
    )


def _title_from(text: str, filename: str) -> str:
    for line in text.splitlines():
        stripped = line.strip().lstrip("#").strip()
        if stripped:
            return stripped[:_TITLE_CHARS]
    return os.path.splitext(os.path.basename(filename))[0]

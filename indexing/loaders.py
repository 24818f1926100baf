"""Uploaded files → :class:`SourceDocument`.

Text files are decoded as UTF-8 (with or without BOM), then as CP949, the legacy Korean encoding
many government and corporate files still use; anything else is rejected with a clear error.
"""

from __future__ import annotations

import hashlib
import os

from indexing.chunking import ChunkKind
from indexing.errors import InvalidRequest, UnsupportedMediaType
from indexing.pipeline import SourceDocument

TEXT_TYPES: dict[str, ChunkKind] = {".txt": "auto", ".md": "markdown", ".markdown": "markdown"}
TEXT_CONTENT_TYPES = {
    "text/plain",
    "text/markdown",
    "text/x-markdown",
    "application/octet-stream",
    "",
}
SUPPORTED_EXTENSIONS = tuple(TEXT_TYPES)


def decode_text(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for encoding in ("utf-8", "cp949"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidRequest("the file is not UTF-8 or CP949 text")


def doc_id_for_file(filename: str, data: bytes) -> str:
    """Files uploaded without a doc id are identified by name, so a new version replaces the old."""
    name = os.path.basename(filename) or hashlib.sha256(data).hexdigest()[:32]
    return name[:256]


def load_file(
    filename: str, content_type: str, data: bytes, *, doc_id: str | None = None
) -> SourceDocument:
    extension = os.path.splitext(filename.lower())[1]
    media = content_type.split(";")[0].strip().lower()
    if extension not in TEXT_TYPES or media not in TEXT_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"unsupported file {filename!r} ({media or 'no content type'}); "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}",
            detail={"filename": filename, "content_type": media},
        )
    text = decode_text(data)
    title = _title_from(text, filename)
    return SourceDocument(
        doc_id=doc_id or doc_id_for_file(filename, data),
        text=text,
        title=title,
        source=os.path.basename(filename),
        kind=TEXT_TYPES[extension],
    )


def _title_from(text: str, filename: str) -> str:
    for line in text.splitlines():
        stripped = line.strip().lstrip("#").strip()
        if stripped:
            return stripped[:200]
    return os.path.splitext(os.path.basename(filename))[0]

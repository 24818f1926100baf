"""Text uploads: ``.txt``, ``.md``/``.markdown`` and ``.html``/``.htm``."""

from __future__ import annotations

import re

from docqa_core.errors import InvalidRequest
from indexing.chunking import ChunkKind
from indexing.loaders.decoding import decode_text
from indexing.loaders.documents import _file_document
from indexing.loaders.html_markdown import html_to_markdown
from indexing.source_documents import SourceDocument


def _text_document(filename: str, data: bytes, text: str, kind: ChunkKind) -> SourceDocument:
    if not text.strip():
        raise InvalidRequest("the file holds no text")
    return _file_document(filename, data, text, kind=kind)


def _load_text(filename: str, data: bytes, charset: str | None) -> list[SourceDocument]:
    return [_text_document(filename, data, decode_text(data, charset), "auto")]


def _load_markdown(filename: str, data: bytes, charset: str | None) -> list[SourceDocument]:
    return [_text_document(filename, data, decode_text(data, charset), "markdown")]


_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", re.IGNORECASE)


def _load_html(filename: str, data: bytes, charset: str | None) -> list[SourceDocument]:
    if charset is None:
        match = _META_CHARSET.search(data[:4096])
        charset = match.group(1).decode("ascii") if match else None
    text, title = html_to_markdown(decode_text(data, charset))
    if not text.strip():
        raise InvalidRequest("the HTML page holds no visible text")
    return [_file_document(filename, data, text, kind="markdown", title=title)]

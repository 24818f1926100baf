"""Choosing the loader for an upload: by file extension, checked against the content type and
against what the bytes really are (``indexing.loaders.sniff``).

An ``.hwp`` upload is taken for HWPX when its bytes are HWPX (files get renamed); otherwise it is
an HWP 5 binary document, refused with a message that says how to convert it.

PDF, DOCX, HWPX and HTML are parsed in a child process under time and memory limits
(``indexing.loaders.isolated``): :func:`read_upload` returns them as a ``PendingUpload`` for the
job to parse; :func:`load_documents` (tests, tools) parses everything in this process.

Every problem with a file's content is an :class:`InvalidRequest` naming the file; an
unsupported type is an :class:`UnsupportedMediaType`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable

from docqa_core.errors import InvalidRequest, UnsupportedMediaType
from indexing.loaders.documents import doc_id_for_file
from indexing.loaders.docx import _load_docx
from indexing.loaders.hwpx import _load_hwpx
from indexing.loaders.isolated import (
    ISOLATED_FORMATS,
    ParseLimits,
    PendingUpload,
    parse_upload_sync,
)
from indexing.loaders.jsonl import _load_json, _load_jsonl
from indexing.loaders.pdf import _load_pdf
from indexing.loaders.sniff import HWP5_MESSAGE, check_content, sniff
from indexing.loaders.text import _load_html, _load_markdown, _load_text
from indexing.source_documents import SourceDocument

_FORMATS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".hwpx": "hwpx",
    ".hwp": "hwp",  # accepted only when the bytes are HWPX (see _format_of)
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_CONTENT_TYPES: dict[str, frozenset[str]] = {
    "text": frozenset({"text/plain"}),
    "markdown": frozenset({"text/markdown", "text/x-markdown", "text/plain"}),
    "html": frozenset({"text/html", "application/xhtml+xml"}),
    "pdf": frozenset({"application/pdf", "application/x-pdf"}),
    "docx": frozenset({"application/vnd.openxmlformats-officedocument.wordprocessingml.document"}),
    "hwpx": frozenset(
        {"application/hwp+zip", "application/vnd.hancom.hwpx", "application/haansofthwpx"}
    ),
    "hwp": frozenset(
        {
            "application/x-hwp",
            "application/vnd.hancom.hwp",
            "application/haansofthwp",
            "application/hwp+zip",
            "application/vnd.hancom.hwpx",
            "application/haansofthwpx",
        }
    ),
    "json": frozenset({"application/json", "text/json", "text/plain"}),
    "jsonl": frozenset(
        {
            "application/jsonl",
            "application/x-jsonlines",
            "application/jsonlines",
            "application/json-lines",
            "application/x-ndjson",
            "application/ndjson",
            "application/json",
            "text/jsonl",
            "text/plain",
        }
    ),
}
_GENERIC_CONTENT_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
# ".hwp" is read only when it is an HWPX in disguise, so it is not advertised
SUPPORTED_EXTENSIONS = tuple(extension for extension in _FORMATS if extension != ".hwp")


def load_documents(filename: str, content_type: str, data: bytes) -> list[SourceDocument]:
    """Parse one uploaded file into the documents it holds (several for JSON/JSONL), in this
    process and without limits: for trusted files. Uploads go through :func:`read_upload`."""
    fmt, charset = _format_of(filename, content_type, data)
    return _named(filename, lambda: _LOADERS[fmt](filename, data, charset))


def read_upload(
    filename: str, content_type: str, data: bytes
) -> list[SourceDocument] | PendingUpload:
    """Check an upload's type and content; parse text formats now (cheap), and return PDF, DOCX,
    HWPX and HTML as a ``PendingUpload`` to be parsed in a child process (``parse_upload``)."""
    fmt, charset = _format_of(filename, content_type, data)
    if fmt in ISOLATED_FORMATS:
        return PendingUpload(filename, fmt, data, charset, doc_id_for_file(filename, data))
    return _named(filename, lambda: _LOADERS[fmt](filename, data, charset))


def load_upload_isolated(
    filename: str, content_type: str, data: bytes, limits: ParseLimits
) -> list[SourceDocument]:
    """:func:`read_upload`, then the pending parse at once (blocking: call it from a thread)."""
    read = read_upload(filename, content_type, data)
    return parse_upload_sync(read, limits) if isinstance(read, PendingUpload) else read


def _format_of(filename: str, content_type: str, data: bytes) -> tuple[str, str | None]:
    extension = os.path.splitext(filename.lower())[1]
    media, charset = _parse_content_type(content_type)
    fmt = _FORMATS.get(extension)
    if fmt is None or (media not in _GENERIC_CONTENT_TYPES and media not in _CONTENT_TYPES[fmt]):
        raise UnsupportedMediaType(
            f"unsupported file {filename!r} ({media or 'no content type'}); "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)} "
            "sent with a matching content type or application/octet-stream",
            detail={"filename": filename, "content_type": media},
        )
    if fmt == "hwp":
        detected = sniff(data)
        if detected != "hwpx":
            raise UnsupportedMediaType(
                f"{filename}: {HWP5_MESSAGE}",
                detail={"filename": filename, "detected": detected, "expected": "hwpx"},
            )
        fmt = "hwpx"
    check_content(filename, fmt, data)
    return fmt, charset


def _named(filename: str, load: Callable[[], list[SourceDocument]]) -> list[SourceDocument]:
    try:
        return load()
    except InvalidRequest as exc:
        if filename not in exc.message:
            exc.message = f"{filename}: {exc.message}"
            exc.args = (exc.message,)
        raise


def load_file(
    filename: str, content_type: str, data: bytes, *, doc_id: str | None = None
) -> SourceDocument:
    """Parse a file that holds exactly one document (anything but a multi-record JSON file)."""
    documents = load_documents(filename, content_type, data)
    if len(documents) != 1:
        raise InvalidRequest(
            f"{filename}: expected one document, the file holds {len(documents)}",
            detail={"filename": filename, "documents": len(documents)},
        )
    document = documents[0]
    return dataclasses.replace(document, doc_id=doc_id) if doc_id else document


def _parse_content_type(content_type: str) -> tuple[str, str | None]:
    media, _, params = content_type.partition(";")
    match = re.search(r"charset\s*=\s*\"?([\w.:-]+)", params, re.IGNORECASE)
    return media.strip().lower(), match.group(1) if match else None


_LOADERS: dict[str, Callable[[str, bytes, str | None], list[SourceDocument]]] = {
    "text": _load_text,
    "markdown": _load_markdown,
    "html": _load_html,
    "pdf": _load_pdf,
    "docx": _load_docx,
    "hwpx": _load_hwpx,
    "json": _load_json,
    "jsonl": _load_jsonl,
}

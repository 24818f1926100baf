"""PDF uploads (pypdf): the text of each page, pages joined by a blank line.

The page starts are recorded, so chunks can cite their page.
"""

from __future__ import annotations

import io
from typing import Any

from docqa_core.errors import InvalidRequest
from indexing.loaders.documents import _TITLE_CHARS, _file_document
from indexing.source_documents import SourceDocument


def _load_pdf(
    filename: str, data: bytes, charset: str | None, *, max_pages: int | None = None
) -> list[SourceDocument]:
    try:
        from pypdf import PdfReader
    except ImportError as exc:  # pragma: no cover - pypdf is a dependency
        raise InvalidRequest("PDF support is not installed (pypdf)") from exc
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidRequest("the PDF is encrypted with a password; upload a decrypted copy")
        if max_pages is not None and len(reader.pages) > max_pages:
            raise InvalidRequest(
                f"the PDF has {len(reader.pages)} pages; at most {max_pages} are accepted"
            )
        pages = [_clean_pdf_text(page.extract_text() or "") for page in reader.pages]
        meta_title = _pdf_title(reader)
    except InvalidRequest:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        raise InvalidRequest(
            f"the PDF could not be read ({type(exc).__name__}: {exc}); "
            "it may be damaged or encrypted"
        ) from exc
    if not any(page.strip() for page in pages):
        raise InvalidRequest(
            "the PDF holds no extractable text (a scanned PDF needs OCR before upload)"
        )
    page_starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for page in pages:
        if parts:
            parts.append("\n\n")
            offset += 2
        page_starts.append(offset)
        parts.append(page)
        offset += len(page)
    text = "".join(parts)
    return [
        _file_document(
            filename, data, text, kind="auto", title=meta_title, page_starts=tuple(page_starts)
        )
    ]


def _clean_pdf_text(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip().replace("\x00", "")


def _pdf_title(reader: Any) -> str:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:
        return ""
    return title.strip()[:_TITLE_CHARS] if isinstance(title, str) else ""

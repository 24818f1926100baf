"""DOCX uploads (python-docx): paragraphs and table rows in document order.

Headings become markdown ``#`` lines, so the markdown chunker keeps the heading path.
"""

from __future__ import annotations

import io
import re
from typing import Any

from docqa_core.errors import InvalidRequest
from indexing.chunking import ChunkKind
from indexing.loaders.documents import _file_document
from indexing.source_documents import SourceDocument

_DOCX_HEADING = re.compile(r"heading\s*(\d)", re.IGNORECASE)


def _load_docx(filename: str, data: bytes, charset: str | None) -> list[SourceDocument]:
    try:
        import docx
        from docx.table import Table
    except ImportError as exc:  # pragma: no cover - python-docx is a dependency
        raise InvalidRequest("DOCX support is not installed (python-docx)") from exc
    blocks: list[str] = []
    has_headings = False
    try:
        document = docx.Document(io.BytesIO(data))
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                rows = _docx_table_rows(item)
                if rows:
                    blocks.append("\n".join(rows))
                continue
            text = " ".join(item.text.split())
            if not text:
                continue
            level = _docx_heading_level(item.style.name if item.style is not None else "")
            if level:
                has_headings = True
                blocks.append(f"{'#' * level} {text}")
            else:
                blocks.append(text)
        core_title = (document.core_properties.title or "").strip()
    except Exception as exc:  # python-docx/zipfile/lxml raise many types on damaged files
        raise InvalidRequest(
            f"the DOCX could not be read ({type(exc).__name__}: {exc}); it may be damaged"
        ) from exc
    text = "\n\n".join(blocks)
    if not text.strip():
        raise InvalidRequest("the DOCX holds no text")
    kind: ChunkKind = "markdown" if has_headings else "auto"
    return [_file_document(filename, data, text, kind=kind, title=core_title)]


def _docx_heading_level(style_name: str) -> int:
    if style_name.strip().lower() == "title":
        return 1
    match = _DOCX_HEADING.fullmatch(style_name.strip())
    return min(int(match.group(1)), 6) if match and int(match.group(1)) > 0 else 0


def _docx_table_rows(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            value = " ".join(cell.text.split())
            if value and (not cells or cells[-1] != value):  # merged cells repeat their text
                cells.append(value)
        if cells:
            rows.append(" | ".join(cells))
    return rows

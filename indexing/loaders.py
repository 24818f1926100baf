"""Uploaded files → :class:`SourceDocument`.

Supported formats, chosen by file extension (the content type must agree, or be generic):

- ``.txt``, ``.md``/``.markdown``: text, decoded as described in :func:`decode_text`.
- ``.html``/``.htm``: scripts, styles and navigation dropped; headings become markdown ``#``
  lines and blocks are separated by blank lines, so the markdown chunker keeps the heading path.
- ``.pdf`` (pypdf): the text of each page, pages joined by a blank line, page starts recorded.
- ``.docx`` (python-docx): paragraphs and table rows in document order; headings become
  markdown ``#`` lines.
- ``.json``: a list of records, ``{"documents": [...]}``, or one record; ``.jsonl``: one record
  a line. A record is ``{"doc_id", "text", "title"?, "source"?, "metadata"?, "kind"?}``.

Text is decoded as UTF-8 (with or without BOM), UTF-16/UTF-32 with a BOM, a charset the upload
or the HTML declares, then CP949 (a superset of EUC-KR), the legacy Korean encoding many
government and corporate files still use; anything else is rejected with a clear error.

Every problem with a file's content is an :class:`InvalidRequest` naming the file; an
unsupported type is an :class:`UnsupportedMediaType`. Parser libraries' own exceptions never
escape.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, get_args

from docqa_core.errors import InvalidRequest, UnsupportedMediaType
from indexing import schema
from indexing.chunking import ChunkKind
from indexing.pipeline import SourceDocument

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "decode_text",
    "doc_id_for_file",
    "html_to_markdown",
    "load_documents",
    "load_file",
]

_FORMATS: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
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
SUPPORTED_EXTENSIONS = tuple(_FORMATS)
_CHUNK_KINDS: tuple[str, ...] = get_args(ChunkKind)
_TITLE_CHARS = 200


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_documents(filename: str, content_type: str, data: bytes) -> list[SourceDocument]:
    """Parse one uploaded file into the documents it holds (several for JSON/JSONL)."""
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
    try:
        return _LOADERS[fmt](filename, data, charset)
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


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode text: BOM first, then UTF-8, then a declared charset, then CP949."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise InvalidRequest(f"the file starts with a {encoding} BOM but is not") from exc
    candidates = ["utf-8"]
    if declared:
        with contextlib.suppress(LookupError):
            candidates.append(codecs.lookup(declared).name)
    candidates.append("cp949")
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if "\x00" in text:
            raise InvalidRequest("the file holds NUL bytes: binary data or UTF-16 without a BOM")
        return text
    raise InvalidRequest("the file is not UTF-8, UTF-16 (with BOM) or CP949/EUC-KR text")


def doc_id_for_file(filename: str, data: bytes) -> str:
    """Files uploaded without a doc id are identified by name, so a new version replaces the old."""
    name = os.path.basename(filename) or hashlib.sha256(data).hexdigest()[:32]
    return name[: schema.MAX_DOC_ID_CHARS]


def html_to_markdown(html: str) -> tuple[str, str]:
    """Return ``(text, title)``: the visible text of an HTML page with markdown headings."""
    parser = _HtmlToMarkdown()
    try:
        parser.feed(html)
        parser.close()
    except Exception as exc:  # html.parser is lenient; this is belt and braces
        raise InvalidRequest(f"the HTML could not be parsed: {exc}") from exc
    return parser.result()


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _parse_content_type(content_type: str) -> tuple[str, str | None]:
    media, _, params = content_type.partition(";")
    match = re.search(r"charset\s*=\s*\"?([\w.:-]+)", params, re.IGNORECASE)
    return media.strip().lower(), match.group(1) if match else None


def _text_document(filename: str, data: bytes, text: str, kind: ChunkKind) -> SourceDocument:
    if not text.strip():
        raise InvalidRequest("the file holds no text")
    return _file_document(filename, data, text, kind=kind)


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


def _load_pdf(filename: str, data: bytes, charset: str | None) -> list[SourceDocument]:
    try:
        from pypdf import PdfReader
    except ImportError as exc:  # pragma: no cover - pypdf is a dependency
        raise InvalidRequest("PDF support is not installed (pypdf)") from exc
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidRequest("the PDF is encrypted with a password; upload a decrypted copy")
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


def _load_json(filename: str, data: bytes, charset: str | None) -> list[SourceDocument]:
    try:
        payload = json.loads(decode_text(data, charset))
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    if isinstance(payload, dict) and "documents" in payload:
        records = payload["documents"]
    elif isinstance(payload, dict):
        records = [payload]
    else:
        records = payload
    if not isinstance(records, list):
        raise InvalidRequest('expected a list of records or {"documents": [...]}')
    if not records:
        raise InvalidRequest("the file holds no records")
    return [
        _record_document(record, filename, f"record {index}")
        for index, record in enumerate(records)
    ]


def _load_jsonl(filename: str, data: bytes, charset: str | None) -> list[SourceDocument]:
    documents = []
    for number, line in enumerate(decode_text(data, charset).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"line {number}: not valid JSON ({exc.msg}, column {exc.colno})",
                detail={"line": number},
            ) from exc
        documents.append(_record_document(record, filename, f"line {number}"))
    if not documents:
        raise InvalidRequest("the file holds no records")
    return documents


def _record_document(record: Any, filename: str, where: str) -> SourceDocument:
    def bad(message: str) -> InvalidRequest:
        return InvalidRequest(f"{where}: {message}", detail={"where": where})

    if not isinstance(record, dict):
        raise bad("a record must be a JSON object")
    doc_id = record.get("doc_id")
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise bad("doc_id must be a non-empty string")
    if len(doc_id) > schema.MAX_DOC_ID_CHARS:
        raise bad(f"doc_id is longer than {schema.MAX_DOC_ID_CHARS} characters")
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise bad("text must be a non-empty string")
    title = record.get("title", "")
    source = record.get("source", os.path.basename(filename))
    metadata = record.get("metadata", {})
    kind = record.get("kind", "auto")
    if not isinstance(title, str) or not isinstance(source, str):
        raise bad("title and source must be strings")
    if not isinstance(metadata, dict):
        raise bad("metadata must be an object")
    if kind not in _CHUNK_KINDS:
        raise bad(f"kind must be one of {', '.join(_CHUNK_KINDS)}")
    unknown = set(record) - {"doc_id", "text", "title", "source", "metadata", "kind"}
    if unknown:
        raise bad(f"unknown fields: {', '.join(sorted(unknown))}")
    return SourceDocument(
        doc_id=doc_id,
        text=text,
        title=title[:1000],
        source=source[:2000],
        metadata=metadata,
        kind=kind,
    )


_LOADERS: dict[str, Callable[[str, bytes, str | None], list[SourceDocument]]] = {
    "text": _load_text,
    "markdown": _load_markdown,
    "html": _load_html,
    "pdf": _load_pdf,
    "docx": _load_docx,
    "json": _load_json,
    "jsonl": _load_jsonl,
}


def _title_from(text: str, filename: str) -> str:
    for line in text.splitlines():
        stripped = line.strip().lstrip("#").strip()
        if stripped:
            return stripped[:_TITLE_CHARS]
    return os.path.splitext(os.path.basename(filename))[0]


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_SKIP_TAGS = frozenset(
    {"script", "style", "nav", "noscript", "template", "svg", "iframe", "object", "head"}
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote",
        "ul", "ol", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tfoot", "tr",
        "caption", "figure", "figcaption", "form", "fieldset", "address", "hr", "body", "html",
        "details", "summary",
    }
)  # fmt: skip
_SPACES = re.compile(r"\s+")
_VOID_TAGS = frozenset({"br", "hr", "img", "input", "meta", "link", "wbr", "area", "col"})


class _HtmlToMarkdown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._blocks: list[str] = []
        self._current: list[str] = []
        self._skip: list[str] = []  # open skipped elements
        self._heading = 0
        self._pre = 0
        self._in_title = False
        self._title: list[str] = []
        self._first_h1: str | None = None
        self._cell_open = False
        self._rows: list[str] | None = None  # rows of the open table

    # The parser -----------------------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
            return
        if tag == "body" and "head" in self._skip:  # an unclosed <head>
            self._skip = [t for t in self._skip if t != "head"]
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self._skip.append(tag)
            return
        if self._skip:
            return
        if tag == "br":
            self._current.append("\n")
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag == "pre":
            self._flush()
            self._pre += 1
        elif tag == "table":
            self._flush()
            self._rows = []
        elif tag in ("td", "th"):
            if self._cell_open or self._text_of_current().strip():
                self._current.append(" | ")
            self._cell_open = True
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "li":
                self._current.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            return
        if tag in _SKIP_TAGS:
            if tag in self._skip:
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if self._skip:
            return
        if tag in _HEADINGS:
            self._flush()
        elif tag == "pre":
            self._flush()
            self._pre = max(0, self._pre - 1)
        elif tag == "tr":
            self._cell_open = False
            self._flush(join_lines=True)
        elif tag == "table":
            self._flush(join_lines=True)
            if self._rows:
                self._blocks.append("\n".join(self._rows))
            self._rows = None
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br" and not self._skip:
            self._current.append("\n")
        elif tag not in _VOID_TAGS:
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title.append(data)
            return
        if self._skip:
            return
        self._current.append(data if self._pre else _SPACES.sub(" ", data))

    # Output ---------------------------------------------------------------------------------

    def result(self) -> tuple[str, str]:
        self._flush()
        title = " ".join("".join(self._title).split()) or self._first_h1 or ""
        return "\n\n".join(self._blocks), title

    def _text_of_current(self) -> str:
        return "".join(self._current)

    def _flush(self, *, join_lines: bool = False) -> None:
        raw = self._text_of_current()
        self._current = []
        if self._pre:
            body = raw.strip("\n")
            if body.strip():
                self._blocks.append(f"```\n{body}\n```")
            return
        lines = [" ".join(line.split()) for line in raw.split("\n")]
        lines = [line for line in lines if line and line != "-"]
        if not lines:
            self._heading = 0
            return
        if self._heading:
            text = " ".join(lines).lstrip("#").strip()
            if text:
                self._blocks.append(f"{'#' * self._heading} {text}")
                if self._heading == 1 and self._first_h1 is None:
                    self._first_h1 = text
            self._heading = 0
            return
        block = " ".join(lines) if join_lines else "\n".join(lines)
        if self._rows is not None:
            self._rows.append(block)
        else:
            self._blocks.append(block)

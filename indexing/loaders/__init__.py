"""Uploaded files → :class:`SourceDocument`.

Supported formats, chosen by file extension (the content type must agree, or be generic, and the
bytes must be what the extension says: a ``.pdf`` that is a zip or a program renamed ``.txt`` is
an :class:`UnsupportedMediaType`; see ``sniff``). PDF, DOCX, HWPX and HTML uploads are parsed in
a child process with a time and a memory limit, a page cap for PDF and a zip-bomb check for DOCX
and HWPX (``isolated``, ``zip_guard``).

- ``.txt``, ``.md``/``.markdown``: text, decoded as described in :func:`decode_text`.
- ``.html``/``.htm``: scripts, styles and navigation dropped; headings become markdown ``#``
  lines and blocks are separated by blank lines, so the markdown chunker keeps the heading path.
- ``.pdf`` (pypdf): the text of each page, pages joined by a blank line, page starts recorded.
- ``.docx`` (python-docx): paragraphs and table rows in document order; headings become
  markdown ``#`` lines.
- ``.hwpx`` (한글's OWPML, standard library only): paragraphs separated by blank lines, so the
  law chunker sees 제N조 headings; table rows as lines. ``.hwp`` is read only when its bytes are
  HWPX; an HWP 5 binary document is an :class:`UnsupportedMediaType` saying how to convert it.
- ``.json``: a list of records, ``{"documents": [...]}``, or one record; ``.jsonl``: one record
  a line. A record is ``{"doc_id", "text", "title"?, "source"?, "metadata"?, "kind"?}``.

Text is decoded as UTF-8 (with or without BOM), UTF-16/UTF-32 with a BOM, a charset the upload
or the HTML declares, then CP949 (a superset of EUC-KR), the legacy Korean encoding many
government and corporate files still use; anything else is rejected with a clear error.

Every problem with a file's content is an :class:`InvalidRequest` naming the file; an
unsupported type is an :class:`UnsupportedMediaType`. Parser libraries' own exceptions never
escape.

One module per subject: `dispatch` (choosing the loader by extension and content type),
`decoding` (bytes to text), `documents` (the document every file becomes: id, title, source),
`text` (txt, md, html), `html_markdown` (HTML to markdown), `pdf`, `docx`, `hwpx`, and `jsonl`
(JSON and JSON Lines records).
"""

from indexing.loaders.decoding import decode_text
from indexing.loaders.dispatch import (
    SUPPORTED_EXTENSIONS,
    load_documents,
    load_file,
    load_upload_isolated,
    read_upload,
)
from indexing.loaders.documents import doc_id_for_file
from indexing.loaders.html_markdown import html_to_markdown
from indexing.loaders.isolated import ParseLimits, PendingUpload, parse_upload
from indexing.loaders.sniff import sniff

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ParseLimits",
    "PendingUpload",
    "decode_text",
    "doc_id_for_file",
    "html_to_markdown",
    "load_documents",
    "load_file",
    "load_upload_isolated",
    "parse_upload",
    "read_upload",
    "sniff",
]

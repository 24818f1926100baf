"""HWPX uploads (OWPML, KS X 6101): the format 한글 (Hancom Office Hangul) writes today.

An HWPX file is a zip whose first member ``mimetype`` holds ``application/hwp+zip``; the body is
``Contents/section0.xml``, ``section1.xml``, … where text sits in ``<hp:t>`` runs inside
``<hp:p>`` paragraphs. Table cells, footnotes and text boxes hold paragraphs of their own.

Each paragraph becomes one block and blocks are separated by a blank line, so the law chunker
sees "제1조(목적)" at the start of a line, as it would in a text file. A table becomes one block
with a row per line and cells joined by `` | `` (as the DOCX loader does). The title is the
package's ``<opf:title>`` (``Contents/content.hpf``), else the file name.

Only the standard library parses the XML (pyexpat, streaming, one section at a time), and a
member that declares a DOCTYPE or an entity is refused: entity expansion ("billion laughs") and
external entities are the classic XML attacks, and OWPML never needs a DTD. The zip-bomb guard
runs before this (``isolated``), and the whole parse runs in the limited child process.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO
from xml.parsers import expat

from docqa_core.errors import InvalidRequest
from indexing.loaders.documents import _TITLE_CHARS, _file_document
from indexing.source_documents import SourceDocument

HWPX_MIMETYPE = b"application/hwp+zip"
# Hancom's paragraph namespace is ".../hwpml/2011/paragraph"; the year is matched loosely so a
# later revision of the schema still reads.
_PARAGRAPH_NS = re.compile(r"http://www\.hancom\.co\.kr/hwpml/\d{4}/paragraph")
_SECTION = re.compile(r"Contents/section(\d+)\.xml")
_CONTENT_HPF = "Contents/content.hpf"
_READ_BYTES = 64 * 1024
_SPACES = re.compile(r"\s+")


class _Refused(Exception):
    """Raised from an expat handler to stop the parse at a DOCTYPE or ENTITY declaration."""


def is_hwpx(archive: zipfile.ZipFile) -> bool:
    """True when the first member is ``mimetype`` holding the HWPX media type (read bounded)."""
    members = archive.infolist()
    if not members or members[0].filename != "mimetype":
        return False
    with archive.open(members[0]) as member:
        return member.read(len(HWPX_MIMETYPE) + 16).strip() == HWPX_MIMETYPE


def _load_hwpx(filename: str, data: bytes, charset: str | None) -> list[SourceDocument]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            sections = _section_names(archive)
            blocks: list[str] = []
            for name in sections:
                blocks.extend(_section_blocks(archive, name))
            title = _package_title(archive)
    except InvalidRequest:
        raise
    # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, zlib.error) as exc:
        raise InvalidRequest(
            f"the HWPX could not be read ({type(exc).__name__}: {exc}); it may be damaged"
        ) from exc
    text = "\n\n".join(blocks)
    if not text.strip():
        raise InvalidRequest("the HWPX holds no text")
    title = title or os.path.splitext(os.path.basename(filename))[0]
    return [_file_document(filename, data, text, kind="auto", title=title)]


def _section_names(archive: zipfile.ZipFile) -> list[str]:
    numbered = []
    for name in archive.namelist():
        match = _SECTION.fullmatch(name)
        if match:
            numbered.append((int(match.group(1)), name))
    if not numbered:
        raise InvalidRequest("the HWPX has no Contents/section*.xml; it may be damaged")
    return [name for _, name in sorted(numbered)]


def _section_blocks(archive: zipfile.ZipFile, name: str) -> list[str]:
    collector = _SectionText()
    with archive.open(name) as member:
        _parse(member, name, collector)
    return collector.blocks


def _package_title(archive: zipfile.ZipFile) -> str:
    if _CONTENT_HPF not in archive.namelist():
        return ""
    collector = _TitleText()
    with archive.open(_CONTENT_HPF) as member:
        _parse(member, _CONTENT_HPF, collector)
    return _collapse("".join(collector.pieces))[:_TITLE_CHARS]


def _parse(stream: IO[bytes], name: str, collector: _SectionText | _TitleText) -> None:
    """Stream one member through expat; DOCTYPE/ENTITY declarations stop it."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartDoctypeDeclHandler = _refuse_declaration
    parser.EntityDeclHandler = _refuse_declaration
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.characters
    try:
        while chunk := stream.read(_READ_BYTES):
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except _Refused as exc:
        raise InvalidRequest(
            f"the HWPX member {name} declares a DOCTYPE or an XML entity, which HWPX never "
            "needs: refused (entity expansion is an attack on XML parsers)"
        ) from exc
    except expat.ExpatError as exc:
        raise InvalidRequest(f"the HWPX member {name} is not well-formed XML ({exc})") from exc


def _refuse_declaration(*_: object) -> None:
    raise _Refused


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


@dataclass
class _Table:
    depth: int  # paragraphs open around the table: a cell's own paragraphs sit one deeper
    rows: list[list[list[str]]] = field(default_factory=list)


@dataclass
class _SectionText:
    """expat handlers collecting a section's paragraphs (and tables) as text blocks."""

    blocks: list[str] = field(default_factory=list)
    paragraphs: list[list[str]] = field(default_factory=list)  # open <hp:p>, outermost first
    tables: list[_Table] = field(default_factory=list)
    in_text: int = 0  # open <hp:t>: only their character data is document text

    def start(self, name: str, attributes: dict[str, str]) -> None:
        local = _paragraph_local_name(name)
        if local == "p":
            # a paragraph inside a paragraph (a table cell, a footnote): the text of the outer
            # one so far comes first, so it is emitted now rather than after the inner one
            if self.paragraphs:
                self._emit("".join(self.paragraphs[-1]), len(self.paragraphs) - 1)
                self.paragraphs[-1].clear()
            self.paragraphs.append([])
        elif local == "t":
            self.in_text += 1
        elif local in ("tab", "lineBreak", "fwSpace", "nbSpace") and self.in_text:
            self.characters(" ")
        elif local == "tbl":
            self.tables.append(_Table(depth=len(self.paragraphs)))
        elif local == "tr" and self.tables:
            self.tables[-1].rows.append([])
        elif local == "tc" and self.tables and self.tables[-1].rows:
            self.tables[-1].rows[-1].append([])

    def end(self, name: str) -> None:
        local = _paragraph_local_name(name)
        if local == "p" and self.paragraphs:
            text = "".join(self.paragraphs.pop())
            self._emit(text, len(self.paragraphs))
        elif local == "t":
            self.in_text = max(self.in_text - 1, 0)
        elif local == "tbl" and self.tables:
            table = self.tables.pop()
            rows = [
                " | ".join(c for c in (" ".join(cell) for cell in row) if c) for row in table.rows
            ]
            self._emit("\n".join(row for row in rows if row), table.depth - 1, collapse=False)

    def characters(self, data: str) -> None:
        if self.in_text and self.paragraphs:
            self.paragraphs[-1].append(data)

    def _emit(self, text: str, depth: int, *, collapse: bool = True) -> None:
        """Add text that sat inside ``depth`` open paragraphs to its table cell or the blocks."""
        text = _collapse(text) if collapse else text.strip()
        if not text:
            return
        # the innermost table the text sits in: a cell's paragraphs are at the table's depth
        # (a footnote in a cell deeper still), text around the table is shallower
        table = next((t for t in reversed(self.tables) if t.depth <= depth), None)
        if table is not None and table.rows and table.rows[-1]:
            table.rows[-1][-1].append(_collapse(text))
        else:
            self.blocks.append(text)


@dataclass
class _TitleText:
    """expat handlers collecting ``<opf:title>`` of ``content.hpf``."""

    pieces: list[str] = field(default_factory=list)
    in_title: bool = False
    done: bool = False

    def start(self, name: str, attributes: dict[str, str]) -> None:
        self.in_title = not self.done and name.rpartition(" ")[2] == "title"

    def end(self, name: str) -> None:
        if self.in_title:
            self.in_title, self.done = False, True

    def characters(self, data: str) -> None:
        if self.in_title:
            self.pieces.append(data)


def _paragraph_local_name(name: str) -> str:
    """The local name of an element in Hancom's paragraph namespace, else ""."""
    namespace, _, local = name.rpartition(" ")
    return local if _PARAGRAPH_NS.fullmatch(namespace) else ""

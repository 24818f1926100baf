"""What an upload really is, by its bytes (magic numbers), not by its name.

A file whose content is a different format than its extension says (a ``.pdf`` that is a zip, a
program renamed ``.txt``) is refused with :class:`UnsupportedMediaType` before any parser sees it.
Text that is merely undecodable is left to the text loader, which says why.
"""

from __future__ import annotations

import codecs
import io
import zipfile
from typing import Literal

from docqa_core.errors import UnsupportedMediaType

Sniffed = Literal["pdf", "docx", "zip", "damaged_zip", "binary", "html", "text"]

_DESCRIPTIONS: dict[str, str] = {
    "pdf": "a PDF",
    "docx": "a Word (DOCX) document",
    "zip": "a zip archive that is not a Word document",
    "damaged_zip": "a damaged zip archive",
    "binary": "binary data",
    "html": "an HTML page",
    "text": "text",
}
# what each loader format accepts
_ACCEPTED: dict[str, frozenset[str]] = {
    "pdf": frozenset({"pdf"}),
    "docx": frozenset({"docx", "damaged_zip"}),  # a damaged DOCX is reported by its parser
    "html": frozenset({"html", "text"}),
    "text": frozenset({"text", "html"}),
    "markdown": frozenset({"text", "html"}),
    "json": frozenset({"text", "html"}),
    "jsonl": frozenset({"text", "html"}),
}
_BINARY_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",  # JPEG
    b"GIF8",
    b"\x1f\x8b",  # gzip
    b"7z\xbc\xaf",
    b"Rar!",
    b"\xd0\xcf\x11\xe0",  # OLE: legacy .doc/.xls/.msi
    b"\x7fELF",
)
_TEXT_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_CONTROL = frozenset(range(1, 9)) | frozenset(range(14, 27)) | frozenset(range(28, 32))
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")
_SAMPLE = 8192


def sniff(data: bytes) -> Sniffed:
    """Classify bytes: pdf, docx, zip (not a DOCX), damaged_zip, binary, html or text."""
    if data.lstrip(b" \t\r\n").startswith(b"%PDF-"):
        return "pdf"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(data)
    if data.startswith(_BINARY_MAGIC):
        return "binary"
    if data.startswith(_TEXT_BOMS):  # UTF-32 LE starts like UTF-16 LE
        return "html" if _looks_like_html(_bom_decoded(data)) else "text"
    sample = data[:_SAMPLE]
    if b"\x00" in sample and not _utf16_without_bom(sample):
        return "binary"
    if sum(byte in _CONTROL for byte in sample) > len(sample) * 0.05:
        return "binary"
    return "html" if _looks_like_html(sample) else "text"


def check_content(filename: str, fmt: str, data: bytes) -> Sniffed:
    """Raise ``UnsupportedMediaType`` when the bytes are not what the file name says."""
    found = sniff(data)
    if found not in _ACCEPTED.get(fmt, frozenset({found})):
        expected = "text" if fmt in ("markdown", "json", "jsonl") else fmt
        raise UnsupportedMediaType(
            f"{filename}: the content is {_DESCRIPTIONS[found]}, not {_DESCRIPTIONS[expected]} "
            "as its name says; upload it under a matching extension",
            detail={"filename": filename, "detected": found, "expected": fmt},
        )
    return found


def _sniff_zip(data: bytes) -> Sniffed:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "damaged_zip"
    if "[Content_Types].xml" in names and any(name.startswith("word/") for name in names):
        return "docx"
    return "zip"


def _utf16_without_bom(sample: bytes) -> bool:
    """ASCII-range UTF-16 has its NULs all on even or all on odd offsets (the decoder then
    rejects it with a clear message)."""
    even, odd = sample[0::2], sample[1::2]
    return (len(sample) >= 2) and (even.count(0) == 0 or odd.count(0) == 0)


def _bom_decoded(data: bytes) -> bytes:
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le")):
        if data.startswith(bom):
            return data[len(bom) : _SAMPLE].decode(encoding, "ignore").encode("ascii", "ignore")
    return data[2:_SAMPLE].decode("utf-16-be", "ignore").encode("ascii", "ignore")


def _looks_like_html(sample: bytes) -> bool:
    head = sample[:2048].lower()
    return any(marker in head for marker in _HTML_MARKERS)

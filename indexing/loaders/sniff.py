"""What an upload really is, by its bytes (magic numbers), not by its name.

A file whose content is a different format than its extension says (a ``.pdf`` that is a zip, a
program renamed ``.txt``) is refused with :class:`UnsupportedMediaType` before any parser sees it.
Text that is merely undecodable is left to the text loader, which says why.

An HWP 5 binary document (an OLE compound file holding a ``FileHeader`` stream that starts with
"HWP Document File") is refused whatever its name, with a message that says how to convert it:
no reader for it is installed, and it is the most common format Korean organisations upload.
"""

from __future__ import annotations

import codecs
import io
import zipfile
import zlib
from typing import Literal

from docqa_core.errors import UnsupportedMediaType
from indexing.loaders.hwpx import is_hwpx

Sniffed = Literal["pdf", "docx", "hwpx", "hwp", "zip", "damaged_zip", "binary", "html", "text"]

HWP5_MESSAGE = (
    "HWP 5 binary documents are not supported; "
    "save the file as HWPX (한글: 다른 이름으로 저장 → HWPX) and upload that"
)

_DESCRIPTIONS: dict[str, str] = {
    "pdf": "a PDF",
    "docx": "a Word (DOCX) document",
    "hwpx": "a Hangul (HWPX) document",
    "hwp": "a Hangul HWP 5 binary document",
    "zip": "a zip archive that is not a Word or Hangul document",
    "damaged_zip": "a damaged zip archive",
    "binary": "binary data",
    "html": "an HTML page",
    "text": "text",
}
# what each loader format accepts
_ACCEPTED: dict[str, frozenset[str]] = {
    "pdf": frozenset({"pdf"}),
    "docx": frozenset({"docx", "damaged_zip"}),  # a damaged DOCX is reported by its parser
    "hwpx": frozenset({"hwpx", "damaged_zip"}),
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
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_HWP5_SIGNATURE = b"HWP Document File"
_HWP5_STREAM_NAME = "FileHeader".encode("utf-16-le")  # as OLE directory entries spell names
_TEXT_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_CONTROL = frozenset(range(1, 9)) | frozenset(range(14, 27)) | frozenset(range(28, 32))
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")
_SAMPLE = 8192


def sniff(data: bytes) -> Sniffed:
    """Classify bytes: pdf, docx, hwpx, hwp (5, binary), zip (none of those), damaged_zip,
    binary, html or text."""
    if data.lstrip(b" \t\r\n").startswith(b"%PDF-"):
        return "pdf"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(data)
    if data.startswith(_OLE_MAGIC) and _is_hwp5(data):
        return "hwp"
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
    if found == "hwp":
        raise UnsupportedMediaType(
            f"{filename}: {HWP5_MESSAGE}",
            detail={"filename": filename, "detected": found, "expected": fmt},
        )
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
            if "[Content_Types].xml" in names and any(n.startswith("word/") for n in names):
                return "docx"
            return "hwpx" if is_hwpx(archive) else "zip"
    # RuntimeError: an encrypted member; NotImplementedError: an unknown compression method
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, zlib.error):
        return "damaged_zip"


def _is_hwp5(data: bytes) -> bool:
    """An OLE file with a ``FileHeader`` directory entry and the HWP signature in its body.

    A heuristic rather than an OLE reader: both markers together do not occur by chance in the
    legacy Office files (``.doc``, ``.xls``) that share the OLE container, and the file is only
    refused, never parsed, on the strength of it."""
    return _HWP5_STREAM_NAME in data and _HWP5_SIGNATURE in data


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

"""Uploaded bytes → text.

UTF-8 (with or without BOM), UTF-16/UTF-32 with a BOM, a charset the upload or the HTML
declares, then CP949 (a superset of EUC-KR), the legacy Korean encoding many government and
corporate files still use; anything else is rejected with a clear error.
"""

from __future__ import annotations

import codecs
import contextlib

from docqa_core.errors import InvalidRequest


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


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

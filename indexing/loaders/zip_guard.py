"""Zip-bomb guard: read a zip's central directory (sizes only, nothing decompressed) and refuse
an archive that would expand too far, in total or by compression ratio, before a parser opens it.

The sizes are the archive's own claims; a member that lies about its size is cut off at the
claimed size by ``zipfile`` (and the parser's process has a memory limit besides).
"""

from __future__ import annotations

import io
import zipfile

from docqa_core.errors import InvalidRequest

# a member this small cannot hurt whatever its ratio (XML of repeated styles compresses well)
_RATIO_FLOOR_BYTES = 1024 * 1024
MAX_MEMBERS = 10_000


def check_zip_bomb(data: bytes, *, max_uncompressed_bytes: int, max_ratio: float) -> None:
    """Raise ``InvalidRequest`` if the archive would expand past the limits."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InvalidRequest(f"the archive could not be read ({exc}); it may be damaged") from exc
    if len(members) > MAX_MEMBERS:
        raise InvalidRequest(
            f"the archive holds {len(members)} files (at most {MAX_MEMBERS}): refused as a zip bomb"
        )
    total = sum(member.file_size for member in members)
    if total > max_uncompressed_bytes:
        raise InvalidRequest(
            f"the archive would expand to {total} bytes, more than the limit of "
            f"{max_uncompressed_bytes}: refused as a zip bomb"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > _RATIO_FLOOR_BYTES and ratio > max_ratio:
            raise InvalidRequest(
                f"the archive member {member.filename!r} is compressed {ratio:.0f}:1 "
                f"(at most {max_ratio:g}:1 allowed): refused as a zip bomb"
            )

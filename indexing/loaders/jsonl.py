"""JSON and JSON Lines uploads: each record is one document.

``.json``: a list of records, ``{"documents": [...]}``, or one record; ``.jsonl``: one record a
line. A record is ``{"doc_id", "text", "title"?, "source"?, "metadata"?, "kind"?}``.
"""

from __future__ import annotations

import json
import os
from typing import Any, get_args

from docqa_core.errors import InvalidRequest
from indexing import schema
from indexing.chunking import ChunkKind
from indexing.loaders.decoding import decode_text
from indexing.source_documents import SourceDocument

_CHUNK_KINDS: tuple[str, ...] = get_args(ChunkKind)


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

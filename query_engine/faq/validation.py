"""The checks on entries an admin sends that need no Redis: sizes, empty fields, ids, and
duplicates within one request. The checks against what is stored (the collection's limit, a
question another entry already asks) are in ``writes.py``."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from docqa_core.errors import InvalidRequest, PayloadTooLarge
from query_engine.cache import normalize_question
from query_engine.faq.model import FaqConfig, FaqEntryIn

_ENTRY_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_MAX_METADATA_CHARS = 4096


def entry_id_for(normalized_question: str) -> str:
    """The default id: the same question always gets the same id, so a re-put is idempotent."""
    return hashlib.blake2b(
        normalized_question.encode(), digest_size=12, person=b"docqa-faq"
    ).hexdigest()


def validated_entries(
    entries: Sequence[FaqEntryIn], config: FaqConfig
) -> list[tuple[str, FaqEntryIn]]:
    """(id, entry) pairs, after every check that needs no Redis."""
    limit = config.max_entries_per_request
    if not entries:
        raise InvalidRequest("entries must hold at least one entry")
    if len(entries) > limit:
        raise PayloadTooLarge(
            f"{len(entries)} entries in one request; the limit is {limit}",
            detail={"entries": len(entries), "limit": limit},
        )
    pairs = [_checked(i, entry, config) for i, entry in enumerate(entries)]
    _refuse_duplicates(pairs)
    return pairs


def validate_id(entry_id: str) -> None:
    if not _ENTRY_ID.fullmatch(entry_id):
        raise InvalidRequest(
            "FAQ entry ids hold 1 to 128 letters, digits, '_', '.', ':' or '-'",
            detail={"id": entry_id},
        )


def _checked(index: int, entry: FaqEntryIn, config: FaqConfig) -> tuple[str, FaqEntryIn]:
    question, answer = entry.question.strip(), entry.answer.strip()
    where = f"entries[{index}]"
    normalized = normalize_question(question)
    if not normalized:
        raise InvalidRequest(f"{where}.question must not be empty", detail={"index": index})
    if not answer:
        raise InvalidRequest(f"{where}.answer must not be empty", detail={"index": index})
    _check_length(where, "question", question, config.max_question_chars)
    _check_length(where, "answer", answer, config.max_answer_chars)
    metadata = dict(entry.metadata)
    if len(json.dumps(metadata, ensure_ascii=False, default=str)) > _MAX_METADATA_CHARS:
        raise InvalidRequest(
            f"{where}.metadata is larger than {_MAX_METADATA_CHARS} characters as JSON"
        )
    entry_id = entry.id if entry.id is not None else entry_id_for(normalized)
    validate_id(entry_id)
    return entry_id, FaqEntryIn(question=question, answer=answer, id=entry_id, metadata=metadata)


def _refuse_duplicates(pairs: list[tuple[str, FaqEntryIn]]) -> None:
    seen_ids: set[str] = set()
    seen_questions: dict[str, str] = {}
    for entry_id, entry in pairs:
        if entry_id in seen_ids:
            raise InvalidRequest(
                f"entry {entry_id!r} appears twice in the request", detail={"id": entry_id}
            )
        seen_ids.add(entry_id)
        normalized = normalize_question(entry.question)
        other = seen_questions.setdefault(normalized, entry_id)
        if other != entry_id:
            raise InvalidRequest(
                f"entries {other!r} and {entry_id!r} ask the same question",
                detail={"ids": [other, entry_id]},
            )


def _check_length(where: str, name: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise InvalidRequest(
            f"{where}.{name} has {len(text)} characters; the limit is {limit}",
            detail={"field": f"{where}.{name}", "length": len(text), "limit": limit},
        )

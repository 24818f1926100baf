"""The record an entry is kept as in Redis: the entry, its e5 *query* embedding and the model
that made it, as one JSON value of the collection's hash."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np

from indexing.embedding import Vectors
from query_engine.cache import normalize_question
from query_engine.faq.model import FaqEntry


@dataclass
class StoredEntry:
    """An entry with its vector, as kept in Redis."""

    entry: FaqEntry
    vector: Vectors | None  # None when embedded by another model: exact matches only
    model: str

    def to_json(self) -> str:
        record = {
            "id": self.entry.id,
            "question": self.entry.question,
            "answer": self.entry.answer,
            "normalized": self.entry.normalized,
            "created_at": self.entry.created_at,
            "updated_at": self.entry.updated_at,
            "metadata": dict(self.entry.metadata),
            "model": self.model,
            # float32 bytes in base64: a quarter of the size of a JSON list, and exact
            "vector": _encode_vector(self.vector),
        }
        return json.dumps(record, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes | str, *, model: str, dim: int) -> StoredEntry:
        record = json.loads(raw)
        entry = FaqEntry(
            id=record["id"],
            question=record["question"],
            answer=record["answer"],
            normalized=record.get("normalized") or normalize_question(record["question"]),
            created_at=record.get("created_at", ""),
            updated_at=record.get("updated_at", ""),
            metadata=record.get("metadata") or {},
        )
        vector = _decode_vector(record.get("vector"), dim)
        stored_model = str(record.get("model", ""))
        return cls(entry, vector if stored_model == model else None, stored_model)


def unit_vector(vector: Vectors) -> Vectors:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _encode_vector(vector: Vectors | None) -> str | None:
    if vector is None:
        return None
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()


def _decode_vector(encoded: str | None, dim: int) -> Vectors | None:
    if not encoded:
        return None
    vector = np.frombuffer(base64.b64decode(encoded), dtype=np.float32)
    return vector if vector.shape == (dim,) else None

"""One collection's entries as of one version, arranged for matching: a dict of normalized
questions for exact matches and one matrix of unit vectors for similar ones. Built from the
stored records; compared with nothing but the question asked (no Redis here)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from indexing.embedding import Vectors
from query_engine.cache import normalize_question
from query_engine.faq.records import StoredEntry, unit_vector

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def numbers_in(text: str) -> tuple[str, ...]:
    """The numbers a question names: "3일 출장" and "5일 출장" embed almost alike, yet differ."""
    return tuple(sorted(n.replace(",", "") for n in _NUMBER.findall(text)))


@dataclass
class FaqSnapshot:
    """One collection's entries as of one version, arranged for matching."""

    version: int
    stored: dict[str, StoredEntry]
    by_normalized: dict[str, str] = field(default_factory=dict)
    vector_ids: list[str] = field(default_factory=list)
    matrix: Vectors = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    numbers: list[tuple[str, ...]] = field(default_factory=list)

    @classmethod
    def build(cls, version: int, stored: Iterable[StoredEntry], dim: int) -> FaqSnapshot:
        # oldest first, so that if two ids ever share a question the newest one wins
        ordered = sorted(stored, key=lambda s: (s.entry.updated_at, s.entry.id))
        snapshot = cls(version=version, stored={s.entry.id: s for s in ordered})
        rows: list[Vectors] = []
        for item in ordered:
            normalized = normalize_question(item.entry.question)
            snapshot.by_normalized[normalized] = item.entry.id
            if item.vector is not None:
                snapshot.vector_ids.append(item.entry.id)
                snapshot.numbers.append(numbers_in(normalized))
                rows.append(item.vector)
        if rows:
            matrix = np.vstack(rows)
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            snapshot.matrix = matrix / np.maximum(norms, 1e-12)
        else:
            snapshot.matrix = np.zeros((0, dim), dtype=np.float32)
        return snapshot

    def best_similar(
        self, vector: Vectors, threshold: float, normalized: str
    ) -> tuple[str, float] | None:
        if not self.vector_ids:
            return None
        scores = self.matrix @ unit_vector(vector)
        candidates = np.flatnonzero(scores >= threshold)
        asked_numbers = numbers_in(normalized)
        for index in candidates[np.argsort(-scores[candidates])]:
            if self.numbers[index] == asked_numbers:
                return self.vector_ids[index], float(scores[index])
        return None

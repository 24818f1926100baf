"""Which version of a dated document a question sees (``as_of``; see ``indexing.validity``).

Two steps, because Milvus can filter on a chunk's own dates but not on its siblings':

1. only chunks whose own window holds the date count: ``effective_from`` on or before it,
   ``effective_to`` on or after it, a missing bound open. The retriever searches without that
   filter and checks the hits in Python (:func:`in_force`); only when a hit is out of its window
   does it search again with the filter (:func:`validity_expression`). milvus-lite evaluates a
   filter on JSON metadata row by row: ~0.5 s a search at 14k chunks, against ~15 ms unfiltered,
   for a collection that mostly holds no dated document at all;
2. among documents that share ``version_of``, only the latest ``effective_from`` still in force
   counts: the retriever asks Milvus for the dates of every version of the groups among its hits
   (:func:`versions_in_force`) and searches again without the superseded ones, so they take
   no candidate slots.

Without ``as_of`` the date is today (the server's local date), so older versions stay out of
ordinary questions and are searchable only when a date asks for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from indexing import schema
from indexing.store import ChunkStore, Hit, quote
from indexing.validity import EFFECTIVE_FROM, EFFECTIVE_TO, VERSION_OF

_FROM = f'{schema.METADATA}["{EFFECTIVE_FROM}"]'
_TO = f'{schema.METADATA}["{EFFECTIVE_TO}"]'
_GROUP = f'{schema.METADATA}["{VERSION_OF}"]'
MAX_VERSIONS_LOOKED_UP = 1000


def validity_expression(as_of: date) -> str:
    """Chunks of documents whose own validity window holds ``as_of`` (ISO strings compare
    like the dates they spell)."""
    day = quote(as_of.isoformat())
    return f"(not exists {_FROM} or {_FROM} <= {day}) and (not exists {_TO} or {_TO} >= {day})"


def in_force(hit: Hit, as_of: date) -> bool:
    """Whether ``hit``'s own validity window holds ``as_of``: :func:`validity_expression` read
    in Python, on the metadata every hit carries."""
    metadata = hit.entity.get(schema.METADATA) or {}
    day = as_of.isoformat()
    start, end = metadata.get(EFFECTIVE_FROM), metadata.get(EFFECTIVE_TO)
    return (start is None or str(start) <= day) and (end is None or str(end) >= day)


def out_of_force(*ranked: Iterable[Hit], as_of: date) -> bool:
    """Whether any of the hits is outside its validity window at ``as_of``."""
    return any(not in_force(hit, as_of) for hits in ranked for hit in hits)


def groups_of(*ranked: Iterable[Hit]) -> set[str]:
    """The ``version_of`` groups of these hits."""
    groups = set()
    for hits in ranked:
        for hit in hits:
            group = (hit.entity.get(schema.METADATA) or {}).get(VERSION_OF)
            if isinstance(group, str) and group:
                groups.add(group)
    return groups


def superseded(versions: Iterable[Mapping[str, Any]], as_of: date) -> set[str]:
    """Doc ids of the versions not in force at ``as_of``.

    ``versions`` are first-chunk rows (``doc_id``, ``metadata``) of every version of some
    groups. Per group, the version in force is the one with the latest ``effective_from`` on or
    before the date whose ``effective_to`` (if any) is not past; a version without
    ``effective_from`` counts as the oldest. Every other version of the group is superseded.
    """
    day = as_of.isoformat()
    by_group: dict[str, dict[str, str]] = {}
    for row in versions:
        metadata = row.get(schema.METADATA) or {}
        group = metadata.get(VERSION_OF)
        if isinstance(group, str):
            by_group.setdefault(group, {})[str(row[schema.DOC_ID])] = _start(metadata)
    out: set[str] = set()
    windows = {
        str(row[schema.DOC_ID]): (row.get(schema.METADATA) or {}).get(EFFECTIVE_TO) or "9999-12-31"
        for row in versions
    }
    for members in by_group.values():
        live = [d for d, start in members.items() if start <= day and windows[d] >= day]
        current = max(live, key=lambda d: (members[d], d)) if live else None
        out.update(d for d in members if d != current)
    return out


def _start(metadata: Mapping[str, Any]) -> str:
    value = metadata.get(EFFECTIVE_FROM)
    return value if isinstance(value, str) else ""


async def versions_in_force(
    store: ChunkStore, collection: str, ranked: Sequence[Sequence[Hit]], as_of: date
) -> set[str]:
    """Doc ids among all versions of the hits' groups that are superseded at ``as_of`` (empty
    without a Milvus query when no hit belongs to a group)."""
    groups = groups_of(*ranked)
    if not groups:
        return set()
    # milvus-lite refuses "in" on a JSON key ("left side of 'in' must be a field reference")
    expr = " or ".join(f"{_GROUP} == {quote(g)}" for g in sorted(groups))
    rows = await store.query_first_chunks(collection, expr, limit=MAX_VERSIONS_LOOKED_UP)
    return superseded(rows, as_of)


def without_documents(doc_ids: Iterable[str]) -> str:
    """A Milvus expression excluding these documents."""
    literal = ", ".join(quote(d) for d in sorted(doc_ids))
    return f"{schema.DOC_ID} not in [{literal}]"


def drop_documents(hits: Sequence[Hit], doc_ids: set[str]) -> list[Hit]:
    return [hit for hit in hits if str(hit.entity.get(schema.DOC_ID)) not in doc_ids]

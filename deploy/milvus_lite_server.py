"""The embedded Milvus server: ``milvus-lite server`` with two fixes that make it score like Milvus.

**Collection-wide BM25 statistics.** milvus-lite 3.2.2 scores BM25 with each segment's own
statistics (document count, average length and document frequencies; its own TODO in
``engine/collection.py`` ``_search_sparse``). It seals a segment at every flush and merges them in
size tiers, so a collection of more than one flush holds several segments, and the same term gets
a different IDF in each: a chunk's score depends on which flush wrote it. Measured on the COVID-QA
papers (2,459 chunks): three segments scored BM25 recall@1 .691 where the same rows in one segment
scored .745. Milvus itself aggregates the statistics over the collection; here, the way
Elasticsearch's DFS_QUERY_THEN_FETCH does it, a BM25 search first sums document count, total
length and the query terms' document frequencies over every segment and the growing rows, then
scores every segment with those sums. Like Milvus' per-segment statistics, the sums count deleted
rows until compaction rewrites them.

**Index parameters as pymilvus sends them.** pymilvus 3 sends an index's parameters as flat
key-value pairs (``bm25_k1``, ``M``, …); milvus-lite reads only a JSON ``params`` entry and
silently built every index with its own defaults, among them BM25 k1 = 1.5 where Milvus and
``indexing.schema`` use 1.2 (recall@1 of hybrid search on the Korean seed questions: .786 with 1.5,
.806 with 1.2). The known build parameters are now folded into ``params``.

Run as ``python -m deploy.milvus_lite_server server --data-dir D --host H --port P`` (the
arguments of ``milvus-lite``); :func:`install_collection_wide_bm25` and
:func:`install_flat_index_params` apply the changes in-process.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CollectionStats:
    """BM25 statistics of a whole collection, for the terms of the current queries."""

    doc_count: int
    total_length: float
    doc_freq: Mapping[int, int] = field(default_factory=dict)

    @property
    def avgdl(self) -> float:
        return self.total_length / self.doc_count if self.doc_count else 0.0


# Set by the patched search for the duration of one BM25 search; the gRPC server runs each
# request in its own worker thread, which has its own context.
_CURRENT_STATS: contextvars.ContextVar[CollectionStats | None] = contextvars.ContextVar(
    "docqa_bm25_collection_stats", default=None
)
_INSTALLED_MARK = "_docqa_patched"  # set on what has been patched, so a second install is a no-op


def collection_stats(
    segment_indexes: Iterable[Any],
    growing_vectors: Iterable[Mapping[int, float]],
    query_terms: Iterable[int],
) -> CollectionStats:
    """Sum segment statistics (``SparseInvertedIndex``-like objects) and the growing rows' own."""
    terms = set(query_terms)
    doc_count = 0
    total_length = 0.0
    doc_freq = dict.fromkeys(terms, 0)
    for index in segment_indexes:
        doc_count += index.doc_count
        total_length += index.avgdl * index.doc_count
        for term in terms:
            doc_freq[term] += index._df.get(term, 0)
    for vector in growing_vectors:
        doc_count += 1
        total_length += sum(vector.values())
        for term in terms.intersection(vector):
            doc_freq[term] += 1
    return CollectionStats(doc_count, total_length, doc_freq)


def bm25_search(
    index: Any,
    query_vectors: Sequence[Mapping[int, float]],
    top_k: int,
    stats: CollectionStats,
    valid_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``SparseInvertedIndex.search`` scored with ``stats`` instead of the segment's own."""
    from milvus_lite.index.sparse_common import empty_results, validate_mask

    valid_mask = validate_mask(valid_mask, len(index._doc_lengths))
    ids, distances = empty_results(len(query_vectors), top_k)
    if index.doc_count == 0 or stats.doc_count == 0:
        return ids, distances
    avgdl = stats.avgdl or 1.0
    for qi, query in enumerate(query_vectors):
        scores = _bm25_scores(index, query, stats, avgdl, valid_mask)
        best = sorted(scores.items(), key=lambda item: item[1], reverse=True)[:top_k]
        for rank, (local_id, score) in enumerate(best):
            ids[qi, rank] = local_id
            distances[qi, rank] = -score  # milvus-lite's convention: smaller is better
    return ids, distances


def _bm25_scores(
    index: Any,
    query: Mapping[int, float],
    stats: CollectionStats,
    avgdl: float,
    valid_mask: np.ndarray | None,
) -> dict[int, float]:
    k1, b, n = index.k1, index.b, stats.doc_count
    scores: dict[int, float] = {}
    for term, query_weight in query.items():
        posting = index._posting_lists.get(term)
        if not posting:
            continue
        df = max(stats.doc_freq.get(term, 0), len(posting))
        idf = math.log((n - df + 0.5) / (df + 0.5) + 1.0)
        for local_id, tf in posting:
            if valid_mask is not None and not valid_mask[local_id]:
                continue
            length_norm = 1.0 - b + b * index._doc_lengths[local_id] / avgdl
            weight = idf * tf * (k1 + 1.0) / (tf + k1 * length_norm) * query_weight
            scores[local_id] = scores.get(local_id, 0.0) + weight
    return scores


def install_collection_wide_bm25() -> bool:
    """Patch milvus-lite's BM25 search in this process; False if its internals are not the ones
    this was written against (then BM25 keeps per-segment statistics, and a warning says so)."""
    try:
        from milvus_lite.engine.collection import Collection
        from milvus_lite.index.sparse_inverted import SparseInvertedIndex
    except ImportError:
        log.warning("milvus-lite is not installed: BM25 statistics left per segment")
        return False
    if getattr(Collection, _INSTALLED_MARK, False):
        return True
    expected = {
        Collection: ("_search_sparse", "_read_snapshot", "_prepare_sparse_queries"),
        SparseInvertedIndex: ("search", "build"),
    }
    missing = [f"{cls.__name__}.{name}" for cls, names in expected.items() for name in names
               if not hasattr(cls, name)]  # fmt: skip
    if missing:
        log.warning("unknown milvus-lite internals (%s): BM25 statistics left per segment", missing)
        return False
    Collection._search_sparse = _with_collection_stats(Collection._search_sparse)
    SparseInvertedIndex.search = _scored_with_current_stats(SparseInvertedIndex.search)
    setattr(Collection, _INSTALLED_MARK, True)
    return True


def _with_collection_stats(search_sparse: Callable[..., Any]) -> Callable[..., Any]:
    def search_sparse_with_collection_stats(
        self: Any,
        query_vectors: list[Any],
        vector_field: str,
        top_k: int,
        metric_type: str,
        partition_names: list[str] | None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        stats = None
        if metric_type == "BM25" and vector_field in getattr(self, "_bm25_analyzers", {}):
            try:
                stats = _gather_stats(self, query_vectors, vector_field, partition_names)
            except AttributeError as exc:  # internals moved: search as milvus-lite would
                log.warning("BM25 statistics left per segment: %s", exc)
        token = _CURRENT_STATS.set(stats)
        try:
            return search_sparse(
                self, query_vectors, vector_field, top_k, metric_type, partition_names,
                *args, **kwargs,
            )  # fmt: skip
        finally:
            _CURRENT_STATS.reset(token)

    return search_sparse_with_collection_stats


def _scored_with_current_stats(search: Callable[..., Any]) -> Callable[..., Any]:
    def search_with_current_stats(
        self: Any, query_vectors: Any, top_k: int, valid_mask: Any = None
    ) -> Any:
        stats = _CURRENT_STATS.get()
        if stats is None:
            return search(self, query_vectors, top_k, valid_mask=valid_mask)
        return bm25_search(self, query_vectors, top_k, stats, valid_mask)

    return search_with_current_stats


def _gather_stats(
    collection: Any, query_vectors: list[Any], vector_field: str, partitions: list[str] | None
) -> CollectionStats:
    queries = collection._prepare_sparse_queries(query_vectors, vector_field)
    segments, _ = collection._read_snapshot()
    wanted = set(partitions) if partitions else None
    indexes = [
        _segment_index(collection, segment, vector_field)
        for segment in segments
        if (wanted is None or segment.partition in wanted)
        and segment.table is not None
        and len(segment.table)
    ]
    growing = [
        _as_sparse(record.get(vector_field))
        for _, _, record in collection._memtable.active_record_snapshots(partition_names=partitions)
    ]
    return collection_stats(indexes, growing, (term for query in queries for term in query))


def _segment_index(collection: Any, segment: Any, vector_field: str) -> Any:
    """The segment's cached BM25 index, built and cached the way ``_search_sparse`` does."""
    from milvus_lite.index.sparse_factory import create_sparse_index, sparse_index_matches

    spec = collection._index_specs.get(vector_field)
    params = spec.build_params if spec else {}
    cached = segment.sparse_indexes.get(vector_field)
    if sparse_index_matches(cached, "BM25", params):
        return cached
    vectors = [_as_sparse(row) for row in segment.table.column(vector_field).to_pylist()]
    index = create_sparse_index("BM25", params)
    index.build(vectors)
    segment.sparse_indexes[vector_field] = index
    return index


def _as_sparse(stored: Any) -> Mapping[int, float]:
    """A stored sparse vector (milvus-lite keeps serialized bytes or a dict) as term → weight."""
    from milvus_lite.analyzer.sparse import bytes_to_sparse

    return bytes_to_sparse(stored) if isinstance(stored, bytes) else (stored or {})


# Build parameters of the index types milvus-lite implements (index/*.py), as pymilvus sends them.
INDEX_BUILD_PARAMS = frozenset(
    {"M", "efConstruction", "nlist", "bm25_k1", "bm25_b", "inverted_index_algo"}
)


def folded_index_params(pairs: Mapping[str, str], decoded: dict[str, Any]) -> dict[str, Any]:
    """``decoded`` (milvus-lite's reading of ``pairs``) with the flat build parameters of
    ``pairs`` added to its ``params``; a JSON ``params`` entry, when sent, wins."""
    flat = {key: _json_or_text(value) for key, value in pairs.items() if key in INDEX_BUILD_PARAMS}
    if not flat:
        return decoded
    return {**decoded, "params": {**flat, **decoded.get("params", {})}}


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def install_flat_index_params() -> bool:
    """Make milvus-lite's CreateIndex read flat parameters; False if its translator moved."""
    try:
        from milvus_lite.adapter.grpc import servicer
    except ImportError:
        log.warning("milvus-lite is not installed: index parameters left as it reads them")
        return False
    translate = getattr(servicer, "kv_pairs_to_index_params_dict", None)
    if translate is None:
        log.warning("unknown milvus-lite internals: index parameters left as it reads them")
        return False
    if getattr(translate, _INSTALLED_MARK, False):
        return True

    def translate_with_flat_params(extra_params: Iterable[Any]) -> dict[str, Any]:
        pairs = list(extra_params)
        decoded = translate(pairs)
        return folded_index_params({p.key: p.value for p in pairs}, decoded)

    setattr(translate_with_flat_params, _INSTALLED_MARK, True)
    servicer.kv_pairs_to_index_params_dict = translate_with_flat_params
    return True


def main(argv: list[str] | None = None) -> int:
    # milvus-lite logs warnings and worse; this module says whether the change took
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    log.setLevel(logging.INFO)
    if install_collection_wide_bm25():
        log.info("BM25 scored with collection-wide statistics")
    if install_flat_index_params():
        log.info("index parameters read as pymilvus sends them")
    from milvus_lite.cmdline import main as milvus_lite_main

    return milvus_lite_main(argv)


if __name__ == "__main__":
    sys.exit(main())

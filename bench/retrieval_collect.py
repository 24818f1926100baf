"""Collection for ``bench.retrieval_eval``: each set ingested into a fresh collection of real
servers, every question asked through the real :class:`HybridRetriever`, and the dense and BM25
candidate lists it fetched recorded (:class:`QuestionHits`), kept on disk for ``--from-hits``."""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from bench._common import data_servers, median
from bench.retrieval_sets import EvalSet

# Korean question words and bound nouns that survive the morpheme analysis (얼마, 며칠, "할 수",
# "하는 건가요" → 수, 거) but say nothing a passage would: dropped from the query only, to
# measure whether removing more than particles and endings before BM25 helps (modes *-qw)
QUESTION_FRAME_TERMS = frozenset(
    "거 것 수 때 얼마 며칠 정도 데 곳 뭐 무엇 몇 어디 언제 누구 가지".split()
)
RECORD_DEPTH = 50  # candidates recorded per side, so calibration can replay smaller depths
UNANSWERABLE_PER_SET = 300
INGEST_BATCH = 32


# --------------------------------------------------------------------------- recording


@dataclass
class QuestionHits:
    """What the retriever fetched for one question: (chunk id, doc id, score) per side."""

    qid: str
    gold: list[str]
    dense: list[tuple[str, str, float]]
    sparse: list[tuple[str, str, float]]
    language: str = ""
    # BM25 with QUESTION_FRAME_TERMS dropped from the query (Korean questions it changes)
    sparse_qw: list[tuple[str, str, float]] | None = None
    # rankings that need the servers (hybrid+parent, hybrid+rerank): doc ids, by mode name,
    # written during collection by RECORDED_MODES
    extra: dict[str, list[str]] = field(default_factory=dict)


class RecordingStore:
    """The real ChunkStore, remembering the candidate lists of a question's first searches
    (the unfiltered ones; a question naming an article searches a second time, filtered)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.dense: list[Any] = []
        self.sparse: list[Any] = []
        self.searches = 0

    def reset(self) -> None:
        self.dense, self.sparse, self.searches = [], [], 0

    async def require(self, collection: str) -> str:
        return str(await self._store.require(collection))

    async def search_dense(self, *args: Any, **kwargs: Any) -> list[Any]:
        hits: list[Any] = await self._store.search_dense(*args, **kwargs)
        self.searches += 1
        self.dense = self.dense or hits
        return hits

    async def search_sparse(self, *args: Any, **kwargs: Any) -> list[Any]:
        hits: list[Any] = await self._store.search_sparse(*args, **kwargs)
        self.searches += 1
        self.sparse = self.sparse or hits
        return hits

    async def query_first_chunks(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self._store.query_first_chunks(*args, **kwargs)
        return rows


# A ranking that needs the servers (the hook for hybrid+parent and hybrid+rerank): called for
# every answerable question after the hybrid retrieval, with the collection, the question, the
# data clients, the retrieval config and what was recorded; returns doc ids, best first, which
# become the mode's ranking (QuestionHits.extra). Register with RECORDED_MODES[name] = fn.
RecordedMode = Callable[[str, str, Any, Any, "QuestionHits"], Awaitable[list[str]]]
RECORDED_MODES: dict[str, RecordedMode] = {}


def _rows(hits: Iterable[Any]) -> list[tuple[str, str, float]]:
    from indexing import schema

    return [(h.chunk_id, str(h.entity.get(schema.DOC_ID)), float(h.score)) for h in hits]


@dataclass
class Collected:
    answerable: dict[str, list[QuestionHits]] = field(default_factory=dict)
    # set whose collection was asked → questions of other sets
    unanswerable: dict[str, list[QuestionHits]] = field(default_factory=dict)
    chunks: dict[str, int] = field(default_factory=dict)
    ingest_s: dict[str, float] = field(default_factory=dict)
    query_ms: dict[str, float] = field(default_factory=dict)


async def collect(sets: Sequence[EvalSet], runtime_dir: Path) -> Collected:
    from services.common.clients import build_data_clients, build_pipeline, warm_up_models
    from services.common.settings import IndexingSettings, QuerySettings

    collected = Collected()
    with data_servers(runtime_dir) as servers:
        common: dict[str, Any] = {
            "milvus": {"uri": servers.milvus_uri},
            "redis": {"url": servers.redis_url, "key_prefix": "bench"},
            "log_json": False,
        }
        indexing = IndexingSettings(**common)
        query = QuerySettings(**common)
        clients = build_data_clients(indexing, can_create=True)
        try:
            await warm_up_models(clients.embedder)
            pipeline = build_pipeline(clients, indexing)
            names = {}
            for s in sets:
                names[s.name] = (
                    f"eval_{re.sub(r'[^A-Za-z0-9]', '_', s.name)}_{uuid.uuid4().hex[:6]}"
                )
                started = time.perf_counter()
                collected.chunks[s.name] = await ingest(pipeline, names[s.name], s.documents)
                collected.ingest_s[s.name] = time.perf_counter() - started
            # chunks as ranked: parent context grows a document's own chunks, which leaves the
            # order of documents as it is, and its store calls are not recorded
            config = replace(
                retrieval_config(query.retrieval),
                candidates=RECORD_DEPTH,
                top_k=2 * RECORD_DEPTH,
                parent_tokens=0,
            )
            asker = _Asker(clients, RecordingStore(clients.store), config)
            for s in sets:
                others = [q for o in sets if o is not s for q in _sample(o)]
                for kind, questions in (("answerable", s.questions), ("unanswerable", others)):
                    rows, took = await asker.ask_all(names[s.name], questions, kind)
                    getattr(collected, kind)[s.name] = rows
                    if kind == "answerable":
                        collected.query_ms[s.name] = median(took)
                    print(f"  {s.name}: {len(rows)} {kind} questions asked", flush=True)
        finally:
            await clients.aclose()
    return collected


@dataclass
class _Asker:
    """Asks questions through the real HybridRetriever and records what it fetched."""

    clients: Any
    store: RecordingStore
    config: Any

    async def ask_all(
        self, collection: str, questions: Sequence[dict[str, Any]], kind: str
    ) -> tuple[list[QuestionHits], list[float]]:
        from query_engine.retrieval import HybridRetriever

        retriever = HybridRetriever(
            store=self.store,  # type: ignore[arg-type]
            embedder=self.clients.embedder,
            collection=collection,
            config=self.config,
        )
        rows, took = [], []
        for q in questions:
            self.store.reset()
            t0 = time.perf_counter()
            nodes = await retriever.aretrieve(q["question"])
            took.append((time.perf_counter() - t0) * 1000)
            rows.append(self._recorded(q, nodes, retriever))
            if kind == "answerable":
                await self._extras(collection, q["question"], rows[-1])
        return rows, took

    def _recorded(self, q: dict[str, Any], nodes: list[Any], retriever: Any) -> QuestionHits:
        from docqa_core.scripts import detect_language
        from query_engine.retrieval import fuse

        store = self.store
        if retriever.trace.pinned == 0 and retriever.trace.superseded == 0:
            # the real retriever's output is the fusion of what it fetched
            assert [n.node.node_id for n in nodes] == [
                n.node.node_id for n in fuse(store.dense, store.sparse, self.config)
            ][: self.config.top_k]
        return QuestionHits(
            q["qid"],
            list(q.get("gold_doc_ids", [])),
            _rows(store.dense),
            _rows(store.sparse),
            detect_language(q["question"]),
        )

    async def _extras(self, collection: str, question: str, row: QuestionHits) -> None:
        from indexing.analysis import analyze
        from query_engine.dated_versions import validity_expression

        if row.language == "ko":
            terms = analyze(question).split()
            kept = [t for t in terms if t not in QUESTION_FRAME_TERMS]
            if kept != terms:
                hits = await self.store._store.search_sparse(
                    collection,
                    " ".join(kept),
                    limit=RECORD_DEPTH,
                    expr=validity_expression(date.today()),
                )
                row.sparse_qw = _rows(hits)
        for name, mode in RECORDED_MODES.items():
            row.extra[name] = await mode(collection, question, self.clients, self.config, row)


def _sample(s: EvalSet) -> list[dict[str, Any]]:
    n = min(UNANSWERABLE_PER_SET, len(s.questions))
    return random.Random(f"unanswerable:{s.name}").sample(s.questions, n)


async def ingest(pipeline: Any, collection: str, documents: Sequence[dict[str, Any]]) -> int:
    from indexing.pipeline import SourceDocument

    chunks = 0
    started = time.perf_counter()
    for start in range(0, len(documents), INGEST_BATCH):
        batch = [
            SourceDocument(doc_id=d["doc_id"], text=d["text"], title=d.get("title") or "")
            for d in documents[start : start + INGEST_BATCH]
        ]
        outcomes = await pipeline.ingest(collection, batch, flush=False)
        failed = [o for o in outcomes if o.outcome == "failed"]
        if failed:
            raise SystemExit(f"ingestion failed: {failed[:3]}")
        chunks += sum(o.chunks for o in outcomes)
        done = min(start + INGEST_BATCH, len(documents))
        rate = done / (time.perf_counter() - started)
        print(f"  {collection}: {done}/{len(documents)} docs, {chunks} chunks, {rate:.1f} docs/s",
              flush=True)  # fmt: skip
    await pipeline._store.flush(collection)
    return chunks


def retrieval_config(settings: Any) -> Any:
    """The service's retrieval configuration, as the query service builds it."""
    from query_engine.retrieval import RetrievalConfig

    fields = RetrievalConfig.__dataclass_fields__
    return RetrievalConfig(**{k: v for k, v in settings.model_dump().items() if k in fields})


# --------------------------------------------------------------------------- hits on disk


def save_hits(collected: Collected, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "answerable": {s: [vars(q) for q in rows] for s, rows in collected.answerable.items()},
        "unanswerable": {s: [vars(q) for q in rows] for s, rows in collected.unanswerable.items()},
        "chunks": collected.chunks,
        "ingest_s": collected.ingest_s,
        "query_ms": collected.query_ms,
    }
    (directory / "hits.json").write_text(json.dumps(payload, ensure_ascii=False))


def load_hits(directory: Path) -> Collected:
    payload = json.loads((directory / "hits.json").read_text())

    def rows(items: list[dict[str, Any]]) -> list[QuestionHits]:
        return [
            QuestionHits(
                q["qid"],
                q["gold"],
                [(r[0], r[1], r[2]) for r in q["dense"]],
                [(r[0], r[1], r[2]) for r in q["sparse"]],
                q.get("language", ""),
                None if q.get("sparse_qw") is None else [tuple(r) for r in q["sparse_qw"]],
                q.get("extra") or {},
            )
            for q in items
        ]

    return Collected(
        answerable={s: rows(v) for s, v in payload["answerable"].items()},
        unanswerable={s: rows(v) for s, v in payload["unanswerable"].items()},
        chunks=payload["chunks"],
        ingest_s=payload["ingest_s"],
        query_ms=payload["query_ms"],
    )

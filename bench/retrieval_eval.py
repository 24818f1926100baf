"""Retrieval quality: recall@1/5/10 and MRR@10 with 95% intervals, on a dev/test split.

    python -m bench.retrieval_eval [SET_DIR ...] [--ko-questions FILE] [--max-questions N]
                                   [--only SET ...] [--quick] [--from-hits] [--sweep]

A set is a directory holding ``documents.jsonl`` (``doc_id, title, text``) and
``questions.jsonl`` (``qid, question, gold_doc_ids``), the format of ``../shared/eval``. Without
SET_DIR the shared sets ``en_xquad`` and ``en_covidqa_long`` are converted (with the shared
converter) under ``.docqa/eval/sets``, a Korean set is built from ``../shared/seeds`` (when
present) with the hand-written questions of ``--ko-questions``, default the committed
``bench/data/ko_seeds_questions.jsonl`` (see :func:`build_seed_set`), and the committed Korean
set ``bench/data/ko_answers`` (regulations, whole documents as gold) is added. ``--quick``
(``en_xquad`` and the Korean sets, 150 questions each) and any other partial run write
``retrieval_eval_quick.json`` instead, so they never replace the full run's figures.

Each set is ingested into a fresh collection of a real milvus-lite server (with a real Redis)
that this script starts and stops, through the real :class:`IngestionPipeline` (chunking,
Korean analysis, e5 passages). Every question then goes through the real
:class:`HybridRetriever` with the service's default :class:`RetrievalSettings`; the dense and
BM25 candidate lists it fetched are recorded, and the modes are the service's fusion applied to
them: weights 1/0 (dense), 0/1 (BM25) and the configured ones (hybrid); ``bm25-qw`` and
``hybrid-qw`` drop Korean question words (QUESTION_FRAME_TERMS) from the BM25 query; a mode
that needs the servers (hybrid+parent, hybrid+rerank) registers in RECORDED_MODES. Chunks
map to documents (a document's rank is that of its best chunk); recall@k counts a question when
one of its gold documents is among the first k documents.

Every question is on the dev or the test side of a fixed split (``bench.retrieval_stats``).
Figures are reported on test with 95% bootstrap intervals over questions; the per-language
fusion calibration chooses on dev and reports on test with paired intervals of the change.

The "nothing relevant" gate (``min_dense_score``) is calibrated in the same run: each set's
collection is also asked the questions of the other sets, which it cannot answer. For each
threshold the script reports the false "not found" rate (answerable questions whose best dense
cosine falls below it) and the false-answer rate (unanswerable ones at or above it).

Writes ``bench/results/retrieval_eval.json`` and the raw candidate lists under
``.docqa/eval/hits`` (``--from-hits`` recomputes everything from them without servers).
"""

from __future__ import annotations

import os

# numpy's OpenBLAS threads fight the embedder's OpenMP threads (3x slower queries measured)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import asyncio
import json
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from bench._common import (
    SHARED_DIR,
    data_servers,
    docqa_home,
    fmt,
    median,
    table,
    write_results,
)
from bench.retrieval_stats import (
    calibrate,
    paired_difference,
    per_question,
    split_of,
    summarize,
)

SHARED_SETS = ("en_xquad", "en_covidqa_long")
KO_SET = "ko_seeds"
KO_QUESTIONS = Path(__file__).resolve().parent / "data" / "ko_seeds_questions.jsonl"
KO_ANSWERS = Path(__file__).resolve().parent / "data" / "ko_answers"  # already in the format
BASE_MODES = ("dense", "bm25", "hybrid")
# Korean question words and bound nouns that survive the morpheme analysis (얼마, 며칠, "할 수",
# "하는 건가요" → 수, 거) but say nothing a passage would: dropped from the query only, to
# measure whether removing more than particles and endings before BM25 helps (modes *-qw)
QUESTION_FRAME_TERMS = frozenset(
    "거 것 수 때 얼마 며칠 정도 데 곳 뭐 무엇 몇 어디 언제 누구 가지".split()
)
KS = (1, 5, 10)
RECORD_DEPTH = 50  # candidates recorded per side, so calibration can replay smaller depths
UNANSWERABLE_PER_SET = 300
GATE_THRESHOLDS = [round(0.70 + 0.01 * i, 2) for i in range(21)]
MAX_FALSE_NOT_FOUND = 0.02
INGEST_BATCH = 32


# --------------------------------------------------------------------------- sets


@dataclass
class EvalSet:
    name: str
    documents: list[dict[str, Any]]
    questions: list[dict[str, Any]]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_set(
    directory: Path, max_questions: int | None, *, answerable_only: bool = False
) -> EvalSet:
    questions = read_jsonl(directory / "questions.jsonl")
    if answerable_only:  # a question without gold documents (ko_answers has 6) has no recall
        questions = [q for q in questions if q.get("gold_doc_ids")]
    if max_questions and len(questions) > max_questions:
        questions = random.Random(directory.name).sample(questions, max_questions)
    return EvalSet(directory.name, read_jsonl(directory / "documents.jsonl"), questions)


def convert_shared_sets(out_dir: Path, names: Sequence[str] = SHARED_SETS) -> list[Path]:
    """The shared sets in the uniform format, written once with the shared converter."""
    converter = SHARED_DIR / "eval" / "make_eval.py"
    missing = [name for name in names if not (out_dir / name / "questions.jsonl").exists()]
    if missing:
        if not converter.exists():
            raise SystemExit(f"no set given and {converter} is missing")
        subprocess.run(
            [sys.executable, str(converter), "--raw-dir", str(converter.parent / "raw"),
             "--out-dir", str(out_dir), "--only", *missing],
            check=True,
        )  # fmt: skip
    return [out_dir / name for name in names]


def seed_passages(text: str, min_chars: int = 120, max_chars: int = 600) -> list[str]:
    """Blank-line paragraphs, short ones merged with the next, as retrieval units."""
    passages: list[str] = []
    current = ""
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not re.search(r"\w", paragraph):
            continue
        if current and len(current) + len(paragraph) > max_chars:
            passages.append(current)
            current = paragraph
        else:
            current = f"{current}\n\n{paragraph}" if current else paragraph
        if len(current) >= min_chars:
            passages.append(current)
            current = ""
    if current:
        passages.append(current)
    return passages


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def build_seed_set(seeds_dir: Path, questions_file: Path, out_dir: Path) -> Path:
    """A Korean set over ``../shared/seeds``, built at run time (no seed text in the repo).

    Documents are the seed files' passages (:func:`seed_passages`), ids ``<file stem>#<n>``.
    ``questions_file`` holds one ``{"qid", "question", "seed", "answer_key"}`` per line, written
    by hand: ``seed`` is the prefix of the seed file name, ``answer_key`` a short span of the
    passage that answers the question (or ``answer_keys``, a list, when the answer spans
    passages). Gold documents are the passages of that file containing a key (whitespace
    ignored); a key found nowhere is an error, so the file cannot go stale.
    """
    documents = []
    for path in sorted(seeds_dir.glob("*.txt")):
        for n, passage in enumerate(seed_passages(path.read_text(encoding="utf-8"))):
            documents.append({"doc_id": f"{path.stem}#{n}", "title": "", "text": passage})
    questions = []
    for spec in read_jsonl(questions_file):
        keys = [_squash(k) for k in spec.get("answer_keys") or [spec["answer_key"]]]
        gold = [
            d["doc_id"]
            for d in documents
            if d["doc_id"].startswith(spec["seed"])
            and any(key in _squash(d["text"]) for key in keys)
        ]
        if not gold:
            raise SystemExit(f"{questions_file}: {spec['qid']}: answer_key not found in the seeds")
        questions.append({"qid": spec["qid"], "question": spec["question"], "gold_doc_ids": gold})
    target = out_dir / KO_SET
    target.mkdir(parents=True, exist_ok=True)
    for name, rows in (("documents", documents), ("questions", questions)):
        with (target / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return target


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
            config = replace(
                retrieval_config(query.retrieval), candidates=RECORD_DEPTH, top_k=2 * RECORD_DEPTH
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


# --------------------------------------------------------------------------- metrics


def hits_of(rows: Sequence[tuple[str, str, float]], depth: int) -> list[Any]:
    from indexing import schema
    from indexing.store import Hit

    return [Hit(cid, score, {schema.DOC_ID: doc}) for cid, doc, score in rows[:depth]]


def mode_config(config: Any, mode: str) -> Any:
    base = mode.removesuffix(QW)
    if base == "dense":
        return replace(config, dense_weight=1.0, sparse_weight=0.0)
    if base == "bm25":
        return replace(config, dense_weight=0.0, sparse_weight=1.0)
    return config


QW = "-qw"  # the mode with QUESTION_FRAME_TERMS dropped from the BM25 query


def ranked_docs(q: QuestionHits, config: Any, mode: str = "hybrid") -> list[str]:
    """Documents in the order of their best chunk in the mode's fused ranking (or the ranking
    a recorded mode wrote)."""
    from query_engine.retrieval import fused_ranking

    if mode in q.extra:
        return q.extra[mode]
    sparse_rows = q.sparse_qw if mode.endswith(QW) and q.sparse_qw is not None else q.sparse
    config = mode_config(config, mode)
    doc_of = {cid: doc for cid, doc, _ in (*q.dense, *sparse_rows)}
    dense, sparse = hits_of(q.dense, config.candidates), hits_of(sparse_rows, config.candidates)
    docs: dict[str, None] = {}
    for cid, _ in fused_ranking(dense, sparse, config):
        docs.setdefault(doc_of[cid], None)
    return list(docs)


def found_at(questions: Sequence[QuestionHits], config: Any, mode: str) -> list[int | None]:
    """Per question, the rank of its first gold document (None: not among those ranked)."""
    ranks = []
    for q in questions:
        gold = set(q.gold)
        docs = ranked_docs(q, config, mode)
        ranks.append(next((i + 1 for i, d in enumerate(docs) if d in gold), None))
    return ranks


def metrics(
    questions: Sequence[QuestionHits], config: Any, mode: str = "hybrid"
) -> dict[str, float]:
    values = per_question(found_at(questions, config, mode), KS)
    n = len(questions) or 1
    return {metric: sum(v) / n for metric, v in values.items()}


def modes_of(questions: Sequence[QuestionHits]) -> list[str]:
    """The base modes, the -qw ones where Korean questions were recorded, the recorded ones."""
    modes = list(BASE_MODES)
    if any(q.sparse_qw is not None for q in questions):
        modes += ["bm25" + QW, "hybrid" + QW]
    return modes + sorted({m for q in questions for m in q.extra})


def mode_metrics(questions: Sequence[QuestionHits], config: Any) -> dict[str, dict[str, float]]:
    return {mode: metrics(questions, config, mode) for mode in BASE_MODES}


def hybrid_not_worse(by_mode: dict[str, dict[str, float]], tolerance: float = 0.0) -> bool:
    return all(
        by_mode["hybrid"][m] + tolerance >= max(by_mode["dense"][m], by_mode["bm25"][m])
        for m in by_mode["hybrid"]
    )


def in_split(name: str, questions: Sequence[QuestionHits], split: str) -> list[QuestionHits]:
    return (
        list(questions)
        if split == "all"
        else [q for q in questions if split_of(name, q.qid) == split]
    )


def gate_table(collected: Collected) -> list[dict[str, float]]:
    """False "not found" and false-answer rates of the dense-cosine gate, per threshold.

    Rates are averaged over the sets (each set weighs the same), so a large set does not hide a
    small one."""
    rows = []
    for threshold in GATE_THRESHOLDS:
        false_nf = [
            _rate(collected.answerable[s], threshold, below=True) for s in collected.answerable
        ]
        false_ans = [
            _rate(rows, threshold, below=False) for rows in collected.unanswerable.values() if rows
        ] or [0.0]
        rows.append(
            {
                "threshold": threshold,
                "false_not_found": sum(false_nf) / len(false_nf),
                "false_answer": sum(false_ans) / len(false_ans),
                "false_not_found_max": max(false_nf),
                "false_answer_max": max(false_ans),
            }
        )
    return rows


def suggest_gate(gate: Sequence[dict[str, float]]) -> dict[str, float] | None:
    """A wrong "not found" loses an answer the documents hold; a wrong pass only costs an LLM
    call that the prompt tells to say "not found" itself. So: the strictest threshold that
    still answers all but MAX_FALSE_NOT_FOUND of every set's answerable questions."""
    passing = [g for g in gate if g["false_not_found_max"] <= MAX_FALSE_NOT_FOUND]
    return max(passing, key=lambda g: g["threshold"]) if passing else None


def _best(q: QuestionHits) -> float:
    return q.dense[0][2] if q.dense else -1.0


def _rate(questions: Sequence[QuestionHits], threshold: float, *, below: bool) -> float:
    if not questions:
        return 0.0
    hit = [(_best(q) < threshold) if below else (_best(q) >= threshold) for q in questions]
    return sum(hit) / len(hit)


def per_set_gate(collected: Collected, threshold: float) -> dict[str, dict[str, float]]:
    return {
        s: {
            "false_not_found": _rate(collected.answerable[s], threshold, below=True),
            "false_answer": _rate(collected.unanswerable.get(s, []), threshold, below=False),
            "best_dense_median_answerable": median([_best(q) for q in collected.answerable[s]]),
            "best_dense_median_unanswerable": median(
                [_best(q) for q in collected.unanswerable.get(s, [])]
            ),
        }
        for s in collected.answerable
    }


def sweep(collected: Collected, config: Any, top: int = 15) -> list[dict[str, Any]]:
    """The fusion settings worth trying, each scored on every set from the recorded hits.

    A setting "meets" when hybrid is at least as good as the better single retriever on every
    set and metric; settings are ranked by their worst set's margin over that bar (so no set
    is sacrificed for another), then by MRR@10 averaged over the sets."""
    grid = [
        replace(config, fusion="convex", dense_weight=w, sparse_weight=round(1 - w, 2),
                candidates=c)
        for w in (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
        for c in (10, 20, 30, 50)
    ] + [
        replace(config, fusion="rrf", rrf_k=k, dense_weight=wd, sparse_weight=1.0, candidates=c)
        for k in (5, 10, 20, 60)
        for wd in (0.5, 0.75, 1.0, 1.5)
        for c in (10, 20, 30, 50)
    ]  # fmt: skip
    rows = []
    for candidate in grid:
        margins, mrr = [], []
        for questions in collected.answerable.values():
            by_mode = mode_metrics(questions, candidate)
            best = {m: max(by_mode["dense"][m], by_mode["bm25"][m]) for m in by_mode["hybrid"]}
            margins.append(min(by_mode["hybrid"][m] - best[m] for m in best))
            mrr.append(by_mode["hybrid"]["MRR@10"])
        rows.append(
            {
                "fusion": candidate.fusion,
                "dense_weight": candidate.dense_weight,
                "sparse_weight": candidate.sparse_weight,
                "rrf_k": candidate.rrf_k if candidate.fusion == "rrf" else None,
                "candidates": candidate.candidates,
                "worst_margin": min(margins),
                "mean_mrr": sum(mrr) / len(mrr),
            }
        )
    rows.sort(key=lambda r: (r["worst_margin"] >= 0, r["mean_mrr"]), reverse=True)
    print(f"\nfusion sweep ({len(rows)} settings; margin = worst hybrid − best single)")
    print(table(
        ["fusion", "w dense", "w bm25", "rrf k", "cand", "worst margin", "mean MRR@10"],
        [[r["fusion"], r["dense_weight"], r["sparse_weight"], r["rrf_k"] or "-",
          r["candidates"], r["worst_margin"], r["mean_mrr"]] for r in rows[:top]],
    ))  # fmt: skip
    return rows


def fusion_grid(config: Any) -> list[Any]:
    """Fusion settings to calibrate over; the current default first (it wins ties)."""
    convex = [
        replace(config, fusion="convex", dense_weight=w / 20, sparse_weight=round(1 - w / 20, 2),
                candidates=c)
        for w in range(2, 19)
        for c in (10, 20, 30, 50)
    ]  # fmt: skip
    rrf = [
        replace(config, fusion="rrf", rrf_k=k, dense_weight=wd, sparse_weight=1.0, candidates=c)
        for k in (5, 10, 20, 60)
        for wd in (0.25, 0.5, 0.75, 1.0, 1.5)
        for c in (20, 50)
    ]  # fmt: skip
    return [config, *convex, *rrf]


def calibration_report(collected: Collected, config: Any) -> dict[str, Any]:
    """Per detected question language, the fusion setting with the highest sum over sets of
    dev R@1 (MRR@10 breaks ties), then default vs calibrated on test with paired intervals."""
    grid = fusion_grid(config)
    out: dict[str, Any] = {"objective": "sum over sets of dev R@1 (+0.01 x MRR@10)"}
    for language in sorted({q.language for qs in collected.answerable.values() for q in qs}):
        dev = _by_set(collected, language, "dev")
        test = _by_set(collected, language, "test")
        if not dev:
            continue

        def score(candidate: Any, dev: dict[str, list[QuestionHits]] = dev) -> float:
            found = [metrics(qs, candidate) for qs in dev.values()]
            return sum(m["R@1"] + 0.01 * m["MRR@10"] for m in found)

        best, best_score = calibrate(grid, score)
        entry: dict[str, Any] = {
            "setting": _setting(best),
            "dev_score": best_score,
            "default_dev_score": score(config),
            "test": {},
        }
        for name, questions in test.items():
            before = per_question(found_at(questions, config, "hybrid"), KS)
            after = per_question(found_at(questions, best, "hybrid"), KS)
            entry["test"][name] = {
                "questions": len(questions),
                "default": summarize(before),
                "calibrated": summarize(after),
                "change": {m: paired_difference(after[m], before[m]) for m in after},
            }
        out[language] = entry
    _print_calibration(out)
    return out


def _by_set(collected: Collected, language: str, split: str) -> dict[str, list[QuestionHits]]:
    chosen = {
        name: [q for q in in_split(name, questions, split) if q.language == language]
        for name, questions in collected.answerable.items()
    }
    return {name: qs for name, qs in chosen.items() if qs}


def _setting(config: Any) -> dict[str, Any]:
    keys = ("fusion", "dense_weight", "sparse_weight", "rrf_k", "candidates")
    return {k: getattr(config, k) for k in keys}


def _print_calibration(out: dict[str, Any]) -> None:
    print("\nfusion calibrated per question language on dev, reported on test (R@1):")
    rows = []
    for language, entry in out.items():
        if not isinstance(entry, dict) or "setting" not in entry:
            continue
        for name, data in entry["test"].items():
            change = data["change"]["R@1"]
            rows.append([
                language, json.dumps(entry["setting"]), name,
                data["default"]["R@1"]["mean"], data["calibrated"]["R@1"]["mean"],
                f"{change['mean']:+.3f} [{change['ci95'][0]:+.3f}, {change['ci95'][1]:+.3f}]",
            ])  # fmt: skip
    print(table(["lang", "setting", "set (test)", "default", "calibrated", "Δ [95% CI]"], rows))


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


# --------------------------------------------------------------------------- report


def set_report(name: str, questions: Sequence[QuestionHits], config: Any) -> dict[str, Any]:
    """One set: per split, each mode's metrics with 95% intervals; on the whole set, the plain
    means (comparable with runs before the split)."""
    modes = modes_of(questions)
    data: dict[str, Any] = {"questions": len(questions)}
    for split in ("dev", "test"):
        chosen = in_split(name, questions, split)
        data[f"{split}_questions"] = len(chosen)
        data[split] = {
            mode: summarize(per_question(found_at(chosen, config, mode), KS)) for mode in modes
        }
    data["all"] = {mode: metrics(questions, config, mode) for mode in modes}
    test = {mode: {m: v["mean"] for m, v in data["test"][mode].items()} for mode in BASE_MODES}
    data["hybrid_vs_best_single_test"] = {
        m: test["hybrid"][m] - max(test["dense"][m], test["bm25"][m]) for m in test["hybrid"]
    }
    data["hybrid_at_least_best_single_test"] = hybrid_not_worse(test)
    return data


def print_sets(sets: dict[str, dict[str, Any]]) -> None:
    rows = []
    for name, data in sets.items():
        for i, (mode, summary) in enumerate(data["test"].items()):
            cells = [_with_interval(summary[m]) for m in ("R@1", "R@5", "R@10", "MRR@10")]
            label = f"{name} (test {data['test_questions']})" if i == 0 else ""
            rows.append([label, mode, *cells])
    print("\ntest split: mean [95% bootstrap interval over questions]")
    print(table(["set", "mode", "R@1", "R@5", "R@10", "MRR@10"], rows))
    for name, data in sets.items():
        delta = ", ".join(f"{m} {v:+.3f}" for m, v in data["hybrid_vs_best_single_test"].items())
        verdict = "ok" if data["hybrid_at_least_best_single_test"] else "NOT MET"
        print(f"{name}: hybrid − best single (test): {delta}  [{verdict}]")


def _with_interval(summary: dict[str, Any]) -> str:
    low, high = summary["ci95"]
    return f"{summary['mean']:.3f} [{low:.3f}, {high:.3f}]"


def report(collected: Collected, config: Any) -> dict[str, Any]:
    results: dict[str, Any] = {"sets": {}}
    for name, questions in collected.answerable.items():
        results["sets"][name] = {
            "chunks": collected.chunks.get(name),
            "ingest_s": round(collected.ingest_s.get(name, 0.0), 1),
            "retrieve_median_ms": round(collected.query_ms.get(name, 0.0), 1),
            **set_report(name, questions, config),
        }
    print_sets(results["sets"])
    results["hybrid_test_r1_sum"] = sum(
        d["test"]["hybrid"]["R@1"]["mean"] for d in results["sets"].values()
    )
    results["question_frame_terms"] = question_frame_report(collected, config)
    results["gate"] = gate_report(collected, config)
    results["config"] = {k: getattr(config, k) for k in config.__dataclass_fields__}
    results["metric_notes"] = (
        "document level: a document ranks where its best chunk does; MRR cut at 10; dense and "
        "bm25 are the service's fusion with weights 1/0 and 0/1 over the same candidates; "
        "split: sha256(set, qid) parity (bench/retrieval_stats.py); intervals: percentile "
        "bootstrap over questions, 2000 resamples; 'all' holds plain means over every question"
    )
    results["hybrid_at_least_best_single_everywhere_test"] = all(
        d["hybrid_at_least_best_single_test"] for d in results["sets"].values()
    )
    return results


def question_frame_report(collected: Collected, config: Any) -> dict[str, Any]:
    """Does dropping QUESTION_FRAME_TERMS from Korean BM25 queries help? Paired changes of
    R@1 and MRR@10 on dev and test, for BM25 alone and hybrid."""
    out: dict[str, Any] = {"terms": sorted(QUESTION_FRAME_TERMS), "sets": {}}
    for name, questions in collected.answerable.items():
        if not any(q.sparse_qw is not None for q in questions):
            continue
        out["sets"][name] = {"changed_queries": sum(q.sparse_qw is not None for q in questions)}
        for split in ("dev", "test"):
            chosen = in_split(name, questions, split)
            for mode in ("bm25", "hybrid"):
                before = per_question(found_at(chosen, config, mode), KS)
                after = per_question(found_at(chosen, config, mode + QW), KS)
                out["sets"][name][f"{split}_{mode}"] = {
                    m: paired_difference(after[m], before[m]) for m in ("R@1", "MRR@10")
                }
    if out["sets"]:
        print("\nKorean BM25 query without question-frame terms (after − before, paired 95% CI):")
        rows = [
            [name, key, f"{d['R@1']['mean']:+.3f} [{d['R@1']['ci95'][0]:+.3f}, "
             f"{d['R@1']['ci95'][1]:+.3f}]", f"{d['MRR@10']['mean']:+.3f}"]
            for name, data in out["sets"].items()
            for key, d in data.items() if key != "changed_queries"
        ]  # fmt: skip
        print(table(["set", "split_mode", "ΔR@1 [CI]", "ΔMRR@10"], rows))
    return out


def gate_report(collected: Collected, config: Any) -> dict[str, Any]:
    gate = gate_table(collected)
    current = config.min_dense_score
    print("\nnothing-relevant gate (best dense cosine < threshold → \"not found\"),"
          " rates averaged over sets:")  # fmt: skip
    print(table(
        ["threshold", "false not-found", "false answer", "worst set nf", "worst set ans"],
        [[g["threshold"], g["false_not_found"], g["false_answer"], g["false_not_found_max"],
          g["false_answer_max"]] for g in gate if abs(g["threshold"] - current) <= 0.06],
    ))  # fmt: skip
    per_set = per_set_gate(collected, current)
    for name, data in per_set.items():
        print(
            f"  at {current:.2f}: {name}: false not-found {fmt(data['false_not_found'])}, "
            f"false answer {fmt(data['false_answer'])} (median best cosine answerable "
            f"{fmt(data['best_dense_median_answerable'])}, unanswerable "
            f"{fmt(data['best_dense_median_unanswerable'])})"
        )
    suggested = suggest_gate(gate)
    if suggested is not None:
        print(
            f"  highest threshold losing at most {MAX_FALSE_NOT_FOUND:.0%} of any set's answerable "
            f"questions: {suggested['threshold']:.2f} (false not-found "
            f"{fmt(suggested['false_not_found'])}, false answer {fmt(suggested['false_answer'])})"
        )
    return {
        "threshold": current,
        "per_set": per_set,
        "sweep": gate,
        "suggested": suggested,
        "suggestion_rule": f"highest threshold with false not-found <= {MAX_FALSE_NOT_FOUND} "
        "on every set",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sets", nargs="*", type=Path, help="directories in the shared format")
    parser.add_argument("--work-dir", type=Path, default=docqa_home() / "eval")
    parser.add_argument(
        "--ko-questions",
        type=Path,
        default=None,
        help="default bench/data/ko_seeds_questions.jsonl",
    )
    parser.add_argument("--max-questions", type=int, default=None, help="per set, sampled")
    parser.add_argument("--only", nargs="+", default=None, metavar="SET", help="these sets only")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the Korean sets and en_xquad, 150 questions each (about 2 minutes of CPU)",
    )
    parser.add_argument("--from-hits", action="store_true", help="reuse the recorded hits")
    parser.add_argument("--sweep", action="store_true", help="also try other fusion settings")
    parser.add_argument(
        "--no-calibration", action="store_true", help="skip the per-language fusion calibration"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.only = args.only or ["en_xquad", KO_SET, KO_ANSWERS.name]
        args.max_questions = args.max_questions or 150
    # a partial run keeps its own results and hits: it never replaces the full run's
    partial = bool(args.max_questions or args.only or args.sets)
    suffix = "_quick" if partial else ""

    from services.common.settings import QuerySettings

    config = retrieval_config(QuerySettings().retrieval)
    hits_dir = args.work_dir / f"hits{suffix}"
    if args.from_hits:
        collected = load_hits(hits_dir)
    else:
        sets = [load_set(d, args.max_questions, answerable_only=True) for d in _set_dirs(args)]
        for s in sets:
            print(f"{s.name}: {len(s.documents)} documents, {len(s.questions)} questions")
        runtime = args.work_dir / f"run-{os.getpid()}"
        collected = asyncio.run(collect(sets, runtime))
        save_hits(collected, hits_dir)
    results = report(collected, config)
    if not args.no_calibration:
        results["calibration"] = calibration_report(collected, config)
    if args.sweep:
        results["sweep"] = sweep(collected, config)
    results["partial_run"] = partial
    path = write_results(f"retrieval_eval{suffix}", results)
    print(f"\nwrote {path}")
    return 0


def _set_dirs(args: argparse.Namespace) -> list[Path]:
    if args.sets:
        return list(args.sets)
    shared = [name for name in SHARED_SETS if not args.only or name in args.only]
    dirs = convert_shared_sets(args.work_dir / "sets", shared)
    ko_questions = args.ko_questions or KO_QUESTIONS
    seeds = SHARED_DIR / "seeds"
    if ko_questions.exists() and seeds.is_dir():
        dirs.append(build_seed_set(seeds, ko_questions, args.work_dir / "sets"))
    elif args.ko_questions:
        raise SystemExit(f"{ko_questions} or {seeds} is missing")
    dirs.append(KO_ANSWERS)
    if args.only:
        dirs = [d for d in dirs if d.name in args.only]
    return dirs


if __name__ == "__main__":
    sys.exit(main())

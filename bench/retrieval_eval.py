"""Retrieval quality: recall@1/5/10 and MRR@10 with 95% intervals, on a dev/test split.

    python -m bench.retrieval_eval [SET_DIR ...] [--ko-questions FILE] [--max-questions N]
                                   [--only SET ...] [--quick] [--from-hits] [--sweep]
                                   [--rerank-url URL [--rerank-model NAME] | --rerank-local]

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
that needs the servers registers in RECORDED_MODES: ``hybrid+rerank`` (``bench.retrieval_rerank``)
does with ``--rerank-url`` or ``--rerank-local``, and writes ``retrieval_eval[_quick]_rerank.json``.
Parent-section context is not a mode here: it grows and merges a document's own chunks, so the
order of documents, which these figures count, is the hybrid one by construction. Chunks
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
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from bench._common import SHARED_DIR, docqa_home, write_results
from bench.retrieval_calibration import calibration_report, fusion_grid, sweep
from bench.retrieval_collect import (
    INGEST_BATCH,
    QUESTION_FRAME_TERMS,
    RECORD_DEPTH,
    RECORDED_MODES,
    UNANSWERABLE_PER_SET,
    Collected,
    QuestionHits,
    RecordedMode,
    RecordingStore,
    collect,
    ingest,
    load_hits,
    retrieval_config,
    save_hits,
)
from bench.retrieval_metrics import (
    BASE_MODES,
    KS,
    QW,
    found_at,
    hits_of,
    hybrid_not_worse,
    in_split,
    metrics,
    mode_config,
    mode_metrics,
    modes_of,
    ranked_docs,
)
from bench.retrieval_report import (
    GATE_THRESHOLDS,
    MAX_FALSE_NOT_FOUND,
    gate_report,
    gate_table,
    per_set_gate,
    print_sets,
    question_frame_report,
    report,
    set_report,
    suggest_gate,
)
from bench.retrieval_rerank import RerankRun, local_rerank_server, register
from bench.retrieval_sets import (
    KO_ANSWERS,
    KO_QUESTIONS,
    KO_SET,
    SHARED_SETS,
    EvalSet,
    build_seed_set,
    convert_shared_sets,
    load_set,
    read_jsonl,
    seed_passages,
)

# the names this module held before it was split by subject; other modules and tests import
# them from here
__all__ = [
    "BASE_MODES",
    "GATE_THRESHOLDS",
    "INGEST_BATCH",
    "KO_ANSWERS",
    "KO_QUESTIONS",
    "KO_SET",
    "KS",
    "MAX_FALSE_NOT_FOUND",
    "QUESTION_FRAME_TERMS",
    "QW",
    "RECORDED_MODES",
    "RECORD_DEPTH",
    "SHARED_SETS",
    "UNANSWERABLE_PER_SET",
    "Collected",
    "EvalSet",
    "QuestionHits",
    "RecordedMode",
    "RecordingStore",
    "build_seed_set",
    "calibration_report",
    "collect",
    "convert_shared_sets",
    "found_at",
    "fusion_grid",
    "gate_report",
    "gate_table",
    "hits_of",
    "hybrid_not_worse",
    "in_split",
    "ingest",
    "load_hits",
    "load_set",
    "main",
    "metrics",
    "mode_config",
    "mode_metrics",
    "modes_of",
    "per_set_gate",
    "print_sets",
    "question_frame_report",
    "ranked_docs",
    "read_jsonl",
    "report",
    "retrieval_config",
    "save_hits",
    "seed_passages",
    "set_report",
    "suggest_gate",
    "sweep",
]


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
    _rerank_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.only = args.only or ["en_xquad", KO_SET, KO_ANSWERS.name]
        args.max_questions = args.max_questions or 150
    # a partial run keeps its own results and hits: it never replaces the full run's
    partial = bool(args.max_questions or args.only or args.sets)
    rerank = _rerank_run(args)
    suffix = ("_quick" if partial else "") + ("_rerank" if rerank else "")

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
        collected = _collect(sets, runtime, args, rerank)
        save_hits(collected, hits_dir)
    results = report(collected, config)
    if not args.no_calibration:
        results["calibration"] = calibration_report(collected, config)
    if args.sweep:
        results["sweep"] = sweep(collected, config)
    results["partial_run"] = partial
    if rerank is not None and not args.from_hits:
        results["rerank"] = rerank.summary()
    path = write_results(f"retrieval_eval{suffix}", results)
    print(f"\nwrote {path}")
    return 0


def _rerank_arguments(parser: argparse.ArgumentParser) -> None:
    endpoint = parser.add_mutually_exclusive_group()
    endpoint.add_argument("--rerank-url", default=None, help="add hybrid+rerank: this /rerank URL")
    endpoint.add_argument(
        "--rerank-local",
        action="store_true",
        help="add hybrid+rerank against deploy.rerank_server, started for the run",
    )
    parser.add_argument("--rerank-model", default="", help="model name sent to --rerank-url")
    parser.add_argument("--rerank-candidates", type=int, default=30)
    parser.add_argument(
        "--rerank-timeout-s", type=float, default=30.0, help="per question (a slow CPU reranker)"
    )


def _rerank_run(args: argparse.Namespace) -> RerankRun | None:
    if not (args.rerank_url or args.rerank_local):
        return None
    from deploy.rerank_server import SERVED_NAME

    model = args.rerank_model or (SERVED_NAME if args.rerank_local else "")
    url = args.rerank_url or "(local)"
    return RerankRun(url, model, args.rerank_candidates, args.rerank_timeout_s)


def _collect(
    sets: list[EvalSet], runtime: Path, args: argparse.Namespace, rerank: RerankRun | None
) -> Collected:
    if rerank is None:
        return asyncio.run(collect(sets, runtime))
    with contextlib.ExitStack() as stack:
        if args.rerank_local:
            rerank.url = stack.enter_context(local_rerank_server())
        register(rerank)
        return asyncio.run(collect(sets, runtime))


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

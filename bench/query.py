"""Query service latency and throughput, against the running local stack.

    python -m bench.query [--up] [--duration 5] [--rounds 3] [--retrieve-questions 200]

(a) Cached answers: the same question POSTed to ``/v1/query`` over and over (``"cached": true``
    after the first), at concurrency 1, 16 and 64, next to a bare FastAPI endpoint returning a
    JSON body of the same size, served the same way (``uvicorn.run``, one worker, the same
    thread settings) and loaded the same way, round after round in the same run.
(b) Retrieval only: ``/v1/retrieve`` for distinct questions one at a time, over a collection of
    10,000+ chunks (en_xquad paragraphs plus en_covidqa papers cut into sentences), first with
    cold query embeddings, then again with the embeddings cached. An in-process profile splits
    one retrieval into its stages (embed, analyze, dense search, BM25 search, fusion).
(c) Full path with the real vLLM: ``"stream": true`` Server-Sent Events, time to the first
    token event and to the final event, next to vLLM answering the same sources directly.

With ``--up`` the stack starts with a per-key rate limit the load cannot reach
(``DOCQA_RATE_LIMIT_QUERIES_PER_MINUTE``, unless set), so (a) measures answers, not 429s; a
stack already running keeps its limit, and (a)'s ``errors`` column says if it refused.

The load generator is ``wrk`` (C, epoll; ``apt-get install wrk``) when it is on PATH, else an
asyncio loop over one shared ``httpx.AsyncClient``; the results say which. Writes
``bench/results/query.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import docqa_home, fmt, ratio, table, write_results
from bench.query_llm import LLM_IDLE_S, llm_path, stream_answer, vllm_direct
from bench.query_load import (
    CONCURRENCY,
    BareServer,
    Load,
    cached_vs_bare,
    ensure_load_generator,
    load_httpx,
    load_wrk,
    run_load,
    serve_bare,
)
from bench.query_retrieve import (
    EMBED_CACHE_HIT_MS,
    latency_summary,
    profile_retrieval,
    retrieve_latency,
)
from bench.query_stack import (
    COLLECTION,
    INGEST_BATCH,
    MIN_CHUNKS,
    Stack,
    corpus,
    ensure_corpus,
    running_stack,
    sentence_passages,
    stored_chunks,
)

# the names this module held before it was split by subject; other benchmarks and tests import
# them from here
__all__ = [
    "COLLECTION",
    "CONCURRENCY",
    "EMBED_CACHE_HIT_MS",
    "INGEST_BATCH",
    "LLM_IDLE_S",
    "MIN_CHUNKS",
    "RETRIEVE_TARGET_MS",
    "BareServer",
    "Load",
    "Stack",
    "cached_vs_bare",
    "corpus",
    "ensure_corpus",
    "ensure_load_generator",
    "latency_summary",
    "llm_path",
    "load_httpx",
    "load_wrk",
    "main",
    "profile_retrieval",
    "retrieve_latency",
    "run_load",
    "running_stack",
    "sentence_passages",
    "serve_bare",
    "stored_chunks",
    "stream_answer",
    "summarize",
    "vllm_direct",
]

RETRIEVE_TARGET_MS = 30.0


# --------------------------------------------------------------------------- main


UNREACHABLE_LIMIT = 10_000_000  # queries per minute and key: counted, never refused


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--up", action="store_true", help="start the local stack first")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="load runs per setting (median)")
    parser.add_argument("--retrieve-questions", type=int, default=200)
    parser.add_argument("--llm-questions", type=int, default=8)
    parser.add_argument("--ingest-only", action="store_true", help="only load the corpus")
    parser.add_argument("--seed", type=int, default=None, help="question sample (default: time)")
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "BODY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), Path(args.serve_bare[1]))
        return 0

    if args.up:
        # the cached-answer loads send thousands of requests a second with one key: under the
        # default per-key limit they measure 429s (set the variable to measure with a limit)
        os.environ.setdefault("DOCQA_RATE_LIMIT_QUERIES_PER_MINUTE", str(UNREACHABLE_LIMIT))
    stack = running_stack(args.up)
    n_retrieve, n_llm = args.retrieve_questions, args.llm_questions
    workdir = docqa_home() / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    documents, questions = corpus(docqa_home() / "eval" / "sets")
    chunks = ensure_corpus(stack, documents)
    print(f"'{COLLECTION}' holds {chunks} chunks")
    if args.ingest_only:
        return 0
    # questions this stack has not seen lately: the query-embedding and answer caches would
    # otherwise turn "cold" retrievals and LLM answers into cache hits on a second run
    seed = args.seed if args.seed is not None else time.time_ns()
    texts = random.Random(seed).sample([q["question"] for q in questions], 1 + n_retrieve + n_llm)
    print(f"questions drawn with seed {seed}")

    ensure_load_generator()
    cached = cached_vs_bare(stack, texts[0], args.duration, args.rounds, workdir)
    retrieve = retrieve_latency(stack, texts[1 : 1 + n_retrieve])
    profile = asyncio.run(profile_retrieval(stack, texts[1 : 1 + min(n_retrieve, 100)]))
    llm = llm_path(stack, texts[1 + n_retrieve : 1 + n_retrieve + n_llm])
    results = summarize(cached, retrieve, profile, llm, chunks)
    path = write_results("query", results)
    print(f"\nwrote {path}")
    return 0


def summarize(
    cached: dict[str, Any],
    retrieve: dict[str, Any],
    profile: dict[str, float],
    llm: dict[str, Any],
    chunks: int,
) -> dict[str, Any]:
    by_c = cached["by_concurrency"]
    rows = []
    for c in CONCURRENCY:
        b, q = by_c[c]["bare"], by_c[c]["cached"]
        rows.append([c, q["qps"], b["qps"], ratio(q["qps"], b["qps"]), q["p50_ms"], b["p50_ms"],
                     q["p99_ms"], b["p99_ms"], q["errors"] + b["errors"]])  # fmt: skip
    generator = by_c[CONCURRENCY[0]]["cached"]["generator"]
    print(f"\n(a) cached answer vs bare FastAPI, same-size JSON, medians ({generator}); "
          f"cached responses: {cached['cached_response']}")  # fmt: skip
    print(table(["conc", "cached qps", "bare qps", "ratio", "cached p50", "bare p50",
                 "cached p99", "bare p99", "errors"], rows, digits=1))  # fmt: skip
    cold, warm = retrieve["cold_embedding"], retrieve["cached_embedding"]
    print(
        f"\n(b) /v1/retrieve over {chunks} chunks, one request at a time; cold: the "
        f"{cold['measured']} of {cold['questions']} questions whose embedding was computed"
    )
    print(table(["embeddings", "p50 ms", "p99 ms", "server p50", "embed p50", "p50 / 30 ms"],
                [["cold", cold["p50_ms"], cold["p99_ms"], cold["server_total_p50_ms"],
                  cold["embed_p50_ms"], ratio(cold["p50_ms"], RETRIEVE_TARGET_MS)],
                 ["cached", warm["p50_ms"], warm["p99_ms"], warm["server_total_p50_ms"],
                  warm["embed_p50_ms"], ratio(warm["p50_ms"], RETRIEVE_TARGET_MS)]],
                digits=1))  # fmt: skip
    print(
        "    in-process stages (p50 ms): "
        + ", ".join(f"{k.removesuffix('_p50_ms')} {fmt(v, 1)}" for k, v in profile.items())
    )
    print(f"\n(c) full path with vLLM, streamed, {llm['answers']} answers (medians)")
    print(f"    server side (p50 ms): retrieve {fmt(llm['server_retrieve_p50_ms'], 1)}, "
          f"LLM first token {fmt(llm['server_llm_first_token_p50_ms'], 1)}")  # fmt: skip
    print(table(["", "TTFT ms", "total ms"],
                [["docqa /v1/query", llm["ttft_p50_ms"], llm["total_p50_ms"]],
                 ["vLLM direct, same sources", llm["vllm_direct_ttft_p50_ms"], float("nan")],
                 ["ratio", ratio(llm["ttft_p50_ms"], llm["vllm_direct_ttft_p50_ms"]),
                  float("nan")]], digits=1))  # fmt: skip
    top = by_c[CONCURRENCY[-1]]
    return {
        "cached_vs_bare_qps_ratio": ratio(top["cached"]["qps"], top["bare"]["qps"]),
        "cached_p99_ms": top["cached"]["p99_ms"],
        "retrieve_p50_ms": cold["p50_ms"],
        "retrieve_p99_ms": cold["p99_ms"],
        "llm_ttft_p50_ms": llm["ttft_p50_ms"],
        "load_generator": generator,
        "chunks": chunks,
        "cached": cached,
        "retrieve": retrieve,
        "retrieve_profile": profile,
        "llm": llm,
        "targets": {"cached_vs_bare_qps_ratio_min": 0.5, "retrieve_p50_ms_max": RETRIEVE_TARGET_MS},
    }


if __name__ == "__main__":
    sys.exit(main())

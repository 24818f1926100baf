"""Prefix-aware routing on a RAG workload, over simulated vLLM replicas with a prefix cache.

    python -m bench.pool_prefix [--seconds 30] [--rate 0.9] [--replicas 4]

The workload is docqa's own prompt (``query_engine.prompts.build_messages``): the system prompt,
then three sources best first, then a new question every time. The best source is one of
``DOCUMENTS`` chunks, drawn with Zipf popularity (a few articles are asked about most); the
second is its neighbour, and so is the third for 80% of questions (a question like an earlier
one retrieves the same chunks), a random chunk otherwise. Every request is streamed and short
(32 tokens), so time to first token — queueing plus the prefill that the prefix cache did not
save — is most of the latency. The fakes prefill 2,000 tokens/s and hold ``CACHE_BLOCKS``
cache blocks each: the whole corpus's prompts do not fit in one replica's cache, a quarter do.

Policies: ``round_robin``, ``least_loaded`` (the default) and ``prefix_affinity`` of docqa's
pool, and vllm-router's ``round_robin``, ``power_of_two`` and ``cache_aware``
(``bench/pool_router.py``; ``--no-router`` skips them), the same open-loop arrivals for each.
Prints and writes ``bench/results/pool_prefix.json``: TTFT and latency p50/p99 per policy, the
share of prompt characters the replicas' caches served, and the ratios of the baselines' figures
over prefix-affinity's.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from bench import pool_router
from bench._common import percentile, ratio, table, write_results
from bench.pool import start_fakes
from bench.pool_load import SLOTS, TOKEN_RATE, Job, open_loop
from deploy import processes
from query_engine.llm.policy import PolicyName
from query_engine.prompts import PromptSource, build_messages

DOCUMENTS = 200
CHUNK_WORDS = 180  # about 1,200 characters, a typical chunk
ANSWER_TOKENS = 32
SAME_SOURCES = 0.8  # share of questions whose three sources are those of their first source
PREFILL_RATE = 2000.0
# about 384,000 characters (~96k tokens) of KV cache per replica: a quarter of the corpus's
# prompts fit, all of them do not
CACHE_BLOCKS = 6000
POLICIES: tuple[PolicyName, ...] = ("round_robin", "least_loaded", "prefix_affinity")


ChunkText = Callable[[int], str]


def clause_words(n: int) -> str:
    """Chunk ``n``'s text: words no other chunk holds, so prefixes are shared only where the
    workload shares chunks (each word is several tokens: ~1,100 tokens a chunk)."""
    return " ".join(f"clause{n}-{i}" for i in range(CHUNK_WORDS))


def chunk(n: int, text: ChunkText = clause_words) -> PromptSource:
    return PromptSource(n=0, title=f"Regulation {n // 10}", section=f"Article {n}", text=text(n))


def rag_messages(
    first: int, third: int, question: int, text: ChunkText = clause_words
) -> list[dict[str, str]]:
    picked = [chunk(first, text), chunk((first + 1) % DOCUMENTS, text), chunk(third, text)]
    sources = [
        PromptSource(n=i, title=s.title, section=s.section, text=s.text)
        for i, s in enumerate(picked, start=1)
    ]
    messages = build_messages(f"What does question {question} ask of this article?", sources)
    return [{"role": m.role.value, "content": m.content or ""} for m in messages]


def zipf_weights(count: int, s: float = 1.0) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, count + 1)]


def workload(rate: float, seconds: float, seed: int, text: ChunkText = clause_words) -> list[Job]:
    rng = random.Random(seed)
    weights = zipf_weights(DOCUMENTS)
    order = list(range(DOCUMENTS))
    rng.shuffle(order)  # popularity is not the chunk number
    jobs: list[Job] = []
    at = 0.0
    while (at := at + rng.expovariate(rate)) < seconds:
        first = rng.choices(order, weights)[0]
        # a question like an earlier one retrieves the same three chunks, mostly
        third = (first + 2) % DOCUMENTS if rng.random() < SAME_SOURCES else rng.randrange(DOCUMENTS)
        messages = rag_messages(first, third, len(jobs), text)
        jobs.append(Job(at, True, ANSWER_TOKENS, "", messages))
    return jobs


def capacity_rps(replicas: int, messages: list[dict[str, str]]) -> float:
    """Requests/s the cluster finishes with every slot busy and nothing cached."""
    prompt_tokens = sum(len(m["content"]) for m in messages) / 4
    service_s = prompt_tokens / PREFILL_RATE + ANSWER_TOKENS / TOKEN_RATE
    return replicas * SLOTS / service_s


def cache_share(urls: Sequence[str]) -> float:
    """Characters the replicas' prefix caches served, over all prompt characters so far."""
    queries = hits = 0.0
    for url in urls:
        text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=5).text
        queries += _metric(text, "vllm:prefix_cache_queries")
        hits += _metric(text, "vllm:prefix_cache_hits")
    return hits / queries if queries else 0.0


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)}\{{[^}}]*\}} ([0-9.eE+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def run_policy(policy: str, jobs: list[Job], args: argparse.Namespace) -> dict[str, Any]:
    """A fresh cluster (cold caches) per policy, the same jobs; ``vllm-router:<policy>`` sends
    them through vllm-router instead of docqa's pool."""
    runtime = Path(tempfile.mkdtemp(prefix="docqa-bench-prefix-"))
    cluster = start_fakes(
        runtime, [1.0] * args.replicas, prefill_rate=PREFILL_RATE, prefix_cache_blocks=CACHE_BLOCKS
    )
    router: Any = None
    try:
        if policy.startswith("vllm-router:"):
            binary = pool_router.ensure_router()
            router, url = pool_router.start_router(
                binary, cluster.urls, policy.split(":", 1)[1], runtime
            )
            result = asyncio.run(pool_router.open_loop(url, jobs))
        else:
            result = asyncio.run(open_loop(cluster.urls, policy, jobs))  # type: ignore[arg-type]
        row = result.row()
        row["ttft_p99_ms"] = round(percentile(result.ttft_ms, 99), 1)
        row["cache_share"] = round(cache_share(cluster.urls), 3)
        return row
    finally:
        if router is not None:
            processes.stop(router.pid_path)
        cluster.stop()
        shutil.rmtree(runtime, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=0.9, help="fraction of uncached capacity")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--no-router", action="store_true", help="skip vllm-router's policies")
    args = parser.parse_args(argv)
    rate = args.rate * capacity_rps(args.replicas, rag_messages(0, 1, 0))
    jobs = workload(rate, args.seconds, seed=5)
    print(f"{len(jobs)} RAG requests at {rate:.1f}/s over {args.replicas} fake replicas")
    started = time.perf_counter()
    policies: list[str] = [*POLICIES]
    if not args.no_router:
        policies += [f"vllm-router:{p}" for p in pool_router.ROUTER_POLICIES]
    rows = {policy: run_policy(policy, jobs, args) for policy in policies}
    keys = ["ttft_p50_ms", "ttft_p99_ms", "p50_ms", "p99_ms", "cache_share", "ok", "requests"]
    print(table(["policy", *keys], [[p, *(r[k] for k in keys)] for p, r in rows.items()], 3))
    base, ours = rows["least_loaded"], rows["prefix_affinity"]
    routers = [r for p, r in rows.items() if p.startswith("vllm-router:")]
    best_router = min(routers, key=lambda r: r["ttft_p99_ms"]) if routers else {}
    summary = {
        "ttft_p99_ratio_best_router_over_prefix_affinity": round(
            ratio(best_router.get("ttft_p99_ms", math.nan), ours["ttft_p99_ms"]), 2
        ),
        "ttft_p50_ratio_least_loaded_over_prefix_affinity": round(
            ratio(base["ttft_p50_ms"], ours["ttft_p50_ms"]), 2
        ),
        "ttft_p99_ratio_least_loaded_over_prefix_affinity": round(
            ratio(base["ttft_p99_ms"], ours["ttft_p99_ms"]), 2
        ),
        "p99_ratio_least_loaded_over_prefix_affinity": round(
            ratio(base["p99_ms"], ours["p99_ms"]), 2
        ),
    }
    print(summary)
    result = {
        **summary,
        "offered_rps": round(rate, 2),
        "jobs": len(jobs),
        "replicas": args.replicas,
        "documents": DOCUMENTS,
        "prefill_tokens_per_s": PREFILL_RATE,
        "cache_blocks_per_replica": CACHE_BLOCKS,
        "policies": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"wrote {write_results('pool_prefix', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

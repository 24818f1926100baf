"""FAQ matching: the similarity threshold for the real e5 embedder, and the cost of a match.

    python -m bench.faq [--entries N] [--questions N]

1. Threshold calibration. A hand-written set of FAQ questions (Korean and English), each with
   paraphrases (should match it) and near misses: questions on the same subject that need another
   answer ("출장 일비는 얼마인가요?" vs "출장 일비는 언제 지급되나요?"), the case where a wrong
   canned answer is likeliest. All FAQ questions go into a real :class:`FaqStore` on a real
   redis-server with the real in-process multilingual-e5-small, and every asked question goes
   through :meth:`FaqStore.match` (threshold 0.5, so the best candidate and its cosine come back).
   For each threshold: recall (paraphrases answered by their own entry) and false hits (near
   misses, or paraphrases sent to another entry, answered from the FAQ).
2. Match latency on a collection of ``--entries`` entries (random unit vectors: the cost does not
   depend on what they say): an exact hit, and a miss with the question vector given (the whole
   matrix compared: the cost of the similar path), against the baseline of the same match
   without the in-process snapshot (every question reads the entries from Redis), and next to
   the real embedding of one question.

With e5-small the paraphrases and the near misses overlap almost entirely (both mostly 0.90 to
0.96), so only a threshold near 0.97 keeps wrong canned answers out; the FAQ then works mostly
through exact matches. Re-run this after changing the embedder.

Writes ``bench/results/faq.json``.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS threads fight the embedder's OpenMP threads (3x slower queries measured)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import contextlib
import functools
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from redis.asyncio import Redis

from bench._common import median, percentile, ratio, table, write_results
from bench.faq_questions import GROUPS
from indexing.embedding import Embedder, EmbedderConfig, Vectors, build_embedder
from query_engine.faq import FaqConfig, FaqEntryIn, FaqStore

THRESHOLDS = (0.88, 0.90, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98)
DEFAULT_THRESHOLD = 0.97


@contextlib.asynccontextmanager
async def throwaway_redis() -> AsyncIterator[Redis]:
    """A real redis-server on a free port, stopped on exit (the specs the stack uses)."""
    from deploy import processes, stack

    stack.ensure_redis_server()
    with tempfile.TemporaryDirectory(prefix="bench-faq-") as tmp:
        port = processes.free_port()
        spec = stack.redis_spec(stack.StackPaths(Path(tmp)), port, name="bench-faq-redis")
        processes.start(spec)
        try:
            processes.wait_until_ready(spec, stack.redis_ready(port), timeout_s=30)
            client = Redis.from_url(f"redis://127.0.0.1:{port}/0")
            try:
                yield client
            finally:
                await client.aclose()
        finally:
            processes.stop(spec.pid_path)


def language(text: str) -> str:
    return "ko" if any("\uac00" <= ch <= "\ud7a3" for ch in text) else "en"


async def calibrate(redis: Redis, embedder: Embedder) -> dict[str, Any]:
    store = FaqStore(
        redis, prefix="bench-cal", config=FaqConfig(similarity_threshold=0.5), embedder=embedder
    )
    await store.put(
        "cal", [FaqEntryIn(q, f"answer {i}", id=f"g{i}") for i, (q, _, _) in enumerate(GROUPS)]
    )
    asked: list[dict[str, Any]] = []
    for i, (_, paraphrases, near_misses) in enumerate(GROUPS):
        for text, expected in [(p, f"g{i}") for p in paraphrases] + [
            (n, None) for n in near_misses
        ]:
            found = await store.match("cal", text)
            asked.append(
                {
                    "question": text,
                    "language": language(text),
                    "expected": expected,
                    "best_id": found.id if found else None,
                    "score": round(found.score, 4) if found else None,
                }
            )
    rows = [sweep(asked, t) for t in THRESHOLDS]
    by_language = {
        lang: [sweep([a for a in asked if a["language"] == lang], t) for t in THRESHOLDS]
        for lang in ("ko", "en")
    }
    return {"asked": asked, "sweep": rows, "sweep_by_language": by_language}


def sweep(asked: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    paraphrases = [a for a in asked if a["expected"]]
    hits = [a for a in asked if a["score"] is not None and a["score"] >= threshold]
    right = sum(1 for a in hits if a["best_id"] == a["expected"])
    return {
        "threshold": threshold,
        "recall": right / len(paraphrases) if paraphrases else float("nan"),
        "false_hits": len(hits) - right,
        "near_misses": len(asked) - len(paraphrases),
        "precision": right / len(hits) if hits else float("nan"),
    }


class RandomEmbedder:
    """Unit vectors from a seeded generator: what the latency of a match depends on is only how
    many entries there are and their dimension."""

    def __init__(self, dim: int = 384) -> None:
        self._rng = np.random.default_rng(7)
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return 512

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def embed_passages(self, texts: list[str]) -> Vectors:
        raise NotImplementedError

    async def embed_query(self, text: str) -> Vectors:
        vector = self._rng.standard_normal(self._dim).astype(np.float32)
        return vector / np.linalg.norm(vector)

    async def warm_up(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def timed(call: Callable[[], Awaitable[Any]], repeats: int) -> list[float]:
    await call()  # warm: the snapshot is loaded once
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def latency(redis: Redis, embedder: Embedder, entries: int, repeats: int) -> dict[str, Any]:
    fake = RandomEmbedder(embedder.dim)
    cached = FaqStore(
        redis,
        prefix="bench-lat",
        config=FaqConfig(max_entries_per_collection=entries, max_entries_per_request=entries),
        embedder=fake,
    )
    batch = [FaqEntryIn(f"question number {i}", f"answer {i}", id=f"e{i}") for i in range(entries)]
    await cached.put("lat", batch)
    uncached = FaqStore(
        redis, prefix="bench-lat", config=FaqConfig(cached_collections=0), embedder=fake
    )
    near = await fake.embed_query("x")
    cases: dict[str, Callable[[FaqStore], Awaitable[Any]]] = {
        "exact hit": lambda s: s.match("lat", "Question number 17?"),
        "miss (matrix scan)": lambda s: s.match("lat", "something else", question_vector=near),
    }
    results: dict[str, Any] = {}
    for name, case in cases.items():
        with_cache = await timed(functools.partial(case, cached), repeats)
        without = await timed(functools.partial(case, uncached), max(5, repeats // 20))
        results[name] = {
            "median_ms": median(with_cache),
            "p95_ms": percentile(with_cache, 95),
            "baseline_no_snapshot_median_ms": median(without),
        }
    embed = await timed(lambda: embedder.embed_query("도서관은 몇 시에 문을 열고 닫나요?"), 20)
    results["embed one question (e5, context)"] = {"median_ms": median(embed)}
    return {"entries": entries, "cases": results}


def print_report(calibration: dict[str, Any], timings: dict[str, Any]) -> None:
    print("\nThreshold sweep, all questions (paraphrases vs near misses), e5-small:")
    print(
        table(
            ["threshold", "recall", "false hits", "near misses", "precision", "recall vs default"],
            [
                [
                    r["threshold"],
                    r["recall"],
                    r["false_hits"],
                    r["near_misses"],
                    r["precision"],
                    ratio(r["recall"], default_row(calibration["sweep"])["recall"]),
                ]
                for r in calibration["sweep"]
            ],
        )
    )
    for lang, rows in calibration["sweep_by_language"].items():
        print(f"\n{lang}:")
        print(
            table(
                ["threshold", "recall", "false hits", "precision"],
                [[r["threshold"], r["recall"], r["false_hits"], r["precision"]] for r in rows],
            )
        )
    print(f"\nMatch latency, {timings['entries']} entries (baseline: no in-process snapshot):")
    print(
        table(
            ["case", "median ms", "p95 ms", "baseline median ms", "speed-up"],
            [
                [
                    name,
                    c["median_ms"],
                    c.get("p95_ms", float("nan")),
                    c.get("baseline_no_snapshot_median_ms", float("nan")),
                    ratio(c.get("baseline_no_snapshot_median_ms", float("nan")), c["median_ms"]),
                ]
                for name, c in timings["cases"].items()
            ],
        )
    )


def default_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in rows if r["threshold"] == DEFAULT_THRESHOLD)


async def main(entries: int, repeats: int) -> None:
    embedder = build_embedder(EmbedderConfig())
    await embedder.warm_up()
    async with throwaway_redis() as redis:
        calibration = await calibrate(redis, embedder)
        timings = await latency(redis, embedder, entries, repeats)
    print_report(calibration, timings)
    path = write_results(
        "faq",
        {
            "default_threshold": DEFAULT_THRESHOLD,
            "paraphrases": sum(len(p) for _, p, _ in GROUPS),
            "near_misses": sum(len(n) for _, _, n in GROUPS),
            "calibration": calibration,
            "latency": timings,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=3000, help="FAQ entries for the latency run")
    parser.add_argument("--questions", type=int, default=500, help="timed matches per case")
    args = parser.parse_args()
    asyncio.run(main(args.entries, args.questions))

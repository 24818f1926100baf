"""Load benchmark: open-loop arrivals of a realistic mix against the running stack, rate ramped.

    python -m bench.load [--up] [--rates 10,20,40,...] [--step-seconds 15] [--keys 32]

For each offered rate: achieved rate, p50/p95/p99 per kind of request (cached answer, FAQ, new
question, streamed new question, ``/v1/retrieve``), errors by status. An ingestion job runs
meanwhile (the indexing service shares the machine, Milvus and Redis with the query path). The
knee is the first offered rate at which the cached answers' p99 passes 100 ms; once it is found
one more step is run at half the knee, and its p99s are quoted next to the unloaded p50s of the
first step (the baseline of the same run). Writes ``bench/results/load.json`` and ``load.png``.

Why open loop (not locust's closed-loop users): see ``bench/load_traffic.py``. Both run on the
same two cores as the stack, so the figures are what *this* machine holds with its generator on
it; the generator's own lag is reported per step.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import RESULTS_DIR, table, write_results
from bench.load_traffic import (
    DEFAULT_MIX,
    Traffic,
    make_query_keys,
    prepare_answers,
    revoke_keys,
    summarise,
)
from bench.query_stack import Stack, running_stack
from deploy.sample_docs import sample_files

DEFAULT_RATES = (10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)
KNEE_P99_MS = 100.0
INGEST_COLLECTION = "bench_load_ingest"


async def ramp(
    traffic: Traffic, rates: Sequence[float], step_s: float, stop_after_knee: int = 1
) -> list[dict[str, Any]]:
    """One step per rate; stops ``stop_after_knee`` steps past the knee (beyond it the server
    is only queueing, and the next doubling would take minutes to drain)."""
    steps: list[dict[str, Any]] = []
    past_knee = 0
    for rate in rates:
        step = await run_step(traffic, rate, step_s)
        steps.append(step)
        print_step(step)
        if cached_p99(step) > KNEE_P99_MS:
            past_knee += 1
            if past_knee > stop_after_knee:
                break
    return steps


async def run_step(traffic: Traffic, rate: float, step_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    outcomes = await traffic.run_rate(rate, step_s)
    wall = time.perf_counter() - started
    lags = sorted(o.lag_ms for o in outcomes)
    ok = sum(1 for o in outcomes if 200 <= o.status < 300)
    return {
        "offered_rps": rate,
        "duration_s": step_s,
        "sent": len(outcomes),
        # answered (2xx) per second of the step, the drain of its last requests included
        "achieved_rps": round(ok / wall, 1),
        "generator_lag_p99_ms": round(lags[int(0.99 * (len(lags) - 1))], 1) if lags else None,
        **summarise(outcomes),
    }


def cached_p99(step: dict[str, Any]) -> float:
    return float(step["kinds"].get("cached", {}).get("p99_ms", 0.0) or 0.0)


def print_step(step: dict[str, Any]) -> None:
    rows = [
        [kind, k["n"], k["ok"], k["p50_ms"], k["p95_ms"], k["p99_ms"], k["errors"] or "-"]
        for kind, k in step["kinds"].items()
    ]
    print(
        f"\noffered {step['offered_rps']:.0f}/s, answered {step['achieved_rps']}/s, "
        f"generator lag p99 {step['generator_lag_p99_ms']} ms"
    )
    print(table(["kind", "n", "ok", "p50 ms", "p95 ms", "p99 ms", "errors"], rows, 1), flush=True)


def knee_of(steps: Sequence[dict[str, Any]]) -> float | None:
    return next((s["offered_rps"] for s in steps if cached_p99(s) > KNEE_P99_MS), None)


def first_429(steps: Sequence[dict[str, Any]]) -> float | None:
    return next((s["offered_rps"] for s in steps if s["errors_by_status"].get("429")), None)


def against_baseline(step: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The step's percentiles per kind, with its p99 over the unloaded (first step's) p50."""
    kinds = {}
    for kind, k in step["kinds"].items():
        unloaded = baseline["kinds"].get(kind, {}).get("p50_ms")
        kinds[kind] = {
            "p50_ms": k["p50_ms"],
            "p95_ms": k["p95_ms"],
            "p99_ms": k["p99_ms"],
            "unloaded_p50_ms": unloaded,
            "p99_over_unloaded_p50": round(k["p99_ms"] / unloaded, 2) if unloaded else None,
        }
    return {"offered_rps": step["offered_rps"], "kinds": kinds}


# --------------------------------------------------------------------------- ingestion meanwhile


def ingest_documents(count: int) -> list[dict[str, str]]:
    """``count`` documents cut from the sample documents (paragraph windows), so the job
    chunks and embeds real text of both languages."""
    paragraphs = [
        p.strip()
        for path in sample_files()
        for p in path.read_text(encoding="utf-8").split("\n\n")
        if len(p.strip()) > 80
    ]
    return [
        {
            "doc_id": f"load-{n:04d}",
            "title": f"load document {n}",
            "text": "\n\n".join(paragraphs[(n + i) % len(paragraphs)] for i in range(6)),
        }
        for n in range(count)
    ]


async def ingest_meanwhile(stack: Stack, documents: int) -> dict[str, Any]:
    """Submit one job and follow it to its end; returns its state and how long it took."""
    headers = stack.admin_headers
    url = f"{stack.indexing_url}/v1/collections/{INGEST_COLLECTION}/documents"
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(url, json={"documents": ingest_documents(documents)}) as r:
            if r.status >= 300:
                return {"documents": documents, "state": f"HTTP {r.status}", "seconds": None}
            job_id = (await r.json())["job_id"]
        state = "running"
        while state not in {"succeeded", "failed", "partial"}:
            await asyncio.sleep(1.0)
            async with session.get(f"{stack.indexing_url}/v1/jobs/{job_id}") as r:
                state = (await r.json()).get("state", "unknown")
    seconds = round(time.perf_counter() - started, 1)
    return {"documents": documents, "state": state, "seconds": seconds}


async def drop_ingest_collection(stack: Stack) -> None:
    async with aiohttp.ClientSession(headers=stack.admin_headers) as session:
        url = f"{stack.indexing_url}/v1/collections/{INGEST_COLLECTION}"
        async with session.delete(url) as response:
            await response.read()


# --------------------------------------------------------------------------- the run


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    keys = await make_query_keys(stack.indexing_url, stack.admin_key, args.keys)
    try:
        await prepare_answers(stack.query_url, stack.admin_key, keys[0]["key"])
        async with Traffic(stack.query_url, [k["key"] for k in keys]) as traffic:
            ingestion = asyncio.create_task(ingest_meanwhile(stack, args.ingest_documents))
            steps = await ramp(traffic, args.rates, args.step_seconds)
            knee = knee_of(steps)
            half = None
            if knee is not None:
                print(f"\nknee at {knee:.0f}/s offered: one more step at half of it")
                half = await run_step(traffic, knee / 2, args.step_seconds)
                print_step(half)
            ingested = await ingestion
    finally:
        await revoke_keys(stack.indexing_url, stack.admin_key, keys)
        await drop_ingest_collection(stack)
    return {
        "generator": "open-loop asyncio + aiohttp, Poisson arrivals, latency from due time",
        "mix": DEFAULT_MIX,
        "query_keys": args.keys,
        "knee_p99_ms": KNEE_P99_MS,
        "steps": steps,
        "knee_rps": knee,
        "first_429_rps": first_429(steps),
        "at_half_knee": against_baseline(half, steps[0]) if half else None,
        "ingestion": ingested,
        "plot": "bench/results/load.png",
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    rates = [s["offered_rps"] for s in steps]
    fig, (latency, answered) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kind in DEFAULT_MIX:
        p99 = [s["kinds"].get(kind, {}).get("p99_ms") for s in steps]
        latency.plot(rates, p99, marker="o", label=f"{kind} p99")
    latency.axhline(KNEE_P99_MS, color="grey", linestyle=":", label="100 ms")
    latency.set(xscale="log", yscale="log", xlabel="offered requests/s", ylabel="ms")
    latency.set_title("p99 latency by kind (2xx only)")
    latency.legend(fontsize=7)
    answered.plot(rates, [s["achieved_rps"] for s in steps], marker="o", label="answered (2xx)/s")
    answered.plot(rates, rates, color="grey", linestyle=":", label="offered")
    answered.set(xscale="log", yscale="log", xlabel="offered requests/s", ylabel="requests/s")
    answered.set_title("throughput")
    answered.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"knee (cached p99 > {KNEE_P99_MS:.0f} ms): {result['knee_rps'] or 'not reached'} /s",
        f"first 429s at: {result['first_429_rps'] or 'none'} /s offered "
        f"({result['query_keys']} query keys)",
        f"ingestion meanwhile: {result['ingestion']}",
    ]
    half = result["at_half_knee"]
    if half:
        lines.append(f"at half the knee ({half['offered_rps']:.0f}/s), p99 vs unloaded p50:")
        lines += [
            f"  {kind}: p99 {k['p99_ms']} ms, unloaded p50 {k['unloaded_p50_ms']} ms, "
            f"ratio {k['p99_over_unloaded_p50']}"
            for kind, k in half["kinds"].items()
        ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--up", action="store_true", help="start the local stack first")
    parser.add_argument(
        "--rates",
        type=lambda s: [float(r) for r in s.split(",")],
        default=list(DEFAULT_RATES),
        help="offered requests/s, one step each (default %(default)s)",
    )
    parser.add_argument("--step-seconds", type=float, default=15.0)
    parser.add_argument("--keys", type=int, default=32, help="query keys the load is spread over")
    parser.add_argument("--ingest-documents", type=int, default=200)
    args = parser.parse_args(argv)
    stack = running_stack(start=args.up)
    result = asyncio.run(measure(stack, args))
    plot(result, RESULTS_DIR / "load.png")
    print("\n" + "\n".join(summary_lines(result)))
    print(f"wrote {write_results('load', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

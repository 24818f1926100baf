"""LLM pool policies over two real vLLM-CPU replicas: open loop, docqa's prompts, prefix caching.

    python -m bench.pool_real [--requests 300] [--rate 0.7] [--policies round_robin,...]

Two real vLLM-CPU servers (SmolLM2-135M, ``stack.vllm_spec``) started one at a time (they share
the machine's cores), with vLLM's prefix caching on (``--enable-prefix-caching``; vLLM 0.32
enables it by default for this model, the flag makes it explicit) and ``VLLM_SERVER_DEV_MODE``,
which serves ``POST /reset_prefix_cache``: every policy starts from cold caches. The workload is
``bench.pool_prefix``'s: docqa's own prompt (system prompt, three sources best first, a new
question each time), the best source drawn with Zipf popularity, every request streamed, 32
tokens; its chunks hold plain words here (:func:`plain_words`), so a prompt is about as long as
docqa's own (~1,000 SmolLM2 tokens; the synthetic "clauseN-i" words would triple it).

First the pair's capacity: a few requests in a closed loop (``--probe-workers`` at a time).
Then the same seeded list of ``--requests`` Poisson arrivals at ``--rate`` times that capacity
(``--rps`` sets it outright), through the real :class:`LLMPool` under each policy. Latency and
time to first token run from each request's due time, not from when it was sent (no
coordinated omission). Per policy: ok and failed by kind, latency p50/p95/p99, TTFT p50/p99,
each replica's share of the requests, each replica's prefix-cache hit rate over the run (deltas
of vLLM's ``vllm:prefix_cache_hits_total`` / ``vllm:prefix_cache_queries_total``, in tokens),
and what limits the policy: the share of 0.5 s samples of vLLM's own load gauges in which one
replica sat idle while the other held two or more requests, and how late the sender was.

Prints a table with each policy's p99 and TTFT p99 over least-loaded's of the same run, beside
the same ratios from the simulated runs (``bench/results/pool.json``, ``pool_prefix.json``), and
writes ``bench/results/pool_real.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from bench import pool_prefix
from bench._common import RESULTS_DIR, percentile, table, write_results
from bench.pool_load import MODEL, Job, LoadResult, pool_config, route_for
from deploy import processes, stack
from docqa_core.errors import DependencyUnavailable, RateLimited
from query_engine.llm.endpoints import StaticDiscovery
from query_engine.llm.policy import PolicyName
from query_engine.llm.pool import LLMPool, PoolConfig
from query_engine.llm.stats import parse_vllm_metrics

REPLICAS = 2
MAX_MODEL_LEN = 4096  # prompts of plain_words chunks are ~1,000 SmolLM2 tokens
PREFIX_CACHING_ARGS = ("--enable-prefix-caching",)
DEV_MODE_ENV = {"VLLM_SERVER_DEV_MODE": "1"}  # POST /reset_prefix_cache
BASELINE: PolicyName = "least_loaded"
POLICIES: tuple[PolicyName, ...] = ("round_robin", "least_loaded", "prefix_affinity")
COUNTERS = ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:prompt_tokens")
SAMPLE_S = 0.5
JOBS_SEED, PROBE_SEED = 5, 99
Load = Callable[[LLMPool, LoadResult, float], Awaitable[None]]

# ---------------------------------------------------------------------------- replicas


def replica_spec(
    paths: stack.StackPaths, runtime: Path, port: int, i: int
) -> processes.ProcessSpec:
    name, length = f"bench-vllm-real-{i}", MAX_MODEL_LEN
    base = stack.vllm_spec(
        paths, port, name=name, replica_index=i, served_model_name=MODEL, max_model_len=length
    )
    return processes.ProcessSpec(
        name=name,
        command=[*base.command, *PREFIX_CACHING_ARGS],
        log_path=runtime / f"{name}.log",
        pid_path=runtime / f"{name}.pid",
        env={**(base.env or {}), **DEV_MODE_ENV},
    )


def start_replicas(runtime: Path, specs: list[processes.ProcessSpec]) -> list[str]:
    """Real vLLM-CPU servers, each started once the previous one is ready (``specs`` fills up
    as they start: stop those); their base URLs."""
    paths = stack.default_paths()
    stack.setup(paths)
    urls = []
    for i in range(REPLICAS):
        port = processes.free_port()
        specs.append(spec := replica_spec(paths, runtime, port, i))
        processes.start(spec)
        ready = stack.http_ready(f"http://127.0.0.1:{port}/health")
        took = processes.wait_until_ready(spec, ready, timeout_s=900)
        print(f"{spec.name} ready on :{port} after {took:.0f} s")
        urls.append(f"http://127.0.0.1:{port}/v1")
    return urls


# ---------------------------------------------------------------------------- /metrics


def parse_counters(text: str) -> dict[str, float]:
    """:data:`COUNTERS` from a Prometheus exposition, summed over engines. vLLM's client names
    a counter ``<name>_total`` (and adds ``<name>_created``, a timestamp); the fake servers
    export the bare name. Absent counters are 0."""
    found = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, rest = line.partition("{") if "{" in line else line.partition(" ")
        name = name.strip().removesuffix("_total")
        if name in found:
            try:
                found[name] += float(rest.rpartition("}")[2].split()[0])
            except (IndexError, ValueError):
                continue
    return found


def prefix_caching_on(text: str) -> bool | None:
    """What ``vllm:cache_config_info`` says of ``enable_prefix_caching``; None when absent."""
    for line in text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            return 'enable_prefix_caching="True"' in line
    return None


def cache_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """One replica's prefix-cache figures over a run, in prompt tokens."""
    queries = after["vllm:prefix_cache_queries"] - before["vllm:prefix_cache_queries"]
    hits = after["vllm:prefix_cache_hits"] - before["vllm:prefix_cache_hits"]
    return {
        "queries": queries,
        "hits": hits,
        "hit_rate": round(hits / queries, 3) if queries else None,
        "prompt_tokens": after["vllm:prompt_tokens"] - before["vllm:prompt_tokens"],
    }


async def metrics_texts(client: httpx.AsyncClient, urls: Sequence[str]) -> list[str]:
    answers = [await client.get(url.removesuffix("/v1") + "/metrics") for url in urls]
    return [answer.text for answer in answers]


async def reset_prefix_caches(client: httpx.AsyncClient, urls: Sequence[str]) -> bool:
    """Empties every replica's prefix cache; vLLM refuses while blocks are held, so retry."""
    done = set()
    for _ in range(20):
        for url in urls:
            if url not in done:
                answer = await client.post(url.removesuffix("/v1") + "/reset_prefix_cache")
                if answer.is_success and answer.json().get("success"):
                    done.add(url)
        if len(done) == len(urls):
            return True
        await asyncio.sleep(0.5)
    return False


# ---------------------------------------------------------------------------- workload


# plain words of about one SmolLM2 token each, so a prompt is as long as docqa's own (~1,000
# tokens for three sources); bench.pool_prefix's "clauseN-i" words cost ~6 tokens each
VOCABULARY = (
    "the staff member may claim travel costs within limits set by each article of this rule and "
    "a manager must approve any request before the trip starts unless the board decides otherwise"
).split()


def plain_words(n: int) -> str:
    """Chunk ``n``'s text: the same words for the same ``n``, different across chunks."""
    rng = random.Random(f"chunk:{n}")
    return " ".join(rng.choice(VOCABULARY) for _ in range(pool_prefix.CHUNK_WORDS))


def schedule(rate: float, requests: int, seed: int) -> list[Job]:
    """The first ``requests`` Poisson arrivals at ``rate``/s of ``bench.pool_prefix``'s RAG
    workload with :func:`plain_words` chunks: the same list for the same arguments."""
    seconds = requests / rate + 1
    while len(jobs := pool_prefix.workload(rate, seconds, seed, plain_words)) < requests:
        seconds *= 2
    return jobs[:requests]


def idle_while_busy(samples: Sequence[Sequence[float]], busy: float = 2) -> float | None:
    """Share of load samples (one load per replica) with a replica idle while another holds at
    least ``busy`` requests: work a policy left queued behind a server that could take it."""
    if not samples:
        return None
    wasted = sum(1 for loads in samples if min(loads) == 0 and max(loads) >= busy)
    return round(wasted / len(samples), 3)


# ---------------------------------------------------------------------------- load


async def timed_request(
    pool: LLMPool, job: Job, policy: PolicyName, due: float, result: LoadResult
) -> None:
    """One job; latency and TTFT from ``due`` (``perf_counter``), not from when it was sent."""
    body = {"messages": job.messages, "max_tokens": job.max_tokens, "temperature": 0}
    route = route_for(job, policy)
    first_token = False
    try:
        if job.stream:
            stream = await pool.stream_chat(body, route)
            first_token = True
            result.ttft_ms.append((time.perf_counter() - due) * 1000)
            async for _ in stream:
                pass
        else:
            await pool.chat(body, route)
    except (DependencyUnavailable, RateLimited, httpx.HTTPError) as exc:
        when = "after_first_token" if first_token else "before_first_token"
        result.failed[f"{when}:{type(exc).__name__}"] += 1
        return
    result.latencies_ms.append((time.perf_counter() - due) * 1000)


async def drive(urls: Sequence[str], config: PoolConfig, load: Load) -> LoadResult:
    """A fresh pool over ``urls`` running ``load``; the result with its duration and the
    requests each endpoint got (attempts, retries included)."""
    pool = LLMPool(config, StaticDiscovery(urls))
    await pool.start()
    result = LoadResult()
    started = time.perf_counter()
    try:
        await load(pool, result, started)
        result.seconds = time.perf_counter() - started
    finally:
        result.per_endpoint = Counter({s.url: s.requests for s in pool.snapshot()})
        await pool.aclose()
    return result


def open_loop(jobs: Sequence[Job], policy: PolicyName, lags_ms: list[float]) -> Load:
    async def send_on_schedule(pool: LLMPool, result: LoadResult, started: float) -> None:
        tasks = []
        for job in jobs:
            due = started + job.at_s
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            lags_ms.append(max(0.0, time.perf_counter() - due) * 1000)
            tasks.append(asyncio.create_task(timed_request(pool, job, policy, due, result)))
        await asyncio.gather(*tasks)

    return send_on_schedule


def closed_loop(jobs: Sequence[Job], workers: int) -> Load:
    queue = list(jobs)

    async def workers_until_empty(pool: LLMPool, result: LoadResult, _: float) -> None:
        async def worker() -> None:
            while queue:
                job = queue.pop(0)
                await timed_request(pool, job, BASELINE, time.perf_counter(), result)

        await asyncio.gather(*(worker() for _ in range(workers)))

    return workers_until_empty


async def sample_loads(
    client: httpx.AsyncClient, urls: Sequence[str], into: list[list[float]]
) -> None:
    """vLLM's own running + waiting gauges of every replica, every ``SAMPLE_S``, until cancelled."""
    while True:
        try:
            texts = await metrics_texts(client, urls)
            into.append([parse_vllm_metrics(text).load for text in texts])
        except httpx.HTTPError:
            pass
        await asyncio.sleep(SAMPLE_S)


async def probe_capacity(
    urls: Sequence[str], config: PoolConfig, args: argparse.Namespace
) -> float:
    """Requests/s the pair finishes in a closed loop, cold caches (probe prompts, own seed)."""
    jobs = schedule(1.0, args.probe_requests, PROBE_SEED)
    result = await drive(urls, config, closed_loop(jobs, args.probe_workers))
    if result.failed or not result.latencies_ms:  # a setup fault: fail before the long runs
        raise RuntimeError(f"probe requests failed: {dict(result.failed)}")
    return len(result.latencies_ms) / result.seconds


async def run_policy(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    policy: PolicyName,
    jobs: Sequence[Job],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The jobs through a fresh pool under ``policy``, every replica's prefix cache emptied
    first; the summary, with the cache counters' deltas and the load samples' verdict."""
    reset = await reset_prefix_caches(client, urls)
    before = [parse_counters(text) for text in await metrics_texts(client, urls)]
    samples: list[list[float]] = []
    lags_ms: list[float] = []
    sampler = asyncio.create_task(sample_loads(client, urls, samples))
    config = replace(pool_config(policy), metrics_interval_s=args.metrics_interval)
    try:
        result = await drive(urls, config, open_loop(jobs, policy, lags_ms))
    finally:
        sampler.cancel()
    after = [parse_counters(text) for text in await metrics_texts(client, urls)]
    row = summarize(result, urls)
    caches = [cache_delta(b, a) for b, a in zip(before, after, strict=True)]
    hits, queries = sum(c["hits"] for c in caches), sum(c["queries"] for c in caches)
    return {
        **row,
        "prefix_hit_rate": [c["hit_rate"] for c in caches],
        "prefix_hit_rate_all": round(hits / queries, 3) if queries else None,
        "prefix_cache": caches,
        "cache_reset": reset,
        "idle_while_other_busy": idle_while_busy(samples),
        "load_samples": len(samples),
        "sender_lag_p99_ms": round(percentile(lags_ms, 99), 1),
    }


# ---------------------------------------------------------------------------- summary


def summarize(result: LoadResult, urls: Sequence[str]) -> dict[str, Any]:
    """``LoadResult.row()`` with p95, TTFT p99 and each replica's share, in ``urls`` order."""
    row = result.row()
    total = sum(result.per_endpoint.values())
    return {
        **row,
        "p95_ms": round(percentile(result.latencies_ms, 95), 1),
        "ttft_p99_ms": round(percentile(result.ttft_ms, 99), 1),
        "replica_share": [
            round(result.per_endpoint.get(url, 0) / total, 3) if total else None for url in urls
        ],
    }


def over(value: Any, reference: Any) -> float | None:
    """``value / reference`` to 2 places; None when either is missing or NaN, or it is 0."""
    numbers = all(isinstance(x, int | float) and math.isfinite(x) for x in (value, reference))
    return round(value / reference, 2) if numbers and reference else None


def ratios_to_baseline(rows: dict[str, dict[str, Any]], baseline: str = BASELINE) -> None:
    """Adds each row's p99 and TTFT p99 over the baseline row's."""
    base = rows.get(baseline, {})
    for row in rows.values():
        for key in ("p99", "ttft_p99"):
            row[f"{key}_over_{baseline}"] = over(row.get(f"{key}_ms"), base.get(f"{key}_ms"))


def simulated_ratios(library: dict[str, Any], policies: Sequence[str]) -> dict[str, Any]:
    """Per policy, the p99 (and TTFT p99) over least-loaded's in the simulated result files."""
    side: dict[str, dict[str, Any]] = {policy: {} for policy in policies}
    sources = {}
    for stem in ("pool", "pool_prefix"):
        data = library.get(stem) or {}
        rows = {p: dict(r) for p, r in (data.get("policies") or {}).items() if p in side}
        ratios_to_baseline(rows)
        for policy, row in rows.items():
            side[policy][f"{stem}_p99"] = row[f"p99_over_{BASELINE}"]
            if "ttft_p99_ms" in row:
                side[policy][f"{stem}_ttft_p99"] = row[f"ttft_p99_over_{BASELINE}"]
        sources[stem] = data.get("measured_at")
    return {"measured_at": sources, "policies": side}


def read_library(stems: Sequence[str] = ("pool", "pool_prefix")) -> dict[str, Any]:
    paths = {stem: RESULTS_DIR / f"{stem}.json" for stem in stems}
    return {stem: json.loads(p.read_text()) for stem, p in paths.items() if p.exists()}


def side_by_side(rows: dict[str, dict[str, Any]], simulated: dict[str, Any]) -> dict[str, Any]:
    return {
        policy: {
            "real_p99": row.get(f"p99_over_{BASELINE}"),
            "real_ttft_p99": row.get(f"ttft_p99_over_{BASELINE}"),
            **simulated["policies"].get(policy, {}),
        }
        for policy, row in rows.items()
    }


# ---------------------------------------------------------------------------- main


def print_report(results: dict[str, Any]) -> None:
    rows = results["policies"]
    keys = ["ok", "p50_ms", "p95_ms", "p99_ms", "ttft_p50_ms", "ttft_p99_ms"]
    header = ["policy", *keys, "failed", "share", "hit rate", "idle/busy", "p99/LL", "TTFT p99/LL"]
    body = [
        [
            policy,
            *(row[k] for k in keys),
            sum(row["failed"].values()),
            "/".join(f"{s:.0%}" for s in row["replica_share"] if s is not None),
            "/".join("-" if h is None else f"{h:.0%}" for h in row["prefix_hit_rate"]),
            row["idle_while_other_busy"],
            row[f"p99_over_{BASELINE}"],
            row[f"ttft_p99_over_{BASELINE}"],
        ]
        for policy, row in rows.items()
    ]
    print(table(header, body, digits=1))
    columns = ["real_p99", "pool_p99", "pool_prefix_p99", "real_ttft_p99", "pool_prefix_ttft_p99"]
    sources = results["simulated"]["measured_at"].items()
    measured = ", ".join(f"{stem}.json of {at}" for stem, at in sources)
    print(f"\nover least-loaded's, real (this run) vs simulated ({measured})")
    cells = [[p, *(r.get(c) for c in columns)] for p, r in results["side_by_side"].items()]
    print(table(["policy", *columns], cells, digits=2))


async def measure(args: argparse.Namespace, urls: Sequence[str]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        caching = [prefix_caching_on(text) for text in await metrics_texts(client, urls)]
        capacity = None
        rate = args.rps
        if rate is None:
            await reset_prefix_caches(client, urls)
            config = replace(pool_config(BASELINE), metrics_interval_s=args.metrics_interval)
            capacity = await probe_capacity(urls, config, args)
            rate = args.rate * capacity
        jobs = schedule(rate, args.requests, JOBS_SEED)
        print(f"capacity {capacity or float('nan'):.2f} req/s; {len(jobs)} at {rate:.2f}/s")
        rows = {}
        for policy in args.policies:
            rows[policy] = await run_policy(client, urls, policy, jobs, args)
            print(f"{policy}: {rows[policy]['ok']}/{rows[policy]['requests']} ok")
    return {
        "capacity_rps": None if capacity is None else round(capacity, 3),
        "offered_rps": round(rate, 3),
        "prefix_caching": caching,
        "policies": rows,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="arrivals per policy")
    parser.add_argument("--rate", type=float, default=0.7, help="fraction of measured capacity")
    parser.add_argument("--rps", type=float, help="offered requests/s (skips the capacity probe)")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--probe-requests", type=int, default=8)
    parser.add_argument("--probe-workers", type=int, default=2 * REPLICAS)
    parser.add_argument(
        "--metrics-interval", type=float, default=PoolConfig.metrics_interval_s,
        help="the pool's /metrics scrape interval, s (default: the service's)",
    )  # fmt: skip
    parser.add_argument("--results-name", default="pool_real")
    args = parser.parse_args(argv)
    args.policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    if unknown := set(args.policies) - set(POLICIES) - {"session_affinity"}:
        parser.error(f"unknown policies: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runtime = Path(tempfile.mkdtemp(prefix="docqa-bench-pool-real-"))
    started = time.perf_counter()
    specs: list[processes.ProcessSpec] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the replicas
    try:
        results = asyncio.run(measure(args, start_replicas(runtime, specs)))
    finally:
        for spec in specs:
            processes.stop(spec.pid_path)
        shutil.rmtree(runtime, ignore_errors=True)
    ratios_to_baseline(results["policies"])
    simulated = simulated_ratios(read_library(), args.policies)
    results = {
        "requests": args.requests,
        "rate_fraction": None if args.rps else args.rate,
        **results,
        "replicas": REPLICAS,
        "max_model_len": MAX_MODEL_LEN,
        "metrics_interval_s": args.metrics_interval,
        "probe": {"requests": args.probe_requests, "workers": args.probe_workers},
        "simulated": simulated,
        "side_by_side": side_by_side(results["policies"], simulated),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print_report(results)
    print(f"wrote {write_results(args.results_name, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

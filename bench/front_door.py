"""Cached ``/v1/query`` throughput of this checkout's query service against an earlier revision's,
each as a ratio to a bare FastAPI endpoint measured in the same run.

    python -m bench.front_door [--up] [--before REV] [--duration 5] [--rounds 3]

The running local stack (``make up``) serves "after"; start it with a per-key limit the load
cannot reach (``DOCQA_RATE_LIMIT_QUERIES_PER_MINUTE=10000000 make up``) so the limiter counts
every request without refusing any (its limit is recorded). "Before" is the query service of ``REV``
(default: the last commit before the query-runtime refactor), checked out into a temporary git
worktree and started as a second process (``PYTHONPATH`` puts its packages first) against the
same Redis, Milvus and vLLM with the same settings. Both are loaded the same way (``wrk``, or
httpx) with the README question over the ``samples`` collection, whose answer is cached after
the first request, next to the bare endpoint (:func:`bench.query.cached_vs_bare`). Writes
``bench/results/front_door.json``: per side the qps ratio to bare at each concurrency, and the
after/before ratio of those ratios at c=64.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench._common import docqa_home, ratio, table, write_results
from bench.query import CONCURRENCY, Stack, cached_vs_bare, ensure_load_generator, running_stack

BEFORE_REV = "2decb3b"  # main before the query-runtime refactor (issue 13)
COLLECTION = "samples"
REPO = Path(__file__).resolve().parents[1]


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="docqa-before-") as tmp:
        path = Path(tmp) / "src"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
                       check=True, capture_output=True)  # fmt: skip
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                           check=False, capture_output=True)  # fmt: skip


@contextmanager
def old_query_service(source: Path) -> Iterator[str]:
    """The query service of ``source`` on a free port, configured as the stack's own."""
    from deploy import processes, stack

    paths = stack.default_paths()
    ports = stack.StackPorts.from_env()
    env = stack.query_service_env(stack.service_env(ports, stack.load_or_create_keys(paths)))
    port = processes.free_port()
    spec = stack.service_spec(paths, "query", port, env, name="bench-before-query")
    python_path = os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")])
    spec = replace(spec, env={**(spec.env or {}), "PYTHONPATH": python_path})
    processes.start(spec)
    try:
        url = f"http://127.0.0.1:{port}"
        processes.wait_until_ready(spec, stack.http_ready(f"{url}/readyz"), timeout_s=180)
        yield url
    finally:
        processes.stop(spec.pid_path)


def measure(stack: Stack, question: str, args: argparse.Namespace) -> dict[str, Any]:
    workdir = docqa_home() / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    result = cached_vs_bare(stack, question, args.duration, args.rounds, workdir, COLLECTION)
    by_c = result["by_concurrency"]
    result["ratio_to_bare"] = {
        c: ratio(by_c[c]["cached"]["qps"], by_c[c]["bare"]["qps"]) for c in CONCURRENCY
    }
    return result


def rate_limit_of(stack: Stack, question: str) -> int | None:
    """The queries per minute the running service allows the bench key, from its headers."""
    import httpx

    reply = httpx.post(
        f"{stack.query_url}/v1/query",
        json={"collection": COLLECTION, "question": question},
        headers={"Authorization": f"Bearer {stack.query_key}"},
        timeout=120,
    )
    raw = reply.headers.get("x-ratelimit-limit")
    return int(raw) if raw else None


def main(argv: Sequence[str] | None = None) -> int:
    from deploy.sample_docs import SAMPLE_QUESTION

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--up", action="store_true", help="start the local stack first")
    parser.add_argument("--before", default=BEFORE_REV, help="the revision to compare against")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--rounds", type=int, default=3, help="load runs per setting (median)")
    args = parser.parse_args(argv)
    stack = running_stack(args.up)
    ensure_load_generator()
    print(f"after: this checkout's query service at {stack.query_url}")
    limit = rate_limit_of(stack, SAMPLE_QUESTION)
    after = measure(stack, SAMPLE_QUESTION, args)
    with worktree(args.before) as source, old_query_service(source) as url:
        print(f"before: {args.before}'s query service at {url}")
        before = measure(replace(stack, query_url=url), SAMPLE_QUESTION, args)
    qps = {side: {c: r["by_concurrency"][c]["cached"]["qps"] for c in CONCURRENCY}
           for side, r in (("before", before), ("after", after))}  # fmt: skip
    rows = [
        [
            c,
            qps["before"][c],
            qps["after"][c],
            before["ratio_to_bare"][c],
            after["ratio_to_bare"][c],
        ]
        for c in CONCURRENCY
    ]
    print(table(["conc", "before qps", "after qps", "before / bare", "after / bare"], rows, 2))
    top = CONCURRENCY[-1]
    results = {
        "before_rev": args.before,
        "cached_vs_bare_qps_ratio_before": before["ratio_to_bare"][top],
        "cached_vs_bare_qps_ratio_after": after["ratio_to_bare"][top],
        "after_over_before": ratio(after["ratio_to_bare"][top], before["ratio_to_bare"][top]),
        "concurrency": top,
        # the running service's queries/min for the bench key (None: not limited); a limit the
        # load passes shows up as errors (429s), so the README's recipe sets a high one
        "after_rate_limit_per_minute": limit,
        "before": before,
        "after": after,
    }
    print(f"\nwrote {write_results('front_door', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

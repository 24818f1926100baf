"""Part (c) of ``bench.query``: the full path with the real vLLM, streamed, next to vLLM
answering the same sources directly."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench._common import median
from bench.query_stack import COLLECTION, Stack

LLM_IDLE_S = 1.0


# --------------------------------------------------------------------------- (c) LLM


def stream_answer(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """One streamed answer: client-side time to the first token event and to the final event."""
    t0 = time.perf_counter()
    first_token: float | None = None
    event, final = "", None
    with client.stream("POST", url, json={**body, "stream": True}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                if event == "token" and first_token is None:
                    first_token = time.perf_counter() - t0
                elif event == "done":
                    final = json.loads(line.split(":", 1)[1])
                elif event == "error":
                    raise RuntimeError(line)
    total = time.perf_counter() - t0
    assert final is not None, "the stream ended without a done event"
    return {
        "ttft_ms": first_token * 1000 if first_token is not None else float("nan"),
        "total_ms": total * 1000,
        "not_found": final.get("not_found"),
        "cached": final.get("cached"),
        "server": final.get("timings_ms", {}),
        "sources": [c["text"] for c in final.get("citations", [])],
    }


def vllm_direct(client: httpx.Client, stack: Stack, question: str, sources: Sequence[str]) -> float:
    """The baseline: vLLM itself streaming an answer from the same sources; TTFT in ms."""
    context = "\n\n".join(f"[{n}] {text}" for n, text in enumerate(sources, start=1))
    messages = [
        {"role": "system", "content": "Answer from the numbered sources and cite them as [n]."},
        {"role": "user", "content": f"Sources:\n{context}\n\nQuestion: {question}"},
    ]
    body = {"model": "smollm2", "messages": messages, "max_tokens": 256, "temperature": 0,
            "stream": True}  # fmt: skip
    t0 = time.perf_counter()
    with client.stream("POST", f"{stack.vllm_url}/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data:") and '"content"' in line:
                return (time.perf_counter() - t0) * 1000
    return float("nan")


def llm_path(stack: Stack, questions: Sequence[str]) -> dict[str, Any]:
    url = f"{stack.query_url}/v1/query"
    runs, direct = [], []
    with httpx.Client(headers=stack.query_headers, timeout=600) as client:
        for question in questions:
            # vLLM-CPU's threads keep spinning for a moment after an answer and would slow the
            # next question's embedding on these shared cores (700 ms seen): start from idle
            time.sleep(LLM_IDLE_S)
            run = stream_answer(client, url, {"collection": COLLECTION, "question": question})
            if run["not_found"] or run["cached"]:
                continue  # no LLM call: says nothing about the LLM path
            runs.append(run)
            time.sleep(LLM_IDLE_S)
            direct.append(vllm_direct(client, stack, question, run["sources"]))
    server_ttft = [r["server"].get("llm_first_token", float("nan")) for r in runs]
    return {
        "answers": len(runs),
        "ttft_p50_ms": median([r["ttft_ms"] for r in runs]),
        "total_p50_ms": median([r["total_ms"] for r in runs]),
        "server_llm_first_token_p50_ms": median(server_ttft),
        "server_retrieve_p50_ms": median([r["server"].get("retrieve", float("nan")) for r in runs]),
        "vllm_direct_ttft_p50_ms": median(direct),
        "streamed": True,
    }

"""A fake vLLM: an OpenAI-compatible server that behaves like vLLM under load, without a model.

    python -m bench.fake_vllm --port 9001 [--max-num-seqs 4] [--token-rate 100] [--slowdown 3]

For the pool benchmark the figure is about scheduling, not the model, so what matters is
reproduced and the rest is left out:

- at most ``--max-num-seqs`` requests generate at once (vLLM's batch slots); the others wait
  in FIFO order, and ``/metrics`` reports both counts with vLLM's own metric names;
- a request first prefills its prompt (``--prefill-rate`` tokens/s, prompt tokens estimated at
  4 characters each), then writes exactly ``max_tokens`` tokens at ``--token-rate`` tokens/s;
  the prompt's longest prefix already in the "KV cache" is not prefilled again. Like vLLM's
  automatic prefix caching the cache holds blocks (64 characters, about 16 tokens) chained by
  hash, so two prompts share exactly the blocks of their common prefix; it keeps
  ``--prefix-cache-blocks`` of them, least recently used out (1,500: about 24k tokens, a few
  long conversations or a few dozen RAG prompts per server);
- ``--slowdown`` multiplies every time (a replica on a slower or busier GPU);
- ``/health``, ``/v1/models`` (``--models``, e.g. a base model and LoRA adapters) and
  ``/v1/chat/completions``, JSON or SSE in vLLM's chunk format.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass(frozen=True)
class FakeConfig:
    max_num_seqs: int = 4
    token_rate: float = 100.0  # answer tokens per second, per sequence
    prefill_rate: float = 20_000.0  # prompt tokens per second
    slowdown: float = 1.0
    chunk_tokens: int = 4  # tokens per SSE event (fewer events, less CPU for the benchmark)
    models: tuple[str, ...] = ("smollm2",)
    # prompt blocks the "KV cache" keeps (LRU): a real server's cache holds a few long
    # conversations, so requests of one conversation spread over many servers mostly miss
    prefix_cache_blocks: int = 1500


BLOCK_CHARS = 64


class FakeEngine:
    def __init__(self, config: FakeConfig) -> None:
        self.config = config
        self.slots = asyncio.Semaphore(config.max_num_seqs)
        self.running = 0
        self.waiting = 0
        self.finished = 0
        self.blocks: OrderedDict[bytes, None] = OrderedDict()
        self.prompt_chars = 0
        self.cached_chars = 0

    def prefill_s(self, messages: list[dict[str, Any]]) -> float:
        """Prompt processing time of the part of the prompt not already cached."""
        text = "\x00".join(str(m.get("content") or "") for m in messages)
        chain, digest = [], b""
        for start in range(0, len(text) - BLOCK_CHARS + 1, BLOCK_CHARS):  # whole blocks only
            block = text[start : start + BLOCK_CHARS].encode()
            digest = hashlib.blake2b(digest + block, digest_size=8).digest()
            chain.append(digest)
        hits = next((i for i, d in enumerate(chain) if d not in self.blocks), len(chain))
        for digest in chain:
            self.blocks[digest] = None
            self.blocks.move_to_end(digest)
        while len(self.blocks) > self.config.prefix_cache_blocks:
            self.blocks.popitem(last=False)
        self.prompt_chars += len(text)
        self.cached_chars += hits * BLOCK_CHARS
        chars = len(text) - hits * BLOCK_CHARS
        return (chars / 4) / self.config.prefill_rate * self.config.slowdown

    def token_s(self) -> float:
        return self.config.slowdown / self.config.token_rate

    async def admitted(self) -> None:
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def release(self) -> None:
        self.running -= 1
        self.finished += 1
        self.slots.release()

    def metrics(self) -> str:
        usage = self.running / self.config.max_num_seqs
        model = self.config.models[0]
        labels = f'{{engine="0",model_name="{model}"}}'
        return (
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{labels} {float(self.running)}\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{labels} {float(self.waiting)}\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f"vllm:kv_cache_usage_perc{labels} {usage}\n"
            "# TYPE vllm:request_success_total counter\n"
            f"vllm:request_success_total{labels} {float(self.finished)}\n"
            # characters, not tokens: the fake has no tokenizer (vLLM counts tokens)
            "# TYPE vllm:prefix_cache_queries counter\n"
            f"vllm:prefix_cache_queries{labels} {float(self.prompt_chars)}\n"
            "# TYPE vllm:prefix_cache_hits counter\n"
            f"vllm:prefix_cache_hits{labels} {float(self.cached_chars)}\n"
        )


def build_app(config: FakeConfig) -> Starlette:
    engine = FakeEngine(config)

    async def health(_: Request) -> Response:
        return Response(status_code=200)

    async def metrics(_: Request) -> Response:
        return PlainTextResponse(engine.metrics())

    async def models(_: Request) -> Response:
        data = [{"id": m, "object": "model", "owned_by": "vllm"} for m in config.models]
        return JSONResponse({"object": "list", "data": data})

    async def chat(request: Request) -> Response:
        body = json.loads(await request.body())
        model = body.get("model")
        if model not in config.models:
            message = f"The model `{model}` does not exist."
            error = {"message": message, "type": "NotFoundError", "code": 404}
            return JSONResponse({"error": error}, status_code=404)
        tokens = int(body.get("max_tokens") or 16)
        await engine.admitted()
        try:
            await asyncio.sleep(engine.prefill_s(body.get("messages") or []))
        except BaseException:
            engine.release()
            raise
        if body.get("stream"):
            return StreamingResponse(_events(engine, model, tokens), media_type="text/event-stream")
        try:
            await asyncio.sleep(tokens * engine.token_s())
        finally:
            engine.release()
        return JSONResponse(_completion(model, tokens))

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


def _completion(model: str, tokens: int) -> dict[str, Any]:
    message = {"role": "assistant", "content": "x " * tokens}
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
        "usage": {"completion_tokens": tokens},
    }


async def _events(engine: FakeEngine, model: str, tokens: int) -> AsyncIterator[bytes]:
    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    try:
        yield event({"role": "assistant", "content": ""})
        sent = 0
        while sent < tokens:
            # the first token alone (time to first token is measured on it), then in chunks
            step = 1 if sent == 0 else min(engine.config.chunk_tokens, tokens - sent)
            await asyncio.sleep(step * engine.token_s())
            sent += step
            yield event({"content": "x " * step})
        yield event({}, "length")
        yield b"data: [DONE]\n\n"
    finally:
        engine.release()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-num-seqs", type=int, default=4)
    parser.add_argument("--token-rate", type=float, default=100.0)
    parser.add_argument("--prefill-rate", type=float, default=20_000.0)
    parser.add_argument("--slowdown", type=float, default=1.0)
    parser.add_argument("--chunk-tokens", type=int, default=4)
    parser.add_argument("--models", default="smollm2", help="comma-separated served models")
    parser.add_argument("--prefix-cache-blocks", type=int, default=1500)
    args = parser.parse_args(argv)
    config = FakeConfig(
        max_num_seqs=args.max_num_seqs,
        token_rate=args.token_rate,
        prefill_rate=args.prefill_rate,
        slowdown=args.slowdown,
        chunk_tokens=args.chunk_tokens,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        prefix_cache_blocks=args.prefix_cache_blocks,
    )
    uvicorn.run(
        build_app(config), host=args.host, port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()

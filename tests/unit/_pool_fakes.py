"""Fake vLLM servers for the pool's unit tests, behind ``httpx.MockTransport``.

Each :class:`FakeVllm` answers ``/health``, ``/metrics``, ``/v1/models`` and
``/v1/chat/completions`` (JSON or SSE, in vLLM's chunk format: a role chunk first, then text,
then a finish chunk and ``[DONE]``), and can be told to fail in each of the ways the pool must
survive. The real thing is exercised by tests/integration/test_pool_replicas.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx

from query_engine.llm.breaker import BreakerConfig
from query_engine.llm.endpoints import Discovery, StaticDiscovery
from query_engine.llm.pool import LLMPool, PoolConfig

# what a chat request may be told to do instead of answering normally
REFUSE = "refuse"  # connection refused
BREAK_BEFORE_TOKEN = "break_before_token"  # the connection drops after the role chunk
BREAK_AFTER_TOKEN = "break_after_token"  # the connection drops after the first token
STALL = "stall"  # headers, then nothing


class FakeVllm:
    def __init__(
        self, url: str, *, models: Sequence[str] = ("m",), tokens: Sequence[str] = ("Hi", "!")
    ) -> None:
        self.url = url
        self.netloc = httpx.URL(url).netloc.decode()
        self.models = list(models)
        self.tokens = list(tokens)
        self.up = True
        self.health_status = 200
        self.health_slow = False  # a busy server: /health answers after the probe gave up
        self.metrics_text = ""
        self.failures: list[int | str] = []  # consumed one per chat request
        self.gate: asyncio.Event | None = None  # chat requests wait for it when set
        self.chat_requests: list[dict[str, Any]] = []
        self.held = 0  # chat requests waiting at the gate now

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if path == "/health":
            if self.health_slow:  # MockTransport applies no timeouts: raise what httpx would
                raise httpx.ReadTimeout("timed out", request=request)
            return httpx.Response(self.health_status)
        if path == "/metrics":
            return httpx.Response(200, text=self.metrics_text)
        if path == "/v1/models":
            data = [{"id": m, "object": "model"} for m in self.models]
            return httpx.Response(200, json={"object": "list", "data": data})
        if path == "/v1/chat/completions":
            return await self._chat(request)
        return httpx.Response(404)

    async def _chat(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.chat_requests.append(body)
        failure = self.failures.pop(0) if self.failures else None
        if failure == REFUSE:
            raise httpx.ConnectError("connection refused", request=request)
        if isinstance(failure, int):
            error = {"error": {"message": "boom", "type": "Error", "code": failure}}
            return httpx.Response(failure, json=error)
        if self.gate is not None:
            self.held += 1
            try:
                await self.gate.wait()
            finally:
                self.held -= 1
        tokens = self._generated(body.get("stop") or [])
        if body.get("stream"):
            events = self._events(body["model"], tokens, failure)
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, content=events
            )
        return httpx.Response(200, json=self._completion(body["model"], tokens))

    def _generated(self, stop: Sequence[str]) -> list[str]:
        """The tokens sent back: like vLLM, the text ends before the first ``stop`` string."""
        text = "".join(self.tokens)
        end = min((text.find(s) for s in stop if s in text), default=len(text))
        generated, used = [], 0
        for token in self.tokens:
            if used >= end:
                break
            generated.append(token[: end - used])
            used += len(token)
        return generated

    def _completion(self, model: str, tokens: Sequence[str]) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(tokens)}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return {"id": "c1", "object": "chat.completion", "model": model, "choices": [choice]}

    async def _events(
        self, model: str, tokens: Sequence[str], failure: int | str | None
    ) -> AsyncIterator[bytes]:
        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {"id": "c1", "object": "chat.completion.chunk", "model": model}
            return f"data: {json.dumps({**chunk, 'choices': [choice]})}\n\n".encode()

        yield event({"role": "assistant", "content": ""})
        if failure == STALL:
            await asyncio.sleep(3600)
        if failure == BREAK_BEFORE_TOKEN:
            raise httpx.ReadError("connection reset")
        for n, token in enumerate(tokens):
            yield event({"content": token})
            if n == 0 and failure == BREAK_AFTER_TOKEN:
                raise httpx.ReadError("connection reset")
        yield event({}, "stop")
        yield b"data: [DONE]\n\n"


class FakeCluster:
    def __init__(self, *servers: FakeVllm) -> None:
        self.servers = {s.netloc: s for s in servers}

    async def handle(self, request: httpx.Request) -> httpx.Response:
        server = self.servers.get(request.url.netloc.decode())
        if server is None:
            raise httpx.ConnectError("no such host", request=request)
        return await server.handle(request)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))


def fake_servers(n: int, **kwargs: Any) -> list[FakeVllm]:
    return [FakeVllm(f"http://10.0.0.{i + 1}:8000/v1", **kwargs) for i in range(n)]


def pool_config(**overrides: Any) -> PoolConfig:
    settings: dict[str, Any] = {
        "model": "m",
        "health_interval_s": 0.05,
        "metrics_interval_s": 0.05,
        "connect_timeout_s": 1.0,
        "first_token_timeout_s": 1.0,
        "request_timeout_s": 5.0,
        "queue_timeout_s": 2.0,
        "breaker": BreakerConfig(failure_threshold=3, cooldown_s=0.2, max_cooldown_s=1.0),
    }
    settings.update(overrides)
    return PoolConfig(**settings)


async def started_pool(
    cluster: FakeCluster, discovery: Discovery | None = None, **overrides: Any
) -> LLMPool:
    urls = [s.url for s in cluster.servers.values()]
    pool = LLMPool(
        pool_config(**overrides), discovery or StaticDiscovery(urls), client=cluster.client()
    )
    await pool.start()
    return pool


def chat_body(text: str = "hello") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 8}


async def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)

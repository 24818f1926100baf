"""The LlamaIndex ``LLM`` that goes through the vLLM pool.

``PooledLLM`` speaks vLLM's OpenAI-compatible chat API through :class:`LLMPool` for ``chat``,
``complete``, ``stream_chat``, ``stream_complete`` and their async forms (completions are sent
as one user message: the served models are chat models). The app keeps one instance; each
request uses a view from :meth:`PooledLLM.for_request`, which carries the routing context (the
session, for ``session_affinity``; the collection's LoRA adapter) and shares the pool.

The synchronous forms exist for LlamaIndex components that need them: they run on the pool's
event loop from another thread, and refuse to run on that loop itself (they would block it).
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Mapping,
    Sequence,
)
from dataclasses import replace
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.custom import CustomLLM

from query_engine.llm.policy import prefix_key_of
from query_engine.llm.pool import LLMPool, PoolStream, Route
from query_engine.llm.transport import delta_text

T = TypeVar("T")


class PooledLLM(CustomLLM):
    model: str = Field(description="the served base model")
    adapter: str | None = Field(None, description="LoRA adapter sent as the model, if any")
    session_id: str | None = Field(None, description="conversation, for session affinity")
    context_window: int = Field(2048, gt=0)
    max_tokens: int = Field(256, gt=0, description="answer length limit")
    temperature: float = Field(0.0, ge=0.0)
    additional_kwargs: dict[str, Any] = Field(default_factory=dict)

    _pool: LLMPool = PrivateAttr()
    _adapters: Mapping[str, str] = PrivateAttr(default_factory=dict)

    def __init__(
        self, *, pool: LLMPool, lora_adapters: Mapping[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self._pool = pool
        self._adapters = dict(lora_adapters or {})

    @classmethod
    def class_name(cls) -> str:
        return "docqa_pooled_llm"

    @property
    def pool(self) -> LLMPool:
        return self._pool

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_tokens,
            is_chat_model=True,
            is_function_calling_model=False,
            model_name=self.adapter or self.model,
        )

    def for_request(
        self, session_id: str | None = None, collection: str | None = None
    ) -> PooledLLM:
        """A view of this LLM for one request: same pool, routed for this session and with
        the collection's LoRA adapter (when one is configured for it)."""
        adapter = self._adapters.get(collection) if collection else None
        return self.model_copy(update={"session_id": session_id, "adapter": adapter})

    @property
    def route(self) -> Route:
        return Route(model=self.adapter or self.model, session_id=self.session_id)

    def _body(self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        options = dict(kwargs)
        options.pop("formatted", None)
        return {
            "messages": [_message_dict(m) for m in messages],
            "max_tokens": options.pop("max_tokens", self.max_tokens),
            "temperature": options.pop("temperature", self.temperature),
            **self.additional_kwargs,
            **options,
        }

    # ------------------------------------------------------------------ async

    def _route_for(self, body: Mapping[str, Any]) -> Route:
        """This request's route: its prompt's prefix joins the session and model."""
        return replace(self.route, prefix_key=prefix_key_of(body["messages"]))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        body = self._body(messages, kwargs)
        raw = await self._pool.chat(body, self._route_for(body))
        return ChatResponse(message=_answer_message(raw), raw=raw)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        body = self._body(messages, kwargs)
        stream = await self._pool.stream_chat(body, self._route_for(body))
        return _chat_deltas(stream)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        response = await self.achat([_user(prompt)], **kwargs)
        return CompletionResponse(text=response.message.content or "", raw=response.raw)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        body = self._body([_user(prompt)], kwargs)
        stream = await self._pool.stream_chat(body, self._route_for(body))
        return _completion_deltas(stream)

    # ------------------------------------------------------------------ sync

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._run(lambda: self.achat(messages, **kwargs))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._iterate(lambda: self.astream_chat(messages, **kwargs))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._run(lambda: self.acomplete(prompt, formatted=formatted, **kwargs))

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        return self._iterate(lambda: self.astream_complete(prompt, formatted=formatted, **kwargs))

    def _pool_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._pool.loop
        if loop is None or not loop.is_running():
            raise RuntimeError("the LLM pool is not running: start it on an event loop first")
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            raise RuntimeError(
                "synchronous LLM calls would block the pool's event loop: use achat, "
                "acomplete, astream_chat or astream_complete there"
            )
        return loop

    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        loop = self._pool_loop()
        return asyncio.run_coroutine_threadsafe(_awaited(make), loop).result()

    def _iterate(self, make: Callable[[], Awaitable[AsyncIterator[T]]]) -> Generator[T, None, None]:
        loop = self._pool_loop()
        stream = asyncio.run_coroutine_threadsafe(_awaited(make), loop).result()
        try:
            while True:
                try:
                    yield asyncio.run_coroutine_threadsafe(_next(stream), loop).result()
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                asyncio.run_coroutine_threadsafe(closer(), loop).result()


async def _awaited(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


async def _next(stream: AsyncIterator[T]) -> T:
    return await anext(stream)


async def _chat_deltas(stream: PoolStream) -> AsyncGenerator[ChatResponse, None]:
    text = ""
    try:
        async for chunk in stream:
            delta = delta_text(chunk)
            text += delta
            message = ChatMessage(role=MessageRole.ASSISTANT, content=text)
            yield ChatResponse(message=message, delta=delta, raw=chunk)
    finally:
        await stream.aclose()


async def _completion_deltas(
    stream: PoolStream,
) -> AsyncGenerator[CompletionResponse, None]:
    text = ""
    try:
        async for chunk in stream:
            delta = delta_text(chunk)
            text += delta
            yield CompletionResponse(text=text, delta=delta, raw=chunk)
    finally:
        await stream.aclose()


def _user(prompt: str) -> ChatMessage:
    return ChatMessage(role=MessageRole.USER, content=prompt)


def _message_dict(message: ChatMessage) -> dict[str, Any]:
    return {"role": message.role.value, "content": message.content or ""}


def _answer_message(raw: Mapping[str, Any]) -> ChatMessage:
    choices = raw.get("choices") or [{}]
    content = (choices[0].get("message") or {}).get("content") or ""
    return ChatMessage(role=MessageRole.ASSISTANT, content=str(content))

"""LlamaIndex LLM for a vLLM OpenAI-compatible server.

``OpenAILike`` speaks vLLM's current ``/v1`` API (LlamaIndex's ``Vllm`` class targets an old one).
Retries are off here: failover belongs to the pool, which knows which endpoint failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from llama_index.llms.openai_like import OpenAILike


@dataclass(frozen=True)
class LLMEndpointConfig:
    base_url: str
    model: str
    api_key: str = "EMPTY"
    context_window: int = 2048
    max_answer_tokens: int = 256
    temperature: float = 0.0
    request_timeout_s: float = 120.0


def build_openai_like(config: LLMEndpointConfig) -> OpenAILike:
    return OpenAILike(
        model=config.model,
        api_base=config.base_url,
        api_key=config.api_key,
        is_chat_model=True,
        is_function_calling_model=False,
        context_window=config.context_window,
        max_tokens=config.max_answer_tokens,
        temperature=config.temperature,
        timeout=config.request_timeout_s,
        max_retries=0,
    )


async def endpoint_serves_model(client: httpx.AsyncClient, base_url: str, model: str) -> None:
    """Readiness probe: the server answers ``/models`` and lists the model we will ask for."""
    response = await client.get(f"{base_url}/models")
    response.raise_for_status()
    served = {entry.get("id") for entry in response.json().get("data", [])}
    if model not in served:
        raise RuntimeError(f"{base_url} serves {sorted(served)}, not {model!r}")

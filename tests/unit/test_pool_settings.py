"""The pool's settings: defaults, environment parsing, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from query_engine.llm.endpoints import DnsDiscovery, StaticDiscovery
from services.common.llm_pool import discovery_from, pool_config
from services.common.settings import LLMSettings, QuerySettings


def test_defaults_are_a_least_loaded_pool_over_the_local_server() -> None:
    llm = LLMSettings()
    assert llm.endpoints == ["http://127.0.0.1:8010/v1"] and llm.discovery == "static"
    assert llm.policy == "least_loaded" and llm.retries == 1
    assert (llm.max_in_flight, llm.queue_size) == (64, 256)
    assert llm.lora_adapters == {}
    assert isinstance(discovery_from(llm), StaticDiscovery)


def test_environment_sets_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_LLM_ENDPOINTS", "http://vllm:8000/v1")
    monkeypatch.setenv("DOCQA_LLM_DISCOVERY", "dns")
    monkeypatch.setenv("DOCQA_LLM_POLICY", "session_affinity")
    monkeypatch.setenv("DOCQA_LLM_MAX_IN_FLIGHT", "8")
    monkeypatch.setenv("DOCQA_LLM_QUEUE_SIZE", "0")
    monkeypatch.setenv("DOCQA_LLM_LORA_ADAPTERS", '{"laws": "law-lora", "manuals": "ops"}')
    monkeypatch.setenv("DOCQA_LLM_BREAKER_COOLDOWN_S", "4")
    llm = QuerySettings().llm
    assert llm.policy == "session_affinity" and llm.max_in_flight == 8 and llm.queue_size == 0
    assert llm.lora_adapters == {"laws": "law-lora", "manuals": "ops"}
    assert isinstance(discovery_from(llm), DnsDiscovery)
    config = pool_config(llm)
    assert config.breaker.cooldown_s == 4 and config.breaker.max_cooldown_s == 32
    assert config.policy == "session_affinity"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"policy": "random"}, "policy"),
        ({"discovery": "consul"}, "discovery"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"queue_size": -1}, "queue_size"),
        ({"retries": 9}, "retries"),
        ({"first_token_timeout_s": 200, "request_timeout_s": 100}, "FIRST_TOKEN_TIMEOUT"),
        ({"affinity_max_load": 1.5}, "affinity_max_load"),
        ({"lora_adapters": {"laws": " "}}, "LORA_ADAPTERS"),
        ({"endpoints": ["vllm:8000"]}, "DOCQA_LLM_ENDPOINTS"),
    ],
)
def test_bad_values_are_refused_with_the_setting_named(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LLMSettings(**overrides)


def test_lora_adapters_must_be_a_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_LLM_LORA_ADAPTERS", "laws=law-lora")
    with pytest.raises(ValidationError, match="must be a JSON object"):
        QuerySettings()


def test_readme_documents_every_llm_setting() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `(DOCQA_LLM_[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == {f"DOCQA_LLM_{name.upper()}" for name in LLMSettings.model_fields}

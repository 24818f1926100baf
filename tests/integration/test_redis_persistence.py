"""The local stack's Redis keeps what it holds across a restart (`make down`, `make up`): API
keys made through the API, FAQ entries, jobs and index versions live only there."""

from __future__ import annotations

from pathlib import Path

import redis

from deploy import processes, stack


def start(paths: stack.StackPaths, port: int) -> processes.ProcessSpec:
    spec = stack.redis_spec(paths, port, name="persisted-redis", persist=True)
    processes.start(spec)
    processes.wait_until_ready(spec, stack.redis_ready(port), timeout_s=30)
    return spec


def test_what_redis_held_is_there_after_a_stop_and_start(tmp_path: Path) -> None:
    stack.ensure_redis_server()
    paths, port = stack.StackPaths(tmp_path), processes.free_port()
    spec = start(paths, port)
    try:
        client = redis.Redis(port=port)
        client.set("docqa:faq:samples:entry", "90 seconds.")
        client.set("docqa:answer:cached", "expires", ex=3600)
        client.close()
        assert processes.stop(spec.pid_path)  # SIGTERM: Redis flushes its append-only file
        spec = start(paths, port)
        client = redis.Redis(port=port)
        assert client.get("docqa:faq:samples:entry") == b"90 seconds."
        assert 0 < client.ttl("docqa:answer:cached") <= 3600
        client.close()
    finally:
        processes.stop(spec.pid_path)
    assert (tmp_path / "data" / "persisted-redis").is_dir()


def test_test_and_benchmark_redis_servers_keep_nothing(tmp_path: Path) -> None:
    command = stack.redis_spec(stack.StackPaths(tmp_path), 6390, name="throwaway").command
    assert command[command.index("--appendonly") + 1] == "no"
    assert "--dir" not in command

"""The services' own apps (``tests.unit._service_apps``: the real ``build_app`` over fakes of our
seams) served by a real uvicorn server, in a process of their own, for tests that measure what a
client on a socket sees.

A process of its own, not a thread: a client in the test process (building and sending megabytes)
would otherwise share the GIL with the server it measures. No lifespan runs (``lifespan="off"``):
the fakes stand where the lifespan would have put the real clients.

    python -m tests.unit._live_servers query|indexing PORT [LIMIT=VALUE ...]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx

from deploy.processes import free_port

ROOT = Path(__file__).parents[2]


@contextmanager
def live_server(service: str, **limits: int) -> Iterator[int]:
    """The port of ``service``'s app served by uvicorn in a child process, stopped on exit."""
    port = free_port()
    command = [sys.executable, "-m", "tests.unit._live_servers", service, str(port)]
    command += [f"{name}={value}" for name, value in limits.items()]
    # a file, not a pipe: the app logs a line a request, and a full pipe would stall the server
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_serving(child, port, log)
            yield port
        finally:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _wait_until_serving(child: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if child.poll() is not None:
            log.seek(0)
            error = log.read().decode(errors="replace")
            raise RuntimeError(f"the server exited with {child.returncode}: {error[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server on port {port} did not answer /healthz in 30 s")


def main(argv: list[str]) -> None:
    import uvicorn

    from tests.unit._service_apps import indexing_app, query_app

    service, port, *settings = argv
    limits: dict[str, Any] = {
        name: int(value) for name, value in (item.split("=", 1) for item in settings)
    }
    app = query_app(**limits) if service == "query" else indexing_app(**limits)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(port),
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main(sys.argv[1:])

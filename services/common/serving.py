"""``docqa serve``: the service's app on its port and, with ``DOCQA_SERVER_ADMIN_PORT``, the
admin app (``services.common.admin``) on a second port, both in one process and one event loop.

One process, so the admin port reports this process's own metrics and readiness (a sidecar
would see neither). The public server owns the process: it handles SIGTERM/SIGINT, runs the
app's lifespan and drains open requests; the admin server (no lifespan, no signal handling of
its own) is stopped once the public one has finished, so ``/metrics`` stays scrapeable while
requests drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from services.common.admin import build_admin_app
from services.common.settings import CommonSettings

log = logging.getLogger("docqa.serving")
STARTUP_FAILURE = 3  # uvicorn's own exit status for an app that failed to start


class AdminServer(uvicorn.Server):
    """A server that leaves the process's signals to the public server: two servers capturing
    them in turn would each restore the other's handlers on exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_servers(
    app: FastAPI, settings: CommonSettings, *, host: str, port: int
) -> tuple[uvicorn.Server, uvicorn.Server | None]:
    """The public server, and the admin server when an admin port is set."""
    public = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            timeout_graceful_shutdown=settings.server.shutdown_timeout_s,
        )
    )
    admin_port = settings.server.admin_port
    if admin_port is None:
        if settings.environment == "production":
            log.warning(
                "no DOCQA_SERVER_ADMIN_PORT: /metrics and readiness detail are served nowhere"
            )
        return public, None
    admin_config = uvicorn.Config(
        build_admin_app(app),
        host=host,
        port=admin_port,
        log_config=None,
        lifespan="off",
        access_log=False,
    )
    return public, AdminServer(admin_config)


async def serve(public: uvicorn.Server, admin: uvicorn.Server | None) -> None:
    if admin is None:
        await public.serve()
        return
    admin_task = asyncio.create_task(admin.serve())
    try:
        await public.serve()
    finally:
        admin.should_exit = True
        await admin_task


def run(app: FastAPI, settings: CommonSettings, *, host: str, port: int) -> int:
    """Serve until SIGTERM/SIGINT; the exit status is uvicorn's: 3 when the app never started
    (its lifespan failed)."""
    public, admin = build_servers(app, settings, host=host, port=port)
    runner = asyncio.Runner(loop_factory=public.config.get_loop_factory())
    with runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(serve(public, admin))
    return 0 if public.started else STARTUP_FAILURE

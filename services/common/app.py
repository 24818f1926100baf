"""App factory shared by both services: middleware, error envelope, health, readiness, metrics."""

from __future__ import annotations

import inspect
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.admin import public_ops_router
from services.common.auth import KeyRing
from services.common.errors import error_response, install_error_handlers
from services.common.limits import BodyLimitMiddleware
from services.common.logging import configure_logging, request_id_var
from services.common.metrics import count_request
from services.common.openapi_errors import declare_error_responses
from services.common.settings import CommonSettings

log = logging.getLogger("docqa.access")

_QUIET_PATHS = {"/healthz", "/readyz", "/metrics"}


class Lifespan(Protocol):
    def __call__(self, app: FastAPI) -> AbstractAsyncContextManager[None]: ...


class RequestContextMiddleware:
    """Request id in and out, one access-log line and metrics per request.

    Plain ASGI rather than BaseHTTPMiddleware, so streamed responses pass through untouched and a
    client disconnect still reaches the endpoint.
    """

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"")
        request_id = _usable_request_id(incoming) or os.urandom(16).hex()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder = {"status": 500}
        response_started = {"value": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_started["value"] = True
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if not response_started["value"]:
                status_holder["status"] = 500
                response = error_response(
                    500, "internal_error", "internal server error (this is a bug)"
                )
                await response(scope, receive, send_with_id)
        finally:
            self._record(scope, status_holder["status"], time.perf_counter() - started)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        route_path = getattr(route, "path", "unmatched")
        method = scope.get("method", "")
        count_request(self.service, method, route_path, status, elapsed)
        if scope.get("path") not in _QUIET_PATHS or status >= 400:
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": scope.get("path"),
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _usable_request_id(raw: bytes) -> str | None:
    """A client's X-Request-ID is echoed into logs and headers, so only a safe one is kept."""
    text = raw.decode("latin-1")[:128]
    return text if _REQUEST_ID.fullmatch(text) else None


def _native_telemetry(enabled: bool) -> dict[str, Any]:
    """FastAPI's ``telemetry`` argument where this FastAPI has one (0.16x): everything off
    unless asked for, so a request skips the per-request provider checks."""
    if enabled or "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(
    *,
    title: str,
    service: str,
    settings: CommonSettings,
    lifespan: Lifespan,
    routers: Sequence[APIRouter],
    inner_middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = (),
) -> FastAPI:
    """``inner_middleware`` runs inside the request-context middleware (request id, access log,
    metrics) and the body limit (``settings.max_body_bytes``, JSON depth), outermost first: no
    middleware of a service reads a body the limit has not measured."""
    configure_logging(settings.log_level, json_logs=settings.log_json)
    app = FastAPI(
        title=title, version="0.1.0", lifespan=lifespan, **_native_telemetry(settings.otel)
    )
    app.state.settings = settings
    app.state.keyring = KeyRing(
        query_keys=settings.auth.query_keys, admin_keys=settings.auth.admin_keys
    )
    app.state.readiness_checks = ()
    install_error_handlers(app)
    for middleware in reversed(inner_middleware):  # each one added wraps the ones before
        app.add_middleware(middleware)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        # outside the body limit and auth: a browser's preflight carries neither body nor key
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
            ],
        )
    app.add_middleware(RequestContextMiddleware, service=service)
    # readiness detail lives on the admin port; production keeps /metrics there too
    app.include_router(public_ops_router(with_metrics=settings.environment != "production"))
    for router in routers:
        app.include_router(router)
    declare_error_responses(app)
    return app

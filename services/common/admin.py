"""Health, readiness and metrics routes, on the public port and on the admin port.

``/readyz`` on the public port says only ``ready`` (200) or ``not_ready`` (503), in every
environment: that is all a load balancer or kubelet needs, and a body naming each dependency
with its error and latency (hosts, ports, exception text) is a map of the internals to anyone
who can reach the port. The details are served by the admin app on ``DOCQA_SERVER_ADMIN_PORT``:
a second server in the same process (``services.common.serving``), reading the public app's own
readiness checks and the process's metrics registry, reachable only where the network lets it
be (in Kubernetes, a NetworkPolicy admits the monitoring namespace to that port alone). Each
check also sets ``docqa_dependency_up`` (``services.common.health``), so ``/metrics`` shows which
dependency is down. In production ``/metrics`` is on the admin port only; in development the
public port serves it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from services.common.health import DependencyCheck, check_readiness
from services.common.metrics import metrics_response


def _checks(app: FastAPI) -> Sequence[DependencyCheck]:
    checks: Sequence[DependencyCheck] = getattr(app.state, "readiness_checks", ())
    return checks


def _add_healthz(router: APIRouter) -> None:
    @router.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}


def _add_metrics(router: APIRouter) -> None:
    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Any:
        return metrics_response()


def public_ops_router(*, with_metrics: bool) -> APIRouter:
    """``/healthz`` and the status-only ``/readyz`` for the public port; with ``with_metrics``
    (development) ``/metrics`` too."""
    router = APIRouter(tags=["ops"])
    _add_healthz(router)

    @router.get("/readyz", summary="Every dependency this service needs is reachable")
    async def readyz(request: Request) -> JSONResponse:
        code, _ = await check_readiness(_checks(request.app))
        # degraded (an optional dependency down) still serves: "ready", as the status code says
        return JSONResponse({"status": "ready" if code < 500 else "not_ready"}, status_code=code)

    if with_metrics:
        _add_metrics(router)
    return router


def build_admin_app(public: FastAPI) -> FastAPI:
    """The admin port's app: ``/healthz``, the detailed ``/readyz`` of ``public`` (its checks are
    set by its lifespan, so they are read per request) and ``/metrics``. No API docs, no auth:
    the port is meant for the cluster's monitoring, not for clients."""
    admin = FastAPI(
        title=f"{public.title} (admin)", docs_url=None, redoc_url=None, openapi_url=None
    )
    router = APIRouter()
    _add_healthz(router)

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        code, body = await check_readiness(_checks(public))
        return JSONResponse(body, status_code=code)

    _add_metrics(router)
    admin.include_router(router)
    return admin

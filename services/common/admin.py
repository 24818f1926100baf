"""Health, readiness and metrics routes, on the public port and on the admin port.

``/readyz`` names every dependency with its error and latency, and ``/metrics`` lists endpoints,
routes and collections: useful to operators, a map of the internals to anyone else. In
production the public port's ``/readyz`` therefore says only ``ready`` (200) or ``not_ready``
(503), which is all a load balancer or kubelet needs, and has no ``/metrics``. The details and
``/metrics`` are served by the admin app on ``DOCQA_SERVER_ADMIN_PORT``: a second server in the
same process (``services.common.serving``), reading the public app's own readiness checks and the
process's metrics registry, reachable only where the network lets it be (in Kubernetes, a
NetworkPolicy admits the monitoring namespace to that port alone). In development the public
port keeps everything, as before.
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


def public_ops_router(*, detailed: bool) -> APIRouter:
    """``/healthz`` and ``/readyz`` for the public port; with ``detailed`` (development) the
    readiness detail and ``/metrics`` too."""
    router = APIRouter(tags=["ops"])
    _add_healthz(router)

    @router.get("/readyz", summary="Every dependency this service needs is reachable")
    async def readyz(request: Request) -> JSONResponse:
        code, body = await check_readiness(_checks(request.app))
        if detailed:
            return JSONResponse(body, status_code=code)
        # degraded (an optional dependency down) still serves: "ready", as the status code says
        return JSONResponse({"status": "ready" if code < 500 else "not_ready"}, status_code=code)

    if detailed:
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

"""The web page at ``/ui``: static HTML, JS and CSS shipped in the package (``ui/``), no build
step, nothing fetched from a CDN, so it works offline.

The page is plain files plus one JSON document (``/ui/config.json``: where the indexing service
is, and the server's default answer mode). It needs no key to load; every API call it makes
carries the key the user typed, which the page keeps in ``sessionStorage``.

**How the Documents tab reaches the indexing service.** The browser calls the indexing service
directly, allowed by CORS (``DOCQA_CORS_ORIGINS`` on that service lists this page's origin;
``docqa up`` sets both sides), rather than through a proxy route here, because:

- uploads keep the indexing service's own limits, auth and ingest quota: a proxy on the query
  service would have to raise its 1 MB body limit to the 20 MB of an upload and re-check all of
  that, and would make the query tier a second way into ingestion;
- a CORS allow-list is one existing setting (``services.common.app``), not a new code path; the
  page's Content-Security-Policy still names exactly the two origins it may connect to.

Every response carries a strict Content-Security-Policy (scripts and styles from this origin
only, no inline code, no framing, no form submission: a key typed into a form can never end up
in a URL even if the script failed to load).
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from docqa_core.errors import NotFound
from services.common.settings import QuerySettings

UI_DIR = Path(__file__).resolve().parent / "ui"
# the only names served: flat files of these types in UI_DIR (no paths, no dot files)
_ASSET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.(?:html|js|css|svg)")
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

router = APIRouter(tags=["ui"], include_in_schema=False)


def content_security_policy(indexing_origin: str | None) -> str:
    """Scripts, styles and images from this origin only; requests to this origin and, when the
    Documents tab is on, the indexing service's."""
    connect = "'self'" + (f" {indexing_origin}" if indexing_origin else "")
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def ui_headers(settings: QuerySettings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings.ui.indexing_origin),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        # revalidated on every load (ETag), so a deploy's new files are picked up at once
        "Cache-Control": "no-cache",
    }


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    # relative, so the page also works behind a proxy that mounts the service under a prefix
    return RedirectResponse("ui/", status_code=308)


@router.get("/ui/")
async def ui_index(request: Request) -> Response:
    return _asset(request, "index.html")


@router.get("/ui/config.json")
async def ui_config(request: Request) -> JSONResponse:
    settings: QuerySettings = request.app.state.settings
    body = {"indexing_url": settings.ui.indexing_url, "answer_mode": settings.answer_mode}
    return JSONResponse(body, headers=ui_headers(settings))


@router.get("/ui/{name}")
async def ui_asset(request: Request, name: str) -> Response:
    return _asset(request, name)


def _asset(request: Request, name: str) -> Response:
    path = UI_DIR / name
    if not _ASSET_NAME.fullmatch(name) or not path.is_file():
        raise NotFound(f"no page asset {name!r}")
    settings: QuerySettings = request.app.state.settings
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=ui_headers(settings))

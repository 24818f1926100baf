"""The web page's server side: /ui served from the package with a strict CSP, its config, the
CORS the Documents tab relies on, and the files themselves (no CDN, no inline code, shipped as
package data). The page in a real browser: tests/e2e/test_web_ui.py."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from deploy import stack
from services.common.settings import IndexingSettings, QuerySettings
from services.common.ui_settings import UiSettings
from services.indexing_api.app import build_app as build_indexing_app
from services.query_api.app import build_app as build_query_app
from services.query_api.ui_routes import UI_DIR
from tests.unit._service_apps import KEYS, FakeAnswerer, FakeRuntime, client_for, quietly

ROOT = Path(__file__).resolve().parents[2]
INDEXING_URL = "http://idx.example:8001"


def ui_app(indexing_url: str | None = INDEXING_URL, answer_mode: str = "extractive"):
    settings = QuerySettings(
        log_json=False,
        auth=KEYS,
        ui=UiSettings(indexing_url=indexing_url),
        answer_mode=answer_mode,
    )
    app = quietly(lambda: build_query_app(settings))
    app.state.runtime = FakeRuntime(settings, FakeAnswerer())
    return app


def csp_directives(header: str) -> dict[str, list[str]]:
    parts = (part.split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in parts}


async def test_the_page_is_served_with_a_strict_content_security_policy() -> None:
    async with client_for(ui_app()) as client:
        response = await client.get("/ui/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="app.js">' in response.text
    csp = csp_directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'", INDEXING_URL]
    assert csp["frame-ancestors"] == ["'none'"] and csp["form-action"] == ["'none'"]
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_without_an_indexing_url_the_page_connects_only_to_its_own_origin() -> None:
    async with client_for(ui_app(indexing_url=None)) as client:
        page = await client.get("/ui/")
        config = await client.get("/ui/config.json")
    assert csp_directives(page.headers["content-security-policy"])["connect-src"] == ["'self'"]
    assert config.json() == {"indexing_url": None, "answer_mode": "extractive"}


async def test_config_tells_the_page_where_the_indexing_service_is() -> None:
    async with client_for(ui_app(answer_mode="auto")) as client:
        response = await client.get("/ui/config.json")
    assert response.json() == {"indexing_url": INDEXING_URL, "answer_mode": "auto"}
    assert "content-security-policy" in response.headers


async def test_ui_without_the_slash_redirects_relatively() -> None:
    async with client_for(ui_app()) as client:
        response = await client.get("/ui")
    assert response.status_code == 308
    assert response.headers["location"] == "ui/"


@pytest.mark.parametrize(
    ("name", "media_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("ask.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_are_served_with_their_type_and_the_policy(name: str, media_type: str) -> None:
    async with client_for(ui_app()) as client:
        response = await client.get(f"/ui/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.content == (UI_DIR / name).read_bytes()
    assert "content-security-policy" in response.headers


@pytest.mark.parametrize(
    "path", ["/ui/nope.js", "/ui/..%2Fui_routes.py", "/ui/.hidden.js", "/ui/App.JS", "/ui/x/app.js"]
)
async def test_anything_else_under_ui_is_a_404_in_the_envelope(path: str) -> None:
    async with client_for(ui_app()) as client:
        response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_page_needs_no_key_but_the_api_still_does() -> None:
    async with client_for(ui_app()) as client:
        page = await client.get("/ui/app.js")
        models = await client.get("/v1/models")
    assert page.status_code == 200
    assert models.status_code == 401


async def test_the_indexing_service_admits_only_the_pages_origin_by_cors() -> None:
    page_origin = "http://127.0.0.1:8000"
    settings = IndexingSettings(log_json=False, auth=KEYS, cors_origins=[page_origin])
    app = quietly(lambda: build_indexing_app(settings))
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with client_for(app) as client:
        allowed = await client.options(
            "/v1/collections/c/documents", headers={**preflight, "Origin": page_origin}
        )
        refused = await client.options(
            "/v1/collections/c/documents", headers={**preflight, "Origin": "http://evil.example"}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == page_origin
    assert "access-control-allow-origin" not in refused.headers


def test_ui_settings_take_an_http_url_and_derive_its_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCQA_UI_INDEXING_URL", "https://docs.example/indexing/")
    ui = QuerySettings().ui
    assert ui.indexing_url == "https://docs.example/indexing"
    assert ui.indexing_origin == "https://docs.example"
    for bad in ("ftp://x", "docs.example", "http://x/?a=1"):
        with pytest.raises(ValidationError, match="DOCQA_UI_INDEXING_URL"):
            UiSettings(indexing_url=bad)


def test_the_local_stack_points_the_page_at_the_indexing_service() -> None:
    ports = stack.StackPorts(query=8100, indexing=8101)
    keys = {"DOCQA_QUERY_KEY": "q" * 30, "DOCQA_ADMIN_KEY": "a" * 30}
    env = stack.service_env(ports, keys)
    assert env["DOCQA_UI_INDEXING_URL"] == "http://127.0.0.1:8101"
    origins = env["DOCQA_CORS_ORIGINS"].split(",")
    assert {"http://127.0.0.1:8100", "http://localhost:8100"} <= set(origins)


# ------------------------------------------------------------------ the files themselves

UI_FILES = sorted(p for p in UI_DIR.iterdir() if p.is_file())


def test_every_page_file_is_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["services.query_api"]
    for path in UI_FILES:
        name = f"ui/{path.name}"
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_every_page_file_is_at_most_500_lines() -> None:
    assert UI_FILES
    assert [p.name for p in UI_FILES if len(p.read_text(encoding="utf-8").splitlines()) > 500] == []


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """No CDN, font service or absolute URL: the page works offline (the SVG's XML namespace
    is a name, not a request)."""
    for path in UI_FILES:
        text = path.read_text(encoding="utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", text), path.name


def test_the_page_holds_no_inline_code_the_policy_would_block() -> None:
    html = (UI_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
    assert not re.search(r"\son[a-z]+=|\sstyle=|<style", html), "inline handler or style"
    for ref in re.findall(r'(?:src|href)="([^"#]+)"', html):
        assert (UI_DIR / ref).is_file(), ref


def test_the_modules_import_only_files_that_exist() -> None:
    for path in UI_DIR.glob("*.js"):
        for ref in re.findall(r'from\s+"\./([^"]+)"', path.read_text(encoding="utf-8")):
            assert (UI_DIR / ref).is_file(), f"{path.name} imports {ref}"

"""`/docs` (Swagger UI) and `/redoc`, served with their scripts from this process: the pages
load nothing from another host, so they work offline and behind a firewall.

The scripts, stylesheet and favicon are the ones the pinned `fastapi-offline` package ships
(`fastapi_offline/static`); FastAPI's own pages would fetch them from a CDN.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
#: Where the pages' scripts, stylesheet and favicon are served from.
ASSETS_URL = "/docs-assets"
#: No "online validator" badge: Swagger UI would load it from validator.swagger.io, sending
#: it this API's OpenAPI URL, whenever the page is not on localhost.
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None}
#: Images only from the service itself: ReDoc's menu shows Redocly's logo from cdn.redoc.ly
#: whatever its options say; under this policy the browser does not ask for it (and ReDoc
#: drops the logo when it fails to load).
CONTENT_SECURITY_POLICY = "img-src 'self' data:"


def _own_images_only(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


def _root(request: Request) -> str:
    """The prefix a proxy serves the app under (`root_path`), so the pages' URLs resolve."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_swagger_ui_html(
        openapi_url=root + str(request.app.openapi_url),
        title=f"{request.app.title} - Swagger UI",
        oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    return _own_images_only(page)


async def swagger_ui_oauth2_redirect(request: Request) -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_redoc_html(
        openapi_url=root + str(request.app.openapi_url),
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )
    return _own_images_only(page)


def install_docs(app: FastAPI) -> None:
    """The documentation pages and their assets, none of them in the OpenAPI document. The
    app must be made with `docs_url=None, redoc_url=None` (FastAPI's pages use a CDN)."""
    assets = StaticFiles(packages=[("fastapi_offline", "static")])
    app.mount(ASSETS_URL, assets, name="docs-assets")
    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, swagger_ui_oauth2_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)

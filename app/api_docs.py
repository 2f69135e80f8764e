"""``/docs`` (Swagger UI) and ``/redoc``, served from this process, never from a CDN.

FastAPI's own pages load their scripts from a CDN without integrity hashes, on the origin of
the dashboard: a third party would run script next to the session cookie, and nothing may be
downloaded at run time. The scripts come from the pinned ``fastapi-offline`` package (its
``static`` folder only: Swagger UI's bundle and stylesheet, Redoc's standalone build) and the
pages carry a Content-Security-Policy that allows this origin alone (styles inline: both UIs
inject them; ``blob:`` workers: Redoc's search). Redoc's sidebar shows a logo from its CDN
whatever its options say; its script is served with that one URL pointing at our own icon
(``REDOC_LOGO``), so the browser asks no other host for anything. ``api_docs=False`` turns
both pages off.
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs/assets"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}  # fmt: skip

# Swagger UI's start-up, as a file of this origin (the page may run no inline script).
# ``validatorUrl: null``: its default asks validator.swagger.io for a badge.
SWAGGER_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", layout: "BaseLayout", deepLinking: true,
  validatorUrl: null, showExtensions: true, showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{assets}/favicon.png">
{head}
</head>
<body>
{body}
</body>
</html>
"""


def vendor_dir() -> Path:
    """The asset folder of the installed ``fastapi-offline`` (pinned in pyproject.toml)."""
    return Path(str(importlib.resources.files("fastapi_offline") / "static"))


@functools.cache
def _redoc_script() -> str:
    """Redoc's bundle with its CDN logo pointed at our icon (read once per process).
    tests/integration/test_dashboard_browser.py fails if a new version asks another host."""
    script = (vendor_dir() / "redoc.standalone.js").read_text(encoding="utf-8")
    return script.replace(REDOC_LOGO, f"{ASSETS}/favicon.png")


def _swagger_page(title: str) -> str:
    head = f'<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">'
    body = (f'<div id="swagger-ui"></div>\n<script src="{ASSETS}/swagger-ui-bundle.js"></script>\n'
            '<script src="/docs/swagger-init.js"></script>')  # fmt: skip
    return _PAGE.format(title=f"{title} - Swagger UI", assets=ASSETS, head=head, body=body)


def _redoc_page(title: str) -> str:
    body = (f'<redoc spec-url="/openapi.json"></redoc>\n'
            f'<script src="{ASSETS}/redoc.standalone.js"></script>')  # fmt: skip
    return _PAGE.format(title=f"{title} - ReDoc", assets=ASSETS, head="", body=body)


def mount(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their assets (create the app with ``docs_url=None``)."""
    swagger, redoc = _swagger_page(app.title), _redoc_page(app.title)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(swagger, headers=HEADERS)

    @app.get("/redoc", include_in_schema=False)
    async def redoc_docs() -> HTMLResponse:
        return HTMLResponse(redoc, headers=HEADERS)

    @app.get("/docs/swagger-init.js", include_in_schema=False)
    async def swagger_init() -> Response:
        return Response(SWAGGER_INIT, media_type="text/javascript", headers=HEADERS)

    @app.get(f"{ASSETS}/redoc.standalone.js", include_in_schema=False)
    async def redoc_script() -> Response:  # before the mount below, so it wins
        return Response(_redoc_script(), media_type="text/javascript", headers=HEADERS)

    app.mount(ASSETS, StaticFiles(directory=vendor_dir()), name="docs-assets")

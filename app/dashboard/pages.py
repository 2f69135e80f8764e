"""Rendering: the Jinja environment, the headers every page carries, and HTML error pages.

Templates autoescape everything (file names and layer names come from users) and fail loudly
on an undefined name, so a template mistake is a test failure rather than a blank cell. Pages
load scripts and styles from this origin only (a strict Content-Security-Policy), cannot be
framed, and are never cached: they show a team's private jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.routing import Match

from app.dashboard import views
from app.errors import AppError

HERE = Path(__file__).resolve().parent
PREFIX = "/dashboard"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters.update(views.FILTERS)
env.globals.update(status_icons=views.STATUS_ICONS, prefix=PREFIX)


def render(
    request: Request, template: str, context: dict[str, Any], *, status_code: int = 200
) -> HTMLResponse:
    html = env.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def secured(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a dashboard path on this site, never another origin."""
    if target and target.startswith(PREFIX + "/") and not any(c in target for c in "\\\r\n"):
        return target
    return f"{PREFIX}/jobs"


def _page_to_return_to(request: Request) -> str:
    """Where a browser goes back to after signing in: the URL it asked for, or, for a form
    post (a cancel or sign-out refused for want of a session, e.g. sent by another site),
    the page that form belongs to. The post itself is not repeated, and a GET of a POST-only
    URL would be a 405."""
    if request.method in ("GET", "HEAD"):
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    parent = request.url.path.rstrip("/").rsplit("/", 1)[0]
    probe = {**request.scope, "method": "GET", "path": parent}
    if parent.startswith(PREFIX + "/") and any(
        r.matches(probe)[0] == Match.FULL for r in request.app.router.routes
    ):
        return parent
    return f"{PREFIX}/jobs"


def sign_in_redirect(request: Request) -> Response:
    target = quote(_page_to_return_to(request), safe="")
    return secured(RedirectResponse(f"{PREFIX}/login?next={target}", 303))


def html_error(request: Request, err: AppError) -> Response | None:
    """For a browser navigating the dashboard: a page (or the sign-in form) instead of JSON.

    Scripts' requests (``fetch`` sends ``Accept: */*``) keep the API's JSON errors.
    """
    if not request.url.path.startswith(PREFIX):
        return None
    if "text/html" not in request.headers.get("accept", ""):
        return None
    if err.status_code == 401:
        return sign_in_redirect(request)
    context = {"user": getattr(request.state, "dashboard_user", None), "error": err,
               "active": None, "csrf": getattr(request.state, "csrf", "")}  # fmt: skip
    return render(request, "error.html", context, status_code=err.status_code)

"""The signed-in team for dashboard routes, and the CSRF checks for the forms that write."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Form, Request

from app.dashboard import session
from app.deps import read_connection
from app.errors import AppError, UnauthorizedError


class CsrfError(AppError):
    status_code, code = 403, "csrf_failed"


def secret_of(request: Request) -> str:
    return request.app.state.settings.secret_key.get_secret_value()


def signed_in(request: Request) -> session.DashboardUser:
    """The session cookie's team (its session and key looked up on every request) or a 401,
    which a browser sees as a redirect to the sign-in form."""
    cookie = request.cookies.get(session.COOKIE)
    user = None
    if cookie:
        with read_connection(request) as conn:
            user = session.load_user(conn, cookie)
    if user is None:
        raise UnauthorizedError("sign in to the dashboard with an API key")
    request.state.dashboard_user = user
    request.state.csrf = session.csrf_token(secret_of(request), user.cookie)
    return user


User = Annotated[session.DashboardUser, Depends(signed_in)]


def cross_site(request: Request) -> bool:
    """Whether the browser says the request comes from another site (or another origin).

    ``Sec-Fetch-Site`` where the browser sends it (all current ones do): it is computed by the
    browser, so a proxy that rewrites ``Host`` cannot confuse it. Else ``Origin`` against our
    own ``Host`` (``null``, from sandboxed frames and data: pages, counts as another site;
    behind a proxy, pass ``Host`` through). A request with neither (scripts, old browsers) is
    left to the CSRF token.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    host = request.headers.get("host", "").lower()
    return origin == "null" or urlsplit(origin).netloc.lower() != host


def checked_form(request: Request, user: User, csrf: Annotated[str, Form()] = "") -> None:
    """Forms that change state must come from this site and echo the session's CSRF token."""
    if cross_site(request) or not session.csrf_ok(secret_of(request), user.cookie, csrf):
        raise CsrfError("the form expired or came from another site; reload the page and retry")


CheckedForm = Depends(checked_form)

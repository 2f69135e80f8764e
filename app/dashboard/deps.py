"""The signed-in team for dashboard routes, and the CSRF check for the forms that write."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Form, Request

from app.dashboard import session
from app.deps import read_connection
from app.errors import AppError, UnauthorizedError


class CsrfError(AppError):
    status_code, code = 403, "csrf_failed"


def _secret(request: Request) -> str:
    return request.app.state.settings.secret_key.get_secret_value()


def signed_in(request: Request) -> session.DashboardUser:
    """The session cookie's team (checked against the database on every request) or a 401,
    which a browser sees as a redirect to the sign-in form."""
    cookie = request.cookies.get(session.COOKIE)
    key_id = session.key_id_of(_secret(request), cookie)
    user = None
    if key_id is not None and cookie is not None:
        with read_connection(request) as conn:
            user = session.load_user(conn, key_id, cookie)
    if user is None:
        raise UnauthorizedError("sign in to the dashboard with an API key")
    request.state.dashboard_user = user
    request.state.csrf = session.csrf_token(_secret(request), user.cookie)
    return user


User = Annotated[session.DashboardUser, Depends(signed_in)]


def checked_form(request: Request, user: User, csrf: Annotated[str, Form()] = "") -> None:
    """Forms that change state must echo the session's CSRF token."""
    if not session.csrf_ok(_secret(request), user.cookie, csrf):
        raise CsrfError("the form expired or came from another site; reload the page and retry")


CheckedForm = Depends(checked_form)

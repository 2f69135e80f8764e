"""The API's errors: one hierarchy with status codes, and one handler that renders them all.

Every error body is ``{"error": {"code", "message"}}`` (validation errors add ``fields``), so a
client needs one parser. Anything not mapped here is a bug and becomes a logged 500.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app.limits import MAX_FIELD_PATH, MAX_MESSAGE, shorten
from app.storage import StorageError

log = logging.getLogger("weightless.api")


class AppError(Exception):
    """A failure a client can act on; subclasses fix the status code and the error code."""

    status_code: int = 500
    code: str = "internal_error"
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": shorten(self.message, MAX_MESSAGE)}}

    def response_headers(self) -> dict[str, str] | None:
        return self.headers


class BadRequestError(AppError):
    status_code, code = 400, "bad_request"


class UnauthorizedError(AppError):
    status_code, code = 401, "unauthorized"
    headers: ClassVar[dict[str, str] | None] = {"WWW-Authenticate": "Bearer"}


class NotFoundError(AppError):
    status_code, code = 404, "not_found"


class ConflictError(AppError):
    status_code, code = 409, "conflict"


class PayloadTooLargeError(AppError):
    status_code, code = 413, "payload_too_large"


class UnsupportedFileTypeError(AppError):
    status_code, code = 415, "unsupported_file_type"


class InvalidRequestError(AppError):
    """422 naming the fields at fault, in the same shape as pydantic's validation errors."""

    status_code, code = 422, "validation_error"

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{name}: {msg}" if name else msg for name, msg in fields))
        self.fields = fields

    @classmethod
    def field(cls, name: str, message: str) -> InvalidRequestError:
        return cls([(name, message)])

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"]["fields"] = [
            {"field": f, "message": shorten(m, MAX_MESSAGE)} for f, m in self.fields
        ]
        return body


class TooManyRequestsError(AppError):
    """429: a cap on concurrent work was reached; ``Retry-After`` says when to try again."""

    status_code, code = 429, "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailableError(AppError):
    status_code, code = 503, "service_unavailable"


class RoutingError(AppError):
    """Starlette's and FastAPI's own HTTP errors (unknown path, wrong method, a body that is
    not text), keeping their headers.

    A 405 must list every method of the path in ``Allow`` (RFC 9110); Starlette names only
    those of the first route that matched the path, so ``GET`` and ``POST /v1/models`` (two
    routes) would each claim to be the only one.
    """

    def __init__(self, exc: HTTPException, request: Request) -> None:
        super().__init__(str(exc.detail))
        self.status_code = exc.status_code
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        self.code = codes.get(exc.status_code, "error")
        self._headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:
            self._headers = {**(self._headers or {}), "Allow": _allowed_methods(request)}

    def response_headers(self) -> dict[str, str] | None:
        return self._headers


def _field_name(loc: tuple[int | str, ...]) -> str:
    """The path of a field at fault; keys a client chose are parts of it, so it is bounded."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    return shorten(".".join(shorten(str(p)) for p in parts), MAX_FIELD_PATH)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """The methods some route serves at the request's path (asked of the routes themselves,
    so routers included into routers are searched too)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    )


def _as_app_error(exc: Exception, request: Request) -> AppError:
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, RequestValidationError):
        return InvalidRequestError([(_field_name(e["loc"]), e["msg"]) for e in exc.errors()])
    if isinstance(exc, HTTPException):  # unknown path, wrong method, unreadable body
        return RoutingError(exc, request)
    if isinstance(exc, StorageError):
        log.error("storage failed: %s", exc)
        return ServiceUnavailableError("object storage is unavailable; try again later")
    if isinstance(exc, OperationalError):
        log.error("database failed: %s", exc.orig)
        return ServiceUnavailableError("the database is unavailable; try again later")
    log.exception("unhandled error", exc_info=exc)
    return AppError("internal server error")


async def handle_error(request: Request, exc: Exception) -> Response:
    """The one exception handler: map any error to its status code and the common body.

    A browser page (the dashboard registers ``app.state.html_error``) may answer with HTML.
    """
    unreadable = isinstance(exc, HTTPException) and exc.status_code == 400
    if (unreadable or isinstance(exc, RequestValidationError)) and request.url.path.startswith(
        "/v1/"
    ):
        from app.deps import authenticate_request  # app.deps builds on this module

        try:  # the body is checked before the key otherwise: 401 must come first
            authenticate_request(request)
        except Exception as refused:  # mapped like any other error below
            exc = refused
    err = _as_app_error(exc, request)
    html_error = getattr(request.app.state, "html_error", None)
    if html_error is not None and (page := html_error(request, err)) is not None:
        return page
    return JSONResponse(err.body(), status_code=err.status_code, headers=err.response_headers())


def install_error_handler(app: FastAPI) -> None:
    handled = (AppError, RequestValidationError, HTTPException, StorageError, OperationalError)
    for exc_type in (*handled, Exception):
        app.add_exception_handler(exc_type, handle_error)

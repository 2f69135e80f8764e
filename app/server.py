"""How uvicorn serves the API: connection-level timeouts that the ASGI app cannot set.

uvicorn closes a keep-alive connection that stays idle, but has no deadline for a request's
headers: a client that opens a connection and never finishes its headers (or starts the
next request on a kept-alive connection and stops) holds a socket and a file descriptor for
ever. ``GuardedH11Protocol`` is uvicorn's h11 protocol with that deadline
(``header_timeout_seconds``) and the keep-alive timeout from the settings
(``keep_alive_seconds``). Request bodies are the app's business (``app.body_guard``).

Production runs it with ``uvicorn --factory app.main:build_app --http
app.server:GuardedH11Protocol`` (the protocol reads ``WEIGHTLESS_*``); in-process servers
(``weightless serve``, the tests) use ``uvicorn_config``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.config import Settings, get_settings

log = logging.getLogger("weightless.api")

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 42\r\n\r\nthe request headers did not arrive in time"
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers are late.

    The deadline runs from the connection's start, and from the first byte of each later
    request on a kept-alive connection, until the request's headers are complete; an idle
    kept-alive connection is uvicorn's keep-alive timeout's. ``None`` class attributes are
    read from the process's settings (the ``uvicorn --http`` case).
    """

    header_timeout: float | None = None
    keep_alive: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = None if self.header_timeout and self.keep_alive else get_settings()
        self.header_deadline = self.header_timeout or settings.header_timeout_seconds  # type: ignore[union-attr]
        self.timeout_keep_alive = self.keep_alive or settings.keep_alive_seconds  # type: ignore[union-attr]
        self._header_timer: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of an unfinished request head have arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        waiting = self._between_requests()
        if waiting:
            self._partial = True
            if self._header_timer is None:
                self._arm()
        super().data_received(data)
        if not self._between_requests():  # the headers are complete: a request is running
            self._disarm()
            self._partial = False

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_deadline, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self._between_requests() or self.transport.is_closing():
            return
        if self._partial:
            log.info("closed a connection: request headers unfinished after %g s",
                     self.header_deadline)  # fmt: skip
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()


def guarded_protocol(*, header_timeout: float, keep_alive: int) -> type[GuardedH11Protocol]:
    """``GuardedH11Protocol`` with these timeouts instead of the environment's."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": header_timeout, "keep_alive": keep_alive},
    )


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """A ``uvicorn.Config`` serving ``app`` with the settings' connection timeouts."""
    protocol = guarded_protocol(
        header_timeout=settings.header_timeout_seconds, keep_alive=settings.keep_alive_seconds
    )
    return uvicorn.Config(
        app, http=protocol, timeout_keep_alive=settings.keep_alive_seconds, **options
    )

"""Request bodies are bounded before anything reads them: size, read timeout and transfer rate.

An ASGI middleware in front of routing, parsing and authentication, so a client without a
key cannot make the API read (or a JSON parser chew on) more than the limit of its route
class: uploads get the configured upload limit, every other body ``max_json_bytes``. A
declared ``Content-Length`` past the limit is refused before a byte is read; a chunked body as
soon as the bytes received pass it (413). While a body is incomplete, each wait for its next
piece is bounded by ``body_read_timeout_seconds``, and once it has been waited for that long
it must average ``body_min_bytes_per_second`` (408 otherwise), so a stalled upload cannot
hold a worker thread and an S3 multipart upload for ever.

A refused request gets its answer (JSON, the common error shape, ``Connection: close``) from
here; the route sees the client as disconnected, so an upload already under way is cleaned
up by the same code as a client that went away (nothing stored, multipart upload aborted),
and whatever the route answers afterwards is dropped. Refusals are counted per reason
(``BodyGuardCounts``, on ``app.state.body_guard_counts``) and logged with the running count.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.multipart import OVERHEAD_BYTES

log = logging.getLogger("weightless.api")

DISCONNECT: Message = {"type": "http.disconnect"}


@dataclass
class BodyGuardCounts:
    """Requests refused since the process started, by reason."""

    too_large: int = 0
    stalled: int = 0
    too_slow: int = 0


@dataclass(frozen=True)
class BodyLimits:
    """The byte limit of each route class, and the pace a body must keep."""

    json_bytes: int
    uploads: dict[tuple[str, str], int]  # (method, path) -> bytes
    read_timeout: float
    min_rate: float

    @classmethod
    def from_settings(cls, settings: Settings) -> BodyLimits:
        uploads = {
            ("POST", "/v1/models"): settings.max_model_bytes + OVERHEAD_BYTES,
            ("POST", "/v1/datasets"): settings.max_dataset_bytes + OVERHEAD_BYTES,
        }
        return cls(settings.max_json_bytes, uploads, settings.body_read_timeout_seconds,
                   float(settings.body_min_bytes_per_second))  # fmt: skip

    def for_request(self, method: str, path: str) -> int:
        return self.uploads.get((method, path), self.json_bytes)


class BodyGuard:
    """The middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits, counts: BodyGuardCounts) -> None:
        self.app, self.limits, self.counts = app, limits, counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_request(scope["method"], scope["path"])
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            self.counts.too_large += 1
            _log_refusal(scope, "declared too large", self.counts.too_large)
            await _answer(send, 413, "payload_too_large", _too_large(limit))
            return
        has_body = (declared.isdigit() and int(declared) > 0) or b"transfer-encoding" in headers
        body = _GuardedBody(self, scope, receive, send, limit=limit, has_body=has_body)
        await self.app(scope, body.receive, body.send)


class _GuardedBody:
    """One request's ``receive`` and ``send``, counting and timing its body."""

    def __init__(self, guard: BodyGuard, scope: Scope, receive: Receive, send: Send, *,
                 limit: int, has_body: bool) -> None:  # fmt: skip
        self.guard, self.scope, self._receive, self._send = guard, scope, receive, send
        self.limit = limit
        self.complete = not has_body  # the whole body has arrived (or there is none)
        self.received = 0
        self.waited = 0.0  # seconds spent waiting for the client, not for our own work
        self.refused = False  # we answered; the route sees a disconnect, its answer is dropped
        self.started = False  # a response has begun

    async def receive(self) -> Message:
        if self.refused:
            return DISCONNECT
        if self.complete:  # only a disconnect can follow: no deadline on waiting for it
            return await self._receive()
        limits, counts = self.guard.limits, self.guard.counts
        t0 = time.monotonic()
        with anyio.move_on_after(limits.read_timeout) as waiting:
            message = await self._receive()
        self.waited += time.monotonic() - t0
        if waiting.cancelled_caught:
            counts.stalled += 1
            _log_refusal(self.scope, "body stalled", counts.stalled)
            return await self._refuse(
                408, "request_timeout",
                f"the request body stalled: nothing arrived for {limits.read_timeout:g} s",
            )  # fmt: skip
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        self.complete = not message.get("more_body", False)
        if self.received > self.limit:
            counts.too_large += 1
            _log_refusal(self.scope, "body too large", counts.too_large)
            return await self._refuse(413, "payload_too_large", _too_large(self.limit))
        slow = self.waited >= limits.read_timeout and self.received < limits.min_rate * self.waited
        if slow and not self.complete:
            counts.too_slow += 1
            _log_refusal(self.scope, "body too slow", counts.too_slow)
            return await self._refuse(
                408, "request_timeout",
                f"the request body arrived too slowly: {self.received} bytes in "
                f"{self.waited:.0f} s, under the minimum of {limits.min_rate:g} bytes/s",
            )  # fmt: skip
        return message

    async def _refuse(self, status: int, code: str, message: str) -> Message:
        self.refused = True
        if not self.started:
            self.started = True
            await _answer(self._send, status, code, message)
        return DISCONNECT

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
            if not self.complete:  # answered before the body was read: do not drain the rest
                message = {**message, "headers": [*message.get("headers", []), CLOSE]}
        await self._send(message)


CLOSE = (b"connection", b"close")


def _too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes for this route"


def _log_refusal(scope: Scope, what: str, count: int) -> None:
    log.warning("refused %s %s: %s (%d so far)", scope["method"], scope["path"][:200], what, count)


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), CLOSE]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

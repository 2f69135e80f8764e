"""Stream one file field out of a multipart request body, a chunk at a time.

FastAPI's ``UploadFile`` spools the whole file to disk first; models can be gigabytes, so the
body is parsed incrementally instead (python-multipart's push parser) and the file's bytes go
straight on to storage. ``FilePart`` is a *blocking* iterator meant for a sync route, which
FastAPI runs in a worker thread: each read hops back to the event loop for the next piece of
the body, so at most one read (``READ_BYTES``) is in memory at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Iterator

from anyio import from_thread
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.errors import BadRequestError, InvalidRequestError, PayloadTooLargeError

READ_BYTES = 1 << 20
OVERHEAD_BYTES = 1 << 20  # room for part headers and other small fields around the file


class FilePart:
    """The first part named ``field`` of a multipart/form-data request; see module docstring."""

    def __init__(self, request: Request, *, field: str, max_bytes: int) -> None:
        ctype, params = parse_options_header(request.headers.get("content-type"))
        if ctype != b"multipart/form-data" or not params.get(b"boundary"):
            raise InvalidRequestError.field(field, "send the file as multipart/form-data")
        self.field = field
        self.filename: str | None = None
        self._max_body = max_bytes + OVERHEAD_BYTES
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise PayloadTooLargeError(f"the file is larger than the limit of {max_bytes} bytes")
        self._stream: AsyncGenerator[bytes, None] = request.stream()
        self._received = 0
        self._eof = False
        self._pending: deque[bytes] = deque()
        self._state = "before"  # -> "in" once our part's headers are read -> "done" at its end
        self._headers: dict[str, bytes] = {}
        self._hname, self._hvalue = bytearray(), bytearray()
        callbacks = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": lambda data, start, end: self._hname.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._hvalue.extend(data[start:end]),
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
        }
        try:
            self._parser = MultipartParser(params[b"boundary"], callbacks)  # type: ignore[arg-type]
        except FormParserError as e:
            raise BadRequestError(f"malformed multipart body: {e}") from None
        while self._state == "before":
            if self._eof:
                raise InvalidRequestError.field(field, "Field required")
            self._feed()

    # -- parser callbacks -------------------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_end(self) -> None:
        name = self._hname.decode("latin-1").lower()
        # Raw bytes: browsers send UTF-8 file names unescaped, which a str header (parsed as
        # latin-1 by ``parse_options_header``) could not carry.
        self._headers[name] = bytes(self._hvalue)
        self._hname, self._hvalue = bytearray(), bytearray()

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition"))
        if self._state == "before" and params.get(b"name") == self.field.encode():
            self._state = "in"
            filename = params.get(b"filename")
            self.filename = filename.decode("utf-8", errors="replace") if filename else None

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._state == "in" and end > start:
            self._pending.append(data[start:end])

    def _on_part_end(self) -> None:
        if self._state == "in":
            self._state = "done"

    # -- reading ----------------------------------------------------------------------------
    async def _read(self) -> bytes:
        """Up to about ``READ_BYTES`` of body, so thread hops stay rare; b"" at the end."""
        buf = bytearray()
        try:
            while len(buf) < READ_BYTES:
                buf += await self._stream.__anext__()
        except StopAsyncIteration:
            pass
        except ClientDisconnect:
            raise BadRequestError("the client disconnected during the upload") from None
        return bytes(buf)

    def _feed(self) -> None:
        chunk = from_thread.run(self._read)
        if not chunk:
            self._eof = True
            return
        self._received += len(chunk)
        if self._received > self._max_body:
            raise PayloadTooLargeError(
                f"the file is larger than the limit of {self._max_body - OVERHEAD_BYTES} bytes"
            )
        try:
            self._parser.write(chunk)
        except FormParserError as e:
            raise BadRequestError(f"malformed multipart body: {e}") from None

    def head(self, n: int) -> bytes:
        """The file's first ``n`` bytes (fewer if it is shorter), without consuming them."""
        while sum(map(len, self._pending)) < n and self._state == "in" and not self._eof:
            self._feed()
        return b"".join(self._pending)[:n]

    def close(self) -> None:
        """Stop reading the body (whatever follows the file is ignored)."""
        from_thread.run(self._stream.aclose)

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes; raises ``BadRequestError`` if the body ends before the part does."""
        while True:
            while self._pending:
                yield self._pending.popleft()
            if self._state == "done":
                return
            if self._eof:
                raise BadRequestError("the request body ended before the file was complete")
            self._feed()

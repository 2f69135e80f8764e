"""A small typed client for the Weightless REST API (used by the CLI and the embedded demo).

Uploads stream from disk (httpx reads the file object in chunks), downloads stream to a temporary
file that is renamed into place only when complete. Every non-2xx answer raises ``ClientError``
carrying the server's status, error code and message; network failures raise it with status 0.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from weightless_core.io.atomic import atomic_open

DEFAULT_URL = "http://127.0.0.1:8000"
Json = dict[str, Any]
FINISHED = ("succeeded", "failed", "cancelled")


class ClientError(Exception):
    """The API refused a request (``status`` > 0) or could not be reached (``status`` == 0)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status else "connection"
        return f"{self.message} ({where}, {self.code})"


class WeightlessClient:
    """Client for one server and one API key; use as a context manager or call ``close()``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Uploads of multi-GB files may take a long time: only connect/read gaps time out.
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, write=None),
            transport=transport,
        )

    def __enter__(self) -> WeightlessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- service -------------------------------------------------------------------------------

    def ready(self) -> bool:
        """True when ``/readyz`` answers 200 (database, broker and storage reachable)."""
        try:
            return self._http.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    # -- uploads -------------------------------------------------------------------------------

    def upload_model(self, path: str | os.PathLike[str]) -> Json:
        """``POST /v1/models`` with the file streamed from disk -> the model object."""
        return self._upload("/v1/models", Path(path))

    def upload_dataset(self, path: str | os.PathLike[str]) -> Json:
        """``POST /v1/datasets`` (an ``.npz``/safetensors file) -> the data set object."""
        return self._upload("/v1/datasets", Path(path))

    def _upload(self, route: str, path: Path) -> Json:
        with path.open("rb") as f:  # FileNotFoundError reaches the caller unchanged
            files = {"file": (path.name, f, "application/octet-stream")}
            return self._json("POST", route, files=files)

    def find_upload(
        self, kind: str, path: str | os.PathLike[str], *, pages: int = 5
    ) -> Json | None:
        """An upload of the same bytes and file name among the team's newest ``kind`` uploads
        (``model`` or ``dataset``), so a retried submission can reuse it instead of sending the
        file again (and so replay the same job under its Idempotency-Key)."""
        path = Path(path)
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        sha, cursor = digest.hexdigest(), None
        for _ in range(pages):
            params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = self._json("GET", f"/v1/{kind}s", params=params)
            for item in page.get("items", []):
                if item.get("sha256") == sha and item.get("filename") == path.name:
                    return item
            cursor = page.get("next_cursor")
            if not cursor:
                return None
        return None

    # -- jobs ----------------------------------------------------------------------------------

    def create_job(
        self,
        model_id: str,
        *,
        dataset: Json | None,
        settings: Json | None = None,
        idempotency_key: str | None = None,
    ) -> Json:
        """``POST /v1/jobs``; ``dataset`` is ``{"builtin": name}``, ``{"id": id}`` or ``None``."""
        body = {"model_id": model_id, "dataset": dataset, "settings": settings or {}}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._json("POST", "/v1/jobs", json=body, headers=headers)

    def get_job(self, job_id: str) -> Json:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def list_jobs(
        self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Json:
        """One page of jobs, newest first: ``{"items": [...], "next_cursor": ...}``."""
        params = {"status": status, "limit": limit, "cursor": cursor}
        page = self._json(
            "GET", "/v1/jobs", params={k: v for k, v in params.items() if v is not None}
        )
        if isinstance(page, list):  # tolerate a bare list
            return {"items": page, "next_cursor": None}
        return page

    def wait(
        self,
        job_id: str,
        *,
        on_update: Callable[[Json], None] | None = None,
        interval: float = 1.0,
        stop: threading.Event | None = None,
        max_outage: float = 60.0,
    ) -> Json:
        """Poll ``GET /v1/jobs/{id}`` every ``interval`` s until the job finishes; return it.

        ``on_update`` sees every polled job object. Connection failures are retried for up to
        ``max_outage`` seconds (an API restart must not kill a long wait); HTTP errors are not.
        Returns the last job seen early when ``stop`` is set.
        """
        job: Json = {}
        outage_since: float | None = None
        while True:
            try:
                job = self.get_job(job_id)
                outage_since = None
            except ClientError as e:
                if e.status:
                    raise
                outage_since = outage_since or time.monotonic()
                if time.monotonic() - outage_since > max_outage:
                    raise
            else:
                if on_update is not None:
                    on_update(job)
                if job.get("status") in FINISHED:
                    return job
            if stop is not None and stop.wait(interval):
                return job
            if stop is None:
                time.sleep(interval)

    def cancel_job(self, job_id: str) -> Json:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel")

    def download_report(self, job_id: str) -> Json:
        """The job's JSON report (``GET /v1/jobs/{id}/report``, redirects followed)."""
        response = self._open(f"/v1/jobs/{job_id}/report")
        try:
            return response.json() if response.read() else {}
        except ValueError as e:
            raise ClientError(response.status_code, "bad_response", "report is not JSON") from e
        except httpx.HTTPError as e:
            raise ClientError(0, "download_failed", f"download interrupted: {e}") from e
        finally:
            response.close()

    def download_artifact(self, job_id: str, dest: str | os.PathLike[str]) -> int:
        """Stream the encoded model to ``dest`` atomically; returns its size in bytes."""
        response = self._open(f"/v1/jobs/{job_id}/artifact")
        try:
            return _stream_to_file(response, Path(dest))
        except httpx.HTTPError as e:
            raise ClientError(0, "download_failed", f"download interrupted: {e}") from e
        finally:
            response.close()

    def _open(self, route: str) -> httpx.Response:
        """GET ``route`` as a stream, following redirects by hand.

        The API may redirect to a presigned storage URL; that hop goes without our
        ``Authorization`` header (the URL carries its own signature, S3 refuses requests with
        two kinds of authentication, and the key must never leave for another host).
        """
        url, auth = f"{self.base_url}{route}", True
        for _ in range(5):
            request = self._http.build_request("GET", url)
            if not auth:
                request.headers.pop("Authorization", None)
            response = self._send(request, stream=True)
            if not response.is_redirect:
                if not response.is_success:
                    response.read()
                    response.close()
                    raise error_from_response(response)
                return response
            response.close()
            url = urljoin(url, response.headers["location"])
            auth = auth and _same_origin(url, self.base_url) and not _presigned(url)
        raise ClientError(0, "too_many_redirects", f"too many redirects fetching {route}")

    # -- plumbing ------------------------------------------------------------------------------

    def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return self._http.send(request, stream=stream)
        except httpx.TimeoutException as e:
            raise ClientError(0, "timeout", f"{self.base_url} did not answer in time") from e
        except httpx.HTTPError as e:
            raise ClientError(0, "unreachable", f"cannot reach {self.base_url}: {e}") from e

    def _json(self, method: str, route: str, **kwargs: Any) -> Any:
        response = self._send(self._http.build_request(method, route, **kwargs))
        if not response.is_success:
            raise error_from_response(response)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as e:
            raise ClientError(
                response.status_code, "bad_response", f"{route}: the server did not send JSON"
            ) from e


def error_from_response(response: httpx.Response) -> ClientError:
    """Turn an error answer into ``ClientError``, whatever shape its JSON body has.

    Understands ``{"error": {"code", "message"}}``, FastAPI's ``{"detail": "..."}`` and its
    validation list ``{"detail": [{"loc": [...], "msg": "..."}]}`` (one clause per bad field).
    """
    status, code, message = response.status_code, f"http_{response.status_code}", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or code)
            message = str(err.get("message") or "")
        detail = body.get("detail")
        if not message and isinstance(detail, str):
            message = detail
        elif not message and isinstance(detail, list):
            code = "validation_error" if status == 422 else code
            message = "; ".join(_field_message(d) for d in detail)
        elif not message and isinstance(body.get("message"), str):
            message = body["message"]
    if not message:
        message = response.reason_phrase or "request failed"
    return ClientError(status, code, message)


def _field_message(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
    msg = str(item.get("msg", "invalid"))
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def _same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.hostname, x.port) == (y.scheme, y.hostname, y.port)


def _presigned(url: str) -> bool:
    query = urlsplit(url).query.lower()
    return "x-amz-signature=" in query or "signature=" in query


def _stream_to_file(response: httpx.Response, dest: Path) -> int:
    """Write the body next to ``dest`` and rename it into place once complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with atomic_open(dest, "wb", fsync=True, suffix=".part", perms=0o600) as f:
        for chunk in response.iter_bytes(1 << 20):
            f.write(chunk)
            size += len(chunk)
        expected = response.headers.get("content-length")
        plain = response.headers.get("content-encoding") is None
        if expected is not None and plain and int(expected) != size:
            raise ClientError(
                response.status_code,
                "truncated",
                f"download ended after {size} of {expected} bytes",
            )
    return size

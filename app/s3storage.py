"""S3-compatible object storage (AWS, SeaweedFS, MinIO) behind the ``Storage`` interface.

Credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
an instance role, ...), never from our settings, so they never pass through our code or logs.
Every botocore failure leaves this module as a ``StorageError`` whose message names the
operation, key and bucket, and the server's error code, never a credential.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.config import Settings
from app.storage import ObjectTooLargeError, StorageError, StoredObject

log = logging.getLogger(__name__)

MiB = 1 << 20
PART_SIZE = 8 * MiB
MAX_PARTS = 10_000  # S3's limit on parts per multipart upload
PARTS_IN_FLIGHT = 4  # per streamed upload; memory is about (PARTS_IN_FLIGHT + 1) parts
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def _config(endpoint_url: str | None) -> Config:
    return Config(
        signature_version="s3v4",  # SigV2 presigned URLs fail with response-* parameters
        # A custom endpoint's host name ("seaweedfs:8333") cannot take a bucket sub-domain.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        # boto3 >= 1.36 sends checksums by default; several S3 servers reject or ignore them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 5},
        # Room for several streamed uploads' parts in flight at once (botocore's default is 10).
        max_pool_connections=32,
        connect_timeout=10,
        read_timeout=120,
    )


class S3Storage:
    """Objects in one bucket; ``public_endpoint_url`` is the host clients download from."""

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str = "us-east-1",
    ):
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        session = boto3.session.Session()
        self.client = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=_config(endpoint_url)
        )
        # Presigned URLs are tied to the host they were signed for: sign with the public one.
        public = public_endpoint_url or endpoint_url
        self.signer = (
            self.client
            if public == endpoint_url
            else session.client(
                "s3", endpoint_url=public, region_name=region, config=_config(public)
            )
        )
        self.transfer = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Storage:
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
        )

    # -- writes -------------------------------------------------------------------------------
    def put_stream(self, key: str, chunks: Iterable[bytes], *, max_bytes: int) -> StoredObject:
        """Stream ``chunks`` to ``key``: one PUT when small, else a multipart upload.

        Full parts go to S3 from a small thread pool (``PARTS_IN_FLIGHT`` at a time) while
        this thread keeps reading ``chunks`` and hashing them in order, so memory stays at
        about ``PARTS_IN_FLIGHT + 1`` parts. Past ``max_bytes``, or on any error (ours, the
        source's or a part's), the multipart upload is aborted so no object and no orphaned
        parts remain.
        """
        part_size = max(PART_SIZE, math.ceil(max_bytes / MAX_PARTS))
        digest, size = hashlib.sha256(), 0
        buffer = bytearray()
        upload: _Multipart | None = None
        try:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectTooLargeError(f"object is larger than {max_bytes} bytes")
                digest.update(chunk)
                buffer += chunk
                while len(buffer) >= part_size:
                    if upload is None:
                        upload = _Multipart(self, key)
                    upload.wait_for_slot()  # before copying the part out: memory stays bounded
                    with memoryview(buffer) as view:
                        upload.send(bytes(view[:part_size]))
                    del buffer[:part_size]
            if upload is None:
                with self._errors("upload", key):
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
            else:
                if buffer:
                    upload.send(bytes(buffer))
                upload.complete()
        except BaseException:
            if upload is not None:
                upload.abort()
            raise
        return StoredObject(key, size, digest.hexdigest())

    def put_file(self, key: str, path: Path) -> StoredObject:
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(MiB), b""):
                digest.update(block)
                size += len(block)
        with self._errors("upload", key):
            self.client.upload_file(str(path), self.bucket, key, Config=self.transfer)
        return StoredObject(key, size, digest.hexdigest())

    def copy(self, source: str, dest: str) -> None:
        """Server-side copy (multipart copy for large objects); no bytes pass through us."""
        with self._errors("copy", source):
            self.client.copy(
                {"Bucket": self.bucket, "Key": source}, self.bucket, dest, Config=self.transfer
            )

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    # -- reads --------------------------------------------------------------------------------
    def download(self, key: str, path: Path) -> None:
        with self._errors("download", key):
            self.client.download_file(self.bucket, key, str(path), Config=self.transfer)

    def exists(self, key: str) -> bool:
        try:
            with self._errors("stat", key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except _NotFoundError:
            return False
        return True

    def open_url(self, key: str, *, filename: str, expires: int) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": content_disposition(filename),
        }
        with self._errors("presign", key):
            return self.signer.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires
            )

    def local_path(self, key: str) -> Path | None:
        return None

    def list_objects(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"], item["LastModified"]

    def abort_stale_uploads(self, before: datetime) -> int:
        """Abort multipart uploads begun before ``before``: the parts of a writer that died
        (a crashed API process) cost storage and are invisible to ``list_objects``."""
        aborted = 0
        with self._errors("list uploads", None):
            pages = self.client.get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=self.bucket):
                for item in page.get("Uploads", []):
                    if item["Initiated"] < before:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=item["Key"], UploadId=item["UploadId"]
                        )
                        aborted += 1
        return aborted

    def check(self) -> None:
        with self._errors("check", None):
            self.client.head_bucket(Bucket=self.bucket)

    # -- errors -------------------------------------------------------------------------------
    @contextmanager
    def _errors(self, action: str, key: str | None) -> Iterator[None]:
        """Turn botocore/boto3 failures into ``StorageError`` with a message safe to log."""
        target = f"object {key!r} in bucket {self.bucket!r}" if key else f"bucket {self.bucket!r}"
        try:
            yield
        except ClientError as e:
            err = e.response.get("Error", {})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(err.get("Code") or status)
            if code in _MISSING:
                raise _NotFoundError(f"S3 {action} failed: {target} does not exist") from None
            detail = err.get("Message") or code
            raise StorageError(f"S3 {action} of {target} failed: {code}: {detail}") from None
        except (BotoCoreError, Boto3Error) as e:
            raise StorageError(
                f"S3 {action} of {target} at {self.endpoint_url or 'AWS'} failed: "
                f"{type(e).__name__}: {_redact(str(e))}"
            ) from None


class _NotFoundError(StorageError):
    """The key (or bucket) does not exist; ``exists`` turns it into ``False``."""


class _Multipart:
    """One multipart upload in progress: parts go out concurrently, aborted on failure.

    ``send`` hands a part to a pool of ``PARTS_IN_FLIGHT`` threads and returns once fewer
    than that many are in flight, raising the first failed part's error. Only the thread
    that created it calls its methods.
    """

    def __init__(self, storage: S3Storage, key: str):
        self.storage, self.key = storage, key
        self.parts: list[dict[str, Any]] = []
        self.count = 0
        self.pending: set[Future[dict[str, Any]]] = set()
        with storage._errors("upload", key):
            response = storage.client.create_multipart_upload(Bucket=storage.bucket, Key=key)
        self.upload_id: str = response["UploadId"]
        self.pool = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part")

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        with self.storage._errors("upload", self.key):
            return fn(Bucket=self.storage.bucket, Key=self.key, UploadId=self.upload_id, **kwargs)

    def _part(self, number: int, body: bytes) -> dict[str, Any]:
        response = self._call(self.storage.client.upload_part, PartNumber=number, Body=body)
        return {"ETag": response["ETag"], "PartNumber": number}

    def _collect(self, done: set[Future[dict[str, Any]]]) -> None:
        self.pending -= done
        for future in done:
            self.parts.append(future.result())  # re-raises a failed part's error

    def wait_for_slot(self) -> None:
        """Return once fewer than ``PARTS_IN_FLIGHT`` parts are in flight; raise any failure."""
        while len(self.pending) >= PARTS_IN_FLIGHT:
            self._collect(wait(self.pending, return_when=FIRST_COMPLETED).done)
        self._collect({f for f in self.pending if f.done()})  # fail fast on an earlier error

    def send(self, body: bytes) -> None:
        self.wait_for_slot()
        self.count += 1
        self.pending.add(self.pool.submit(self._part, self.count, body))

    def complete(self) -> None:
        self._collect(wait(self.pending).done)
        self.pool.shutdown()
        self.parts.sort(key=lambda part: part["PartNumber"])
        self._call(
            self.storage.client.complete_multipart_upload, MultipartUpload={"Parts": self.parts}
        )

    def abort(self) -> None:
        """Best effort: the original error matters more than a failed clean-up.

        Parts not started are cancelled and running ones waited for first, so no part lands
        after the abort and leaves storage behind.
        """
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)
        try:
            self._call(self.storage.client.abort_multipart_upload)
        except StorageError as e:
            log.warning("could not abort multipart upload (parts may remain): %s", e)


_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+,=@\[\]-]")


def content_disposition(filename: str) -> str:
    """``attachment`` with a quoted ASCII fallback and the exact UTF-8 name (RFC 6266)."""
    name = filename.replace("/", "_").replace("\\", "_") or "download"
    fallback = _UNSAFE.sub("_", name)
    header = f'attachment; filename="{fallback}"'
    if fallback != name:
        header += f"; filename*=UTF-8''{quote(name, safe='')}"
    return header


def _redact(message: str) -> str:
    """botocore messages never carry secrets, but URLs may carry query-string signatures."""
    return re.sub(r"(Signature|X-Amz-Signature|X-Amz-Credential)=[^&\s]+", r"\1=***", message)


_SIGNATURE = re.compile(r"(Signature[=:]\s*)[^&\s'\",}]+")


class _RedactSignatures(logging.Filter):
    """Hide request signatures in botocore's DEBUG records (it logs them in full).

    ``botocore.auth`` logs each signature beside its canonical request, which for a presigned
    URL spells out the whole URL: a download link, valid for ``presign_seconds``, in the log.
    ``botocore.endpoint`` logs each request's ``Authorization`` header, which can be replayed
    while S3 accepts the request's date (15 minutes). Only the signature is hidden.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SIGNATURE.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACT_SIGNATURES = _RedactSignatures()
for _name in ("botocore.auth", "botocore.endpoint"):
    logging.getLogger(_name).addFilter(_REDACT_SIGNATURES)  # once: addFilter ignores repeats

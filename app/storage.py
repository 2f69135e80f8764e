"""Object storage behind one small interface: S3 (boto3) in production, a folder when embedded.

Keys are ``/``-separated strings chosen by the service (never by users). Writes are atomic from
a reader's point of view: an object is either absent or complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from weightless_core.io.atomic import atomic_open


def html_report_key(report_key: str) -> str:
    """Key of a job's self-contained HTML report, beside its JSON one (no column of its own)."""
    return report_key.removesuffix(".json") + ".html"


TMP_PREFIX = ".upload-"  # LocalStorage's files being written; renamed into place when complete


class StorageError(RuntimeError):
    """The storage backend failed (unreachable, denied, missing object)."""


class ObjectTooLargeError(StorageError):
    """A streamed write went past its byte limit; nothing was stored."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class Storage(Protocol):
    def put_stream(self, key: str, chunks: Iterable[bytes], *, max_bytes: int) -> StoredObject:
        """Store the concatenated ``chunks`` under ``key`` without holding them in memory.

        Raises ``ObjectTooLargeError`` (and stores nothing) past ``max_bytes``.
        """

    def put_file(self, key: str, path: Path) -> StoredObject: ...

    def download(self, key: str, path: Path) -> None:
        """Copy the object to local ``path`` (for the worker's scratch directory)."""

    def copy(self, source: str, dest: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    def open_url(self, key: str, *, filename: str, expires: int) -> str | None:
        """A short-lived URL a client can GET, or ``None`` if the API must stream it itself."""

    def local_path(self, key: str) -> Path | None:
        """The object's path when stored on local disk (embedded run), else ``None``."""

    def check(self) -> None:
        """Raise ``StorageError`` unless the backend is reachable (readiness probe)."""

    def list_objects(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        """``(key, last modified)`` of every complete object under ``prefix`` (for cleanup)."""

    def abort_stale_uploads(self, before: datetime) -> int:
        """Discard writes begun before ``before`` that never completed (S3 multipart parts,
        temporary files of a process that died); returns how many."""


class LocalStorage:
    """Objects as files under ``root`` (the embedded deployment)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StorageError(f"key {key!r} escapes the storage root")
        return path

    def put_stream(self, key: str, chunks: Iterable[bytes], *, max_bytes: int) -> StoredObject:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        # Private (0o600): the objects are users' uploads and outputs.
        with atomic_open(dest, "wb", prefix=TMP_PREFIX, suffix="", perms=0o600) as f:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise ObjectTooLargeError(f"object is larger than {max_bytes} bytes")
                digest.update(chunk)
                f.write(chunk)
        return StoredObject(key, size, digest.hexdigest())

    def put_file(self, key: str, path: Path) -> StoredObject:
        with open(path, "rb") as f:
            return self.put_stream(key, iter(lambda: f.read(1 << 20), b""), max_bytes=1 << 62)

    def download(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise StorageError(f"object {key!r} does not exist")
        shutil.copyfile(src, path)

    def copy(self, source: str, dest: str) -> None:
        self.put_file(dest, self._path(source))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def open_url(self, key: str, *, filename: str, expires: int) -> str | None:
        return None

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def list_objects(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        for path in sorted(self.root.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and not path.name.startswith(TMP_PREFIX) and key.startswith(prefix):
                yield key, datetime.fromtimestamp(path.stat().st_mtime, UTC)

    def abort_stale_uploads(self, before: datetime) -> int:
        stale = [
            p for p in self.root.rglob(f"{TMP_PREFIX}*")
            if datetime.fromtimestamp(p.stat().st_mtime, UTC) < before
        ]  # fmt: skip
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"storage folder {self.root} is not writable")

"""Writing files atomically: into a temp file in the same folder, then ``os.replace``.

A reader (or a crash half-way) never sees half a file: the name points at the old file or at
the complete new one, and a failed write leaves no temp file behind. One helper for every
writer in the project, so the temp names, permissions and clean-up are the same everywhere.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

StrPath = str | os.PathLike[str]


@contextlib.contextmanager
def atomic_path(
    path: StrPath, *, prefix: str | None = None, suffix: str = ".tmp", perms: int = 0o666
) -> Iterator[Path]:
    """A fresh empty temp file next to ``path`` for a writer that wants a name (e.g.
    ``torch.jit.save``); renamed over ``path`` when the block ends, removed if it raises.

    ``prefix`` defaults to ``.<name>.``; ``perms`` is masked by the umask, as ``open`` does
    (0o600 keeps the file private whatever the umask).
    """
    target = Path(path)
    lead = f".{target.name[:100]}." if prefix is None else prefix
    tmp = target.parent / f"{lead}{secrets.token_hex(6)}{suffix}"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), perms))
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):  # the write's own error is the one to see
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_open(
    path: StrPath,
    mode: Literal["w", "wb"] = "wb",
    *,
    fsync: bool = False,
    prefix: str | None = None,
    suffix: str = ".tmp",
    perms: int = 0o666,
) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for a streaming writer, atomic: the file appears complete when the
    block ends and not at all if it raises. ``fsync`` flushes it to disk before the rename
    (for files that must survive a power cut, not only a crash). Text is UTF-8."""
    with atomic_path(path, prefix=prefix, suffix=suffix, perms=perms) as tmp:
        encoding = "utf-8" if mode == "w" else None
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())


def write_text_atomic(path: StrPath, text: str) -> None:
    """Write UTF-8 text atomically, so a reader never sees half a page."""
    with atomic_open(path, "w") as f:
        f.write(text)


def write_bytes_atomic(path: StrPath, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)

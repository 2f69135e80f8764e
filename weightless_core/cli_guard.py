"""How both ``weightless`` command lines fail: one red line and exit code 2, never a traceback.

The library's commands and the service's use the same ``guard``; the service adds its own error
kinds (an API refusal, a database down) as extra translations, tried before the library's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from weightless_core.errors import WeightlessError

T = TypeVar("T")
# (exception types, their one-line message): what ``guard`` turns into exit code 2.
Translation = tuple[type[BaseException] | tuple[type[BaseException], ...], Callable[[Any], str]]

console = Console()
err_console = Console(stderr=True)


def _os_message(e: OSError) -> str:
    return f"{e.strerror}: {e.filename}"


LIBRARY_ERRORS: tuple[Translation, ...] = (
    (WeightlessError, str),
    ((FileNotFoundError, IsADirectoryError, PermissionError), _os_message),
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red line; the caller raises the returned ``Exit``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def guard(fn: Callable[[], T], *also: Translation) -> T:
    """Run ``fn``; an error a user can fix becomes one red line and exit code 2, Ctrl-C exit 130.

    ``also`` are tried first, then ``LIBRARY_ERRORS``; anything else is a bug and propagates.
    """
    try:
        return fn()
    except typer.Exit:  # already reported (``raise fail(...)`` inside ``fn``)
        raise
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as e:
        for kinds, message in (*also, *LIBRARY_ERRORS):
            if isinstance(e, kinds):
                raise fail(message(e)) from None
        raise

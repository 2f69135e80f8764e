"""Shared by the service commands: one red line per failure, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.markup import escape

from weightless_core.cli import err_console
from weightless_core.errors import WeightlessError

T = TypeVar("T")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one red line; the caller raises the returned ``Exit``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; expected failures become one red line and exit code 2, never a traceback."""
    from pydantic import ValidationError

    from app.client import ClientError

    try:
        return fn()
    except ClientError as e:
        raise fail(e.message) from None
    except ValidationError as e:  # settings from the environment
        msgs = "; ".join(
            f"{'.'.join(map(str, x['loc'])) or 'settings'}: {x['msg']}" for x in e.errors()
        )
        raise fail(f"bad configuration: {msgs}") from None
    except WeightlessError as e:
        raise fail(str(e)) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise fail(f"{e.strerror}: {e.filename}") from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def one_line(error: object) -> str:
    return " ".join(str(error).split())


def load_settings():  # type: ignore[no-untyped-def]
    """The service settings from the environment (imported lazily: library-only installs)."""
    from app.config import Settings

    return Settings()

"""Shared by the service commands: one red line per failure, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from weightless_core.cli_guard import Translation, fail
from weightless_core.cli_guard import guard as library_guard

__all__ = ["fail", "guard", "load_settings", "one_line"]
T = TypeVar("T")


def _bad_configuration(e: Any) -> str:
    msgs = "; ".join(
        f"{'.'.join(map(str, x['loc'])) or 'settings'}: {x['msg']}" for x in e.errors()
    )
    return f"bad configuration: {msgs}"


def guard(fn: Callable[[], T], *also: Translation) -> T:
    """The library's ``guard``, knowing the service's errors too: an API refusal or an
    unreachable server (``ClientError``), bad settings in the environment."""
    from pydantic import ValidationError

    from app.client import ClientError

    service: tuple[Translation, ...] = (
        (ClientError, lambda e: e.message),
        (ValidationError, _bad_configuration),
    )
    return library_guard(fn, *service, *also)


def one_line(error: object) -> str:
    return " ".join(str(error).split())


def load_settings():  # type: ignore[no-untyped-def]
    """The service settings from the environment (imported lazily: library-only installs)."""
    from app.config import Settings

    return Settings()

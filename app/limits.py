"""Every string a user sends that the service stores or repeats back: its limit, in one place.

Stored strings are bounded where they enter (a 422 naming the limit, or, for file names,
which are display only, cut to size); anything the API echoes in an error (a field path
holding a user's key, a rejected value) goes through ``shorten`` in ``app.errors``, so no
answer repeats more than a few hundred characters of what was sent. Names shown to people
are also made safe to look at (``visible``): bidirectional overrides, zero-width and other
invisible characters would let ``evil\\u202egnp.pt`` pass for ``evil...tp.png`` or flip the
text around it, so they are removed when a file name is stored and again when one is shown.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Annotated

from pydantic import StringConstraints

MAX_LAYER_NAME = 256  # a layer-override key; real parameter paths are far shorter
MAX_LAYERS = 1000  # layer overrides per job
MAX_FILENAME = 255  # an upload's display name (longer ones are cut)
MAX_IDEMPOTENCY_KEY = 255
MAX_CURSOR = 256  # pagination cursors this API hands out are ~60 characters
MAX_ECHO = 80  # how much of one rejected value an error message repeats
MAX_FIELD_PATH = 200  # a field path in a 422 (it may hold keys the client chose)
MAX_MESSAGE = 2000  # any error message, whatever it quotes

LayerName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LAYER_NAME)]


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis and the full length if cut."""
    if len(text) <= limit:
        return text
    return f"{text[: max(limit - 1, 1)]}\u2026 ({len(text)} characters)"


def check_names(what: str, names: Iterable[object], limit: int) -> None:
    """A ``ValueError`` naming the first name longer than ``limit`` (or empty), echoed short."""
    for name in names:
        if isinstance(name, str) and not 1 <= len(name) <= limit:
            raise ValueError(
                f"{what} {shorten(name)!r} has {len(name)} characters; the limit is 1 to {limit}"
            )


# Characters that change how the text around them is displayed, or show nothing at all:
# controls (Cc), format characters (Cf: bidi overrides and isolates, zero-width spaces and
# joiners, the BOM, ...), line and paragraph separators, surrogates, private-use and
# unassigned code points, and the default-ignorable letters and marks that render as blanks
# (Hangul fillers, the combining grapheme joiner, variation selectors, Khmer inherent vowels).
_HIDDEN_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}
_HIDDEN_EXTRA = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x3164,
                 0xFFA0, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)}  # fmt: skip


def _hidden(char: str) -> bool:
    return ord(char) in _HIDDEN_EXTRA or unicodedata.category(char) in _HIDDEN_CATEGORIES


def visible(text: str) -> str:
    """``text`` without invisible or direction-changing characters (see above)."""
    return "".join(c for c in text if not _hidden(c))


def clean_filename(name: str | None, default: str) -> str:
    """A display name only (never a storage key): the base name, visible characters only,
    at most ``MAX_FILENAME`` characters; ``default`` when nothing is left."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = visible(base).strip()
    if base in ("", ".", ".."):
        return default
    return base[:MAX_FILENAME]

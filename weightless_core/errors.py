"""One error hierarchy for the library, so callers can catch by meaning, not by message.

Every error raised on bad user input or a bad file is a ``WeightlessError``; anything else that
escapes the library is a bug.
"""

from __future__ import annotations

from collections.abc import Sequence


class WeightlessError(Exception):
    """Base class of every error the library raises on purpose."""


class InvalidInputError(WeightlessError, ValueError):
    """An argument is out of range or malformed (the message names it and says what is allowed)."""


class ConstructionError(WeightlessError):
    """A retrieval structure could not be built within its bounded number of attempts."""


class FormatError(WeightlessError):
    """An encoded-model file cannot be read."""


class BadMagicError(FormatError):
    """The file does not start with the Weightless magic number: it is not an encoded model."""


class UnsupportedVersionError(FormatError):
    """The file was written by a newer (or unknown) version of the format."""


class TruncatedFileError(FormatError):
    """The file ends before the structure it announces."""


class ChecksumMismatchError(FormatError):
    """The stored checksum does not match the bytes: the file is corrupt."""


class MalformedRecordError(FormatError):
    """A record holds a length, offset, code or parameter that the format does not allow."""


class ModelLoadError(WeightlessError):
    """A model file is not a model we can load safely (or not a model at all)."""


class DataError(WeightlessError):
    """A data set is missing, malformed, or does not fit the model."""


def listed_names(names: Sequence[str], most: int = 8, width: int = 80) -> str:
    """A list of tensor names for an error message, bounded whatever the user sent."""
    shown = [n if len(n) <= width else n[: width - 1] + "\N{HORIZONTAL ELLIPSIS}" for n in names]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"[{', '.join(repr(n) for n in shown[:most])}]{more}"

"""The one hash every retrieval structure uses: a documented 64-bit function of (seed, key).

``hash64(seed, key) = mix64((key + mix64(seed + GOLDEN)) mod 2**64)`` where ``mix64`` is the
SplitMix64 finaliser (Steele, Lea, Flood 2014). Only wrapping 64-bit integer addition,
multiplication, xor and shifts are used, so the bits are the same on every platform and every
numpy/numba/torch version; ``docs/format.md`` pins them with test vectors.
"""

from __future__ import annotations

import operator

import numpy as np

from weightless_core.errors import InvalidInputError

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1


def mix64(z: int) -> int:
    """SplitMix64 finaliser on a Python int (reference implementation, exact)."""
    z = operator.index(z) & MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def _check_seed(seed: int) -> int:
    try:
        s = operator.index(seed)
    except TypeError:
        raise InvalidInputError(f"seed must be an integer, got {seed!r}") from None
    if not 0 <= s < 1 << 64:
        raise InvalidInputError(f"seed must be in [0, 2**64), got {s}")
    return s


def seed_key(seed: int) -> int:
    """The 64-bit constant added to every key for a given seed."""
    return mix64(_check_seed(seed) + GOLDEN)


def hash64(seed: int, key: int) -> int:
    """Reference hash of one key (slow, exact); the vectorised path must agree with it."""
    return mix64(operator.index(key) + seed_key(seed))


def derive_seed(seed: int, attempt: int) -> int:
    """Seed of construction attempt ``attempt`` (0 is ``seed`` itself), for bounded retries."""
    s = _check_seed(seed)
    return s if attempt == 0 else mix64(s ^ mix64(attempt))


def hash_array(keys: np.ndarray, seed: int) -> np.ndarray:
    """``hash64(seed, k)`` for every ``k`` in ``keys`` (uint64, any shape); wraps mod 2**64."""
    z = np.asarray(keys).astype(np.uint64, copy=True)
    z += np.uint64(seed_key(seed))
    _mix_inplace(z)
    return z


def _mix_inplace(z: np.ndarray) -> None:
    z ^= z >> np.uint64(30)
    z *= np.uint64(MIX1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(MIX2)
    z ^= z >> np.uint64(31)

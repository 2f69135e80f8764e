"""API keys: ``wl_<random>``, shown to the user once and stored only as a SHA-256 digest.

A fast hash is enough here (unlike passwords): keys carry 256 random bits, so there is nothing to
brute-force, and a digest lets the database find the key with one indexed lookup. The short
``prefix`` names a key in listings and logs without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_PREFIX = "wl_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8  # "wl_" + 8 characters: enough to tell keys apart


@dataclass(frozen=True)
class NewKey:
    plaintext: str  # give to the user once, never store or log
    prefix: str
    key_hash: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(key, key[:PREFIX_LENGTH], hash_key(key))


def key_matches(key: str, key_hash: str) -> bool:
    """Constant-time comparison of a presented key with a stored digest."""
    return hmac.compare_digest(hash_key(key), key_hash)


def looks_like_key(key: str) -> bool:
    """Cheap shape check, so garbage never reaches the database."""
    return key.startswith(KEY_PREFIX) and 16 <= len(key) <= 128 and key.isascii()

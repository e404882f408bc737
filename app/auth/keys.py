"""API key format, generation and verification. Pure functions, no database.

A key reads ``mlk_<prefix>_<secret>``:

* ``prefix``: 12 random characters of lowercase base32 (60 bits). Public: it is stored in
  clear, shown in listings, and finds the key with one indexed lookup.
* ``secret``: ``secrets.token_urlsafe(32)`` (256 bits). Only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import NamedTuple

KEY_MARKER = "mlk"
PREFIX_LENGTH = 12
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lowercase
_SECRET_BYTES = 32
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet (which includes "_", so
# the secret is everything after the second underscore).
_KEY_PATTERN = re.compile(r"mlk_([a-z2-7]{12})_([A-Za-z0-9_-]{43})")


def looks_like_api_key(token: str) -> bool:
    """True for anything in our key namespace (well-formed or not): such a bearer token is
    never treated as a JWT."""
    return token.startswith(KEY_MARKER + "_")


def hash_secret(secret: str) -> str:
    # A fast hash is the right tool here, unlike for passwords: the secret is 256 random bits,
    # so there is nothing to brute-force or look up in a dictionary, and a slow KDF (bcrypt,
    # argon2) would only add tens of milliseconds to every API request. Salt is unnecessary for
    # the same reason (no two secrets are ever equal).
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    """Constant-time comparison, so response timing reveals nothing about the stored hash."""
    return hmac.compare_digest(hash_secret(secret), secret_hash)


def generate_prefix() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))


class NewKey(NamedTuple):
    """A new key. The full key is shown to its owner once and never stored."""

    full_key: str
    prefix: str
    secret_hash: str


def generate_key() -> NewKey:
    """A new key: ``(full_key, prefix, secret_hash)``."""
    prefix = generate_prefix()
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return NewKey(f"{KEY_MARKER}_{prefix}_{secret}", prefix, hash_secret(secret))


def parse_key(text: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else None (no database lookup for junk)."""
    match = _KEY_PATTERN.fullmatch(text)
    if match is None:
        return None
    return match.group(1), match.group(2)


def display_prefix(prefix: str) -> str:
    """How a key is recognised by people: its first characters, ``mlk_<prefix>``."""
    return f"{KEY_MARKER}_{prefix}"

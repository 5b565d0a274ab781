"""Secrets that cross services: API keys and worker tokens, generated here and stored only hashed.

Both are 256-bit random values, so a single SHA-256 is enough to store them safely (a slow
password hash protects low-entropy secrets; these are not). Comparisons use `hmac.compare_digest`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_KEY_PREFIX = "sk-flt-"
WORKER_TOKEN_PREFIX = "wt-flt-"


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_worker_token() -> str:
    return WORKER_TOKEN_PREFIX + secrets.token_urlsafe(32)


def display_prefix(secret: str) -> str:
    """Enough of a key to tell keys apart in a list, far too little to use it."""
    return secret[: len(API_KEY_PREFIX) + 4]


def matches(secret: str, expected_hash: str) -> bool:
    return hmac.compare_digest(sha256_hex(secret), expected_hash)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"

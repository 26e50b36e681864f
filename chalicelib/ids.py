"""Identifiers: prefixed, random, and safe as channel order numbers ([A-Za-z0-9_-], <= 32 chars)."""
from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def token(n: int = 20) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new(prefix: str, n: int = 20) -> str:
    return f"{prefix}_{token(n)}"


def looks_like(value: str, prefix: str, max_len: int = 64) -> bool:
    """Could `value` be one of our ids with this prefix? (Checked before any lookup: a key from a URL
    can be anything, and DynamoDB refuses keys over 2 KB with an error, not a miss.)"""
    return (isinstance(value, str) and value.startswith(prefix + "_") and len(value) <= max_len
            and value.isascii() and value.replace("_", "").isalnum())

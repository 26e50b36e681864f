"""Identifiers: prefixed, random, and safe as channel order numbers ([A-Za-z0-9_-], <= 32 chars)."""
from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def token(n: int = 20) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def new(prefix: str, n: int = 20) -> str:
    return f"{prefix}_{token(n)}"

"""The pynamodb connection used for transactions (one per container)."""
from __future__ import annotations

from chalicelib import settings

_conn = None


def connection():
    global _conn
    if _conn is None:
        from pynamodb.connection import Connection

        s = settings.get()
        _conn = Connection(region=s.region, host=s.aws_endpoint_url)
    return _conn


def reset() -> None:
    global _conn
    _conn = None

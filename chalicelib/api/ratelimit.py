"""Per-key request limits: a token bucket per API key in each container (no DynamoDB round trip).

Each key may make KAURI_RATE_LIMIT_PER_SECOND requests a second with bursts up to KAURI_RATE_LIMIT_BURST
in one container; above that it gets 429 with Retry-After (whole seconds until a token is back). Lambda
runs several containers at once, so the limit across the API is this times the containers serving the
key; API Gateway's stage throttling (set by infra/deploy.py) caps the total. Integer arithmetic in
milli-tokens and milliseconds.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from chalicelib import clock, settings

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_KEYS = 4096
_buckets: dict[str, tuple[int, int]] = {}   # key digest -> (milli-tokens, at ms)


def _now_ms() -> int:
    return (clock.now() - _EPOCH) // timedelta(milliseconds=1)


def take(key: str) -> int:
    """0 if the key may go on (a token taken), else the seconds to wait."""
    s = settings.get()
    rate, burst = s.rate_limit_per_second, s.rate_limit_burst
    if rate <= 0:
        return 0
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    now = _now_ms()
    tokens, at = _buckets.get(digest, (burst * 1000, now))
    tokens = min(burst * 1000, tokens + max(0, now - at) * rate)   # rate tokens/s = rate milli-tokens/ms
    if tokens >= 1000:
        if len(_buckets) >= _MAX_KEYS and digest not in _buckets:
            _buckets.clear()
        _buckets[digest] = (tokens - 1000, now)
        return 0
    _buckets[digest] = (tokens, now)
    missing_ms = -(-(1000 - tokens) // rate)                       # ROUND_UP to whole ms
    return max(1, -(-missing_ms // 1000))                          # ROUND_UP to whole seconds


def reset() -> None:
    _buckets.clear()

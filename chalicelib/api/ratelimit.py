"""Per-key request limits that hold across every Lambda container, with no round trip for ordinary traffic.

Two lines, both per API key (README "Abuse: limits"):

1. In each container, a token bucket (KAURI_RATE_LIMIT_PER_SECOND, bursts up to KAURI_RATE_LIMIT_BURST),
   in memory: it smooths bursts and costs nothing.
2. Across containers, KAURI_RATE_LIMIT_PER_MINUTE requests in each fixed minute (windows start on the
   minute, epoch time). Each container counts the key's requests in the window. The first
   KAURI_RATE_LIMIT_QUIET of them it serves without asking anyone: a quiet key makes no round trip. Past
   that the key is busy here, and the container charges the window's counter in DynamoDB (the throttle
   table, item `api_key#<sha-256 of the key>#<window start>`, with a TTL) with ONE conditional
   UpdateItem that adds the requests it served uncounted plus a lease of KAURI_RATE_LIMIT_LEASE tokens;
   the lease then serves the next requests with no round trip. When the counter cannot cover this
   request the key is refused here until the window ends, again with no round trip.

How far the API-wide count can go over the limit in one window: every token a counter hands out is
under the limit, so only requests a container served while still quiet can be extra, and a container
that turns busy charges those too. So at most `limit + C x quiet` requests get through in a window, C
being the containers that served the key in it (each at most `quiet` uncounted); at the defaults quiet
is 2% of the limit. The other way, leases claimed and not used yet (at most C x lease) may refuse a key
slightly before the limit. Fixed windows let a key spend one window's limit at its end and the next at
the start of the next (the usual fixed-window edge); the per-container bucket still caps each burst.

The counter fails OPEN: if DynamoDB errs, the request is served, the error logged and counted, and the
container serves the key a lease's worth before it asks again (so an outage costs each busy key one
failed call per lease, not one per request). A limiter must never take the payment API down.

Over a limit: the caller answers 429 `rate_limited` with Retry-After (whole seconds, rounded up: until a
token is back in the bucket, or until the window ends); each refusal is logged and an EMF metric
(RateLimited, Scope=container|api). Integer arithmetic in milli-tokens and milliseconds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from chalicelib import clock, log, metrics, settings

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
WINDOW_SECONDS = 60
_MAX_KEYS = 4096


@dataclass
class _Window:
    """One key's minute in this container."""
    start: int              # epoch seconds
    served: int = 0         # requests let through here in this window
    uncounted: int = 0      # of those, not yet charged to the API-wide counter
    lease: int = 0          # tokens claimed from the counter and not used yet
    full: bool = False      # the counter has no tokens left this window


class Container:
    """What one Lambda container knows: its buckets and its windows, by key digest."""

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[int, int]] = {}   # digest -> (milli-tokens, at ms)
        self.windows: dict[str, _Window] = {}


_here = Container()


def _now_ms() -> int:
    return (clock.now() - _EPOCH) // timedelta(milliseconds=1)


def _seconds_up(ms: int) -> int:
    return max(1, -(-ms // 1000))                                  # ROUND_UP to whole seconds, at least 1


def take(key: str) -> int:
    """0 if the key may go on (its request counted), else the whole seconds to wait (logged and counted)."""
    s = settings.get()
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    now = _now_ms()
    for scope, check in (("container", _bucket), ("api", _window)):
        wait = check(_here, digest, now, s)
        if wait:
            log.warning("rate_limited", scope=scope, retry_after=wait)
            metrics.emit("RateLimited", Scope=scope)
            return wait
    return 0


def _bucket(here: Container, digest: str, now: int, s) -> int:
    rate, burst = s.rate_limit_per_second, s.rate_limit_burst
    if rate <= 0:
        return 0
    tokens, at = here.buckets.get(digest, (burst * 1000, now))
    tokens = min(burst * 1000, tokens + max(0, now - at) * rate)   # rate tokens/s = rate milli-tokens/ms
    if len(here.buckets) >= _MAX_KEYS and digest not in here.buckets:
        here.buckets.clear()
    if tokens >= 1000:
        here.buckets[digest] = (tokens - 1000, now)
        return 0
    here.buckets[digest] = (tokens, now)
    return _seconds_up(-(-(1000 - tokens) // rate))               # ROUND_UP to whole ms first


def _window(here: Container, digest: str, now: int, s) -> int:
    limit = s.rate_limit_per_minute
    if limit <= 0:
        return 0
    start = now // 1000 - (now // 1000) % WINDOW_SECONDS
    w = here.windows.get(digest)
    if w is None or w.start != start:
        if len(here.windows) >= _MAX_KEYS and digest not in here.windows:
            here.windows.clear()      # forgets quiet counts too: only with 4096 keys in one container's minute
        w = here.windows[digest] = _Window(start)
    if w.served < s.rate_limit_quiet:                              # quiet here: no round trip
        w.served += 1
        w.uncounted += 1
        return 0
    if w.lease == 0 and not w.full:
        _charge(w, digest, limit, max(1, s.rate_limit_lease))
    if w.lease == 0:
        return _seconds_up((start + WINDOW_SECONDS) * 1000 - now)  # the window's end
    w.lease -= 1
    w.served += 1
    return 0


def _charge(w: _Window, digest: str, limit: int, lease: int) -> None:
    """One round trip: the requests served uncounted plus a lease, onto the key's counter for the window."""
    from botocore.exceptions import BotoCoreError, ClientError
    from pynamodb.exceptions import PynamoDBException

    from chalicelib.store import qr_codes as counters

    wanted = w.uncounted + lease
    try:
        granted = counters.claim(f"api_key#{digest}#{w.start}", wanted, limit, w.start + 2 * WINDOW_SECONDS)
    except (PynamoDBException, BotoCoreError, ClientError) as exc:   # fail open: serve, say so, ask later
        log.error("rate_limit_counter_failed", error=type(exc).__name__)
        metrics.emit("RateLimitCounterErrors")
        w.uncounted, w.lease = 0, lease
        return
    w.full = granted < wanted
    w.lease = max(0, granted - w.uncounted)
    w.uncounted = 0


def reset() -> None:
    """A fresh container: no buckets, no windows."""
    global _here
    _here = Container()

"""The one clock. Everything that needs 'now' asks here, so tests can move time."""
from __future__ import annotations

import time as _time
from datetime import datetime, timedelta, timezone

_offset = timedelta(0)
_frozen: datetime | None = None


def now() -> datetime:
    """Current UTC time (aware)."""
    if _frozen is not None:
        return _frozen
    return datetime.now(timezone.utc) + _offset


def epoch() -> int:
    return int(now().timestamp())


def advance(delta: timedelta) -> None:
    """Move time forward (tests, and the local stack's 'shrink the clock' switch)."""
    global _offset, _frozen
    if _frozen is not None:
        _frozen = _frozen + delta
    else:
        _offset += delta


def freeze(at: datetime | None = None) -> None:
    global _frozen
    _frozen = at or now()


def reset() -> None:
    global _offset, _frozen
    _offset = timedelta(0)
    _frozen = None


def ticks() -> int:
    """A monotonic reading in nanoseconds, for measuring how long something took."""
    return _time.monotonic_ns()


def ms_since(start_ticks: int) -> int:
    return (_time.monotonic_ns() - start_ticks) // 1_000_000


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


BEIJING = timezone(timedelta(hours=8))   # China Standard Time: no daylight saving


def bill_day(at: datetime) -> str:
    """The channels' bill date of a moment: its Beijing (UTC+8) calendar day, as YYYY-MM-DD."""
    return at.astimezone(BEIJING).date().isoformat()

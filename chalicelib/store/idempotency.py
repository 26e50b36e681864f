"""Idempotency-Key records: claim, replay, release."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pynamodb.exceptions import PutError

from chalicelib import clock
from chalicelib.store.base import applied, is_conditional_failure
from chalicelib.store.models import IdempotencyModel

TTL_SECONDS = 24 * 3600
LOCK_SECONDS = 60  # an in-progress claim older than this was abandoned by a crashed request


@dataclass(frozen=True)
class Outcome:
    kind: str                   # "claimed" | "replay" | "mismatch" | "in_progress"
    status_code: int | None = None
    body: str | None = None


def claim(key: str, request_hash: str, ttl_seconds: int = TTL_SECONDS) -> Outcome:
    now_dt = clock.now()
    now = int(now_dt.timestamp())
    item = IdempotencyModel(key, request_hash=request_hash, status="in_progress",
                            locked_until=now + LOCK_SECONDS, expires=now_dt + timedelta(seconds=ttl_seconds))
    cond = (IdempotencyModel.key.does_not_exist()
            | (IdempotencyModel.expires < now_dt)
            | ((IdempotencyModel.status == "in_progress") & (IdempotencyModel.locked_until < now)))
    try:
        item.save(condition=cond)
        return Outcome("claimed")
    except PutError as exc:
        if not is_conditional_failure(exc):
            raise
    old = IdempotencyModel.get(key, consistent_read=True)
    if old.request_hash != request_hash:
        return Outcome("mismatch")
    if old.status == "completed" and old.expires is not None and old.expires < now_dt:
        return claim(key, request_hash, ttl_seconds)  # expired between our write and read: try again
    if old.status == "completed":
        return Outcome("replay", int(old.response_status), old.response_body)
    return Outcome("in_progress")


def complete(key: str, status_code: int, body: str, only_in_progress: bool = False,
             ttl_seconds: int = TTL_SECONDS) -> None:
    """Store the reply. `only_in_progress`: unless a use case already committed its own reply."""
    cond = (IdempotencyModel.status == "in_progress") if only_in_progress else None
    applied(lambda: IdempotencyModel(key).update(condition=cond, actions=[
        IdempotencyModel.status.set("completed"),
        IdempotencyModel.response_status.set(status_code),
        IdempotencyModel.response_body.set(body),
        IdempotencyModel.expires.set(clock.now() + timedelta(seconds=ttl_seconds)),
    ]))


def release(key: str) -> None:
    """Forget a claim whose request failed before changing anything, so the client may retry."""
    applied(lambda: IdempotencyModel(key).delete(condition=IdempotencyModel.status == "in_progress"))

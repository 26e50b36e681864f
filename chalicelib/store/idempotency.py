"""Idempotency-Key records: claim, replay, release."""
from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import DeleteError, PutError

from chalicelib import clock
from chalicelib.store.base import is_conditional_failure
from chalicelib.store.models import IdempotencyModel

TTL_SECONDS = 24 * 3600
LOCK_SECONDS = 60  # an in-progress claim older than this was abandoned by a crashed request


@dataclass(frozen=True)
class Outcome:
    kind: str                   # "claimed" | "replay" | "mismatch" | "in_progress"
    status_code: int | None = None
    body: str | None = None


def claim(key: str, request_hash: str) -> Outcome:
    now = clock.epoch()
    item = IdempotencyModel(key, request_hash=request_hash, status="in_progress",
                            locked_until=now + LOCK_SECONDS, expires=now + TTL_SECONDS)
    cond = (IdempotencyModel.key.does_not_exist()
            | (IdempotencyModel.expires < now)
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
    if old.status == "completed":
        return Outcome("replay", int(old.response_status), old.response_body)
    return Outcome("in_progress")


def complete(key: str, status_code: int, body: str) -> None:
    IdempotencyModel(key).update(actions=[
        IdempotencyModel.status.set("completed"),
        IdempotencyModel.response_status.set(status_code),
        IdempotencyModel.response_body.set(body),
        IdempotencyModel.expires.set(clock.epoch() + TTL_SECONDS),
    ])


def release(key: str) -> None:
    """Forget a claim whose request failed before changing anything, so the client may retry."""
    try:
        IdempotencyModel(key).delete(condition=IdempotencyModel.status == "in_progress")
    except DeleteError as exc:
        if not is_conditional_failure(exc):
            raise

"""State of the sandbox channel simulators (orders they issued, notifications they owe).

The sandboxes are separate servers in spirit; they keep their own records here, never in our
payment tables, so nothing they do can be mistaken for Kauri's own books.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from pynamodb.attributes import NumberAttribute, UnicodeAttribute, VersionAttribute
from pynamodb.exceptions import DoesNotExist, PutError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.store.base import applied, is_conditional_failure, meta


class _DueIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "due"
        projection = AllProjection()

    queue = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class SandboxRecord(Model):
    Meta = meta("sandbox")
    pk = UnicodeAttribute(hash_key=True)          # "<channel>#<kind>#<key>"
    data = UnicodeAttribute()                     # JSON
    queue = UnicodeAttribute(null=True)           # set while a notification is due: "<channel>#notify"
    due_at = NumberAttribute(null=True)           # epoch seconds
    version = VersionAttribute()
    due = _DueIndex()


def get(pk: str) -> dict[str, Any] | None:
    try:
        return json.loads(SandboxRecord.get(pk).data)
    except DoesNotExist:
        return None


def create(pk: str, data: dict[str, Any], queue: str | None = None, due_at: int | None = None) -> bool:
    """Write a new record; False if one with that key exists already."""
    rec = SandboxRecord(pk=pk, data=json.dumps(data, sort_keys=True), queue=queue, due_at=due_at)
    return applied(lambda: rec.save(condition=SandboxRecord.pk.does_not_exist()))


def update(pk: str, change: Callable[[dict[str, Any]], dict[str, Any] | None], attempts: int = 5) -> dict[str, Any] | None:
    """Read-modify-write under the record's version. `change` returns the new data or None to leave it."""
    for _ in range(attempts):
        try:
            rec = SandboxRecord.get(pk)
        except DoesNotExist:
            return None
        new = change(json.loads(rec.data))
        if new is None:
            return json.loads(rec.data)
        rec.data = json.dumps(new, sort_keys=True)
        try:
            rec.save()
            return new
        except PutError as exc:
            if not is_conditional_failure(exc):
                raise
    raise RuntimeError(f"sandbox record {pk} kept changing under us")


def change_together(changes: dict[str, Callable[[dict[str, Any] | None], dict[str, Any] | None]],
                    queues: dict[str, tuple[str | None, int | None]] | None = None,
                    attempts: int = 10) -> dict[str, dict[str, Any] | None]:
    """Several records changed in one DynamoDB transaction: all of it is written, or none of it.

    Each change gets the record's data (None if there is none yet) and returns its new data, or None to
    leave it as it is. `queues` sets a changed record's (queue, due_at) in the same write, so a state
    change and the notification it owes cannot be separated. Every write is versioned; a lost race reads again.
    Returns each record's data as written (or as found).
    """
    from pynamodb.exceptions import TransactWriteError
    from pynamodb.transactions import TransactWrite

    from chalicelib.store.connection import connection

    queues = queues or {}
    for _ in range(attempts):
        out: dict[str, dict[str, Any] | None] = {}
        writes = []
        for pk, change in changes.items():
            try:
                rec = SandboxRecord.get(pk, consistent_read=True)
                current = json.loads(rec.data)
            except DoesNotExist:
                rec, current = SandboxRecord(pk=pk), None
            new = change(current)
            out[pk] = new if new is not None else current
            if new is None:
                continue
            rec.data = json.dumps(new, sort_keys=True)
            if pk in queues:
                rec.queue, rec.due_at = queues[pk]
            writes.append(rec)
        if not writes:
            return out
        try:
            with TransactWrite(connection=connection()) as tx:
                for rec in writes:
                    tx.save(rec)  # versioned: a record someone changed (or created) meanwhile cancels it all
            return out
        except TransactWriteError as exc:
            if not is_conditional_failure(exc):
                raise
    raise RuntimeError(f"sandbox records {sorted(changes)} kept changing under us")


def schedule(pk: str, queue: str | None, due_at: int | None, attempts: int = 5) -> None:
    """Set (or clear, with None) when a record's next notification is due.

    Versioned like every write here; a simulator request and the pump can touch the same record at
    once (the local stack runs both), so a lost race is read again rather than raised.
    """
    for _ in range(attempts):
        rec = SandboxRecord.get(pk)
        rec.queue = queue
        rec.due_at = due_at
        if applied(rec.save):
            return
    raise RuntimeError(f"sandbox record {pk} kept changing under us")


def due(queue: str, now_epoch: int, limit: int = 100) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for rec in SandboxRecord.due.query(queue, SandboxRecord.due_at <= now_epoch, limit=limit):
        out.append((rec.pk, json.loads(rec.data)))
    return out

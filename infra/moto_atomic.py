"""Make moto's DynamoDB serialise writes, as the real service does.

moto applies a transaction by snapshotting the tables and restoring them on failure, with no lock:
two threads writing at once can interleave and the restore of one undoes the other's writes. Real
DynamoDB transactions are serialisable, so the embedded AWS (tests and the local stack) gets one lock
around every write. Dev-only: nothing in chalicelib imports this.
"""
from __future__ import annotations

import functools
import threading

_lock = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item",
           "get_item", "query", "scan", "transact_get_items")
_done = False


def install() -> None:
    global _done
    if _done:
        return
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        original = getattr(DynamoDBBackend, name, None)
        if original is None:
            continue

        @functools.wraps(original)
        def locked(self, *args, __original=original, **kwargs):
            with _lock:
                return __original(self, *args, **kwargs)
        setattr(DynamoDBBackend, name, locked)
    _done = True

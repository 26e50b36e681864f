"""Ops records: things a person must look at (late callbacks, tampered callbacks, second transactions)."""
from __future__ import annotations


from chalicelib import clock
from chalicelib.store.base import applied
from chalicelib.store.models import OpsRecordModel


def record_once(record_id: str, kind: str, channel: str, ref: str | None, detail: dict) -> bool:
    """Write the record unless one with this id exists. True if this call wrote it."""
    item = OpsRecordModel(record_id[:512], kind=kind, channel=channel, ref=ref, detail=detail, created_at=clock.now())
    return applied(lambda: item.save(condition=OpsRecordModel.record_id.does_not_exist()))

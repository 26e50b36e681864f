"""Ops records: things a person must look at (late callbacks, tampered callbacks, second transactions)."""
from __future__ import annotations


from chalicelib import clock
from chalicelib.store.base import applied
from chalicelib.store.models import OpsRecordModel


def new_record(record_id: str, kind: str, channel: str, ref: str | None, detail: dict,
               status: str = "open", awaiting: bool = False) -> OpsRecordModel:
    """A record to write inside a Unit (Unit.put_new), with the change it is about. `awaiting`: a job
    finishes it if the run that wrote it cannot (see `awaiting_before`); moving it on ends that."""
    return OpsRecordModel(record_id[:512], kind=kind, channel=channel, ref=ref, detail=detail, status=status,
                          created_at=clock.now(), awaiting=kind if awaiting else None)


def awaiting_before(kind: str, before, limit: int = 200) -> list[str]:
    """Ids of `kind` records still awaiting a job, written before `before`, oldest first (read each with
    `get`: the index is eventually consistent)."""
    return [m.record_id for m in OpsRecordModel.awaiting_index.query(
        kind, OpsRecordModel.created_at < before, limit=limit)]


def get(record_id: str) -> OpsRecordModel | None:
    try:
        return OpsRecordModel.get(record_id[:512], consistent_read=True)
    except OpsRecordModel.DoesNotExist:
        return None


def record_once(record_id: str, kind: str, channel: str, ref: str | None, detail: dict) -> bool:
    """Write the record unless one with this id exists. True if this call wrote it."""
    item = OpsRecordModel(record_id[:512], kind=kind, channel=channel, ref=ref, detail=detail, created_at=clock.now())
    written = applied(lambda: item.save(condition=OpsRecordModel.record_id.does_not_exist()))
    if written:
        from chalicelib import metrics

        metrics.emit("Discrepancies", Kind=kind)
    return written


def put_once(item: OpsRecordModel) -> bool:
    """Write a record made by new_record unless one with its id exists. True if this call wrote it."""
    return applied(lambda: item.save(condition=OpsRecordModel.record_id.does_not_exist()))

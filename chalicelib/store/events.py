"""The outbox: reading due events and recording delivery attempts under optimistic locking."""
from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from chalicelib.store.base import applied
from chalicelib.store.models import EventModel
from chalicelib.store.unit import DUE_SHARD


def due(now_epoch: int, limit: int = 100) -> list[EventModel]:
    return list(EventModel.due.query(DUE_SHARD, EventModel.next_attempt_at <= now_epoch, limit=limit))


def get(event_id: str) -> EventModel | None:
    try:
        return EventModel.get(event_id, consistent_read=True)
    except DoesNotExist:
        return None


def save_if_unchanged(item: EventModel) -> bool:
    """Save under the item's version; False if another worker changed it since we read it."""
    return applied(item.save)


def for_merchant(merchant_id: str, livemode: bool, after: EventModel | None = None, page_size: int = 50):
    """The merchant's events of one mode, newest first, lazily (pages of `page_size` read as iterated);
    `after`: start after this event (pagination)."""
    same_mode = EventModel.livemode == livemode
    if livemode:
        same_mode = same_mode | EventModel.livemode.does_not_exist()
    start = None
    if after is not None:
        start = {"event_id": {"S": after.event_id}, "merchant_id": {"S": after.merchant_id},
                 "created_at": {"S": EventModel.created_at.serialize(after.created_at)}}
    return EventModel.by_merchant.query(merchant_id, scan_index_forward=False, filter_condition=same_mode,
                                        last_evaluated_key=start, page_size=page_size)


def mode_of(item) -> bool:
    """An event's or endpoint's mode (items written before modes existed are live)."""
    return True if item.livemode is None else bool(item.livemode)

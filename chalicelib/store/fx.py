"""FX rate snapshots: every one kept, newest read first."""
from __future__ import annotations

from decimal import Decimal

from pynamodb.attributes import UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.models import Model

from chalicelib.domain.fx import Rate
from chalicelib.store.base import meta


class FxSnapshotModel(Model):
    Meta = meta("fx_snapshots")
    pair = UnicodeAttribute(hash_key=True)            # "<channel>#<currency>" e.g. "wechat#NZD"
    fetched_at = UTCDateTimeAttribute(range_key=True)
    channel = UnicodeAttribute()
    currency = UnicodeAttribute()
    rate = UnicodeAttribute()                          # Decimal text: CNY per one unit of currency
    source_time = UTCDateTimeAttribute()


def save(rate: Rate) -> None:
    FxSnapshotModel(f"{rate.channel}#{rate.currency}", rate.fetched_at, channel=rate.channel,
                    currency=rate.currency, rate=str(rate.rate), source_time=rate.source_time).save()


def latest(channel: str, currency: str) -> Rate | None:
    for item in FxSnapshotModel.query(f"{channel}#{currency}", scan_index_forward=False, limit=1):
        return Rate(item.channel, item.currency, Decimal(item.rate), item.source_time, item.fetched_at)
    return None

"""FX: the newest usable rate, and quotes for CNY-priced payments (tuition)."""
from __future__ import annotations

from datetime import timedelta

from chalicelib import clock, ids, settings
from chalicelib.domain.fx import Quote, Rate, quote_cny
from chalicelib.money import Money
from chalicelib.services import errors
from chalicelib.store import fx as store

# Where a currency's reference rate comes from, in order of preference.
RATE_SOURCES = ("wechat", "alipay")


def record(rate: Rate) -> None:
    if rate.rate <= 0:
        raise ValueError("refusing a non-positive rate")
    store.save(rate)


def usable_rate(currency: str) -> Rate:
    """The preferred channel's latest snapshot (RATE_SOURCES order) among those no older than the
    configured age; the next channel only when the preferred one has nothing fresh. Never a guess."""
    max_age = timedelta(seconds=settings.get().fx_max_age_seconds)
    now = clock.now()
    for channel in RATE_SOURCES:
        r = store.latest(channel, currency)
        if r is not None and now - r.fetched_at <= max_age:
            return r
    raise errors.ServiceError("unavailable", "rate_unavailable",
                              f"no {currency}/CNY rate newer than {int(max_age.total_seconds())} s; try again later")


def quote(amount: Money, markup_bps: int) -> Quote:
    rate = usable_rate(amount.currency)
    final_rate, cny = quote_cny(amount, rate.rate, markup_bps)
    now = clock.now()
    return Quote(id=ids.new("quote"), amount=amount, cny=cny, base_rate=rate.rate, markup_bps=markup_bps,
                 rate=final_rate, rate_source=f"{rate.channel}@{clock.iso(rate.fetched_at)}", created_at=now,
                 expires_at=now + timedelta(seconds=settings.get().quote_ttl_seconds))


def rates_view() -> list[dict]:
    out = []
    for currency in ("NZD", "AUD"):
        for channel in RATE_SOURCES:
            r = store.latest(channel, currency)
            if r is not None:
                out.append({"channel": channel, "currency": currency, "quote_currency": "CNY", "rate": str(r.rate),
                            "source_time": clock.iso(r.source_time), "fetched_at": clock.iso(r.fetched_at)})
    return out

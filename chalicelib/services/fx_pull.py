"""fx_pull: snapshot the channels' CNY reference rates for our settlement currencies.

Every snapshot is kept (services.fx.record). A pull that fails or looks wrong records nothing, so
quotes keep the last good rate until it is too old (services.fx.usable_rate), and logs
`fx_pull_failed` at error level for the alarm. Re-running a period only fetches what it lacks.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

from chalicelib import channels, clock, log, settings
from chalicelib.domain.fx import Rate
from chalicelib.services import fx
from chalicelib.services.jobs import JobParamError
from chalicelib.store import fx as fx_store

CURRENCIES = ("NZD", "AUD")
BEIJING = timezone(timedelta(hours=8), "GMT+8")   # no daylight saving in China
WECHAT_PUBLISHES_AT = time(10, 0)                  # queryexchagerate changes once a day, 10:00 GMT+8
MAX_MOVE = Decimal("0.10")                         # >10% from the last good rate: a broken feed, not a market


def current_rate_day(now: datetime) -> date:
    """The GMT+8 day whose WeChat rate is in force: yesterday's until 10:00 Beijing time."""
    local = now.astimezone(BEIJING)
    return local.date() if local.time() >= WECHAT_PUBLISHES_AT else local.date() - timedelta(days=1)


def pull(day: date | None = None, dry_run: bool = False, force: bool = False,
         period_start: datetime | None = None) -> dict:
    now = clock.now()
    in_force = current_rate_day(now)
    if day is not None and day > now.astimezone(BEIJING).date():
        raise JobParamError(f"date {day} is in the future in Beijing time")
    if day is not None and day != in_force and not dry_run:
        raise JobParamError(f"fx_pull records only the rate day in force ({in_force}); "
                            f"add \"dry_run\": true to look at {day}")
    looking_back = day is not None and day != in_force     # dry run of an older day: no age check
    day = day or in_force
    since = period_start or now
    last = {(ch, ccy): fx_store.latest(ch, ccy) for ch in fx.RATE_SOURCES for ccy in CURRENCIES}
    out = {"rate_day": day.isoformat(), "recorded": 0, "skipped": 0, "failed": 0, "rates": {}}

    def wanted(channel: str) -> list[str]:
        todo = [c for c in CURRENCIES
                if dry_run or force or last[(channel, c)] is None or last[(channel, c)].fetched_at < since]
        out["skipped"] += len(CURRENCIES) - len(todo)
        return todo

    wechat = channels.get("wechat")
    for ccy in wanted("wechat"):
        try:
            value, published = _wechat_rate(wechat, ccy, day)
        except Exception as exc:  # any failure: keep the last good rate
            _failed(out, "wechat", ccy, _reason(exc), last)
            continue
        _keep(out, Rate("wechat", ccy, value, published, now), last, dry_run, check_age=not looking_back)

    todo = wanted("alipay")
    if todo:
        try:
            rows = channels.get("alipay").forex_rate_rows()   # one file holds every currency
        except Exception as exc:
            for ccy in todo:
                _failed(out, "alipay", ccy, _reason(exc), last)
            todo, rows = [], {}
        for ccy in todo:
            row = rows.get(ccy)
            if row is None or not row.get("at"):
                _failed(out, "alipay", ccy, "currency missing from the rate file", last)
                continue
            _keep(out, Rate("alipay", ccy, row["rate"], clock.parse_iso(row["at"]), now), last, dry_run)
    return out


def _wechat_rate(wechat, currency: str, day: date) -> tuple[Decimal, datetime]:
    """WeChat's rate for `day`, and its source time: the rate date WeChat reports (`rate_time`), so a
    feed that keeps answering an old date is seen as stale; the day asked for only if it reports none."""
    rate, rate_time = wechat.exchange_rate_with_time(currency, day)
    return rate, wechat_source_time(rate_time, day)


def wechat_source_time(rate_time: str | None, asked: date) -> datetime:
    """`rate_time` as UTC: yyyyMMdd (the GMT+8 day, published 10:00) or yyyyMMddHHmmss (GMT+8)."""
    from chalicelib.channels.base import ChannelError

    digits = "".join(ch for ch in (rate_time or "") if ch.isdigit())
    try:
        if not rate_time:
            local = datetime.combine(asked, WECHAT_PUBLISHES_AT, BEIJING)
        elif len(digits) == 8:
            local = datetime.combine(datetime.strptime(digits, "%Y%m%d").date(), WECHAT_PUBLISHES_AT, BEIJING)
        elif len(digits) == 14:
            local = datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
        else:
            raise ValueError(rate_time)
    except ValueError:
        raise ChannelError("BAD_RESPONSE", "queryexchagerate answered an unreadable rate_time") from None
    return local.astimezone(timezone.utc)


def _keep(out: dict, rate: Rate, last: dict, dry_run: bool, check_age: bool = True) -> None:
    problem = _implausible(rate, last.get((rate.channel, rate.currency)), check_age)
    if problem:
        _failed(out, rate.channel, rate.currency, problem, last)
        return
    out["rates"][f"{rate.channel}:{rate.currency}"] = str(rate.rate)
    if not dry_run:
        fx.record(rate)
        out["recorded"] += 1


def _implausible(rate: Rate, previous: Rate | None, check_age: bool) -> str | None:
    if not isinstance(rate.rate, Decimal) or not rate.rate.is_finite() or rate.rate <= 0:
        return "rate is not a positive number"
    max_age = timedelta(seconds=settings.get().fx_max_age_seconds)
    if check_age and rate.fetched_at - rate.source_time > max_age:
        return f"channel still publishes a rate from {clock.iso(rate.source_time)}"
    if previous is not None and rate.fetched_at - previous.fetched_at <= max_age:
        move = abs(rate.rate / previous.rate - 1)
        if move > MAX_MOVE:
            return f"moved {move:.2%} from the last good rate"
    return None


def _reason(exc: Exception) -> str:
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__}:{code}" if code else type(exc).__name__


def _failed(out: dict, channel: str, currency: str, reason: str, last: dict) -> None:
    out["failed"] += 1
    kept = last.get((channel, currency))
    log.error("fx_pull_failed", channel=channel, currency=currency, reason=reason,
              kept_rate=str(kept.rate) if kept else None,
              kept_fetched_at=clock.iso(kept.fetched_at) if kept else None)

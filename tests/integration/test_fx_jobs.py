"""fx_pull: WeChat queryexchagerate + Alipay forex_rate_file every 30 minutes, every snapshot kept,
failures keep the last good rate (and say so loudly), GET /v1/rates, quotes refuse stale rates."""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from chalicelib import channels, clock, http, settings
from chalicelib.money import Money
from chalicelib.services import merchants
from chalicelib.store.fx import FxSnapshotModel
from tests.integration.helpers import MerchantApi, new_merchant
from tests.support.jobs import by_hand, scheduled
from tests.support.transport import ChaliceAdapter, FakeReceiver

BASE = "http://kauri.test"
# 02:05 UTC = 10:05 in Beijing: WeChat has published the day's rate (10:00 GMT+8).
T0 = datetime(2026, 11, 25, 2, 5, tzinfo=timezone.utc)


@pytest.fixture
def frozen(client):
    clock.freeze(T0)
    yield
    clock.reset()


def snapshots(channel: str, currency: str) -> list:
    return list(FxSnapshotModel.query(f"{channel}#{currency}"))


def events(caplog, name: str) -> list[dict]:
    out = []
    for rec in caplog.records:
        try:
            data = json.loads(rec.getMessage())
        except ValueError:
            continue
        if data.get("event") == name:
            out.append({**data, "_level": rec.levelno})
    return out


def break_channel(prefix: str, receiver) -> None:
    http.mount(BASE + prefix, receiver)


def mend_channel(client, prefix: str) -> None:
    http.mount(BASE + prefix, ChaliceAdapter(client))


def test_pull_keeps_a_snapshot_per_channel_and_currency_and_rates_route_serves_them(client, frozen):
    out = scheduled(client, "fx_pull")
    assert out["outcome"] == "ok" and out["recorded"] == 4 and out["failed"] == 0
    assert out["period"] == "2026-11-25T02:00:00Z" and out["rate_day"] == "2026-11-25"
    # The sandboxes' published figures, as Decimals (WeChat sends rate x 10^8 as an integer string).
    assert out["rates"] == {"wechat:NZD": "4.3", "wechat:AUD": "4.7",
                            "alipay:NZD": "4.35120000", "alipay:AUD": "4.72030000"}

    merchant = new_merchant(client)
    assert client.http.get("/v1/rates").status_code == 401  # merchant auth like every /v1 route
    r = merchant.get("/v1/rates")
    assert r.status_code == 200
    rows = {(x["channel"], x["currency"]): x for x in r.json_body["data"]}
    assert set(rows) == {("wechat", "NZD"), ("alipay", "NZD"), ("wechat", "AUD"), ("alipay", "AUD")}
    assert Decimal(rows[("wechat", "NZD")]["rate"]) == Decimal("4.3")
    assert rows[("wechat", "NZD")]["source_time"] == "2026-11-25T02:00:00Z"      # 10:00 GMT+8
    assert rows[("alipay", "AUD")]["source_time"] == "2026-11-25T01:30:00Z"      # the file's 093000
    assert all(x["fetched_at"] == "2026-11-25T02:05:00Z" and x["quote_currency"] == "CNY" for x in rows.values())


def test_a_rerun_in_the_same_period_is_a_no_op_and_every_period_adds_snapshots(client, frozen):
    assert scheduled(client, "fx_pull")["recorded"] == 4
    again = scheduled(client, "fx_pull")
    assert again["outcome"] == "already_done" and again["previous"]["recorded"] == 4
    assert len(snapshots("wechat", "NZD")) == 1
    clock.advance(timedelta(minutes=30))
    assert scheduled(client, "fx_pull")["recorded"] == 4
    assert [len(snapshots(ch, c)) for ch in ("wechat", "alipay") for c in ("NZD", "AUD")] == [2, 2, 2, 2]
    # Ops may force a finished period again: one more snapshot per fetch.
    clock.advance(timedelta(seconds=1))
    forced = by_hand(client, "fx_pull", {"force": True})
    assert forced["outcome"] == "ok" and forced["recorded"] == 4
    assert len(snapshots("alipay", "AUD")) == 3


def test_before_ten_beijing_time_yesterdays_wechat_rate_is_the_one_in_force(client, aws):
    clock.freeze(datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc))  # 09:00 GMT+8
    try:
        out = scheduled(client, "fx_pull")
    finally:
        clock.reset()
    assert out["rate_day"] == "2026-11-24"
    [snap] = snapshots("wechat", "NZD")
    assert snap.source_time == datetime(2026, 11, 24, 2, 0, tzinfo=timezone.utc)


def test_a_failed_pull_keeps_the_last_good_rate_and_logs_an_alarm(client, frozen, caplog):
    caplog.set_level(logging.INFO)
    scheduled(client, "fx_pull")
    clock.advance(timedelta(minutes=30))
    break_channel("/sandbox/wechat", FakeReceiver(status=503, body=b"busy"))
    break_channel("/sandbox/alipay", FakeReceiver(status=200, body=b"20261125|093000|NZD|0|\n"))  # a zero rate
    out = scheduled(client, "fx_pull")
    assert out["outcome"] == "ok" and out["recorded"] == 0 and out["failed"] == 4
    failures = events(caplog, "fx_pull_failed")
    assert len(failures) == 4 and all(f["_level"] == logging.ERROR for f in failures)
    assert {(f["channel"], f["currency"]) for f in failures} == {
        ("wechat", "NZD"), ("wechat", "AUD"), ("alipay", "NZD"), ("alipay", "AUD")}
    assert failures[0]["kept_rate"] and failures[0]["kept_fetched_at"] == "2026-11-25T02:05:00Z"
    # Nothing zero, nothing new: the last good snapshots still answer.
    assert [len(snapshots(ch, c)) for ch in ("wechat", "alipay") for c in ("NZD", "AUD")] == [1, 1, 1, 1]
    merchant = new_merchant(client)
    rows = merchant.get("/v1/rates").json_body["data"]
    assert all(Decimal(x["rate"]) > 0 and x["fetched_at"] == "2026-11-25T02:05:00Z" for x in rows)
    # The failed period may be re-run once the channels answer again.
    mend_channel(client, "/sandbox/wechat")
    mend_channel(client, "/sandbox/alipay")
    assert by_hand(client, "fx_pull", {"force": True})["recorded"] == 4


def test_an_implausible_jump_is_refused_but_the_other_currencies_are_kept(client, frozen, caplog):
    caplog.set_level(logging.INFO)
    scheduled(client, "fx_pull")
    clock.advance(timedelta(minutes=30))
    # NZD published x10 (a scaling bug upstream); AUD normal.
    break_channel("/sandbox/alipay", FakeReceiver(body=b"20261125|093000|NZD|43.5120|\n20261125|093000|AUD|4.7210|\n"))
    out = scheduled(client, "fx_pull")
    assert out["recorded"] == 3 and out["failed"] == 1
    [failure] = events(caplog, "fx_pull_failed")
    assert failure["channel"] == "alipay" and failure["currency"] == "NZD" and "moved" in failure["reason"]
    assert max(s.rate for s in snapshots("alipay", "NZD")) == "4.35120000"
    assert {s.rate for s in snapshots("alipay", "AUD")} == {"4.72030000", "4.7210"}


def test_a_rate_the_channel_stopped_updating_is_not_recorded_as_fresh(client, frozen, caplog):
    caplog.set_level(logging.INFO)
    break_channel("/sandbox/alipay", FakeReceiver(body=b"20261101|093000|NZD|4.3512|\n20261125|093000|AUD|4.7203|\n"))
    out = scheduled(client, "fx_pull")
    assert out["recorded"] == 3
    [failure] = events(caplog, "fx_pull_failed")
    assert failure["currency"] == "NZD" and "2026-11-01" in failure["reason"]
    assert snapshots("alipay", "NZD") == []


def test_quotes_use_pulled_rates_and_refuse_once_they_are_stale(client, frozen):
    m = merchants.create_merchant("Auckland Language School", "NZD", fee_bps=100, channels={"payease": {}},
                                  fx_markup_bps=0)
    school = MerchantApi(client, merchants.issue_key(m.id), m)
    invoice = {"amount": 10000, "currency": "NZD", "channel": "payease", "flow": "bank",
               "merchant_reference": "INV-1", "description": "Tuition", "return_url": "https://school.example.nz/ok"}
    r = school.post("/v1/payments", invoice)
    assert r.status_code == 503 and r.json_body["error"]["code"] == "rate_unavailable"  # nothing pulled yet
    scheduled(client, "fx_pull")
    r = school.post("/v1/payments", {**invoice, "merchant_reference": "INV-2"})
    assert r.status_code == 201, r.body
    assert Decimal(r.json_body["quote"]["base_rate"]) in (Decimal("4.3"), Decimal("4.3512"))
    # Every later pull fails; quotes keep working until the last good rate passes the configured age.
    down = FakeReceiver()
    down.down = True
    break_channel("/sandbox/wechat", down)
    break_channel("/sandbox/alipay", down)
    max_age = settings.get().fx_max_age_seconds
    clock.advance(timedelta(seconds=max_age - 60))
    assert scheduled(client, "fx_pull")["failed"] == 4
    assert school.post("/v1/payments", {**invoice, "merchant_reference": "INV-3"}).status_code == 201
    clock.advance(timedelta(seconds=120))
    r = school.post("/v1/payments", {**invoice, "merchant_reference": "INV-4"})
    assert r.status_code == 503 and r.json_body["error"]["code"] == "rate_unavailable"


def test_ops_run_it_by_hand_with_json_params(client, frozen):
    look = by_hand(client, "fx_pull", {"dry_run": True})
    assert look["outcome"] == "ok" and look["dry_run"] is True and len(look["rates"]) == 4
    assert look["recorded"] == 0 and snapshots("wechat", "NZD") == []
    past = by_hand(client, "fx_pull", {"date": "2026-11-20", "dry_run": True})
    assert past["rate_day"] == "2026-11-20" and past["rates"]["wechat:NZD"] == "4.3"
    refused = by_hand(client, "fx_pull", {"date": "2026-11-20"})
    assert refused["outcome"] == "bad_params" and "2026-11-25" in refused["message"]
    assert by_hand(client, "fx_pull", {"date": "25/11/2026"})["outcome"] == "bad_params"
    assert by_hand(client, "fx_pull", {"merchant_id": "mch_0123456789abcdef"})["outcome"] == "bad_params"
    assert snapshots("wechat", "NZD") == []
    # A refused run does not use up the period: the real run still happens.
    assert by_hand(client, "fx_pull", {})["recorded"] == 4


def test_a_run_that_died_half_way_is_taken_over_and_fetches_only_what_is_missing(client, frozen, monkeypatch):
    alipay = channels.get("alipay")

    def crash():
        raise KeyboardInterrupt("Lambda killed mid-run (test)")  # not an Exception: nothing cleans up

    monkeypatch.setattr(alipay, "forex_rate_rows", crash)
    with pytest.raises(KeyboardInterrupt):
        scheduled(client, "fx_pull")
    assert len(snapshots("wechat", "NZD")) == 1 and snapshots("alipay", "NZD") == []
    monkeypatch.undo()
    assert scheduled(client, "fx_pull")["outcome"] == "already_running"  # its lease is still live
    clock.advance(timedelta(minutes=16))                                 # same 30-minute period, lease over
    out = scheduled(client, "fx_pull")
    assert out["outcome"] == "ok" and out["period"] == "2026-11-25T02:00:00Z"
    assert out["skipped"] == 2 and out["recorded"] == 2                  # WeChat was already done
    assert [len(snapshots(ch, c)) for ch in ("wechat", "alipay") for c in ("NZD", "AUD")] == [1, 1, 1, 1]


def test_quotes_prefer_wechat_while_its_rate_is_fresh_then_fall_back_to_alipay(client, frozen):
    from chalicelib.services import fx

    scheduled(client, "fx_pull")
    clock.advance(timedelta(minutes=30))
    # WeChat is down for a while; Alipay keeps adding newer snapshots.
    down = FakeReceiver()
    down.down = True
    break_channel("/sandbox/wechat", down)
    assert scheduled(client, "fx_pull")["recorded"] == 2
    rate = fx.usable_rate("NZD")
    assert rate.channel == "wechat" and rate.fetched_at == T0          # preferred, though Alipay's is newer
    assert Decimal(fx.quote(Money(10000, "NZD"), 0).base_rate) == Decimal("4.3")
    # Once WeChat's last snapshot is past the configured age, Alipay's (fresh) one is used.
    clock.advance(timedelta(seconds=settings.get().fx_max_age_seconds - 30 * 60 + 1))
    assert scheduled(client, "fx_pull")["recorded"] == 2
    assert fx.usable_rate("NZD").channel == "alipay"


def test_a_wechat_rate_date_that_stopped_moving_is_not_recorded_as_fresh(client, frozen, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    wechat = channels.get("wechat")
    real_call = wechat._call

    def old_rate_time(path, params, *args, **kw):
        fields = real_call(path, params, *args, **kw)
        return {**fields, "rate_time": "20261101"} if path == "/pay/queryexchagerate" else fields
    monkeypatch.setattr(wechat, "_call", old_rate_time)
    out = scheduled(client, "fx_pull")
    assert out["recorded"] == 2 and out["failed"] == 2                # Alipay's two only
    failures = events(caplog, "fx_pull_failed")
    assert {(f["channel"], f["currency"]) for f in failures} == {("wechat", "NZD"), ("wechat", "AUD")}
    assert all("2026-11-01" in f["reason"] for f in failures)
    assert snapshots("wechat", "NZD") == []


def test_wechat_source_time_is_the_rate_date_it_reports():
    from datetime import date

    from chalicelib.channels.base import ChannelError
    from chalicelib.services.fx_pull import wechat_source_time

    asked = date(2026, 11, 25)
    assert wechat_source_time("20261120", asked) == datetime(2026, 11, 20, 2, 0, tzinfo=timezone.utc)
    assert wechat_source_time("20261125093000", asked) == datetime(2026, 11, 25, 1, 30, tzinfo=timezone.utc)
    assert wechat_source_time(None, asked) == datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
    with pytest.raises(ChannelError):
        wechat_source_time("yesterday", asked)

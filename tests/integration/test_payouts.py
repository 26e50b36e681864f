"""Payouts: never early, never twice, never stuck, on business days (issue 12); each failed before its fix."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from chalicelib import clock, http, settings
from chalicelib.services import balances
from chalicelib.services import withdrawals as withdrawal_service
from chalicelib.store import withdrawals as withdrawal_store
from chalicelib.store.models import BalanceModel, OpsRecordModel, PaymentModel
from tests.conftest import BASE
from tests.integration.test_balances_and_withdrawals import balance as buckets
from tests.integration.test_balances_and_withdrawals import invoke, merchant, pay  # noqa: F401 (fixture)
from tests.support.transport import ChaliceAdapter, Faulty

MONDAY = "2026-11-23"


def bank_file_credits(account16="0109020068389000"):
    """Every credit to `account16` in every bank file Kauri wrote to S3, as (file key, cents)."""
    s3 = boto3.client("s3", region_name="ap-southeast-2")
    out = []
    for obj in s3.list_objects_v2(Bucket=settings.get().bucket, Prefix="withdrawals/").get("Contents", []):
        body = s3.get_object(Bucket=settings.get().bucket, Key=obj["Key"])["Body"].read().decode()
        out += [(obj["Key"], int(r[3])) for r in csv.reader(io.StringIO(body)) if r and r[0] == "2" and r[1] == account16]
    return out


def header_due(key):
    body = boto3.client("s3", region_name="ap-southeast-2").get_object(
        Bucket=settings.get().bucket, Key=key)["Body"].read().decode()
    return next(csv.reader(io.StringIO(body)))[6]


# ---- never twice ------------------------------------------------------------------------------
def test_a_withdrawal_failed_while_its_batch_is_filing_is_refused_and_paid_exactly_once(merchant, client,
                                                                                       monkeypatch):
    pay(merchant, client)
    invoke(client, "release_funds", {"date": MONDAY})
    real_close = withdrawal_store.file_batch

    def crash_after_the_file_is_written(*args, **kwargs):
        raise RuntimeError("lambda timed out after writing the file")
    monkeypatch.setattr(withdrawal_store, "file_batch", crash_after_the_file_is_written)
    with pytest.raises(RuntimeError):
        withdrawal_service.auto_withdraw(datetime(2026, 11, 23).date())
    monkeypatch.setattr(withdrawal_store, "file_batch", real_close)
    assert withdrawal_store.get_batch("wdb_20261123_nzd").status == "filing"
    assert bank_file_credits() == [("withdrawals/2026-11-23/batch-wdb_20261123_nzd.csv", 9800)]

    wid = merchant.get("/v1/withdrawals").json_body["data"][0]["id"]
    out = invoke(client, "withdrawal_failed", {"withdrawal_id": wid, "reason": "ops thought it failed"})
    assert "being filed" in out["error"]
    assert buckets(merchant) == (0, 0, 9800)

    clock.advance(timedelta(days=5))
    nxt = invoke(client, "auto_withdraw", {"date": "2026-11-24"})
    assert nxt["refiled"] == ["wdb_20261123_nzd"]
    record = withdrawal_store.get_batch("wdb_20261123_nzd")
    assert record.status == "filed" and list(record.members) == [wid]
    assert sum(cents for _, cents in bank_file_credits()) == 9800
    assert invoke(client, "withdrawal_batch_paid", {"batch_id": "wdb_20261123_nzd"})["paid"] == 1
    # After filing, failing it is a bank return of a listed member: once, back to available.
    back = invoke(client, "withdrawal_failed", {"withdrawal_id": wid, "reason": "x"})
    assert "error" in back and buckets(merchant) == (0, 0, 0)


def test_a_bank_return_of_a_filed_member_goes_back_to_available_once(merchant, client):
    pay(merchant, client)
    invoke(client, "release_funds", {"date": MONDAY})
    invoke(client, "auto_withdraw", {"date": MONDAY})
    wid = merchant.get("/v1/withdrawals").json_body["data"][0]["id"]
    out = invoke(client, "withdrawal_failed", {"withdrawal_id": wid, "reason": "account closed"})
    assert out["result"] == "reversed" and out["as"] == "bank_return"
    assert buckets(merchant) == (0, 9800, 0)
    assert invoke(client, "withdrawal_batch_paid", {"batch_id": "wdb_20261123_nzd"})["paid"] == 0


# ---- never early ------------------------------------------------------------------------------
def refuse_refunds(client, p):
    r = client.http.post("/sandbox/wechat/simulate/refuse_refunds", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": p["channel_order_id"]}).encode())
    assert r.status_code == 200, r.body


def test_a_refused_refund_of_a_released_payment_never_makes_other_payments_money_available_early(merchant, client):
    first = pay(merchant, client, ref="first")
    invoke(client, "release_funds", {"date": MONDAY})
    invoke(client, "auto_withdraw", {"date": MONDAY})               # available paid out: 0 left
    clock.freeze(datetime(2026, 11, 22, 21, 0, tzinfo=timezone.utc))   # Mon 23 Nov 10:00
    pay(merchant, client, ref="second")                             # released on Wed 25 Nov
    assert buckets(merchant) == (9800, 0, 9800)
    refuse_refunds(client, first)
    r = merchant.post(f"/v1/payments/{first['id']}/refunds", {"amount": 5000})
    assert r.json_body["status"] == "failed"
    assert buckets(merchant) == (9800, 0, 9800)                     # not 4900 available two days early
    assert invoke(client, "auto_withdraw", {"date": MONDAY})["withdrawn"] == 1   # the batch already filed
    assert invoke(client, "release_funds", {"date": "2026-11-24"})["released"] == 0
    assert invoke(client, "release_funds", {"date": "2026-11-25"})["released_amount"] == {"NZD": 9800}
    assert buckets(merchant) == (0, 9800, 9800)


def test_a_borrowed_draw_a_later_release_absorbed_goes_to_available_when_its_refund_fails(merchant, client):
    first = pay(merchant, client, ref="first")
    invoke(client, "release_funds", {"date": MONDAY})
    invoke(client, "auto_withdraw", {"date": MONDAY})
    clock.freeze(datetime(2026, 11, 22, 21, 0, tzinfo=timezone.utc))
    pay(merchant, client, ref="second")
    faulty = Faulty(ChaliceAdapter(client))
    http.mount(BASE, faulty)
    faulty.faults["/sandbox/wechat/secapi/pay/refund"] = "reset"
    r = merchant.post(f"/v1/payments/{first['id']}/refunds", {"amount": 5000}).json_body
    assert r["status"] == "processing" and buckets(merchant) == (4900, 0, 9800)   # borrowed from "second"
    faulty.faults.clear()
    assert invoke(client, "release_funds", {"date": "2026-11-25"})["released_amount"] == {"NZD": 4900}
    refuse_refunds(client, first)
    from chalicelib.services import chase
    clock.advance(timedelta(minutes=1))
    assert chase.chase_refunds()["refunds_failed"] == 1
    # "second"'s release date has passed: the money its release could not move is available now.
    assert buckets(merchant) == (0, 9800, 9800)
    assert int(BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").borrowed or 0) == 0


# ---- never stuck ------------------------------------------------------------------------------
def test_a_payment_held_past_sixty_days_is_still_released_and_flagged_after_the_documented_age(merchant, client,
                                                                                             monkeypatch):
    p = pay(merchant, client)
    monkeypatch.setenv("KAURI_RELEASE_REQUIRES_RECON", "1")
    settings.reset()
    try:
        clock.advance(timedelta(days=settings.get().release_alert_days + 1))
        held = balances.release_funds()
        assert held["held_for_recon"] == 1 and held["overdue"] == 1
        assert [o.kind for o in OpsRecordModel.scan() if o.ref == p["id"]] == ["payment_unreleased"]
        clock.advance(timedelta(days=60))
        balances.register_recon_check(lambda payment: True)
        assert balances.release_funds()["released"] == 1
    finally:
        balances.register_recon_check(None)
        monkeypatch.delenv("KAURI_RELEASE_REQUIRES_RECON")
        settings.reset()
    assert PaymentModel.get(p["id"]).released is True and buckets(merchant) == (0, 9800, 0)
    assert len([o for o in OpsRecordModel.scan() if o.ref == p["id"]]) == 1


# ---- on business days -------------------------------------------------------------------------
def scheduled(at):
    return {"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
            "time": at, "region": "ap-southeast-2", "resources": [], "detail": {}}


def test_a_scheduled_sweep_on_a_saturday_or_christmas_does_nothing_and_the_next_business_day_takes_it(
        merchant, client):
    pay(merchant, client)
    invoke(client, "release_funds", {"date": MONDAY})
    clock.freeze(datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc))   # Sat 28 Nov, 17:00 NZDT
    sat = invoke(client, "auto_withdraw", scheduled("2026-11-28T04:00:00Z"))
    assert sat["skipped"] == "2026-11-28 is not an NZ business day"
    xmas = invoke(client, "auto_withdraw", scheduled("2026-12-25T04:00:00Z"))
    assert xmas["skipped"] == "2026-12-25 is not an NZ business day"
    assert buckets(merchant) == (0, 9800, 0)
    mon = invoke(client, "auto_withdraw", scheduled("2026-11-30T04:00:00Z"))
    assert mon["withdrawn"] == 1 and header_due(mon["file"]) == "20261130"


def test_a_hand_run_for_christmas_day_files_a_file_due_on_the_next_business_day(merchant, client):
    pay(merchant, client)
    invoke(client, "release_funds", {"date": MONDAY})
    out = invoke(client, "auto_withdraw", {"date": "2026-12-25"})    # Boxing Day is Mondayised: 28 Dec
    assert out["withdrawn"] == 1
    assert header_due(out["file"]) == "20261229"


def test_payments_paid_before_the_unreleased_index_are_backfilled_with_their_refunds_pending_draw(merchant,
                                                                                                  client):
    p = pay(merchant, client)
    assert merchant.post(f"/v1/payments/{p['id']}/refunds", {"amount": 5000}).status_code == 201
    PaymentModel(p["id"]).update(actions=[PaymentModel.unreleased_by.remove(), PaymentModel.pending_drawn.remove()])
    assert invoke(client, "release_funds", {"date": MONDAY})["checked"] == 0     # as written before the index
    done = invoke(client, "release_funds", {"date": MONDAY, "backfill": True})
    assert done["backfilled"] == 1 and done["released_amount"] == {"NZD": 4900}
    assert buckets(merchant) == (0, 4900, 0)
    assert invoke(client, "release_funds", {"date": MONDAY, "backfill": True})["backfilled"] == 0

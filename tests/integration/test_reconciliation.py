"""Reconciliation through app.py: the sandboxes' real bills downloaded, the S3 -> SQS trigger, the report,
resolve_discrepancy, settlement postings and the release gate."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from chalicelib import clock, settings
from chalicelib.domain import reconciliation as recon
from chalicelib.store.models import PaymentModel, PostingModel
from infra.local import drain_statement_queue
from tests.integration.helpers import new_merchant, shopper_pays

# Thu 19 Nov 2026 13:00 in Beijing (05:00 UTC): bill date 2026-11-19.
TRADING = datetime(2026, 11, 19, 5, 0, tzinfo=timezone.utc)
BILL_DATE = "2026-11-19"
NEXT_MORNING = datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)   # 11:00 Beijing: the bill is out


def invoke(client, name, event):
    return client.lambda_.invoke(name, event).payload


def s3():
    s = settings.get()
    return boto3.client("s3", region_name=s.region)


def put_statement(channel, day, name, body: bytes):
    s3().put_object(Bucket=settings.get().bucket, Key=f"statements/{channel}/{day}/{name}", Body=body)


def trigger(client):
    """What the S3 -> SQS -> Lambda wiring does in AWS (and the local stack's pump does locally)."""
    import app as app_module

    return drain_statement_queue(app_module.app)


@pytest.fixture
def shop(client):
    clock.freeze(TRADING)
    return new_merchant(client)


def _pay(shop, client, amount, ref, notify=True):
    p = shop.create_payment(amount=amount, merchant_reference=ref).json_body
    r = client.http.post("/sandbox/wechat/simulate/pay", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": p["channel_order_id"], "notify": notify}).encode())
    assert r.status_code == 200, r.body
    return p


def test_payment_the_sandbox_took_but_never_notified_is_found_and_applied_through_resolve(shop, client):
    paid = _pay(shop, client, 10000, "order-1")
    lost = _pay(shop, client, 2500, "order-2", notify=False)
    refunded = _pay(shop, client, 4000, "order-3")
    r = shop.post(f"/v1/payments/{refunded['id']}/refunds", {"amount": 1500}, headers={"Idempotency-Key": "rf-1"})
    assert r.status_code in (200, 201), r.body
    assert shop.get(f"/v1/payments/{lost['id']}").json_body["status"] == "pending"

    clock.freeze(NEXT_MORNING)
    got = invoke(client, "download_statements", {"channel": "wechat", "bill_date": BILL_DATE})
    assert got["results"][f"wechat/{BILL_DATE}"][0]["status"] == "done"
    trigger(client)

    report = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": BILL_DATE})
    assert report["status"] == "done"
    summary = report["summary"]
    assert summary["lines"] == 4 and summary["matched"] == 3            # two payments and the partial refund
    assert summary["matched_amount"] == {"NZD": 10000 + 4000 - 1500}
    [finding] = report["discrepancies"]
    assert finding["kind"] == recon.STATUS_DIFFERS and finding["our_no"] == lost["channel_order_id"]
    assert finding["detail"]["channel_status"] == "succeeded" and finding["detail"]["kauri_status"] == "pending"
    assert finding["channel_no"].startswith("4200")

    done = invoke(client, "resolve_discrepancy", {"discrepancy_id": finding["id"], "action": "apply",
                                                  "reason": "notification lost; the bill shows it paid"})
    assert done["discrepancy"]["status"] == "resolved" and not done["already_resolved"]
    assert shop.get(f"/v1/payments/{lost['id']}").json_body["status"] == "succeeded"
    assert PostingModel.get(f"payment:{lost['id']}").legs  # credited through the callback path, once
    again = invoke(client, "resolve_discrepancy", {"discrepancy_id": finding["id"], "action": "apply",
                                                   "reason": "second click"})
    assert again["already_resolved"] and again["discrepancy"]["resolution"]["reason"].startswith("notification lost")
    assert paid["status"] == "pending"  # (as created)


def test_the_same_file_processed_twice_gives_the_same_records_once(shop, client):
    _pay(shop, client, 10000, "order-1")
    clock.freeze(NEXT_MORNING)
    invoke(client, "download_statements", {"channel": "wechat", "bill_date": BILL_DATE})
    trigger(client)
    first = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": BILL_DATE})
    body = s3().get_object(Bucket=settings.get().bucket, Key=first["summary"]["key"])["Body"].read()
    put_statement("wechat", BILL_DATE, "downloadbill_ALL.txt", body)   # the same bytes again
    put_statement("wechat", BILL_DATE, "copy-by-ops.txt", body)        # and under another name
    assert trigger(client) == 2
    second = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": BILL_DATE})
    assert second["summary"]["matched"] == first["summary"]["matched"] == 1
    assert second["discrepancies"] == first["discrepancies"] == []
    from chalicelib.store.reconciliation import StatementRecordModel
    assert StatementRecordModel.count() == 1

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
from infra.local import drain_statement_queue, invoke_configured
from tests.integration.helpers import new_merchant, shopper_pays

# Thu 19 Nov 2026 13:00 in Beijing (05:00 UTC): bill date 2026-11-19.
TRADING = datetime(2026, 11, 19, 5, 0, tzinfo=timezone.utc)
BILL_DATE = "2026-11-19"
NEXT_MORNING = datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)   # 11:00 Beijing: the bill is out


def invoke(client, name, event):
    return invoke_configured(client, name, event)   # the function's configured timeout, as Lambda gives it


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


def test_truncated_bill_is_reported_with_its_reason_and_never_reconciled_as_whole(shop, client):
    _pay(shop, client, 10000, "order-1")
    _pay(shop, client, 2000, "order-2")
    clock.freeze(NEXT_MORNING)
    from chalicelib import channels
    whole = channels.get("wechat").download_bill(datetime(2026, 11, 19).date()).encode()
    without_summary = b"\n".join(whole.splitlines()[:-2]) + b"\n"
    put_statement("wechat", BILL_DATE, "cut.txt", without_summary)
    cut_mid_line = whole[: whole.index(b"\n", whole.index(b"\n") + 1) + 40]
    put_statement("wechat", BILL_DATE, "cut2.txt", cut_mid_line)
    bad_amount = whole.replace(b"`100.00", b"`1O0.00", 1)
    put_statement("wechat", BILL_DATE, "bad.txt", bad_amount)
    trigger(client)
    from chalicelib.store.reconciliation import SuspenseModel, get_run
    runs = {name: get_run(f"file#statements/wechat/{BILL_DATE}/{name}#{v}")
            for name in ("cut.txt", "cut2.txt", "bad.txt")
            for v in [_etag(f"statements/wechat/{BILL_DATE}/{name}")]}
    assert runs["cut.txt"].status == "failed" and "summary" in runs["cut.txt"].detail["reason"]
    assert runs["cut2.txt"].status == "failed"
    bad_line = next(n for n, line in enumerate(whole.splitlines(), 1) if b"`100.00" in line)
    assert runs["bad.txt"].status == "failed" and runs["bad.txt"].detail["line_no"] == bad_line
    report = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": BILL_DATE})
    assert report["status"] == "not_reconciled" and report["discrepancies"] == []
    assert SuspenseModel.count("wechat") == 0


def _etag(key):
    return s3().head_object(Bucket=settings.get().bucket, Key=key)["ETag"].strip('"')


def test_a_file_in_the_wrong_format_for_its_channel_is_refused_with_a_clear_reason(shop, client):
    from tests.support.statements import Row, alipay_file
    body = alipay_file([Row("payment", "pay_x", 100)])
    put_statement("wechat", BILL_DATE, "looks_like_alipay.txt", body)
    put_statement("payease", BILL_DATE, "looks_like_alipay.txt", body)
    trigger(client)
    from chalicelib.store.reconciliation import get_run
    for channel in ("wechat", "payease"):
        key = f"statements/{channel}/{BILL_DATE}/looks_like_alipay.txt"
        run = get_run(f"file#{key}#{_etag(key)}")
        assert run.status == "refused" and f"not a {channel} statement" in run.detail["reason"], run.detail
    assert invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": BILL_DATE})["status"] == \
        "not_reconciled"


def test_cross_midnight_payment_waits_in_suspense_then_matches_and_a_missing_one_surfaces_after_three_bills(
        shop, client):
    from tests.support.statements import Row, wechat_bill
    clock.freeze(datetime(2026, 11, 18, 15, 59, 58, tzinfo=timezone.utc))       # 23:59:58 Beijing, 18 Nov
    late = _pay(shop, client, 3000, "late")
    clock.freeze(TRADING)
    missing = _pay(shop, client, 4500, "missing")
    clock.freeze(NEXT_MORNING)
    fee = lambda a: (a * 200 + 5000) // 10000  # noqa: E731
    put_statement("wechat", "2026-11-18", "bill.txt", wechat_bill([]))
    trigger(client)
    day18 = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": "2026-11-18"})
    assert day18["summary"]["in_suspense"] == 1 and day18["discrepancies"] == []
    # The channel booked it at 00:00:01 on the 19th: it is in the 19th's bill.
    put_statement("wechat", BILL_DATE, "bill.txt", wechat_bill([
        Row("payment", late["channel_order_id"], 3000, fee=fee(3000), time="2026-11-19 00:00:01")]))
    trigger(client)
    day19 = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": BILL_DATE})
    assert day19["summary"]["matched"] == 1 and day19["summary"]["in_suspense"] == 1   # `missing` waits
    assert day19["discrepancies"] == []
    put_statement("wechat", "2026-11-20", "bill.txt", wechat_bill([]))
    trigger(client)
    assert invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": "2026-11-20"})[
        "discrepancies"] == []
    put_statement("wechat", "2026-11-21", "bill.txt", wechat_bill([]))
    trigger(client)
    day19 = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": BILL_DATE})
    [only] = day19["discrepancies"]
    assert only["kind"] == recon.KAURI_ONLY and only["our_no"] == missing["channel_order_id"]
    assert only["receivable_adjustment"] == -4500
    # Written off: the phantom receivable leaves the books in one posting, once.
    done = invoke(client, "resolve_discrepancy", {"discrepancy_id": only["id"], "action": "write_off",
                                                  "reason": "channel confirms it never took this"})
    assert done["discrepancy"]["status"] == "resolved"
    legs = PostingModel.get(f"recon_write_off:{only['id']}").legs
    assert ["C:wechat:receivable:NZD", -4500, "NZD"] in legs
    again = invoke(client, "resolve_discrepancy", {"discrepancy_id": only["id"], "action": "accept",
                                                   "reason": "again"})
    assert again["already_resolved"] and again["discrepancy"]["resolution"]["action"] == "write_off"


ALIPAY_IDS = {"secondary_merchant_id": "NZSHOP0001", "secondary_merchant_name": "Kiwi Wool Shop",
              "secondary_merchant_industry": "5699"}


def _alipay_paid(client, amount, ref):
    from chalicelib.services import merchants
    from tests.integration.helpers import MerchantApi
    m = merchants.create_merchant("Kiwi Wool Shop", "NZD", fee_bps=250, channels={"alipay": ALIPAY_IDS})
    shop = MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)
    p = shop.create_payment(amount=amount, currency="NZD", channel="alipay", flow="qr", merchant_reference=ref,
                            description="Merino scarf").json_body
    r = client.http.post("/sandbox/alipay/simulate/pay", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": p["channel_order_id"]}).encode())
    assert r.status_code == 200, r.body
    return shop, p


def _receivable(account):
    from chalicelib.store.models import EntryModel
    return sum(int(e.amount) for e in EntryModel.query(account))


def test_alipay_files_reconcile_and_a_settlement_short_by_one_fen_is_found_and_written_off(client):
    clock.freeze(TRADING)
    shop, p = _alipay_paid(client, 8800, "W-1")
    assert shop.get(f"/v1/payments/{p['id']}").json_body["status"] == "succeeded"
    clock.freeze(datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc))   # 11:00 Beijing, 22 Nov
    got = invoke(client, "download_statements", {"channel": "alipay", "from": BILL_DATE, "to": BILL_DATE})
    assert [f["status"] for f in got["results"][f"alipay/{BILL_DATE}"]] == ["done", "no_bill"]
    trigger(client)
    day = invoke(client, "reconciliation_report", {"channel": "alipay", "bill_date": BILL_DATE})
    assert day["summary"]["matched"] == 1 and day["discrepancies"] == []

    # The settlement file for 21 Nov pays out the 19th's trades; the bank got one fen less than it says.
    from chalicelib import channels
    text = channels.get("alipay").download_statement("settlement", "20261121", "20261121")
    header, row = text.strip().splitlines()
    cells = row.split("|")
    fee = 158  # 1.80% of 88.00, half up
    assert cells[4] == "1.58" and cells[7] == "86.42"
    cells[7] = "86.41"
    put_statement("alipay", "2026-11-21", "forex_liquidation_file.txt", f"{header}\n{'|'.join(cells)}\n".encode())
    trigger(client)
    settled = invoke(client, "reconciliation_report", {"channel": "alipay", "bill_date": "2026-11-21"})
    [short] = settled["discrepancies"]
    assert short["kind"] == recon.SETTLEMENT_SHORT and short["detail"]["shortfall"] == 1
    [batch] = settled["settlement"]["batches"]
    assert (batch["paid"], batch["fees"], batch["shortfall"], batch["posted"]) == (8641, 158, 1, True)
    posting = PostingModel.get("settlement:alipay:2026-11-21:NZD")
    assert sorted(posting.legs) == sorted([["B:settlement_bank:NZD", 8641, "NZD"], ["P:channel_fees:NZD", fee, "NZD"],
                                           ["C:alipay:receivable:NZD", -(8641 + fee), "NZD"]])
    assert _receivable("C:alipay:receivable:NZD") == 1                 # the missing fen is still owed
    # The same file again: no second posting, no second finding.
    put_statement("alipay", "2026-11-21", "forex_liquidation_file (1).txt".replace(" ", "_").replace("(", "")
                  .replace(")", ""), f"{header}\n{'|'.join(cells)}\n".encode())
    trigger(client)
    assert _receivable("C:alipay:receivable:NZD") == 1
    assert len(invoke(client, "reconciliation_report", {"channel": "alipay", "bill_date": "2026-11-21"})[
        "discrepancies"]) == 1
    invoke(client, "resolve_discrepancy", {"discrepancy_id": short["id"], "action": "write_off",
                                           "reason": "Alipay rounding; below the claim threshold"})
    assert _receivable("C:alipay:receivable:NZD") == 0


def _file_run(key: str) -> dict:
    """The run record of the one version of `key` that was processed."""
    from chalicelib.store.reconciliation import StatementRunModel
    [run] = [r for r in StatementRunModel.scan() if r.run_key.startswith(f"file#{key}#")]
    return {**run.detail, "status": run.status}


def test_a_settlement_file_under_another_date_than_its_lines_were_settled_is_refused_and_books_nothing(client):
    """Alipay's batch is the settlement date the file sits under: the same liquidation file also put under
    the next day (by hand, or a channel re-sending rows) must not move the receivable a second time."""
    clock.freeze(TRADING)
    _alipay_paid(client, 8800, "W-1")
    clock.freeze(datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc))   # 11:00 Beijing, 22 Nov
    from chalicelib import channels
    text = channels.get("alipay").download_statement("settlement", "20261121", "20261121").encode()
    put_statement("alipay", "2026-11-21", "forex_liquidation_file.txt", text)
    trigger(client)
    assert _receivable("C:alipay:receivable:NZD") == 0               # settled once, on the 21st
    put_statement("alipay", "2026-11-22", "forex_liquidation_file.txt", text)
    assert trigger(client) == 1
    result = _file_run("statements/alipay/2026-11-22/forex_liquidation_file.txt")
    assert result["status"] == "refused" and "2026-11-21" in result["reason"] and "line 2" in result["reason"]
    assert PostingModel.count("settlement:alipay:2026-11-22:NZD") == 0
    assert _receivable("C:alipay:receivable:NZD") == 0               # not moved twice
    # A transactions file named as a settlement (its lines never settled) is no settlement either.
    compare = channels.get("alipay").download_statement("transactions", "20261119", "20261119").encode()
    put_statement("alipay", "2026-11-19", "settlement_by_hand.txt", compare)
    assert trigger(client) == 1
    result = _file_run("statements/alipay/2026-11-19/settlement_by_hand.txt")
    assert result["status"] == "refused" and "settlement time" in result["reason"]
    assert _receivable("C:alipay:receivable:NZD") == 0


def test_a_settlement_short_in_two_currencies_on_one_date_is_booked_and_found_once_per_currency(client):
    """Alipay names a batch by its settlement date; a file paying NZD and AUD holds two batches under one
    name. Each is booked in its own currency, and each shortfall is its own finding."""
    clock.freeze(TRADING)
    _alipay_paid(client, 8800, "W-1")
    clock.freeze(datetime(2026, 11, 22, 3, 0, tzinfo=timezone.utc))
    from chalicelib import channels
    text = channels.get("alipay").download_statement("settlement", "20261121", "20261121")
    header, row = text.strip().splitlines()
    nzd = row.split("|")
    nzd[7] = "86.41"                                                   # one cent short
    aud = list(nzd)
    aud[0], aud[1], aud[9], aud[15] = "pay_aud_0000000000001", "2026111922001000000000000001", "AUD", ""
    put_statement("alipay", "2026-11-21", "forex_liquidation_file.txt",
                  f"{header}\n{'|'.join(nzd)}\n{'|'.join(aud)}\n".encode())
    trigger(client)
    assert _file_run("statements/alipay/2026-11-21/forex_liquidation_file.txt")["status"] == "done"
    for currency in ("NZD", "AUD"):
        assert PostingModel.count(f"settlement:alipay:2026-11-21:{currency}") == 1, currency
    report = invoke(client, "reconciliation_report", {"channel": "alipay", "bill_date": "2026-11-21"})
    shorts = sorted((d["currency"], d["detail"]["shortfall"]) for d in report["discrepancies"]
                    if d["kind"] == recon.SETTLEMENT_SHORT)
    assert shorts == [("AUD", 1), ("NZD", 1)]
    assert len({d["id"] for d in report["discrepancies"]}) == len(report["discrepancies"])


def test_release_waits_for_a_matched_bill_and_the_balance_shows_what_is_held(shop, client, monkeypatch):
    paid = _pay(shop, client, 10000, "order-1")
    other = _pay(shop, client, 5000, "order-2")
    monkeypatch.setenv("KAURI_RELEASE_REQUIRES_RECON", "1")
    settings.reset()
    from chalicelib.services import balances
    balances.register_recon_check(None)
    try:
        row = next(b for b in shop.get("/v1/balance").json_body["balances"] if b["currency"] == "NZD")
        assert row["pending"] == 9800 + 4900 and row["held_for_reconciliation"] == 9800 + 4900
        from tests.support.statements import Row, wechat_bill
        put_statement("wechat", BILL_DATE, "bill.txt", wechat_bill([
            Row("payment", paid["channel_order_id"], 10000, fee=200),
            Row("payment", other["channel_order_id"], 5001, fee=100)]))    # the channel says 50.01
        trigger(client)
        row = next(b for b in shop.get("/v1/balance").json_body["balances"] if b["currency"] == "NZD")
        assert row["held_for_reconciliation"] == 4900
        clock.freeze(TRADING + timedelta(days=7))
        result = invoke(client, "release_funds", {})
        assert result["released"] == 1 and result["held_for_recon"] == 1
        assert PaymentModel.get(paid["id"]).released and not PaymentModel.get(other["id"]).released
    finally:
        balances.register_recon_check(None)
        monkeypatch.delenv("KAURI_RELEASE_REQUIRES_RECON")
        settings.reset()


def test_a_bill_not_published_yet_is_fetched_by_a_later_run_and_a_day_without_trade_is_no_bill(client):
    clock.freeze(TRADING)
    _alipay_paid(client, 8800, "W-1")
    # Same Beijing day: Alipay refuses a file for a day not over ("Finish date not ahead of today").
    early = invoke(client, "download_statements", {"channel": "alipay", "bill_date": BILL_DATE})
    assert early["results"][f"alipay/{BILL_DATE}"][0]["status"] == "not_ready"
    clock.freeze(NEXT_MORNING)
    later = invoke(client, "download_statements", {"channel": "alipay", "bill_date": BILL_DATE})
    assert later["results"][f"alipay/{BILL_DATE}"][0]["status"] == "done"
    again = invoke(client, "download_statements", {"channel": "alipay", "bill_date": BILL_DATE})
    assert again["results"][f"alipay/{BILL_DATE}"][0]["status"] == "already_done"
    quiet = invoke(client, "download_statements", {"channel": "wechat", "bill_date": "2026-11-17"})
    assert quiet["results"]["wechat/2026-11-17"][0]["status"] == "no_bill"
    listed = s3().list_objects_v2(Bucket=settings.get().bucket, Prefix="statements/")["Contents"]
    assert [o["Key"] for o in listed] == [f"statements/alipay/{BILL_DATE}/forex_compare_file.txt"]
    bad = invoke(client, "download_statements", {"channel": "wechat", "from": "2026-11-20", "to": "2026-11-01"})
    assert "error" in bad


def test_money_the_channel_took_that_kauri_never_booked_is_refunded_once_and_its_refund_is_expected(shop, client):
    lost = _pay(shop, client, 3300, "order-closed", notify=False)
    clock.freeze(NEXT_MORNING)
    invoke(client, "download_statements", {"channel": "wechat", "bill_date": BILL_DATE})
    trigger(client)
    [finding] = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": BILL_DATE})["discrepancies"]
    bad = invoke(client, "resolve_discrepancy", {"discrepancy_id": finding["id"], "action": "explode", "reason": "x"})
    assert "action must be one of" in bad["error"]
    assert "reason is required" in invoke(client, "resolve_discrepancy", {"discrepancy_id": finding["id"],
                                                                           "action": "accept"})["error"]
    assert invoke(client, "resolve_discrepancy", {"discrepancy_id": "dsc_nope", "action": "accept",
                                                  "reason": "x"})["error"] == "no such discrepancy"
    done = invoke(client, "resolve_discrepancy", {"discrepancy_id": finding["id"], "action": "refund",
                                                  "reason": "shopper asked for the money back"})
    effect = done["discrepancy"]["resolution"]["effect"]
    assert done["discrepancy"]["status"] == "resolved" and effect["channel_refund_id"].startswith("rc")
    assert shop.get(f"/v1/payments/{lost['id']}").json_body["status"] == "pending"   # Kauri never booked it
    # The next bill lists that refund: matched, not a new finding.
    clock.freeze(NEXT_MORNING + timedelta(days=1))
    invoke(client, "download_statements", {"channel": "wechat", "bill_date": "2026-11-20"})
    trigger(client)
    day20 = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": "2026-11-20"})
    assert day20["summary"]["matched"] == 1
    assert day20["discrepancies"] == []          # the settlement's difference waits for its re-check
    clock.advance(timedelta(minutes=30))
    invoke(client, "download_statements", {"channel": "wechat", "bill_date": "2026-11-20"})
    day20 = invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": "2026-11-20"})
    # The 20th's only finding is its settlement: WeChat paid out the 19th's 33.00 that Kauri never booked.
    [over] = day20["discrepancies"]
    assert (over["kind"], over["record_type"], over["detail"]["shortfall"]) == (recon.SETTLEMENT_SHORT, "settlement",
                                                                               -3300)


def test_a_run_that_broke_on_our_side_is_retried_and_a_dead_one_is_taken_over(shop, client, monkeypatch):
    from chalicelib.services import reconciliation
    from chalicelib.store import reconciliation as rstore
    from tests.support.statements import Row, wechat_bill

    p = _pay(shop, client, 1000, "order-1")
    body = wechat_bill([Row("payment", p["channel_order_id"], 1000, fee=20)])
    real = rstore.save_finding
    monkeypatch.setattr(rstore.RecordWriter, "close", lambda self: (_ for _ in ()).throw(OSError("dynamodb down")))
    with pytest.raises(OSError):
        reconciliation.run_file("wechat", BILL_DATE, "transactions", "statements/wechat/x/bill.txt", "v1",
                                iter(body.splitlines(keepends=True)))
    assert rstore.get_run("file#statements/wechat/x/bill.txt#v1").status == "error"
    monkeypatch.undo()
    assert real is rstore.save_finding
    again = reconciliation.run_file("wechat", BILL_DATE, "transactions", "statements/wechat/x/bill.txt", "v1",
                                    iter(body.splitlines(keepends=True)))
    assert again["status"] == "done" and again["matched"] == 1
    # A run left "running" by a Lambda that died is taken over once its lease is over, not before.
    rstore.put_run("file#statements/wechat/x/other.txt#v1", "running", {})
    assert not rstore.claim_run("file#statements/wechat/x/other.txt#v1", {})
    clock.advance(timedelta(minutes=17))
    assert rstore.claim_run("file#statements/wechat/x/other.txt#v1", {})


def test_ops_functions_answer_bad_events_with_errors_not_crashes(client):
    assert invoke(client, "reconciliation_report", ["wechat"])["error"]
    assert "channel must be one of" in invoke(client, "reconciliation_report", {"channel": "bank"})["error"]
    assert "YYYY-MM-DD" in invoke(client, "reconciliation_report", {"channel": "wechat", "bill_date": "1/2/26"})["error"]
    assert invoke(client, "resolve_discrepancy", "x")["error"]
    assert "channel must be one of" in invoke(client, "download_statements", {"channel": "payease"})["error"]
    assert "YYYY-MM-DD" in invoke(client, "download_statements", {"channel": "wechat", "bill_date": "yesterday"})["error"]

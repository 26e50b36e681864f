"""Tuition: an NZD invoice paid in CNY through PayEase at a locked quote (rate + markup)."""
from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import boto3
import pytest

from chalicelib import clock, http, settings
from chalicelib.domain.fx import Rate
from chalicelib.services import fx, merchants
from chalicelib.store.models import BalanceModel, EntryModel, OpsRecordModel, PaymentModel, PostingModel
from tests.integration.helpers import MerchantApi
from tests.support.transport import FakeReceiver

RATE = Decimal("4.30")


@pytest.fixture
def rate(aws):
    now = clock.now()
    fx.record(Rate("wechat", "NZD", RATE, now, now))


@pytest.fixture
def school(client):
    m = merchants.create_merchant("Auckland Language School", "NZD", fee_bps=100,
                                  channels={"payease": {}}, fx_markup_bps=150)
    return MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)


def invoice(school, amount=250000, **extra):
    body = {"amount": amount, "currency": "NZD", "channel": "payease", "flow": "bank",
            "merchant_reference": "INV-2026-001", "description": "Term 1 tuition",
            "return_url": "https://school.example.nz/paid"}
    body.update(extra)
    return school.post("/v1/payments", body)


def submit_form(client, action: dict):
    """The payer's browser posts our signed form to the PayEase cashier (sandbox)."""
    from urllib.parse import urlencode

    path = urlsplit(action["url"]).path
    r = client.http.post(path, headers={"Content-Type": "application/x-www-form-urlencoded"},
                         body=urlencode(action["fields"]).encode())
    assert r.status_code == 200, r.body
    return r


def bank_pays(client, v_oid: str, outcome="success"):
    r = client.http.post("/sandbox/payease/simulate/pay", headers={"Content-Type": "application/json"},
                         body=json.dumps({"out_trade_no": v_oid, "outcome": outcome}).encode())
    assert r.status_code == 200, r.body
    return r.json_body


def test_invoice_is_quoted_in_cny_with_markup_rounded_up_to_the_fen(school, rate):
    r = invoice(school)
    assert r.status_code == 201, r.body
    p = r.json_body
    q = p["quote"]
    # 2500.00 NZD x 4.30 x 1.015 = 10911.25 CNY exactly; ROUND_CEILING keeps it
    assert q["cny_amount"] == 1091125 and q["cny_currency"] == "CNY" and q["markup_bps"] == 150
    assert Decimal(q["rate"]) == Decimal("4.3645")
    assert p["channel_amount"] == {"amount": 1091125, "currency": "CNY"}
    assert p["expires_at"] >= q["expires_at"]  # the payment outlives its first quote (re-quotes)
    assert p["next_action"]["type"] == "redirect" and p["next_action"]["url"].endswith(f"/pay/{p['id']}")
    fields = p["next_action"]["channel_action"]["fields"]
    assert fields["v_amount"] == "10911.25" and fields["v_moneytype"] == "0"  # 0 = CNY at PayEase


def test_fractional_fen_rounds_up(school, aws):
    now = clock.now()
    fx.record(Rate("wechat", "NZD", Decimal("4.123457"), now, now))
    p = invoice(school, amount=1001).json_body  # 10.01 x 4.123457 x 1.015 = 41.8956... -> 41.90
    assert p["quote"]["cny_amount"] == 4190


def test_missing_or_stale_rate_refuses_the_quote(school, aws):
    r = invoice(school)
    assert r.status_code == 503 and r.json_body["error"]["code"] == "rate_unavailable"
    old = clock.now() - timedelta(seconds=settings.get().fx_max_age_seconds + 60)
    fx.record(Rate("wechat", "NZD", RATE, old, old))
    r = invoice(school)
    assert r.status_code == 503 and r.json_body["error"]["code"] == "rate_unavailable"
    assert list(PaymentModel.scan()) == []


def test_paid_invoice_books_nzd_at_the_locked_rate_and_fx_gain(school, client, rate):
    p = invoice(school).json_body
    submit_form(client, p["next_action"]["channel_action"])
    bank_pays(client, p["next_action"]["channel_action"]["fields"]["v_oid"])
    got = school.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "succeeded"
    legs = {(a, c): n for a, n, c in PostingModel.get(f"payment:{p['id']}").legs}
    assert legs[("C:payease:receivable:CNY", "CNY")] == 1091125
    assert legs[("P:fx_gain_loss:CNY", "CNY")] == -1091125
    assert legs[("P:fx_gain_loss:NZD", "NZD")] == 250000
    assert legs[(f"M:{school.merchant.id}:NZD:pending", "NZD")] == -247500
    assert BalanceModel.get(f"M:{school.merchant.id}:NZD:pending").balance == 247500


def test_duplicate_payease_notify_credits_once(school, client, rate):
    p = invoice(school).json_body
    action = p["next_action"]["channel_action"]
    submit_form(client, action)
    bank_pays(client, action["fields"]["v_oid"])
    from chalicelib.channels.payease import sandbox

    body = sandbox.notification_body([_sandbox_order(action["fields"]["v_oid"])], settings.get().payease.md5_key)
    for _ in range(3):
        r = client.http.post("/callbacks/payease", headers={"Content-Type": "application/x-www-form-urlencoded"},
                             body=body)
        assert r.body.strip() == b"sent"
    assert sum(1 for x in PostingModel.scan() if x.ref == p["id"]) == 1


def _sandbox_order(v_oid):
    from chalicelib.store import sandbox as sandbox_store

    return sandbox_store.get(f"payease#order#{v_oid}")


def signed_notify(orders):
    """A notification signed with our PayEase key by the simulator's own builder (real MAC code)."""
    from chalicelib.channels.payease import sandbox

    full = [{"pmode": "1", "pstring": "支付成功", "v_moneytype": "0", "status": "paid", **o} for o in orders]
    return sandbox.notification_body(full, settings.get().payease.md5_key)


def post_notify(client, body):
    return client.http.post("/callbacks/payease", headers={"Content-Type": "application/x-www-form-urlencoded"},
                            body=body)


def test_tampered_and_forged_payease_notifies_change_nothing(school, client, rate):
    p = invoice(school).json_body
    v_oid = p["next_action"]["channel_action"]["fields"]["v_oid"]
    post_notify(client, signed_notify([{"v_oid": v_oid, "v_amount": "1.00"}]))  # validly signed, wrong amount
    assert PaymentModel.get(p["id"]).status == "pending"
    assert [o.kind for o in OpsRecordModel.scan()] == ["callback_mismatch"]
    good = signed_notify([{"v_oid": v_oid, "v_amount": "10911.25"}]).decode()
    forged = good.replace("v_amount=10911.25", "v_amount=10911.26")
    assert forged != good
    post_notify(client, forged.encode())
    assert PaymentModel.get(p["id"]).status == "pending"
    assert list(PostingModel.scan()) == []


def test_expired_quote_page_asks_for_a_fresh_quote(school, client, rate):
    p = invoice(school).json_body
    page = client.http.get(f"/pay/{p['id']}")
    assert page.status_code == 200 and b"10911.25" in page.body and b"Pay with online banking" in page.body
    clock.advance(timedelta(minutes=16))
    now = clock.now()
    fx.record(Rate("wechat", "NZD", Decimal("4.40"), now, now))
    page = client.http.get(f"/pay/{p['id']}")
    assert b"quote has expired" in page.body and b"Pay with online banking" not in page.body
    r = client.http.post(f"/pay/{p['id']}/requote", headers={"Content-Type": "application/x-www-form-urlencoded"},
                         body=b"")
    assert r.status_code == 303 and r.headers["Location"] == f"/pay/{p['id']}"
    fresh = school.get(f"/v1/payments/{p['id']}").json_body
    assert fresh["quote"]["id"] != p["quote"]["id"]
    assert fresh["quote"]["cny_amount"] == 1116500  # 2500.00 x 4.40 x 1.015
    assert fresh["channel_order_id"] == f"{p['id']}_2"
    assert b"11165.00" in client.http.get(f"/pay/{p['id']}").body


def pending_nzd(school) -> int:
    found = list(BalanceModel.query(f"M:{school.merchant.id}:NZD:pending"))
    return found[0].balance if found else 0


def suspense(ccy="CNY") -> int:
    return sum(e.amount for e in EntryModel.query(f"S:suspense:{ccy}"))


def test_paying_the_order_of_an_expired_quote_is_not_applied_and_the_money_goes_back(school, client, rate):
    p = invoice(school).json_body
    old_action = p["next_action"]["channel_action"]
    submit_form(client, old_action)  # the payer kept the old form open
    clock.advance(timedelta(minutes=16))
    now = clock.now()
    fx.record(Rate("wechat", "NZD", Decimal("4.40"), now, now))
    client.http.post(f"/pay/{p['id']}/requote", headers={"Content-Type": "application/x-www-form-urlencoded"},
                     body=b"")
    bank_pays(client, old_action["fields"]["v_oid"])
    assert PaymentModel.get(p["id"]).status == "pending"
    assert pending_nzd(school) == 0   # nobody credited
    [record] = list(OpsRecordModel.scan())
    assert (record.kind, record.status, record.detail["why"]) == ("unapplied_receipt", "returned", "superseded_quote")
    assert _sandbox_order(old_action["fields"]["v_oid"])["refunds"][0]["refamount"] == "10911.25"  # all of it
    assert suspense() == 0 and sorted(pp.kind for pp in PostingModel.scan()) == ["unapplied_receipt", "unapplied_return"]


def test_money_for_a_lapsed_quote_is_returned_and_the_payer_gets_a_fresh_quote(school, client, rate):
    p = invoice(school).json_body
    action = p["next_action"]["channel_action"]
    submit_form(client, action)
    clock.advance(timedelta(minutes=15 + 11))        # past the quote and its 10-minute grace
    bank_pays(client, action["fields"]["v_oid"])     # PayEase still takes it: it has no expiry
    got = school.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "pending"                # not credited at the lapsed rate
    assert pending_nzd(school) == 0
    [record] = list(OpsRecordModel.scan())
    assert (record.kind, record.status, record.detail["why"]) == ("unapplied_receipt", "returned", "quote_expired")
    assert _sandbox_order(action["fields"]["v_oid"])["refunds"][0]["refamount"] == "10911.25"
    assert suspense() == 0

    bank_pays(client, action["fields"]["v_oid"])     # PayEase resends: nothing new happens
    assert len(_sandbox_order(action["fields"]["v_oid"])["refunds"]) == 1

    page = client.http.get(f"/pay/{p['id']}")
    assert b"quote has expired" in page.body
    now = clock.now()
    fx.record(Rate("wechat", "NZD", Decimal("4.40"), now, now))
    r = client.http.post(f"/pay/{p['id']}/requote", headers={"Content-Type": "application/x-www-form-urlencoded"},
                         body=b"")
    assert r.status_code == 303, r.body
    fresh = school.get(f"/v1/payments/{p['id']}").json_body
    assert fresh["channel_order_id"] == f"{p['id']}_2" and fresh["quote"]["cny_amount"] == 1116500
    submit_form(client, fresh["next_action"]["channel_action"])
    bank_pays(client, fresh["next_action"]["channel_action"]["fields"]["v_oid"])
    assert school.get(f"/v1/payments/{p['id']}").json_body["status"] == "succeeded"
    assert pending_nzd(school) == 247500


def test_money_inside_the_quote_grace_is_applied_at_the_locked_rate(school, client, rate):
    p = invoice(school).json_body
    action = p["next_action"]["channel_action"]
    submit_form(client, action)
    clock.advance(timedelta(minutes=15 + 9))
    bank_pays(client, action["fields"]["v_oid"])
    assert school.get(f"/v1/payments/{p['id']}").json_body["status"] == "succeeded"
    assert list(OpsRecordModel.scan()) == []


def test_lapsed_quote_money_found_by_the_chase_after_expiry_is_returned_once_and_the_payment_ends(school, client,
                                                                                                  rate):
    from chalicelib.services import chase

    p = invoice(school).json_body
    action = p["next_action"]["channel_action"]
    submit_form(client, action)
    clock.advance(timedelta(minutes=31))              # the payment itself has expired
    dead = FakeReceiver()
    dead.down = True                                  # the notify is lost: the chase finds the money
    http.mount("http://nowhere.test", dead)
    from chalicelib.channels.payease import signing as payease_signing

    cfg = settings.get().payease
    console = {"v_mid": cfg.mid, "notify_url": "http://nowhere.test/x"}
    console["v_mac"] = payease_signing.mac(cfg.md5_key, [console["v_mid"], console["notify_url"]])
    r = client.http.post("/sandbox/payease/merchant/config", headers={"Content-Type": "application/json"},
                         body=json.dumps(console).encode())
    assert r.status_code == 200, r.body
    bank_pays(client, action["fields"]["v_oid"])
    assert school.get(f"/v1/payments/{p['id']}").json_body["status"] == "pending"
    chase.chase_payments()
    assert school.get(f"/v1/payments/{p['id']}").json_body["status"] == "closed"
    chase.chase_payments()                            # nothing left to chase, nothing returned twice
    assert [(r.kind, r.status) for r in OpsRecordModel.scan()] == [("unapplied_receipt", "returned")]
    assert len(_sandbox_order(action["fields"]["v_oid"])["refunds"]) == 1
    assert pending_nzd(school) == 0


def test_lapsed_quote_money_for_a_payment_our_clock_closed_is_returned_not_credited(school, client, rate):
    from chalicelib.services import payments

    p = invoice(school).json_body
    action = p["next_action"]["channel_action"]
    submit_form(client, action)
    clock.advance(timedelta(minutes=45))
    payments.mark_closed(payments.get_for(school.merchant, True, p["id"]), reason="expired")
    bank_pays(client, action["fields"]["v_oid"])
    assert school.get(f"/v1/payments/{p['id']}").json_body["status"] == "closed"
    assert [(r.kind, r.status) for r in OpsRecordModel.scan()] == [("unapplied_receipt", "returned")]
    assert pending_nzd(school) == 0


def _lapsed_and_paid(school, client, crash_at, monkeypatch) -> tuple[dict, str]:
    """Money for a lapsed quote arrives and the run that books it dies at `crash_at` (patched to raise)."""
    from chalicelib.services import unapplied

    p = invoice(school).json_body
    action = p["next_action"]["channel_action"]
    submit_form(client, action)
    clock.advance(timedelta(minutes=15 + 11))
    with monkeypatch.context() as m:
        owner, name = crash_at
        m.setattr(owner, name, lambda *a, **k: (_ for _ in ()).throw(RuntimeError("Lambda died (test)")))
        bank_pays(client, action["fields"]["v_oid"])
    [record] = list(OpsRecordModel.scan())
    assert (record.kind, record.status) == (unapplied.KIND, unapplied.RETURNING) and suspense() != 0
    return p, action["fields"]["v_oid"]


def test_a_receipt_a_crash_left_returning_before_the_refund_goes_to_a_person_with_an_alert_after_a_day(
        school, client, rate, monkeypatch):
    from chalicelib.services import chase, unapplied

    p, v_oid = _lapsed_and_paid(school, client, (unapplied, "_return"), monkeypatch)
    assert _sandbox_order(v_oid).get("refunds", []) == []      # died before asking PayEase for the return
    bank_pays(client, v_oid)                                    # PayEase resends: the same money, booked already
    clock.advance(timedelta(hours=1))
    chase.chase_payments()                                      # not listed at PayEase: it may lag; wait
    assert [(r.kind, r.status) for r in OpsRecordModel.scan()] == [(unapplied.KIND, unapplied.RETURNING)]
    clock.advance(timedelta(hours=24))
    out = chase.chase_payments()
    assert out["returns_stuck"] == 1
    records = {r.kind: r for r in OpsRecordModel.scan()}
    assert records[unapplied.KIND].status == unapplied.NEEDS_A_PERSON   # a person checks PayEase, then returns it
    assert records["unapplied_return_stuck"].ref == p["id"] and suspense() != 0   # held, not lost, not credited
    assert chase.chase_payments()["returns_stuck"] == 0 and len(list(OpsRecordModel.scan())) == 2   # alerted once
    assert _sandbox_order(v_oid).get("refunds", []) == [] and pending_nzd(school) == 0   # nothing sent blindly


def test_a_return_payease_made_that_a_crash_left_unbooked_is_booked_by_the_chase(school, client, rate, monkeypatch):
    from chalicelib.services import chase, unapplied
    from chalicelib.store.unit import Unit

    p, v_oid = _lapsed_and_paid(school, client, (Unit, "move_ops_record"), monkeypatch)
    assert len(_sandbox_order(v_oid)["refunds"]) == 1          # PayEase returned it; we died before booking that
    clock.advance(timedelta(minutes=10))
    out = chase.chase_payments()
    assert out["returns_completed"] == 1
    [record] = list(OpsRecordModel.scan())
    assert record.status == unapplied.RETURNED and suspense() == 0
    assert sorted(pp.kind for pp in PostingModel.scan()) == ["unapplied_receipt", "unapplied_return"]
    assert len(_sandbox_order(v_oid)["refunds"]) == 1          # asked, never sent twice
    assert chase.chase_payments()["returns_checked"] == 0


def test_unknown_payease_order_is_refused(client, rate):
    r = post_notify(client, signed_notify([{"v_oid": "20261125-6001-pay_nosuchpayment0000000", "v_amount": "1.00"}]))
    assert r.status_code == 200
    assert list(PaymentModel.scan()) == [] and list(PostingModel.scan()) == []


def test_channel_limits_are_enforced_with_a_clear_error(school, rate):
    r = invoice(school, amount=10_000_001)
    assert r.status_code == 400 and r.json_body["error"]["code"] == "amount_above_channel_maximum"
    r = invoice(school, amount=99)
    assert r.status_code == 400 and r.json_body["error"]["code"] == "amount_below_channel_minimum"


def test_payer_uploads_documents_through_a_presigned_post(school, client, rate):
    p = invoice(school).json_body
    bad = client.http.post(f"/pay/{p['id']}/documents", headers={"Content-Type": "application/json"},
                           body=json.dumps({"filename": "x.exe", "content_type": "application/x-msdownload",
                                            "size": 10}).encode())
    assert bad.status_code == 400 and bad.json_body["error"]["code"] == "content_type_not_allowed"
    big = client.http.post(f"/pay/{p['id']}/documents", headers={"Content-Type": "application/json"},
                           body=json.dumps({"filename": "offer.pdf", "content_type": "application/pdf",
                                            "size": 10 * 1024 * 1024 + 1}).encode())
    assert big.status_code == 400 and big.json_body["error"]["code"] == "file_too_large"
    r = client.http.post(f"/pay/{p['id']}/documents", headers={"Content-Type": "application/json"},
                         body=json.dumps({"filename": "offer letter.pdf", "content_type": "application/pdf",
                                          "size": 1234}).encode())
    assert r.status_code == 201, r.body
    up = r.json_body["upload"]
    assert up["fields"]["Content-Type"] == "application/pdf" and "policy" in {k.lower() for k in up["fields"]}
    listed = school.get(f"/v1/payments/{p['id']}/documents").json_body["data"]
    assert listed[0]["filename"] == "offer letter.pdf" and listed[0]["uploaded"] is False
    s3 = boto3.client("s3", region_name=settings.get().region)
    s3.put_object(Bucket=settings.get().bucket, Key=up["fields"]["key"], Body=b"%PDF-1.4 test",
                  ContentType="application/pdf")
    listed = school.get(f"/v1/payments/{p['id']}/documents").json_body["data"]
    assert listed[0]["uploaded"] is True
    assert school.get(f"/v1/payments/{p['id']}").json_body["documents"][0]["filename"] == "offer letter.pdf"


def test_partial_refund_returns_cny_pro_rata_and_balances_per_currency(school, client, rate):
    p = invoice(school).json_body
    action = p["next_action"]["channel_action"]
    submit_form(client, action)
    bank_pays(client, action["fields"]["v_oid"])
    r = school.post(f"/v1/payments/{p['id']}/refunds", {"amount": 100000, "reason": "withdrew"})
    assert r.status_code == 201, r.body
    legs = PostingModel.get(f"refund:{r.json_body['id']}").legs
    per_ccy = {}
    for _, n, c in legs:
        per_ccy[c] = per_ccy.get(c, 0) + n
    assert per_ccy == {"NZD": 0, "CNY": 0}
    assert {(a, n) for a, n, c in legs if c == "CNY"} == {("P:fx_gain_loss:CNY", 436450),
                                                          ("C:payease:receivable:CNY", -436450)}


def test_batched_payease_notify_applies_every_order(school, client, rate):
    a = invoice(school).json_body
    b = invoice(school, amount=120000, merchant_reference="INV-2026-002").json_body
    orders = []
    for p in (a, b):
        f = p["next_action"]["channel_action"]["fields"]
        submit_form(client, p["next_action"]["channel_action"])
        orders.append({"v_oid": f["v_oid"], "v_amount": f["v_amount"]})
    r = post_notify(client, signed_notify(orders))
    assert r.body.strip() == b"sent"
    assert {PaymentModel.get(a["id"]).status, PaymentModel.get(b["id"]).status} == {"succeeded"}
    assert BalanceModel.get(f"M:{school.merchant.id}:NZD:pending").balance == 247500 + 118800


# ---- the tuition page (HTML) ---------------------------------------------------------------------

def test_tuition_page_uploads_a_document_without_javascript_and_lists_it(school, client, rate):
    import re
    from urllib.parse import urlencode

    p = invoice(school).json_body
    form = {"filename": "Offer of place", "content_type": "application/pdf", "lang": "en"}
    step = client.http.post(f"/pay/{p['id']}/documents/new",
                            headers={"Content-Type": "application/x-www-form-urlencoded"},
                            body=urlencode(form).encode())
    assert step.status_code == 200, step.body
    page = step.body.decode()
    assert 'enctype="multipart/form-data"' in page and 'type="file"' in page
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    back = f"http://kauri.test/pay/{p['id']}?lang=en"
    assert fields["success_action_redirect"] == back and fields["Content-Type"] == "application/pdf"
    assert fields["key"].startswith(f"documents/{p['id']}/")
    # The browser posts the file to S3, which sends it back to the page: listed, and received.
    s3 = boto3.client("s3", region_name=settings.get().region)
    s3.put_object(Bucket=settings.get().bucket, Key=fields["key"], Body=b"%PDF-1.4 x", ContentType="application/pdf")
    listed = client.http.get(f"/pay/{p['id']}?lang=en").body.decode()
    assert "Offer of place" in listed and "uploaded" in listed
    bad = client.http.post(f"/pay/{p['id']}/documents/new", headers={"Content-Type": "application/x-www-form-urlencoded"},
                           body=urlencode({"filename": "../../etc/passwd", "content_type": "application/pdf"}).encode())
    assert bad.status_code == 400 and 'id="error"' in bad.body.decode()
    exe = client.http.post(f"/pay/{p['id']}/documents/new", headers={"Content-Type": "application/x-www-form-urlencoded"},
                           body=urlencode({"filename": "x", "content_type": "application/x-msdownload"}).encode())
    assert exe.status_code == 400
    assert len(school.get(f"/v1/payments/{p['id']}/documents").json_body["data"]) == 1


def test_tuition_page_offers_banks_straight_to_payease_and_a_live_countdown(school, client, rate):
    p = invoice(school).json_body
    page = client.http.get(f"/pay/{p['id']}").body.decode()
    assert 'formaction="http://kauri.test/sandbox/payease/customer/gb/pay_bank.jsp"' in page
    assert 'name="v_pmode" value="1"' in page and 'id="countdown" data-seconds="' in page
    assert "¥ 10911.25 CNY" in page
    r = client.http.post(f"/pay/{p['id']}/requote", headers={"Content-Type": "application/x-www-form-urlencoded"},
                         body=b"")
    assert r.status_code == 303  # a quote still valid: nothing to do, back to the page

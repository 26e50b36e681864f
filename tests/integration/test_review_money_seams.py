"""Hostile review of the merged money work (issues 7, 12, 13): the seams between close reversals, late
success, refunds and the release, each pinned by the rule it keeps."""
from __future__ import annotations

import pytest

from chalicelib import http
from chalicelib.services import callbacks, payments
from chalicelib.services import payments as payment_service
from chalicelib.store.models import BalanceModel, OpsRecordModel, PaymentModel, PostingModel, RefundModel
from tests.integration.helpers import new_merchant
from tests.integration.test_chase_under_faults import (  # noqa: F401  (fixtures)
    BASE, ShopperPaysBeforeCancel, _slot_aligned_clock, in_store_payment, shop,
)
from tests.support.transport import ChaliceAdapter


@pytest.fixture
def merchant(client):
    return new_merchant(client)


def _totals() -> dict:
    totals: dict = {}
    for posting in PostingModel.scan():
        for account, amount, _ in posting.legs:
            totals[account] = totals.get(account, 0) + amount
    return totals


def test_a_close_reversal_is_booked_with_the_payment_even_if_the_run_dies_between_them(shop, client, monkeypatch):
    """The channel's cancel refunded a trade paid meanwhile: the payment's success and its reversal are one
    change. A run that dies after the success must not leave the merchant credited with money Alipay gave
    back to the shopper (nothing revisits a succeeded payment)."""
    p = in_store_payment(shop)
    http.mount(BASE + "/sandbox/alipay", ShopperPaysBeforeCancel(client, p["channel_order_id"]))
    real = payment_service._book_channel_refund

    def dies(*args, **kwargs):
        raise RuntimeError("lambda timed out")
    monkeypatch.setattr(payment_service, "_book_channel_refund", dies)
    assert shop.post(f"/v1/payments/{p['id']}/close").status_code == 500
    record = OpsRecordModel.get(f"close_reversal:{p['id']}")   # a person sees it meanwhile
    assert record.status == "booking" and record.detail["amount"] == 8800
    monkeypatch.setattr(payment_service, "_book_channel_refund", real)
    http.mount(BASE + "/sandbox/alipay", ChaliceAdapter(client))
    again = shop.post(f"/v1/payments/{p['id']}/close")     # the merchant tries again
    assert again.status_code == 409 and again.json_body["error"]["code"] == "payment_refunded"
    assert OpsRecordModel.get(f"close_reversal:{p['id']}").status == "booked"
    got = shop.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "succeeded" and got["amount_refunded"] == 8800
    assert int(BalanceModel.get(f"M:{shop.merchant.id}:NZD:pending").balance or 0) == 0
    totals = _totals()
    assert totals["C:alipay:receivable:NZD"] == 0 and totals.get("P:fee_revenue:NZD", 0) == 0


# ---- money paid after the merchant closed the payment: applied, then refunded in full -------------------
def _late_paid_after_merchant_close(client, merchant):
    from tests.integration.test_callbacks_exactly_once import paid_behind_our_back

    p = paid_behind_our_back(client, merchant)
    payments.mark_closed(payments.get_for(merchant.merchant, True, p["id"]), reason="merchant")
    return p


def test_money_paid_after_the_merchant_closed_is_refunded_even_if_the_first_run_dies_after_crediting_it(
        merchant, client, monkeypatch):
    from tests.integration.test_callbacks_exactly_once import post_callback, sandbox_notification

    p = _late_paid_after_merchant_close(client, merchant)
    real = callbacks._refund_closed_payment

    def dies(payment):
        raise RuntimeError("lambda timed out")
    monkeypatch.setattr(callbacks, "_refund_closed_payment", dies)
    assert b"FAIL" in post_callback(client, sandbox_notification(p)).body  # credited, then the run died
    assert PaymentModel.get(p["id"]).status == "succeeded"
    monkeypatch.setattr(callbacks, "_refund_closed_payment", real)
    assert b"SUCCESS" in post_callback(client, sandbox_notification(p)).body   # WeChat resends
    refunds = merchant.get(f"/v1/payments/{p['id']}/refunds").json_body["data"]
    assert [r["amount"] for r in refunds] == [10000] and refunds[0]["status"] != "failed"
    assert int(BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance or 0) == 0
    assert b"SUCCESS" in post_callback(client, sandbox_notification(p)).body   # and again: no second refund
    assert len(merchant.get(f"/v1/payments/{p['id']}/refunds").json_body["data"]) == 1


def test_a_refused_refund_of_money_paid_after_the_merchant_closed_raises_an_ops_record(merchant, client):
    from tests.integration.test_callbacks_exactly_once import post_callback, sandbox_notification
    from tests.integration.test_payouts import refuse_refunds

    p = _late_paid_after_merchant_close(client, merchant)
    refuse_refunds(client, p)
    assert b"SUCCESS" in post_callback(client, sandbox_notification(p)).body
    refunds = merchant.get(f"/v1/payments/{p['id']}/refunds").json_body["data"]
    assert [r["status"] for r in refunds] == ["failed"]
    # The merchant holds money for a payment it closed, and the payer has not had it back: a person acts.
    records = [o for o in OpsRecordModel.scan() if o.ref == p["id"]]
    assert [o.kind for o in records] == ["refund_after_close_failed"]
    assert b"SUCCESS" in post_callback(client, sandbox_notification(p)).body   # a resend asks nothing again
    assert len(merchant.get(f"/v1/payments/{p['id']}/refunds").json_body["data"]) == 1


# ---- WeChat's CHANGE (refund abnormal) is not a refusal ------------------------------------------------
def _wechat_refund_answered_change(client, merchant):
    from chalicelib import clock
    from tests.integration.helpers import paid_payment
    from tests.integration.test_wechat_refund_notifications import post_notification, refund_of

    clock.freeze()
    paid = paid_payment(client, merchant)
    refund = refund_of(merchant, paid)
    pending_after_refund = int(BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance)
    answer = post_notification(client, {
        "out_refund_no": refund["id"], "out_trade_no": paid["channel_order_id"], "refund_status": "CHANGE",
        "refund_fee": str(refund["amount"]), "total_fee": str(paid["amount"]),
        "refund_id": "50300000002026112500000000001", "refund_recv_accout": "招商银行信用卡0403"})
    return paid, refund, pending_after_refund, answer


def test_a_wechat_refund_that_could_not_reach_the_payer_is_not_a_refusal_and_keeps_the_money_out(merchant, client):
    """WeChat's CHANGE (退款异常): the refund left WeChat but the payer's card refused it; a person routes it
    on WeChat's merchant platform. The merchant's money stays out (it must not be refunded twice), the
    refund stays processing, and ops get a record."""
    paid, refund, pending_after_refund, answer = _wechat_refund_answered_change(client, merchant)
    assert answer == "SUCCESS"                         # understood: WeChat need not resend it for a day
    assert RefundModel.get(refund["id"]).status == "processing"
    assert int(BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance) == pending_after_refund
    records = [o for o in OpsRecordModel.scan() if o.ref == refund["id"]]
    assert [o.kind for o in records] == ["refund_abnormal"]


def test_a_refund_query_answering_change_leaves_the_refund_processing_with_an_ops_record(merchant, client):
    from datetime import timedelta

    from chalicelib import clock, settings
    from chalicelib.services import chase
    from chalicelib.store import sandbox as sandbox_store
    from tests.integration.helpers import paid_payment
    from tests.integration.test_wechat_refund_notifications import refund_of

    clock.freeze()
    paid = paid_payment(client, merchant)
    refund = refund_of(merchant, paid)
    pending_after_refund = int(BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance)
    # WeChat's refund desk: the payer's card refused the money (what its refund query then answers)
    sandbox_store.update(f"wechat#order#{settings.get().wechat.mch_id}#{paid['channel_order_id']}", lambda o: {
        **o, "refunds": [{**r, "forced_status": "CHANGE"} for r in o["refunds"]]})
    clock.advance(timedelta(minutes=1))
    out = chase.chase_refunds()
    assert out["refunds_checked"] == 1 and out["refunds_failed"] == 0
    assert RefundModel.get(refund["id"]).status == "processing"
    assert int(BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance) == pending_after_refund
    assert [o.kind for o in OpsRecordModel.scan() if o.ref == refund["id"]] == ["refund_abnormal"]


# ---- the refund chase never starves ------------------------------------------------------------------
def test_refunds_stuck_past_their_limit_never_starve_the_chase_of_newer_refunds(merchant, client):
    """Refunds that cannot be settled (here: WeChat answers CHANGE until a person routes them) get their ops
    record and go to the back; a newer refund is still chased in the next run, however many old ones
    there are (the chase reads a bounded page: `limit` stands for its 500)."""
    from datetime import timedelta

    from chalicelib import clock, settings
    from chalicelib.services import chase
    from chalicelib.store import sandbox as sandbox_store
    from tests.integration.helpers import paid_payment
    from tests.integration.test_wechat_refund_notifications import refund_of

    clock.freeze()
    stuck = []
    for _ in range(2):
        paid = paid_payment(client, merchant)
        stuck.append(refund_of(merchant, paid))
        sandbox_store.update(f"wechat#order#{settings.get().wechat.mch_id}#{paid['channel_order_id']}", lambda o: {
            **o, "refunds": [{**r, "forced_status": "CHANGE"} for r in o["refunds"]]})
    clock.advance(chase.REFUND_STUCK_AFTER + timedelta(minutes=5))
    out = chase.chase_refunds(limit=2)
    assert out["refunds_stuck"] == 2
    assert {o.ref for o in OpsRecordModel.scan() if o.kind == "refund_stuck"} == {r["id"] for r in stuck}
    fresh = refund_of(merchant, paid_payment(client, merchant))
    clock.advance(timedelta(minutes=1))                    # the sandbox settles it; its notification is lost
    chase.chase_refunds(limit=2)
    assert RefundModel.get(fresh["id"]).status == "succeeded"
    clock.advance(timedelta(minutes=5))
    out = chase.chase_refunds(limit=2)                     # the stuck ones are still looked at
    assert out["refunds_checked"] == 2 and out["refunds_failed"] == 0


def test_concurrent_resends_of_money_paid_after_the_merchant_closed_refund_it_once(merchant, client, monkeypatch):
    import threading

    from tests.integration.test_callbacks_exactly_once import post_callback, sandbox_notification

    p = _late_paid_after_merchant_close(client, merchant)
    real = callbacks._refund_closed_payment
    monkeypatch.setattr(callbacks, "_refund_closed_payment", lambda payment: (_ for _ in ()).throw(RuntimeError("died")))
    assert b"FAIL" in post_callback(client, sandbox_notification(p)).body   # credited, then the run died
    monkeypatch.setattr(callbacks, "_refund_closed_payment", real)
    barrier, answers = threading.Barrier(3), []

    def resend():
        barrier.wait()
        answers.append(post_callback(client, sandbox_notification(p)).body)
    threads = [threading.Thread(target=resend) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 3 and all(b"SUCCESS" in a for a in answers)
    refunds = [r for r in RefundModel.scan() if r.payment_id == p["id"]]
    assert [int(r.amount) for r in refunds if r.status != "failed"] == [10000]
    assert int(PaymentModel.get(p["id"]).refunded) == 10000
    assert int(BalanceModel.get(f"M:{merchant.merchant.id}:NZD:pending").balance or 0) == 0
    assert [o.kind for o in OpsRecordModel.scan() if o.ref == p["id"]] == []   # no false alarm


# ---- a close whose answer is lost: the channel's word decides ------------------------------------------
class CancelAnswerLost(ShopperPaysBeforeCancel):
    """The shopper pays (and Alipay's notification is applied) just before our cancel; the cancel reaches
    Alipay, which refunds the paid trade, and its answer is lost on the way back."""

    def send(self, request, **kwargs):
        import requests
        from urllib.parse import unquote_plus

        resp = super().send(request, **kwargs)
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        if "alipay.acquire.cancel" in unquote_plus(body):
            raise requests.exceptions.ReadTimeout("read timed out (test)")
        return resp


def test_a_close_whose_cancel_answer_is_lost_still_books_the_reversal_of_a_payment_paid_meanwhile(shop, client):
    p = in_store_payment(shop)
    http.mount(BASE + "/sandbox/alipay", CancelAnswerLost(client, p["channel_order_id"]))
    r = shop.post(f"/v1/payments/{p['id']}/close")
    http.mount(BASE + "/sandbox/alipay", ChaliceAdapter(client))
    assert r.status_code == 409 and r.json_body["error"]["code"] == "payment_refunded", r.body
    got = shop.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "succeeded" and got["amount_refunded"] == 8800
    assert int(BalanceModel.get(f"M:{shop.merchant.id}:NZD:pending").balance or 0) == 0
    assert _totals()["C:alipay:receivable:NZD"] == 0


def test_the_chase_books_the_reversal_when_its_cancel_answer_is_lost_after_the_shopper_paid(shop, client):
    from datetime import timedelta

    from chalicelib import clock
    from chalicelib.services import chase
    from chalicelib.store import sandbox as sandbox_store

    p = in_store_payment(shop)
    clock.advance(timedelta(minutes=31))
    sandbox_store.update(f"alipay#trade#{p['channel_order_id']}", lambda t: {**t, "expires_at": t["expires_at"] + 3600})
    http.mount(BASE + "/sandbox/alipay", CancelAnswerLost(client, p["channel_order_id"]))
    chase.chase_payments()
    http.mount(BASE + "/sandbox/alipay", ChaliceAdapter(client))
    got = shop.get(f"/v1/payments/{p['id']}").json_body
    assert got["status"] == "succeeded" and got["amount_refunded"] == 8800
    assert int(BalanceModel.get(f"M:{shop.merchant.id}:NZD:pending").balance or 0) == 0

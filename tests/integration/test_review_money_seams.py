"""Hostile review of the merged money work (issues 7, 12, 13): the seams between close reversals, late
success, refunds and the release, each pinned by the rule it keeps."""
from __future__ import annotations

from chalicelib import http
from chalicelib.services import payments as payment_service
from chalicelib.store.models import BalanceModel, OpsRecordModel, PostingModel
from tests.integration.test_chase_under_faults import (  # noqa: F401  (fixtures)
    BASE, ShopperPaysBeforeCancel, _slot_aligned_clock, in_store_payment, shop,
)
from tests.support.transport import ChaliceAdapter


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

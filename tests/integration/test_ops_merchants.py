"""Ops from the console (issue 11): onboard, update, suspend merchants with JSON events, once per request_id."""
from __future__ import annotations

import copy
import json
from datetime import timedelta

import pytest

from chalicelib import clock
from chalicelib.services import merchants
from chalicelib.store import audit
from chalicelib.store import merchants as merchant_store
from chalicelib.store.models import MerchantModel
from infra import job
from tests.integration.helpers import MerchantApi, shopper_pays
from tests.integration.test_balances_and_withdrawals import THURSDAY, balance
from tests.support.jobs import by_hand

ONBOARD = {
    "request_id": "onb-2026-11-001", "legal_name": "Tui Honey Limited", "trading_name": "Tui Honey",
    "settlement_currency": "NZD", "fee_bps": 180, "payout_schedule": {"holding_days": 2, "min_payout": 2000},
    "bank_account": "01-0902-0068389-000", "channels": {"wechat": {"sub_mch_id": "20000100"}},
}


@pytest.fixture(autouse=True)
def _thursday(aws):
    clock.freeze(THURSDAY)


def onboard(client, **overrides) -> dict:
    event = {**copy.deepcopy(ONBOARD), **overrides}
    return by_hand(client, "onboard_merchant", event)


def api_for(client, merchant_id: str) -> MerchantApi:
    m = merchant_store.get(merchant_id)
    return MerchantApi(client, merchants.issue_key(m.id, livemode=True), m)


def test_onboard_merchant_creates_one_merchant_per_request_id_and_it_takes_payments(client):
    first = onboard(client)
    assert first["outcome"] == "ok" and first["function"] == "onboard_merchant"
    mid = first["merchant_id"]
    again = onboard(client)                               # the console's second click, a retried invoke
    assert again == first
    assert [m.merchant_id for m in MerchantModel.scan()] == [mid]

    m = merchant_store.get(mid)
    assert (m.name, m.legal_name, m.fee_bps, m.holding_days, m.min_payout) == ("Tui Honey", "Tui Honey Limited",
                                                                            180, 2, 2000)
    assert m.bank_account == "01-0902-0068389-000"
    assert first["merchant"]["bank_account"] == "01-0902-•••••89-000"     # the summary never shows it whole
    assert "0068389" not in json.dumps(first)
    entries = audit.recent(mid)
    assert [(e.actor, e.action) for e in entries] == [("ops:onb-2026-11-001", "merchant.onboarded")]

    api = api_for(client, mid)
    created = api.create_payment()
    assert created.status_code == 201, created.body
    assert created.json_body["fee"] == 23                 # 180 bps of 12.50, HALF_UP


def test_the_same_request_id_with_a_different_event_is_refused_naming_request_id(client):
    onboard(client)
    out = onboard(client, trading_name="Another Shop")
    assert out["outcome"] == "error" and out["error"]["param"] == "request_id"
    assert len(list(MerchantModel.scan())) == 1


@pytest.mark.parametrize("change, param", [
    ({"legal_name": None}, "legal_name"),
    ({"trading_name": "   "}, "trading_name"),
    ({"settlement_currency": "USD"}, "settlement_currency"),
    ({"fee_bps": 10001}, "fee_bps"),
    ({"fee_bps": "180"}, "fee_bps"),
    ({"payout_schedule": {"holding_days": -1}}, "payout_schedule.holding_days"),
    ({"payout_schedule": {"weekly": True}}, "payout_schedule.weekly"),
    ({"bank_account": "01-0242-0100195-00"}, "bank_account"),
    ({"channels": {"wechat": {}}}, "channels.wechat.sub_mch_id"),
    ({"channels": {"alipay": {"secondary_merchant_id": "A1", "secondary_merchant_name": "Tui",
                              "secondary_merchant_industry": "58"}}}, "channels.alipay.secondary_merchant_industry"),
    ({"channels": {"paypal": {}}}, "channels.paypal"),
    ({"request_id": ""}, "request_id"),
    ({"request_id": None}, "request_id"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_onboarding_input_answers_a_json_error_naming_the_field_and_creates_nothing(client, change, param):
    event = {**copy.deepcopy(ONBOARD), **change}
    event = {k: v for k, v in event.items() if v is not None}
    out = by_hand(client, "onboard_merchant", event)
    assert out["outcome"] == "error", out
    assert out["error"]["param"] == param, out
    assert out["error"]["code"] and out["error"]["message"]
    assert list(MerchantModel.scan()) == []


def test_a_corrected_event_may_reuse_the_request_id_of_a_refused_one(client):
    bad = onboard(client, fee_bps=-5)
    assert bad["error"]["param"] == "fee_bps"
    good = onboard(client)
    assert good["outcome"] == "ok"


def test_an_event_that_is_not_an_object_is_an_error_not_a_crash(client):
    out = by_hand(client, "onboard_merchant", ["not", "an", "object"])
    assert out["outcome"] == "error" and out["error"]["code"] == "parameter_invalid"


def test_update_merchant_changes_fee_and_bank_account_once_and_never_the_settlement_currency(client):
    mid = onboard(client)["merchant_id"]
    clock.advance(timedelta(minutes=1))
    event = {"request_id": "upd-1", "merchant_id": mid, "fee_bps": 150, "bank_account": "08-6523-1954512-001",
             "payout_schedule": {"min_payout": 5000}}
    out = by_hand(client, "update_merchant", event)
    assert out["outcome"] == "ok" and out["changed"] == ["bank_account", "fee_bps", "payout_schedule"]
    assert out["merchant"]["bank_account"] == "08-6523-•••••12-001"
    m = merchant_store.get(mid)
    assert (m.fee_bps, m.bank_account, m.min_payout, m.holding_days) == (150, "08-6523-1954512-001", 5000, 2)
    assert by_hand(client, "update_merchant", event) == out
    assert [e.action for e in audit.recent(mid)] == ["merchant.updated", "merchant.onboarded"]
    assert audit.recent(mid)[0].details["bank_account"] == "changed"      # never the number itself

    refused = by_hand(client, "update_merchant", {"request_id": "upd-2", "merchant_id": mid,
                                                   "settlement_currency": "AUD"})
    assert refused["error"]["param"] == "settlement_currency"
    assert merchant_store.get(mid).settlement_currency == "NZD"
    unknown = by_hand(client, "update_merchant", {"request_id": "upd-3", "merchant_id": "mch_0000000000000000",
                                                   "fee_bps": 100})
    assert unknown["error"]["param"] == "merchant_id" and unknown["error"]["code"] == "resource_missing"
    nothing = by_hand(client, "update_merchant", {"request_id": "upd-4", "merchant_id": mid})
    assert nothing["outcome"] == "error" and nothing["error"]["code"] == "parameter_missing"


def test_a_suspended_merchant_takes_no_new_payment_but_refunds_and_payouts_go_on(client):
    mid = onboard(client)["merchant_id"]
    api = api_for(client, mid)
    paid = api.create_payment(amount=10000).json_body
    shopper_pays(client, paid)
    unchosen = api.post("/v1/payments", {"amount": 1250, "currency": "NZD", "merchant_reference": "order-2",
                                         "description": "Manuka honey"}).json_body

    clock.advance(timedelta(seconds=1))
    out = by_hand(client, "suspend_merchant", {"request_id": "sus-1", "merchant_id": mid,
                                                "reason": "KYC documents expired"})
    assert out["outcome"] == "ok" and (out["status"], out["previous_status"]) == ("suspended", "active")
    assert by_hand(client, "suspend_merchant", {"request_id": "sus-1", "merchant_id": mid,
                                                "reason": "KYC documents expired"}) == out

    refused = api.create_payment(merchant_reference="order-3")
    assert refused.status_code == 409 and refused.json_body["error"]["code"] == "merchant_suspended"
    chose = client.http.post(f"/pay/{unchosen['id']}/choose", body=b"channel=wechat",
                             headers={"Content-Type": "application/x-www-form-urlencoded",
                                      "User-Agent": "Mozilla/5.0 (Windows NT 10.0)"})
    assert chose.status_code in (400, 409, 410) and b"weixin://" not in chose.body

    refund = api.post(f"/v1/payments/{paid['id']}/refunds", {"amount": 2500, "reason": "one jar broken"},
                      headers={"Idempotency-Key": "r-1"})
    assert refund.status_code in (200, 201), refund.body
    by_hand(client, "release_funds", {"date": "2026-11-23"})
    paid_out = by_hand(client, "auto_withdraw", {"date": "2026-11-23"})
    assert paid_out["withdrawn"] == 1, paid_out
    assert balance(api)[1] == 0

    clock.advance(timedelta(minutes=1))
    back = by_hand(client, "suspend_merchant", {"request_id": "sus-2", "merchant_id": mid, "reason": "renewed",
                                                 "resume": True})
    assert back["status"] == "active"
    assert api.create_payment(merchant_reference="order-4").status_code == 201
    assert [e.action for e in audit.recent(mid)][:2] == ["merchant.resumed", "merchant.suspended"]


def test_suspend_merchant_needs_a_reason(client):
    mid = onboard(client)["merchant_id"]
    out = by_hand(client, "suspend_merchant", {"request_id": "sus-1", "merchant_id": mid})
    assert out["error"]["param"] == "reason"
    assert merchant_store.get(mid).status == "active"


def test_make_job_runs_onboard_merchant_against_the_stack(client, monkeypatch, capsys):
    monkeypatch.setattr(job, "load_stack", lambda: {"api_url": "http://kauri.test", "aws_endpoint_url": "x"})
    monkeypatch.setattr(job, "apply_environment", lambda values: None)
    assert job.main(["onboard_merchant", json.dumps(ONBOARD)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["outcome"] == "ok" and merchant_store.get(summary["merchant_id"]) is not None


def test_invite_owner_answers_one_link_per_request_id_and_names_bad_fields(client):
    mid = onboard(client)["merchant_id"]
    event = {"request_id": "inv-1", "merchant_id": mid, "email": "Owner@TuiHoney.nz"}
    first = by_hand(client, "invite_owner", event)
    assert first["outcome"] == "ok" and first["email"] == "owner@tuihoney.nz" and first["role"] == "owner"
    assert "/portal/invitations/" in first["invitation_url"]
    assert by_hand(client, "invite_owner", event) == first
    assert [e.action for e in audit.recent(mid)].count("staff.invited") == 1
    bad = by_hand(client, "invite_owner", {"request_id": "inv-2", "merchant_id": mid, "email": "not an email"})
    assert bad["error"]["param"] == "email"
    unknown = by_hand(client, "invite_owner", {"request_id": "inv-3", "merchant_id": "mch_0000000000000000",
                                                "email": "a@b.nz"})
    assert unknown["error"]["param"] == "merchant_id"

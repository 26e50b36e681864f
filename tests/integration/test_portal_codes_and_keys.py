"""Portal Codes and Developers (issue 11): codes with limits, keys rolled with a grace period, webhooks."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from chalicelib import clock
from chalicelib.services import api_keys, merchants
from chalicelib.services.merchants import DEMO_CHANNELS
from chalicelib.store import audit
from chalicelib.store.qr_codes import QrCodeModel
from chalicelib.store import events
from tests.integration.helpers import MerchantApi, paid_payment
from tests.integration.portal_helpers import owner_of, staff_member
from tests.integration.test_balances_and_withdrawals import THURSDAY


@pytest.fixture
def shop(client):
    clock.freeze(THURSDAY)
    merchant_id = merchants.create_merchant("Tui Honey", channels=dict(DEMO_CHANNELS)).id
    owner = owner_of(client, merchant_id)
    return merchant_id, owner


def api_status(client, key):
    return client.http.get("/v1/balance", headers={"Authorization": f"Bearer {key}"}).status_code


def test_a_manager_creates_prints_rotates_and_disables_a_code_with_a_limit(client, shop):
    merchant_id, owner = shop
    manager = staff_member(client, owner, "boss@tuihoney.nz", "manager")
    manager.get("/portal/codes")
    assert manager.post("/portal/codes", {"store_name": "Wharf St", "max_amount": "50.00"}).status_code == 303
    (code,) = [c for c in QrCodeModel.scan()]
    assert (code.store_name, int(code.max_amount), code.status) == ("Wharf St", 5000, "active")
    manager.get("/portal/codes")
    assert f'href="/qr/{code.code_id}/image"' in manager.text()
    image = client.http.get(f"/qr/{code.code_id}/image")
    assert image.status_code == 200 and b"Wharf St" in image.body

    clock.advance(timedelta(seconds=1))
    manager.post(f"/portal/codes/{code.code_id}/rotate", {})
    old = QrCodeModel.get(code.code_id)
    assert old.status == "disabled" and old.replaced_by
    manager.get("/portal/codes")
    clock.advance(timedelta(seconds=1))
    manager.post(f"/portal/codes/{old.replaced_by}/disable", {})
    assert QrCodeModel.get(old.replaced_by).status == "disabled"
    assert client.http.get(f"/qr/{old.replaced_by}").status_code == 410
    actions = [(e.actor, e.action) for e in audit.recent(merchant_id) if e.action.startswith("code.")]
    assert actions == [("staff:boss@tuihoney.nz", "code.disabled"), ("staff:boss@tuihoney.nz", "code.rotated"),
                       ("staff:boss@tuihoney.nz", "code.created")]

    manager.get("/portal/codes")
    assert manager.post("/portal/codes", {"store_name": "Bad", "max_amount": "1.234"}).status_code == 400


def test_a_rolled_key_works_through_its_grace_period_then_stops_and_a_revoked_one_at_once(client, shop):
    merchant_id, owner = shop
    owner.get("/portal/developers")
    owner.post("/portal/developers/keys", {"mode": "live"})
    old_key = re.search(r'id="key-value">([^<]+)<', owner.text()).group(1)
    assert api_status(client, old_key) == 200
    ref = api_keys.list_for(merchant_id)[0].ref
    owner.get("/portal/developers")
    assert old_key not in owner.text()                                   # shown once only
    clock.advance(timedelta(seconds=1))
    owner.post(f"/portal/developers/keys/{ref}/roll", {})
    new_key = re.search(r'id="key-value">([^<]+)<', owner.text()).group(1)
    assert new_key != old_key
    assert api_status(client, old_key) == 200 and api_status(client, new_key) == 200

    clock.advance(api_keys.ROLL_GRACE + timedelta(seconds=1))
    assert api_status(client, old_key) == 401 and api_status(client, new_key) == 200
    new_ref = next(k.ref for k in api_keys.list_for(merchant_id) if k.state == "active")
    assert owner.get("/portal/developers").status_code == 303             # a session lasts 12 hours
    owner.sign_in("owner@tuihoney.nz")
    owner.get("/portal/developers")
    owner.post(f"/portal/developers/keys/{new_ref}/revoke", {})
    assert api_status(client, new_key) == 401
    assert [e.action for e in audit.recent(merchant_id) if e.action.startswith("key.")] == [
        "key.revoked", "key.rolled", "key.created"]


def test_managers_and_cashiers_never_see_keys_and_other_merchants_cannot_roll_them(client, shop):
    merchant_id, owner = shop
    key = api_keys.create(merchant_id, True, "test")
    ref = api_keys.list_for(merchant_id)[0].ref
    manager = staff_member(client, owner, "boss@tuihoney.nz", "manager")
    cashier = staff_member(client, owner, "till@tuihoney.nz", "cashier")
    for who in (manager, cashier):
        assert who.get("/portal/developers").status_code == 403
        who.get("/portal/spotpay")
        assert who.post(f"/portal/developers/keys/{ref}/roll", {}).status_code == 403
    other_id = merchants.create_merchant("Kea Cafe", channels=dict(DEMO_CHANNELS)).id
    other = owner_of(client, other_id, email="owner@keacafe.nz")
    other.get("/portal/developers")
    assert ref not in other.text()
    assert other.post(f"/portal/developers/keys/{ref}/revoke", {}).status_code == 404
    assert api_status(client, key) == 200


def test_the_owner_adds_a_webhook_endpoint_sees_deliveries_disables_it_and_resends_an_event(client, shop):
    merchant_id, owner = shop
    owner.get("/portal/developers")
    owner.post("/portal/developers/endpoints", {"url": "https://93.184.216.34/kauri"})
    assert re.search(r'id="secret-value">whsec_', owner.text())
    endpoint = merchants.list_webhook_endpoints(merchants.store.get(merchant_id), True)[0]
    owner.get("/portal/developers")
    assert owner.post(f"/portal/developers/endpoints/{endpoint['id']}/disable", {}).status_code == 303
    assert merchants.list_webhook_endpoints(merchants.store.get(merchant_id), True)[0]["enabled"] is False
    owner.get("/portal/developers")
    assert owner.post("/portal/developers/endpoints", {"url": "https://10.0.0.1/x"}).status_code == 400
    owner.get("/portal/developers")
    assert owner.post("/portal/developers/events/evt_doesnotexist/resend", {}).status_code == 404

    api = MerchantApi(client, merchants.issue_key(merchant_id, livemode=True), merchants.store.get(merchant_id))
    paid_payment(client, api)
    (event,) = events.for_merchant(merchant_id, True)
    owner.get("/portal/developers")
    assert f'id="{event.event_id}"' in owner.text() and "payment.succeeded" in owner.text()
    assert owner.post(f"/portal/developers/events/{event.event_id}/resend", {}).status_code == 303
    assert any(e.action == "event.resent" and e.details == {"event": event.event_id} for e in audit.recent(merchant_id))

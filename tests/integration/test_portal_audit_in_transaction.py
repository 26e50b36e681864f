"""Every change made in the portal and its audit entry commit together or not at all (issue 11).

The failure is injected into the audit entry itself: it collides with an entry already written, so its
put-if-new fails. Written in the change's own transaction, that cancels the change too; written after
the change (as codes and webhook endpoints once were), the change would stand with no audit entry.
"""
from __future__ import annotations

import pytest

from chalicelib.services import merchants
from chalicelib.store import audit, events
from chalicelib.store.models import ENDPOINT_COUNTER, WebhookEndpointModel
from chalicelib.store.qr_codes import QrCodeModel
from tests.integration.helpers import MerchantApi, paid_payment
from tests.integration.test_portal_codes_and_keys import shop  # noqa: F401  (fixture)


@pytest.fixture
def failing_audit(monkeypatch):
    """Once armed, every new audit entry collides with one already stored: its transaction is cancelled."""
    armed = {"on": False}
    real = audit.new_entry

    def colliding(merchant_id, actor, action, details=None, at=None):
        entry = real(merchant_id, actor, action, details, at)
        if armed["on"]:
            clash = real(merchant_id, "test:clash", "test.clash", {})
            clash.save()
            entry.entry_key = clash.entry_key
        return entry

    monkeypatch.setattr(audit, "new_entry", colliding)
    return armed


def _state(merchant_id):
    codes = sorted((c.code_id, c.status, c.replaced_by) for c in QrCodeModel.scan())
    endpoints = sorted((e.endpoint_id, bool(e.enabled)) for e in WebhookEndpointModel.query(merchant_id)
                       if e.endpoint_id != ENDPOINT_COUNTER)
    evts = sorted((e.event_id, e.status, int(e.attempts or 0)) for e in events.EventModel.scan())
    trail = [e.action for e in audit.recent(merchant_id) if e.action != "test.clash"]
    return codes, endpoints, evts, trail


def _endpoint_id(merchant_id):
    return merchants.list_webhook_endpoints(merchants.store.get(merchant_id), True)[0]["id"]


def _code_id():
    return next(c.code_id for c in QrCodeModel.scan() if c.status == "active")


# (what the owner does, the page it starts from, the audit action it leaves)
CHANGES = [
    ("/portal/codes", lambda m: ("/portal/codes", {"store_name": "Wharf St", "max_amount": "50.00"}), "code.created"),
    ("/portal/codes", lambda m: (f"/portal/codes/{_code_id()}/rotate", {}), "code.rotated"),
    ("/portal/codes", lambda m: (f"/portal/codes/{_code_id()}/disable", {}), "code.disabled"),
    ("/portal/developers", lambda m: ("/portal/developers/endpoints", {"url": "https://93.184.216.34/k"}),
     "webhook_endpoint.added"),
    ("/portal/developers", lambda m: (f"/portal/developers/endpoints/{_endpoint_id(m)}/disable", {}),
     "webhook_endpoint.disabled"),
    ("/portal/developers", lambda m: (f"/portal/developers/endpoints/{_endpoint_id(m)}/enable", {}),
     "webhook_endpoint.enabled"),
]


def test_a_code_or_endpoint_change_and_its_audit_entry_commit_together_or_not_at_all(client, shop, failing_audit):
    merchant_id, owner = shop
    for page, change, action in CHANGES:
        owner.get(page)
        path, form = change(merchant_id)
        before = _state(merchant_id)
        failing_audit["on"] = True
        owner.post(path, form)
        failing_audit["on"] = False
        assert _state(merchant_id) == before, action          # neither the change nor its entry
        owner.get(page)
        assert owner.post(path, form).status_code in (200, 303), action
        after = _state(merchant_id)
        assert after[:3] != before[:3], action                 # the change ...
        assert after[3].count(action) == before[3].count(action) + 1, action    # ... with its entry


def test_a_resent_event_and_its_audit_entry_commit_together_or_not_at_all(client, shop, failing_audit):
    merchant_id, owner = shop
    api = MerchantApi(client, merchants.issue_key(merchant_id, livemode=True), merchants.store.get(merchant_id))
    paid_payment(client, api)
    event = next(iter(events.EventModel.scan()))
    owner.get("/portal/developers")
    before = _state(merchant_id)
    failing_audit["on"] = True
    owner.post(f"/portal/developers/events/{event.event_id}/resend", {})
    failing_audit["on"] = False
    assert _state(merchant_id) == before
    owner.get("/portal/developers")
    assert owner.post(f"/portal/developers/events/{event.event_id}/resend", {}).status_code == 303
    after = _state(merchant_id)
    assert after[2] != before[2] and after[3].count("event.resent") == 1

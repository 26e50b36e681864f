"""DynamoDB round trips per request (issue 9): create 2, callback 2, GET 1, counted through botocore's
`before-call` event of every client our tables use; the sandbox's own table is WeChat's side."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from chalicelib import clock
from chalicelib.services import merchants
from chalicelib.store.alerts import AlertModel
from chalicelib.store import tables
from chalicelib.store.connection import connection
from chalicelib.store.models import ApiKeyModel, PaymentModel
from tests.integration.helpers import new_merchant, shopper_pays
from tests.integration.test_callbacks_exactly_once import notification

ALICE = "oAlice_5mT2qG9xW3rY7uP1sK4dH8"


@contextmanager
def dynamodb_calls():
    """The DynamoDB operations our code sends while the block runs."""
    calls: list[str] = []

    def on_call(model, params, **_):
        body = params.get("body") or b""
        if b"kauri-test-sandbox" not in (body if isinstance(body, bytes) else body.encode()):
            calls.append(model.name)

    # Each botocore client copies its session's handlers when it is made: hook every client our tables use.
    emitters = {id(c.meta.events): c.meta.events for c in _clients()}
    for events in emitters.values():
        events.register("before-call.dynamodb", on_call, unique_id="round-trip-count")
    try:
        yield calls
    finally:
        for events in emitters.values():
            events.unregister("before-call.dynamodb", unique_id="round-trip-count")


def _clients():
    yield connection().client
    for model in tables.models():
        yield model._get_connection().connection.client


def warm(client, merchant):
    """One payment through every path first: a container's first request also builds its clients."""
    shopper_pays(client, merchant.create_payment(merchant_reference="warm-up").json_body)


def test_create_payment_takes_two_round_trips_callback_two_and_get_one(client):
    merchant = new_merchant(client)
    warm(client, merchant)
    with dynamodb_calls() as create:
        r = merchant.post("/v1/payments", {"amount": 1250, "currency": "NZD", "channel": "wechat", "flow": "native",
                                           "merchant_reference": "counted", "description": "Manuka honey"},
                          headers={"Idempotency-Key": "counted-1"})
    assert r.status_code == 201, r.body
    p = r.json_body
    assert create == ["PutItem", "TransactWriteItems"]        # idempotency claim, then payment + completion

    with dynamodb_calls() as callback:
        r = client.http.post("/callbacks/wechat", headers={"Content-Type": "text/xml"}, body=notification(p))
    assert b"SUCCESS" in r.body
    assert callback == ["GetItem", "TransactWriteItems"]      # the payment, then state + ledger + outbox

    with dynamodb_calls() as get:
        r = merchant.get(f"/v1/payments/{p['id']}")
    assert r.status_code == 200 and r.json_body["status"] == "succeeded"
    assert get == ["GetItem"]


def test_a_revoked_key_is_refused_once_the_key_cache_lifetime_has_passed(client):
    # Frozen: the cache ages in whole seconds of clock.epoch(), so on the running clock "29 s later" was 30 s
    # whenever the requests between straddled a second boundary (failed now and then on a loaded box).
    clock.freeze()
    merchant = new_merchant(client)
    assert merchant.get("/v1/payments?merchant_reference=x").status_code == 200
    ApiKeyModel(merchants.hash_key(merchant.key)).update(actions=[ApiKeyModel.revoked.set(True)])
    clock.advance(timedelta(seconds=merchants.KEY_CACHE_SECONDS - 1))
    assert merchant.get("/v1/payments?merchant_reference=x").status_code == 200   # this container's cache
    clock.advance(timedelta(seconds=2))
    assert merchant.get("/v1/payments?merchant_reference=x").status_code == 401
    assert merchant.get("/v1/payments?merchant_reference=x").status_code == 401   # refusals are not cached


def test_an_unknown_key_is_never_cached_and_a_new_key_works_at_once(client):
    merchant = new_merchant(client)
    other_key = merchant.key[:-4] + ("AAAA" if not merchant.key.endswith("AAAA") else "BBBB")
    assert merchant.get("/v1/payments?merchant_reference=x", key=other_key).status_code == 401
    assert not merchants._key_cache or all(d != merchants.hash_key(other_key) for d in merchants._key_cache)
    fresh = merchants.issue_key(merchant.merchant.id, livemode=True)
    assert merchant.get("/v1/payments?merchant_reference=x", key=fresh).status_code == 200


def test_a_binding_added_in_this_container_is_carried_by_the_next_payment(client):
    merchant = new_merchant(client)
    warm(client, merchant)                                   # the key is cached before the binding exists
    assert merchant.post("/v1/alert_bindings", {"openid": ALICE, "store_name": "Ponsonby"}).status_code == 201
    p = merchant.create_payment(merchant_reference="after-binding").json_body
    assert PaymentModel.get(p["id"]).alert_bindings[0][1] == ALICE
    shopper_pays(client, p)
    assert [a.openid for a in AlertModel.scan() if a.payment_id == p["id"]] == [ALICE]


def test_a_payment_stored_before_payments_carried_bindings_still_alerts_the_staff(client):
    merchant = new_merchant(client)
    assert merchant.post("/v1/alert_bindings", {"openid": ALICE, "store_name": "Ponsonby"}).status_code == 201
    p = merchant.create_payment(merchant_reference="legacy").json_body
    PaymentModel(p["id"]).update(actions=[PaymentModel.alert_bindings.remove()])   # as an older item
    with dynamodb_calls() as callback:
        shopper_pays(client, p)
    assert "Query" in callback                               # read from the bindings table instead
    assert [a.openid for a in AlertModel.scan() if a.payment_id == p["id"]] == [ALICE]

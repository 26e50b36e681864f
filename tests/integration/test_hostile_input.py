"""Hostile input at the edge: every bad request is a 4xx in our error shape, and nothing happens.

The named cases are the ones an attack run found as 500/502s; the property test below sends generated
hostile text to every merchant and payer route.
"""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from chalicelib.api import requests as request_schemas
from chalicelib.store.models import PaymentModel, RefundModel, WebhookEndpointModel
from tests.integration.helpers import new_merchant, shopper_pays


@pytest.fixture
def merchant(client):
    return new_merchant(client)


def _is_our_error(resp, status: int | None = None) -> dict:
    assert resp.status_code < 500, (resp.status_code, resp.body)
    if status is not None:
        assert resp.status_code == status, (resp.status_code, resp.body)
    err = json.loads(resp.body)["error"]
    assert set(err) == {"type", "code", "message", "param"}
    assert isinstance(err["code"], str) and isinstance(err["message"], str)
    return err


def _nothing_created():
    return (sum(1 for _ in PaymentModel.scan()), sum(1 for _ in RefundModel.scan()),
            sum(1 for _ in WebhookEndpointModel.scan()))


def _channel_calls(client) -> int:
    from chalicelib import http

    adapter = http.session().get_adapter("http://kauri.test/sandbox/")
    return len([c for c in adapter.calls if c[1].startswith("/sandbox/")])


@pytest.mark.parametrize("field, value, param", [
    ("merchant_reference", "r\ud800", "merchant_reference"),
    ("description", "Honey \ufffe", "description"),
    ("description", "Honey \U0010ffff", "description"),
    ("payer", {"openid": "a\u0001b"}, "payer.openid"),
    ("payer", {"open\ud800id": "abc"}, "payer"),
    ("metadata", {"note": "x\u0085y"}, "metadata.note"),
    ("return_url", "https://[::1", "return_url"),
    ("return_url", "https://shop.example:99999/x", "return_url"),
    ("client_ip", "1.2.3", "client_ip"),
])
def test_bad_text_in_a_payment_is_a_400_before_the_channel_is_called(client, merchant, field, value, param):
    before = _channel_calls(client)
    r = merchant.create_payment(**{field: value, "flow": "jsapi" if field == "payer" else "native"})
    err = _is_our_error(r, 400)
    assert err["param"] == param
    assert _channel_calls(client) == before
    assert _nothing_created()[0] == 0


def test_a_body_nested_sixty_thousand_deep_is_a_400(merchant):
    raw = b'{"metadata": ' + b"[" * 60_000  # 60 kB: under the body limit, far past the parser's recursion
    r = merchant.post("/v1/payments", raw=raw, headers={"Idempotency-Key": "deep-1"})
    assert _is_our_error(r, 400)["code"] == "body_invalid"
    braces_in_text = {"amount": 1250, "currency": "NZD", "channel": "wechat", "flow": "native",
                      "merchant_reference": "[[[[[[[[[[{{{{{{{{{{", "description": "]]]]]]"}
    assert merchant.post("/v1/payments", braces_in_text).status_code == 201  # brackets inside strings do not count


def test_a_body_of_escaped_quotes_is_refused_in_linear_time(merchant):
    import time

    raw = b'{"description": "' + b'\\"' * 30_000  # never closed: a backtracking scan would take ~20 s
    started = time.monotonic()
    r = merchant.post("/v1/payments", raw=raw, headers={"Idempotency-Key": "quotes-1"})
    assert _is_our_error(r, 400)["code"] == "body_invalid"
    assert time.monotonic() - started < 3


def test_a_unicode_digit_as_list_limit_is_a_400(merchant):
    for path in ("/v1/balance/transactions?limit=%C2%B2", "/v1/withdrawals?limit=%D9%A3"):
        err = _is_our_error(merchant.get(path), 400)
        assert err["param"] == "limit"
    assert merchant.get("/v1/balance/transactions?limit=2").status_code == 200


def test_control_characters_in_a_query_parameter_are_a_400(merchant):
    err = _is_our_error(merchant.get("/v1/payments?merchant_reference=a%01b"), 400)
    assert err["param"] == "merchant_reference"
    err = _is_our_error(merchant.get("/v1/payments?merchant_reference=a%EF%BF%BEb"), 400)
    assert err["param"] == "merchant_reference"


def test_a_valid_client_ip_reaches_the_channel(merchant):
    r = merchant.create_payment(flow="h5", client_ip="2001:db8::7")
    assert r.status_code == 201, r.body


def test_bad_text_in_an_alert_binding_is_a_400(merchant):
    r = merchant.post("/v1/alert_bindings", {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "store_name": "Shop\ud800"},
                      headers={"Idempotency-Key": "ab-1"})
    assert _is_our_error(r, 400)["param"] == "store_name"
    assert merchant.get("/v1/alert_bindings").json_body["data"] == []


def test_bad_text_in_a_refund_reason_is_a_400_and_refunds_nothing(client, merchant):
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    r = merchant.post(f"/v1/payments/{p['id']}/refunds", {"amount": 100, "reason": "oops\u0000"},
                      headers={"Idempotency-Key": "rf-1"})
    assert _is_our_error(r, 400)["param"] == "reason"
    assert _nothing_created()[1] == 0


# ---- generated hostile input against every route -------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.sampled_from(["\ud800", "\udfff", "\ufffe", "\uffff", "\ufdd0", "\U0001fffe", "\x00", "\x1b", "\x7f",
                     "\x85", "\u0001"]),
    st.characters(categories=("Cs", "Cc")),
).flatmap(lambda bad: st.tuples(st.text(max_size=8), st.just(bad), st.text(max_size=8)).map("".join))

URL_GARBAGE = st.sampled_from(["https://[::1", "http://[fe80::1%zz", "https://a:b:c:d/", "https://h:-1/",
                               "javascript:alert(1)", "https://", "//no-scheme.example/x"])


def _deep(n: int) -> str:
    return "[" * n + "]" * n


# Each route's writable fields come from its request schema in chalicelib.api.requests (or app.py).
BODY_ROUTES = {
    "/v1/payments": sorted(request_schemas.PAYMENT_FIELDS),
    "/v1/payments/{pid}/refunds": ["amount", "reason"],
    "/v1/payments/{pid}/close": [],
    "/v1/webhook_endpoints": ["url"],
    "/v1/alert_bindings": ["openid", "store_name"],
    "/v1/events/{eid}/resend": [],
    "/pay/{pid}/documents": ["filename", "content_type", "size"],
}
GET_ROUTES = ["/v1/payments", "/v1/payments/{pid}", "/v1/payments/{pid}/refunds", "/v1/payments/{pid}/documents",
              "/v1/webhook_endpoints", "/v1/events", "/v1/balance", "/v1/balance/transactions",
              "/v1/withdrawals", "/v1/rates", "/v1/alert_bindings", "/v1/payments/{pid}/refunds/{rid}",
              "/v1/events/{eid}"]
PATH_ROUTES = [("get", "/v1/payments/{bad}"), ("post", "/v1/payments/{bad}/close"),
               ("post", "/v1/payments/{bad}/refunds"), ("get", "/v1/payments/{pid}/refunds/{bad}"),
               ("get", "/v1/payments/{bad}/documents"), ("get", "/v1/events/{bad}"),
               ("post", "/v1/events/{bad}/resend"), ("delete", "/v1/alert_bindings/{bad}"),
               ("post", "/pay/{bad}/documents")]
QUERY_NAMES = ["limit", "merchant_reference", "currency", "starting_after"]
VALID_PAYMENT = {"amount": 1250, "currency": "NZD", "channel": "wechat", "flow": "native",
                 "merchant_reference": "order-1", "description": "Manuka honey"}


def _valid_body(route: str) -> dict:
    return {"/v1/payments": dict(VALID_PAYMENT), "/v1/payments/{pid}/refunds": {"amount": 100},
            "/v1/webhook_endpoints": {"url": "https://hooks.merchant.test/k"},
            "/v1/alert_bindings": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "store_name": "Shop"},
            "/pay/{pid}/documents": {"filename": "a.pdf", "content_type": "application/pdf", "size": 10}}.get(route, {})


@st.composite
def hostile_post(draw):
    route = draw(st.sampled_from(sorted(BODY_ROUTES)))
    body = _valid_body(route)
    fields = BODY_ROUTES[route] or ["x"]
    field = draw(st.sampled_from(fields))
    how = draw(st.sampled_from(["text", "key", "nested", "deep", "url"]))
    raw = None
    if how == "text":
        body[field] = draw(HOSTILE_TEXT)
    elif how == "key":
        body[draw(HOSTILE_TEXT)] = "x"
    elif how == "nested":
        body[field] = {draw(st.sampled_from(["openid", "note"])): draw(HOSTILE_TEXT)}
    elif how == "url":
        body[field] = draw(URL_GARBAGE) if field in ("url", "return_url") else draw(HOSTILE_TEXT)
    if how == "deep":
        raw = json.dumps(body)[:-1].encode() + f', "{field}": {_deep(draw(st.integers(9, 5000)))}}}'.encode()
    if route == "/v1/payments" and field == "payer" and how != "deep":
        body["flow"] = "jsapi"
    return route, body, raw


@st.composite
def hostile_get(draw):
    route = draw(st.sampled_from(GET_ROUTES))
    name = draw(st.sampled_from(QUERY_NAMES))
    hostile_text = draw(st.booleans())
    if hostile_text:
        value = draw(HOSTILE_TEXT.filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t)))
    else:
        value = draw(st.sampled_from(["²", "٣", "-1", "1e3", "99999999999", "", "pay_x"]))
    return route, f"{name}={quote(value, safe='')}", hostile_text


def _fill(route: str, ids: dict) -> str:
    return route.format(**ids)


@pytest.fixture
def world(client, merchant):
    """One paid payment with a refund and an event: every route has something real to aim at."""
    from tests.support.transport import FakeReceiver
    from chalicelib import http

    http.mount("https://hooks.merchant.test", FakeReceiver())
    assert merchant.post("/v1/webhook_endpoints", {"url": "https://hooks.merchant.test/k"},
                         headers={"Idempotency-Key": "ep-0"}).status_code == 201
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    rf = merchant.post(f"/v1/payments/{p['id']}/refunds", {"amount": 100}, headers={"Idempotency-Key": "rf-0"})
    assert rf.status_code == 201, rf.body
    eid = merchant.get("/v1/events").json_body["data"][0]["id"]
    return {"pid": p["id"], "rid": rf.json_body["id"], "eid": eid}


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@FUZZ
@given(data=st.data())
def test_generated_hostile_requests_get_a_documented_4xx_and_change_nothing(client, merchant, world, data):
    before, calls = _nothing_created(), _channel_calls(client)
    kind = data.draw(st.sampled_from(["post", "get", "path"]), label="kind")
    if kind == "path":
        method, route = data.draw(st.sampled_from(PATH_ROUTES), label="route")
        bad = quote(data.draw(HOSTILE_TEXT).encode("utf-8", "surrogatepass"), safe="")
        path = route.format(pid=world["pid"], rid=world["rid"], eid=world["eid"], bad=bad)
        headers = {"Authorization": f"Bearer {merchant.key}", "Content-Type": "application/json",
                   "Idempotency-Key": f"path-{data.draw(st.integers(0, 10**9))}"}
        r = getattr(client.http, method)(path, headers=headers, body=b"{}" if method == "post" else b"")
        _is_our_error(r)
    elif kind == "post":
        route, body, raw = data.draw(hostile_post(), label="post")
        raw = raw if raw is not None else json.dumps(body).encode()
        n = data.draw(st.integers(0, 10**9), label="key")
        r = merchant.post(_fill(route, world), raw=raw, headers={"Idempotency-Key": f"fuzz-{n}"})
        _is_our_error(r)  # every generated body carries something hostile: it must be refused
    else:
        route, query, hostile_text = data.draw(hostile_get(), label="get")
        r = merchant.get(_fill(route, world) + "?" + query)
        if hostile_text or r.status_code != 200:  # a route may ignore a well-formed parameter it does not read
            _is_our_error(r)
    assert _nothing_created() == before
    assert _channel_calls(client) == calls

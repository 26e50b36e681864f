"""The API contract (issue 9): /v1/openapi.json documents every merchant route (and nothing else) with
every error shape; every list paginates (limit, starting_after, has_more) and none truncates."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from openapi_spec_validator import validate

from chalicelib import clock
from chalicelib.store.models import EventModel
from tests.integration.helpers import new_merchant, paid_payment

METHODS = {"get", "post", "put", "patch", "delete"}


def documented(doc) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops if method in METHODS}


def routed(app) -> set[tuple[str, str]]:
    return {(path, method) for path, by_method in app.routes.items() if path.startswith("/v1/")
            for method in by_method if method != "OPTIONS"}


def test_every_merchant_route_is_documented_and_every_documented_route_exists(client):
    import app as app_module

    r = client.http.get("/v1/openapi.json")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    doc = r.json_body
    validate(doc)                                            # a valid OpenAPI 3.1 document
    assert doc["openapi"] == "3.1.0"
    assert documented(doc) == routed(app_module.app)


def test_every_operation_documents_its_errors_in_the_one_error_shape(client):
    doc = client.http.get("/v1/openapi.json").json_body
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert "500" in codes, (method, path)
            if op.get("security") != []:
                assert {"400", "401", "404", "429"} <= codes, (method, path)
            if method == "post":
                assert {"409", "413", "415"} <= codes, (method, path)
            for code, answer in op["responses"].items():
                schema = answer["content"]["application/json"]["schema"]
                if code[0] in "45":
                    assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)
    assert doc["paths"]["/v1/payments"]["post"]["responses"]["201"]["links"]["RefundPayment"]["operationId"] \
        == "createRefund"


def test_every_list_endpoint_takes_limit_and_starting_after_and_answers_has_more(client):
    merchant = new_merchant(client)
    p = paid_payment(client, merchant)
    assert merchant.post(f"/v1/payments/{p['id']}/refunds", {"amount": 100}).status_code == 201
    assert merchant.post("/v1/alert_bindings", {"openid": "oAlice_5mT2qG9xW3rY7uP1sK4dH8",
                                                "store_name": "Ponsonby"}).status_code == 201
    doc = client.http.get("/v1/openapi.json").json_body
    lists = [path for path, ops in doc["paths"].items() if "get" in ops and
             ops["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("List")]
    assert len(lists) >= 9
    for path in lists:
        names = {p["name"] for p in doc["paths"][path]["get"]["parameters"]}
        assert {"limit", "starting_after"} <= names, path
        url = path.replace("{payment_id}", p["id"]) + "?limit=1"
        if path == "/v1/payments":
            url += "&merchant_reference=" + p["merchant_reference"]
        r = merchant.get(url)
        assert r.status_code == 200, (path, r.body)
        assert isinstance(r.json_body["has_more"], bool) and len(r.json_body["data"]) <= 1, path
        assert merchant.get(url.replace("limit=1", "limit=0")).status_code == 400, path
        assert merchant.get(url + "&starting_after=nope_0000").status_code == 400, path


def _events(merchant_id: str, n: int) -> list[str]:
    start = clock.now()
    ids = []
    for i in range(n):
        eid = f"evt_{i:020d}"
        EventModel(eid, merchant_id=merchant_id, type="payment.succeeded", payload="{}", status="delivered",
                   created_at=start + timedelta(seconds=i), livemode=True).save()
        ids.append(eid)
    return ids


def test_events_page_past_fifty_newest_first_with_nothing_lost(client):
    merchant = new_merchant(client)
    made = _events(merchant.merchant.id, 60)
    seen, after, pages = [], None, 0
    while True:
        r = merchant.get("/v1/events?limit=25" + (f"&starting_after={after}" if after else ""))
        assert r.status_code == 200, r.body
        body = r.json_body
        seen += [e["id"] for e in body["data"]]
        pages += 1
        if not body["has_more"]:
            break
        after = body["data"][-1]["id"]
    assert pages == 3 and seen == list(reversed(made))
    other = new_merchant(client, name="Other", sub_mch_id="20000200")
    assert other.get(f"/v1/events?starting_after={made[0]}").status_code == 400   # not theirs


@pytest.mark.parametrize("path", ["/v1/webhook_endpoints", "/v1/alert_bindings", "/v1/rates"])
def test_small_lists_page_too(client, path):
    merchant = new_merchant(client)
    body = merchant.get(path + "?limit=100").json_body
    assert body["object"] == "list" and body["has_more"] is False
    json.dumps(body)

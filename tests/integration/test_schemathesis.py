"""Schemathesis against the app as `make run` serves it (chalice's local server over the embedded AWS,
WeChat's sandbox reached in process): every documented operation, then stateful runs that follow the
document's links (create payment -> get it -> refund it -> list its refunds). No 5xx, every answer's
status, content type and body as documented. Bounded: a few examples per operation, short scenarios."""
from __future__ import annotations

import threading

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chalicelib.api import openapi
from tests.integration.helpers import new_merchant

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = hypothesis.settings(max_examples=6, deadline=None, derandomize=True, database=None,
                               suppress_health_check=list(HealthCheck))


def contract():
    """The served document, with generated payments steered to a channel and flow the sandbox takes, so
    creates succeed and the links (get, refund, list refunds) have a real payment to follow. Every other
    field, and every other operation's input, is generated from the document as is."""
    schema = schemathesis.openapi.from_dict(openapi.document())

    @schema.hook("map_body")
    def payable(context, body):
        if context.operation is not None and context.operation.label == "POST /v1/payments" and isinstance(body, dict):
            amount = body.get("amount")
            amount = amount if isinstance(amount, int) and 1 <= amount <= 5_000_000 else 1250
            steered = {k: v for k, v in body.items() if k not in ("client_ip", "expires_in", "return_url")}
            return {**steered, "amount": amount, "currency": "NZD", "channel": "wechat", "flow": "native"}
        return body

    return schema


@pytest.fixture
def live(client):
    """(base URL, headers with a merchant key) of a local server on a free loopback port."""
    from chalice.cli.factory import CLIFactory

    from infra import local

    config = CLIFactory(local.PROJECT_DIR.as_posix()).create_config_obj(chalice_stage_name="dev")
    server = local.local_server(config.chalice_app, config, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    merchant = new_merchant(client, live=False)
    try:
        yield f"http://127.0.0.1:{server.server.server_address[1]}", {"Authorization": f"Bearer {merchant.key}"}
    finally:
        server.shutdown()


def test_every_operation_answers_as_documented(live):
    base_url, headers = live
    operations = [result.ok() for result in contract().get_all_operations()]
    assert len(operations) == sum(len(ops) for ops in openapi.document()["paths"].values())
    for operation in operations:
        @EXAMPLES
        @hypothesis.given(case=operation.as_strategy())
        def answers_as_documented(case):
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

        answers_as_documented()


def test_create_get_refund_as_linked_answers_as_documented(live):
    base_url, headers = live
    machine = contract().as_state_machine()
    seen = []

    class Workflow(machine):
        def before_call(self, case):
            case.headers = {**(case.headers or {}), **headers}    # our key, not a generated one

        def get_call_kwargs(self, case):
            return {"base_url": base_url, "headers": headers, "timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            seen.append((case.operation.label, response.status_code))
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    Workflow.run(settings=hypothesis.settings(max_examples=10, stateful_step_count=6, deadline=None,
                                              derandomize=True, database=None,
                                              suppress_health_check=list(HealthCheck)))
    assert 201 in [status for label, status in seen if label == "POST /v1/payments"]    # payments were made


def test_the_documented_links_lead_from_a_created_payment_to_it_and_its_refund(live):
    """The links of createPayment followed by hand, the shopper paying in between, each answer checked
    against the document: create (201) -> get (200) -> refund (201) -> get refund, list refunds (200)."""
    import requests

    base_url, headers = live
    schema = contract()

    def call(path: str, method: str, expect: int, **case) -> dict:
        response = schema[path][method].Case(headers=dict(headers), **case).call_and_validate(
            base_url=base_url, checks=CHECKS, timeout=30)
        assert response.status_code == expect, response.text
        return response.json()

    links = openapi.document()["paths"]["/v1/payments"]["post"]["responses"]["201"]["links"]
    p = call("/v1/payments", "POST", 201, body={"amount": 1250, "currency": "NZD", "channel": "wechat",
                                                 "flow": "native", "merchant_reference": "linked", "description": "x"},
             media_type="application/json")
    assert links["GetPayment"]["parameters"] == {"payment_id": "$response.body#/id"}
    assert call("/v1/payments/{payment_id}", "GET", 200, path_parameters={"payment_id": p["id"]})["id"] == p["id"]
    paid = requests.post(f"{base_url}/sandbox/wechat/simulate/pay", json={"out_trade_no": p["channel_order_id"]},
                         timeout=30)
    assert paid.status_code == 200 and paid.json().get("delivered"), paid.text
    refund = call("/v1/payments/{payment_id}/refunds", "POST", 201, path_parameters={"payment_id": p["id"]},
                  body={"amount": 250, "reason": "linked"}, media_type="application/json")
    call("/v1/payments/{payment_id}/refunds/{refund_id}", "GET", 200,
         path_parameters={"payment_id": refund["payment"], "refund_id": refund["id"]})
    listed = call("/v1/payments/{payment_id}/refunds", "GET", 200, path_parameters={"payment_id": p["id"]})
    assert [r["id"] for r in listed["data"]] == [refund["id"]] and listed["has_more"] is False

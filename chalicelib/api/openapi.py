"""The merchant API's contract: an OpenAPI 3.1 document, served at GET /v1/openapi.json.

Written by hand, route by route (tests/integration/test_api_contract.py fails if a /v1 route of app.py
is missing here or a path here has no route), with every error shape. Built on first request only.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

NULLABLE_STRING = {"type": ["string", "null"]}
# Storable text (chalicelib.api.validate.text_problem): no control characters, surrogates or noncharacters.
TEXT_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f\\ufdd0-\\ufdef]*$"


def _text(max_len: int, min_len: int = 0) -> dict:
    out = {"type": "string", "maxLength": max_len, "pattern": TEXT_PATTERN}
    if min_len:
        out["minLength"] = min_len
    return out


TEXT_MAP = {"type": "object", "maxProperties": 20, "propertyNames": {**_text(40, 1)},
            "additionalProperties": _text(500)}
TIME = {"type": "string", "description": "UTC, YYYY-MM-DDTHH:MM:SSZ"}
NULLABLE_TIME = {"type": ["string", "null"], "description": "UTC, YYYY-MM-DDTHH:MM:SSZ"}
MINOR = {"type": "integer", "description": "minor units of `currency` (cents; fen)"}
CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}
MONEY = {"type": "object", "properties": {"amount": MINOR, "currency": CURRENCY}, "required": ["amount", "currency"]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(object_name: str, props: dict, required: list[str] | None = None) -> dict:
    props = {"object": {"const": object_name}, **props}
    return {"type": "object", "properties": props,
            "required": list(dict.fromkeys(["object", *(required or list(props))]))}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error: 4xx for what the caller can fix, 5xx for ours. Gateway answers "
                       "(unknown path 403, 413, 415, 429, 5xx) have the same shape.",
        "properties": {"error": {"type": "object", "properties": {
            "type": {"type": "string", "description": "invalid_request_error, authentication_error, "
                                                      "rate_limit_error, channel_error or api_error"},
            "code": {"type": "string"}, "message": {"type": "string"}, "param": NULLABLE_STRING},
            "required": ["type", "code", "message", "param"]}},
        "required": ["error"],
    },
    "Payment": _obj("payment", {
        "id": {"type": "string", "pattern": "^pay_"}, "livemode": {"type": "boolean"},
        "status": {"enum": ["pending", "succeeded", "failed", "closed"]},
        "amount": MINOR, "currency": CURRENCY, "amount_refunded": MINOR, "fee": MINOR,
        "channel": {"type": "string"}, "flow": {"type": "string"}, "merchant_reference": {"type": "string"},
        "description": {"type": "string"}, "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "return_url": NULLABLE_STRING, "channel_order_id": {"type": "string"},
        "channel_transaction_id": NULLABLE_STRING, "next_action": {"type": ["object", "null"]},
        "created": TIME, "expires_at": TIME, "paid_at": NULLABLE_TIME, "closed_at": NULLABLE_TIME,
        "failure_code": NULLABLE_STRING,
        "channel_amount": MONEY, "payer_amount": MONEY, "exchange_rate": {"type": "string"},
        "quote": {"type": "object"}, "documents": {"type": "array", "items": {"type": "object"}},
    }, ["id", "livemode", "status", "amount", "currency", "amount_refunded", "fee", "channel", "flow",
        "merchant_reference", "created", "expires_at"]),
    "Refund": _obj("refund", {
        "id": {"type": "string", "pattern": "^re_"}, "livemode": {"type": "boolean"}, "payment": {"type": "string"},
        "status": {"enum": ["processing", "succeeded", "failed"]}, "amount": MINOR, "currency": CURRENCY,
        "reason": {"type": "string"}, "channel_refund_id": NULLABLE_STRING, "created": TIME,
        "failure_code": NULLABLE_STRING}, ["id", "livemode", "payment", "status", "amount", "currency", "created"]),
    "WebhookEndpoint": _obj("webhook_endpoint", {
        "id": {"type": "string", "pattern": "^we_"}, "livemode": {"type": "boolean"}, "url": {"type": "string"},
        "enabled": {"type": "boolean"},
        "secret": {"type": "string", "description": "only in the answer that creates it"}},
        ["id", "livemode", "url", "enabled"]),
    "Event": _obj("event", {
        "id": {"type": "string", "pattern": "^evt_"}, "type": {"type": "string"}, "livemode": {"type": "boolean"},
        "status": {"type": "string"}, "attempts": {"type": "integer"}, "created": {"type": "integer"},
        "next_attempt_at": {"type": ["integer", "null"]}}, ["id", "type", "livemode", "status", "created"]),
    "Document": {"type": "object", "properties": {
        "id": {"type": "string"}, "filename": {"type": "string"}, "content_type": {"type": "string"},
        "size": {"type": "integer"}, "created": {"type": "string"}, "uploaded": {"type": "boolean"}},
        "required": ["id", "filename"]},
    "Balance": _obj("balance", {"merchant": {"type": "string"}, "livemode": {"type": "boolean"},
                                "balances": {"type": "array", "items": {"type": "object"}}}),
    "BalanceTransaction": _obj("balance_transaction", {
        "id": {"type": "string"}, "bucket": {"type": "string"}, "amount": {"type": "integer"},
        "currency": CURRENCY, "type": {"type": "string"}, "posting": {"type": "string"},
        "source": NULLABLE_STRING, "created": {"type": "string"}}, ["id", "amount", "currency"]),
    "Withdrawal": _obj("withdrawal", {
        "id": {"type": "string"}, "amount": MINOR, "currency": CURRENCY, "status": {"type": "string"},
        "bank_account_last4": {"type": "string"}, "period": {"type": "string"}, "created": {"type": "string"},
        "settled_at": NULLABLE_STRING, "failure_reason": NULLABLE_STRING}, ["id", "amount", "currency", "status"]),
    "Rate": {"type": "object", "properties": {
        "channel": {"type": "string"}, "currency": CURRENCY, "quote_currency": CURRENCY, "rate": {"type": "string"},
        "source_time": TIME, "fetched_at": TIME}, "required": ["channel", "currency", "rate"]},
    "AlertBinding": _obj("alert_binding", {
        "id": {"type": "string", "pattern": "^alb_"}, "openid": {"type": "string"}, "store_name": {"type": "string"},
        "created": TIME}, ["id", "openid", "store_name"]),
    "QrCode": _obj("qr_code", {
        "id": {"type": "string"}, "livemode": {"type": "boolean"}, "status": {"type": "string"},
        "store_name": {"type": "string"}, "currency": CURRENCY, "fixed_amount": {"type": ["integer", "null"]},
        "max_amount": {"type": ["integer", "null"]}, "url": {"type": "string"}, "image_url": {"type": "string"},
        "created": TIME, "disabled_at": NULLABLE_TIME, "replaced_by": NULLABLE_STRING},
        ["id", "livemode", "status", "store_name", "url"]),
    "NewQrCode": {"type": "object", "additionalProperties": False, "properties": {
        "store_name": _text(40, 1), "fixed_amount": {"type": "integer", "minimum": 1},
        "max_amount": {"type": "integer", "minimum": 1}}, "required": ["store_name"]},
    "Deleted": {"type": "object", "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                                                 "deleted": {"const": True}}, "required": ["id", "deleted"]},
    "NewPayment": {"type": "object", "additionalProperties": False, "properties": {
        "amount": {"type": "integer", "minimum": 1}, "currency": CURRENCY,
        "channel": {"enum": ["wechat", "alipay", "payease"],
                    "description": "omit it (and flow) to let the shopper choose on the hosted checkout"},
        "flow": {"type": "string", "maxLength": 16},
        "allowed_channels": {"type": "array", "minItems": 1, "maxItems": 5,
                             "items": {"enum": ["wechat", "alipay", "payease"]},
                             "description": "only without channel: what the checkout offers"},
        "merchant_reference": _text(64), "description": _text(127),
        "return_url": {"type": "string", "format": "uri", "maxLength": 2048},
        "metadata": TEXT_MAP, "payer": {**TEXT_MAP, "maxProperties": 5, "additionalProperties": _text(128)},
        "expires_in": {"type": "integer", "minimum": 60, "maximum": 86400}, "client_ip": {"type": "string"}},
        "required": ["amount", "currency", "merchant_reference", "description"]},
    "NewRefund": {"type": "object", "additionalProperties": False, "properties": {
        "amount": {"type": "integer", "minimum": 1}, "reason": _text(80)},
        "required": ["amount"]},
    "NewWebhookEndpoint": {"type": "object", "additionalProperties": False,
                           "properties": {"url": {"type": "string", "format": "uri"}}, "required": ["url"]},
    "WebhookEndpointUpdate": {"type": "object", "additionalProperties": False,
                              "properties": {"disabled": {"type": "boolean"}}, "required": ["disabled"]},
    "NewAlertBinding": {"type": "object", "additionalProperties": False, "properties": {
        "openid": {"type": "string", "pattern": "^[A-Za-z0-9_\\-]{20,64}$"},
        "store_name": _text(20, 1)}, "required": ["openid", "store_name"]},
    "OpenApiDocument": {"type": "object", "properties": {"openapi": {"const": "3.1.0"}, "paths": {"type": "object"}},
                        "required": ["openapi", "info", "paths", "components"]},
}

for _item in ("Payment", "Refund", "WebhookEndpoint", "Event", "Document", "BalanceTransaction", "Withdrawal",
              "Rate", "AlertBinding", "QrCode"):
    SCHEMAS[_item + "List"] = {"type": "object", "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": _ref(_item)}, "has_more": {"type": "boolean"},
        "next_starting_after": NULLABLE_STRING}, "required": ["object", "data", "has_more"]}

ERRORS = {
    "400": "Invalid request (a field, a parameter, a body that is not JSON)",
    "401": "No or unknown API key",
    "404": "No such object (or not yours, or of the other mode)",
    "409": "Conflict with the object's state, or an Idempotency-Key reused with another body",
    "413": "Body too large",
    "415": "Body not sent as application/json",
    "422": "Valid, but it cannot be done now",
    "429": "Too many requests for this key (Retry-After says when to retry)",
    "500": "Our fault",
    "502": "The channel refused or failed (error.code says how)",
    "503": "Not available here (e.g. test mode without a test environment for the channel)",
}
READ_ERRORS = ("400", "401", "404", "429", "500", "503")
WRITE_ERRORS = ("400", "401", "404", "409", "413", "415", "422", "429", "500", "502", "503")

LIST_PARAMS = [
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                                                     "default": 20}},
    {"name": "starting_after", "in": "query", "required": False,
     "schema": _text(64, 1), "description": "the id of the last item of the previous page"},
]
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "maxLength": 255},
               "description": "retries with the same key and body return the first answer"}


def _path_param(name: str, prefix: str) -> dict:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$"}, "description": f"a `{prefix}_...` id"}


def _op(op_id: str, summary: str, ok: str, schema: str, errors=READ_ERRORS, params=(), body: str | None = None,
        links: dict | None = None, security: bool = True) -> dict:
    responses: dict[str, Any] = {ok: {"description": "OK", "content": {"application/json": {"schema": _ref(schema)}}}}
    if links:
        responses[ok]["links"] = links
    for code in errors:
        responses[code] = {"description": ERRORS[code], "content": {"application/json": {"schema": _ref("Error")}}}
    if "429" in errors:
        responses["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "parameters": list(params),
                          "responses": responses}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if not security:
        op["security"] = []
    return op


PAYMENT_ID = _path_param("payment_id", "pay")


@lru_cache(maxsize=1)
def document() -> dict:
    payment_links = {
        "GetPayment": {"operationId": "getPayment", "parameters": {"payment_id": "$response.body#/id"}},
        "RefundPayment": {"operationId": "createRefund", "parameters": {"payment_id": "$response.body#/id"}},
        "ListRefunds": {"operationId": "listRefunds", "parameters": {"payment_id": "$response.body#/id"}},
    }
    paths = {
        "/v1/openapi.json": {"get": _op("getOpenApi", "This document", "200", "OpenApiDocument", errors=("500",),
                                        security=False)},
        "/v1/payments": {
            "post": _op("createPayment", "Create a payment at a channel", "201", "Payment", WRITE_ERRORS,
                        [IDEMPOTENCY], "NewPayment", links=payment_links),
            "get": _op("listPayments", "Payments with a merchant_reference", "200", "PaymentList", READ_ERRORS,
                       [{"name": "merchant_reference", "in": "query", "required": True,
                         "schema": _text(64, 1)}, *LIST_PARAMS]),
        },
        "/v1/payments/{payment_id}": {"get": _op("getPayment", "A payment", "200", "Payment", READ_ERRORS,
                                                 [PAYMENT_ID])},
        "/v1/payments/{payment_id}/close": {"post": _op("closePayment", "Close a pending payment", "200", "Payment",
                                                        WRITE_ERRORS, [PAYMENT_ID, IDEMPOTENCY])},
        "/v1/payments/{payment_id}/refunds": {
            "post": _op("createRefund", "Refund (part of) a succeeded payment", "201", "Refund", WRITE_ERRORS,
                        [PAYMENT_ID, IDEMPOTENCY], "NewRefund",
                        links={"GetRefund": {"operationId": "getRefund", "parameters": {
                            "payment_id": "$response.body#/payment", "refund_id": "$response.body#/id"}}}),
            "get": _op("listRefunds", "A payment's refunds", "200", "RefundList", READ_ERRORS,
                       [PAYMENT_ID, *LIST_PARAMS]),
        },
        "/v1/payments/{payment_id}/refunds/{refund_id}": {"get": _op(
            "getRefund", "A refund", "200", "Refund", READ_ERRORS, [PAYMENT_ID, _path_param("refund_id", "re")])},
        "/v1/payments/{payment_id}/documents": {"get": _op(
            "listDocuments", "A payment's supporting documents", "200", "DocumentList", READ_ERRORS,
            [PAYMENT_ID, *LIST_PARAMS])},
        "/v1/webhook_endpoints": {
            "post": _op("createWebhookEndpoint", "Add a webhook endpoint (its secret is shown once)", "201",
                        "WebhookEndpoint", WRITE_ERRORS, [IDEMPOTENCY], "NewWebhookEndpoint"),
            "get": _op("listWebhookEndpoints", "Webhook endpoints of the key's mode", "200", "WebhookEndpointList",
                       READ_ERRORS, LIST_PARAMS),
        },
        "/v1/webhook_endpoints/{endpoint_id}": {
            "post": _op("updateWebhookEndpoint", "Disable or enable an endpoint", "200", "WebhookEndpoint",
                        WRITE_ERRORS, [_path_param("endpoint_id", "we"), IDEMPOTENCY], "WebhookEndpointUpdate"),
            "delete": _op("deleteWebhookEndpoint", "Delete an endpoint", "200", "Deleted", READ_ERRORS,
                          [_path_param("endpoint_id", "we")]),
        },
        "/v1/events": {"get": _op("listEvents", "Events of the key's mode, newest first", "200", "EventList",
                                  READ_ERRORS, LIST_PARAMS)},
        "/v1/events/{event_id}": {"get": _op("getEvent", "An event", "200", "Event", READ_ERRORS,
                                             [_path_param("event_id", "evt")])},
        "/v1/events/{event_id}/resend": {"post": _op("resendEvent", "Deliver an event again", "200", "Event",
                                                     WRITE_ERRORS, [_path_param("event_id", "evt"), IDEMPOTENCY])},
        "/v1/balance": {"get": _op("getBalance", "Balances per currency and bucket", "200", "Balance")},
        "/v1/balance/transactions": {"get": _op(
            "listBalanceTransactions", "Ledger entries of one currency, newest first", "200",
            "BalanceTransactionList", READ_ERRORS,
            [{"name": "currency", "in": "query", "required": False, "schema": CURRENCY}, *LIST_PARAMS])},
        "/v1/withdrawals": {"get": _op("listWithdrawals", "Payouts, newest first", "200", "WithdrawalList",
                                       READ_ERRORS, LIST_PARAMS)},
        "/v1/rates": {"get": _op("listRates", "Latest channel rates", "200", "RateList", READ_ERRORS, LIST_PARAMS)},
        "/v1/alert_bindings": {
            "post": _op("createAlertBinding", "Send a staff member's WeChat payment alerts", "201", "AlertBinding",
                        WRITE_ERRORS, [IDEMPOTENCY], "NewAlertBinding"),
            "get": _op("listAlertBindings", "Staff alert bindings", "200", "AlertBindingList", READ_ERRORS,
                       LIST_PARAMS),
        },
        "/v1/qr_codes": {
            "post": _op("createQrCode", "A static QR code a store shows (the shopper enters or is given the amount)",
                        "201", "QrCode", WRITE_ERRORS, [IDEMPOTENCY], "NewQrCode"),
            "get": _op("listQrCodes", "The merchant's QR codes", "200", "QrCodeList", READ_ERRORS, LIST_PARAMS),
        },
        "/v1/qr_codes/{code_id}": {"get": _op("getQrCode", "A QR code", "200", "QrCode", READ_ERRORS,
                                              [_path_param("code_id", "qr")])},
        "/v1/qr_codes/{code_id}/disable": {"post": _op("disableQrCode", "Stop a QR code taking payments", "200",
                                                       "QrCode", WRITE_ERRORS, [_path_param("code_id", "qr"),
                                                                                IDEMPOTENCY])},
        "/v1/qr_codes/{code_id}/rotate": {"post": _op("rotateQrCode", "Replace a QR code by a new one", "201",
                                                      "QrCode", WRITE_ERRORS, [_path_param("code_id", "qr"),
                                                                               IDEMPOTENCY])},
        "/v1/alert_bindings/{binding_id}": {"delete": _op(
            "deleteAlertBinding", "Stop a staff member's alerts", "200", "Deleted", READ_ERRORS,
            [_path_param("binding_id", "alb")])},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kauri merchant API", "version": "1",
                 "description": "Amounts are integers in minor units with an ISO 4217 currency. Authenticate "
                                "with `Authorization: Bearer sk_live_...` (or `sk_test_...`). Every list "
                                "paginates with limit / starting_after / has_more."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "sk_live_... or sk_test_..."}}},
    }

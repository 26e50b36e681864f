"""Kauri: every entry point and nothing else. Handlers read the request, call one service, answer.

Heavy packages (boto3/pynamodb, requests, qrcode) load on first use, not at import: every Lambda of
this app imports this module on cold start.
"""
from __future__ import annotations

from chalice import Chalice, Cron, Rate, Response

from chalicelib import channels, settings
from chalicelib.api import http as api
from chalicelib.api import pages
from chalicelib.api.jobs import hand_runnable
from chalicelib.web.render import page_endpoint

app = Chalice(app_name="kauri", configure_logs=False)  # chalicelib.log writes our structured lines
# No route takes or answers application/octet-stream as binary: merchant POSTs list it only to answer it with
# our 415, and the WeChat sandbox reads such a body as the XML it is. Left in chalice's binary types, it makes
# those routes mix binary and text content types, which `chalice deploy` refuses.
app.api.binary_types.remove("application/octet-stream")
app.api.binary_types.append("application/gzip")   # the WeChat sandbox's tar_type=GZIP bill (no route takes it in)
_settings = settings.get()

CALLBACK_TYPES = ["text/xml", "application/xml", "application/x-www-form-urlencoded", "application/json",
                  "text/plain"]


# Merchant POST routes let any common body type through so a wrong one gets our JSON 415, not chalice's.
ANY_BODY = ["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
            "application/octet-stream", "text/xml", "application/xml"]


def _req():
    return app.current_request


@app.middleware("all")
def _correlate(event, get_response):
    """Every log line of this invocation carries its request id (API Gateway's for HTTP, else Lambda's)
    and, for /payments/{payment_id}/..., the payment id; api.caller adds the merchant."""
    from chalicelib import log

    context = getattr(event, "context", None)
    if isinstance(context, dict):   # HTTP: API Gateway's request context, then the Lambda context
        request_id = context.get("requestId") or getattr(getattr(event, "lambda_context", None),
                                                         "aws_request_id", None)
    else:                           # other events: their Lambda context
        request_id = getattr(context, "aws_request_id", None)
    uri = getattr(event, "uri_params", None) or {}
    with log.scope(request_id=request_id, payment_id=uri.get("payment_id") if isinstance(uri, dict) else None):
        return get_response(event)


@app.middleware("http")
def _framework_errors_in_our_shape(event, get_response):
    """Answers chalice gives before our handler runs (405 wrong method, 415 unlisted content type) in
    our documented error shape; API Gateway's own (403 unknown path, 429, 413) get it from the gateway
    responses that infra/deploy.py puts on the API (infra/gateway.py)."""
    response = get_response(event)
    if response.status_code in (405, 415) and isinstance(response.body, dict) and "Code" in response.body:
        from chalicelib.api.http import framework_error

        return framework_error(response)
    return response


@app.middleware("http")
def edge(request, get_response):
    return api.edge(request, get_response)


# ---- merchant API v1 -------------------------------------------------------------------------
@app.route("/v1/openapi.json", methods=["GET"])
@api.json_endpoint
def openapi_document():
    """The merchant API's contract (OpenAPI 3.1): public, no key needed."""
    from chalicelib.api import openapi

    return api.respond(200, openapi.document())


@app.route("/v1/payments", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def create_payment():
    from chalicelib.api.requests import new_payment
    from chalicelib.domain import views
    from chalicelib.services import payments

    req = _req()
    who = api.caller(req)
    source_ip = (req.context or {}).get("identity", {}).get("sourceIp")

    def run(completion):
        return 201, views.payment(payments.create(who.merchant, who.livemode, new_payment(api.body(req), source_ip),
                                                  completion))
    return api.idempotent(req, who, "POST /v1/payments", run)


@app.route("/v1/payments", methods=["GET"])
@api.json_endpoint
def list_payments():
    from chalicelib.api import validate
    from chalicelib.domain import views
    from chalicelib.services import payments

    req = _req()
    who = api.caller(req)
    ref = validate.string(req.query_params or {}, "merchant_reference", max_len=64)
    found = payments.find_by_reference(who.merchant, who.livemode, ref)
    return api.respond(200, pages.page([views.payment(p) for p in found], req.query_params))


@app.route("/v1/payments/{payment_id}", methods=["GET"])
@api.json_endpoint
def get_payment(payment_id):
    from chalicelib.domain import views
    from chalicelib.services import payments

    who = api.caller(_req())
    return api.respond(200, views.payment(payments.get_for(who.merchant, who.livemode, payment_id)))


@app.route("/v1/payments/{payment_id}/close", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def close_payment(payment_id):
    from chalicelib.domain import views
    from chalicelib.services import payments

    req = _req()
    who = api.caller(req)
    return api.idempotent(req, who, f"POST /v1/payments/{payment_id}/close", lambda completion: (
        200, views.payment(payments.close(who.merchant, who.livemode, payment_id, completion))))


@app.route("/v1/payments/{payment_id}/refunds", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def create_refund(payment_id):
    from chalicelib.api.requests import new_refund
    from chalicelib.domain import views
    from chalicelib.services import refunds

    req = _req()
    who = api.caller(req)

    def run(completion):
        amount, reason = new_refund(api.body(req))
        return 201, views.refund(refunds.create(who.merchant, who.livemode, payment_id, amount, reason, completion))
    return api.idempotent(req, who, f"POST /v1/payments/{payment_id}/refunds", run)


@app.route("/v1/payments/{payment_id}/refunds", methods=["GET"])
@api.json_endpoint
def list_refunds(payment_id):
    from chalicelib.domain import views
    from chalicelib.services import refunds

    req = _req()
    who = api.caller(req)
    found = refunds.list_for(who.merchant, who.livemode, payment_id)
    return api.respond(200, pages.page([views.refund(r) for r in found], req.query_params))


@app.route("/v1/payments/{payment_id}/refunds/{refund_id}", methods=["GET"])
@api.json_endpoint
def get_refund(payment_id, refund_id):
    from chalicelib.domain import views
    from chalicelib.services import refunds

    who = api.caller(_req())
    return api.respond(200, views.refund(refunds.get_for(who.merchant, who.livemode, payment_id, refund_id)))


@app.route("/v1/webhook_endpoints", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def create_webhook_endpoint():
    from chalicelib.api.requests import new_webhook_endpoint
    from chalicelib.services import merchants

    req = _req()
    who = api.caller(req)
    return api.idempotent(req, who, "POST /v1/webhook_endpoints", lambda completion: (
        201, merchants.add_webhook_endpoint(who.merchant, who.livemode, new_webhook_endpoint(api.body(req)),
                                            completion)))


@app.route("/v1/webhook_endpoints", methods=["GET"])
@api.json_endpoint
def list_webhook_endpoints():
    from chalicelib.services import merchants

    req = _req()
    who = api.caller(req)
    return api.respond(200, pages.page(merchants.list_webhook_endpoints(who.merchant, who.livemode), req.query_params))


@app.route("/v1/webhook_endpoints/{endpoint_id}", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def update_webhook_endpoint(endpoint_id):
    from chalicelib.api.requests import webhook_endpoint_update
    from chalicelib.services import merchants

    req = _req()
    who = api.caller(req)
    return api.idempotent(req, who, f"POST /v1/webhook_endpoints/{endpoint_id}", lambda completion: (
        200, merchants.set_webhook_endpoint_disabled(who.merchant, who.livemode, endpoint_id,
                                                     webhook_endpoint_update(api.body(req)), completion)))


@app.route("/v1/webhook_endpoints/{endpoint_id}", methods=["DELETE"])
@api.json_endpoint
def delete_webhook_endpoint(endpoint_id):
    from chalicelib.api.errors import not_found
    from chalicelib.services import merchants

    who = api.caller(_req())
    if not merchants.delete_webhook_endpoint(who.merchant, who.livemode, endpoint_id):
        raise not_found("webhook endpoint", "endpoint_id")
    return api.respond(200, {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True})


@app.route("/v1/events", methods=["GET"])
@api.json_endpoint
def list_events():
    from chalicelib.services import notifications

    req = _req()
    who = api.caller(req)
    return api.respond(200, notifications.list_for(who.merchant.id, who.livemode, req.query_params))


@app.route("/v1/events/{event_id}", methods=["GET"])
@api.json_endpoint
def get_event(event_id):
    from chalicelib.api.errors import not_found
    from chalicelib.services import notifications

    who = api.caller(_req())
    found = notifications.get_for(who.merchant.id, who.livemode, event_id)
    if found is None:
        raise not_found("event", "event_id")
    return api.respond(200, found)


@app.route("/v1/events/{event_id}/resend", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def resend_event(event_id):
    from chalicelib.api.errors import not_found
    from chalicelib.services import notifications

    req = _req()
    who = api.caller(req)

    def run(completion):
        found = notifications.resend(who.merchant.id, who.livemode, event_id, completion)
        if found is None:
            raise not_found("event", "event_id")
        return 200, found
    return api.idempotent(req, who, f"POST /v1/events/{event_id}/resend", run)


@app.route("/v1/payments/{payment_id}/documents", methods=["GET"])
@api.json_endpoint
def list_documents(payment_id):
    from chalicelib.services import documents, payments

    req = _req()
    who = api.caller(req)
    payments.get_for(who.merchant, who.livemode, payment_id)
    return api.respond(200, pages.page(documents.list_for(payment_id), req.query_params))


# ---- static QR codes (merchant API) ----------------------------------------------------------
@app.route("/v1/qr_codes", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def create_qr_code():
    from chalicelib import settings as s
    from chalicelib.api.requests import new_qr_code
    from chalicelib.services import qr_codes

    req = _req()
    who = api.caller(req)
    return api.idempotent(req, who, "POST /v1/qr_codes", lambda _c: (201, qr_codes.view(
        qr_codes.create(who.merchant, who.livemode, *new_qr_code(api.body(req))), s.get().public_base_url)))


@app.route("/v1/qr_codes", methods=["GET"])
@api.json_endpoint
def list_qr_codes():
    from chalicelib.services import qr_codes

    req = _req()
    who = api.caller(req)
    base = _settings.public_base_url
    return api.respond(200, pages.page([qr_codes.view(c, base) for c in qr_codes.list_for(who.merchant, who.livemode)],
                                       req.query_params))


@app.route("/v1/qr_codes/{code_id}", methods=["GET"])
@api.json_endpoint
def get_qr_code(code_id):
    from chalicelib.services import qr_codes

    who = api.caller(_req())
    return api.respond(200, qr_codes.view(qr_codes.get_for(who.merchant, who.livemode, code_id),
                                          _settings.public_base_url))


@app.route("/v1/qr_codes/{code_id}/disable", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def disable_qr_code(code_id):
    from chalicelib.services import qr_codes

    req = _req()
    who = api.caller(req)
    return api.idempotent(req, who, f"POST /v1/qr_codes/{code_id}/disable", lambda _c: (200, qr_codes.view(
        qr_codes.disable(who.merchant, who.livemode, code_id), _settings.public_base_url)))


@app.route("/v1/qr_codes/{code_id}/rotate", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def rotate_qr_code(code_id):
    from chalicelib.services import qr_codes

    req = _req()
    who = api.caller(req)
    return api.idempotent(req, who, f"POST /v1/qr_codes/{code_id}/rotate", lambda _c: (201, qr_codes.view(
        qr_codes.rotate(who.merchant, who.livemode, code_id), _settings.public_base_url)))


# ---- shopper pages (HTML; chalicelib.web) -----------------------------------------------------
PAGE_FORMS = ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]


@app.route("/qr/{code_id}", methods=["GET"])
@page_endpoint
def qr_page(code_id):
    from chalicelib.web import shopper

    return shopper.code_page(code_id, _req())


@app.route("/qr/{code_id}/pay", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def qr_pay(code_id):
    from chalicelib.web import shopper

    return shopper.code_pay(code_id, _req())


@app.route("/qr/{code_id}/image", methods=["GET"])
@page_endpoint
def qr_image(code_id):
    from chalicelib.web import shopper

    return shopper.code_image(code_id, _req())


@app.route("/pay/{payment_id}", methods=["GET"])
@page_endpoint
def pay_page(payment_id):
    from chalicelib.web import shopper

    return shopper.payment_page(payment_id, _req())


@app.route("/pay/{payment_id}/choose", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def pay_choose(payment_id):
    from chalicelib.web import shopper

    return shopper.choose(payment_id, _req())


@app.route("/pay/{payment_id}/result", methods=["GET"])
@page_endpoint
def pay_result(payment_id):
    from chalicelib.web import shopper

    return shopper.result_page(payment_id, _req())


@app.route("/pay/{payment_id}/status", methods=["GET"])
@page_endpoint
def pay_status(payment_id):
    from chalicelib.web import shopper

    return shopper.status(payment_id)


@app.route("/pay/{payment_id}/requote", methods=["POST"], content_types=PAGE_FORMS + ["application/json"])
@page_endpoint
def pay_requote(payment_id):
    from chalicelib.web import tuition

    return tuition.requote(payment_id, _req())


@app.route("/pay/{payment_id}/documents/new", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def pay_document_form(payment_id):
    from chalicelib.web import tuition

    return tuition.new_document(payment_id, _req())


@app.route("/pay/{payment_id}/documents", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def pay_document_upload(payment_id):
    from chalicelib.api import validate
    from chalicelib.services import documents

    data = api.body(_req())
    validate.only(data, {"filename", "content_type", "size"})
    return api.respond(201, documents.start_upload(payment_id, data.get("filename"), data.get("content_type"),
                                                   data.get("size")))


# ---- balances and withdrawals ----------------------------------------------------------------
@app.route("/v1/balance", methods=["GET"])
@api.json_endpoint
def get_balance():
    from chalicelib.services import reconciliation

    who = api.caller(_req())
    return api.respond(200, reconciliation.balance_view(who.merchant, who.livemode))


@app.route("/v1/balance/transactions", methods=["GET"])
@api.json_endpoint
def list_balance_transactions():
    from chalicelib.services import balances

    req = _req()
    who = api.caller(req)
    return api.respond(200, balances.transactions(who.merchant, dict(req.query_params or {}), who.livemode))


@app.route("/v1/withdrawals", methods=["GET"])
@api.json_endpoint
def list_withdrawals():
    from chalicelib.services import withdrawals

    req = _req()
    who = api.caller(req)
    return api.respond(200, withdrawals.list_for(who.merchant, dict(req.query_params or {})))


# ---- FX rates and staff alerts in WeChat ------------------------------------------------------
@app.route("/v1/rates", methods=["GET"])
@api.json_endpoint
def list_rates():
    from chalicelib.services import fx

    req = _req()
    api.caller(req)
    return api.respond(200, pages.page(fx.rates_view(), req.query_params, lambda r: f"{r['channel']}_{r['currency']}"))


@app.route("/v1/alert_bindings", methods=["POST"], content_types=ANY_BODY)
@api.json_endpoint
def create_alert_binding():
    from chalicelib.api import validate
    from chalicelib.services import alerts

    req = _req()
    who = api.caller(req)

    def run(completion):
        data = api.body(req)
        validate.only(data, {"openid", "store_name"})
        openid = validate.string(data, "openid", max_len=64, pattern=alerts.OPENID_PATTERN)
        store_name = validate.string(data, "store_name", max_len=alerts.STORE_NAME_MAX)
        return 201, alerts.add_binding(who.merchant.id, openid, store_name, completion)
    return api.idempotent(req, who, "POST /v1/alert_bindings", run)


@app.route("/v1/alert_bindings", methods=["GET"])
@api.json_endpoint
def list_alert_bindings():
    from chalicelib.services import alerts

    req = _req()
    who = api.caller(req)
    return api.respond(200, pages.page(alerts.list_bindings(who.merchant.id), req.query_params))


@app.route("/v1/alert_bindings/{binding_id}", methods=["DELETE"])
@api.json_endpoint
def delete_alert_binding(binding_id):
    from chalicelib.api.errors import not_found
    from chalicelib.services import alerts

    who = api.caller(_req())
    if not alerts.delete_binding(who.merchant.id, binding_id):
        raise not_found("alert binding", "binding_id")
    return api.respond(200, {"id": binding_id, "object": "alert_binding", "deleted": True})


# ---- channel callbacks -----------------------------------------------------------------------
@app.route("/callbacks/{channel}", methods=["POST"], content_types=CALLBACK_TYPES)
def channel_callback(channel):
    from chalicelib.services import callbacks

    if channel not in channels.names():
        return Response(body="unknown channel", status_code=404, headers={"Content-Type": "text/plain"})
    req = _req()
    ack = callbacks.handle(channel, req.raw_body or b"", dict(req.headers or {}))
    return Response(body=ack.body, status_code=ack.status_code, headers={"Content-Type": ack.content_type})


# ---- merchant portal (issue 11) ----------------------------------------------------------------
@app.route("/portal", methods=["GET"])
@page_endpoint
def portal_home():
    from chalicelib.web.portal import auth

    return auth.home(_req())


@app.route("/portal/sign-in", methods=["GET"])
@page_endpoint
def portal_sign_in_page():
    from chalicelib.web.portal import auth

    return auth.sign_in_page(_req())


@app.route("/portal/sign-in", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_sign_in():
    from chalicelib.web.portal import auth

    return auth.sign_in(_req())


@app.route("/portal/sign-out", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_sign_out():
    from chalicelib.web.portal import auth

    return auth.sign_out(_req())


@app.route("/portal/invitations/{token}", methods=["GET"])
@page_endpoint
def portal_invitation(token):
    from chalicelib.web.portal import auth

    return auth.invitation_page(token, _req())


@app.route("/portal/invitations/{token}", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_accept_invitation(token):
    from chalicelib.web.portal import auth

    return auth.accept_invitation(token, _req())


@app.route("/portal/staff", methods=["GET"])
@page_endpoint
def portal_staff():
    from chalicelib.web.portal import staff

    return staff.staff_page(_req())


@app.route("/portal/staff/invite", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_invite():
    from chalicelib.web.portal import staff

    return staff.invite(_req())


@app.route("/portal/sessions/{session_id}/sign-out", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_remote_sign_out(session_id):
    from chalicelib.web.portal import staff

    return staff.remote_sign_out(session_id, _req())


@app.route("/portal/spotpay", methods=["GET"])
@page_endpoint
def portal_spotpay():
    from chalicelib.web.portal import spotpay

    return spotpay.new_sale(_req())


@app.route("/portal/spotpay", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_spotpay_ring_up():
    from chalicelib.web.portal import spotpay

    return spotpay.ring_up(_req())


@app.route("/portal/spotpay/{payment_id}", methods=["GET"])
@page_endpoint
def portal_spotpay_sale(payment_id):
    from chalicelib.web.portal import spotpay

    return spotpay.sale(payment_id, _req())


@app.route("/portal/payments", methods=["GET"])
@page_endpoint
def portal_payments():
    from chalicelib.web.portal import payments

    return payments.list_page(_req())


@app.route("/portal/payments/{payment_id}", methods=["GET"])
@page_endpoint
def portal_payment(payment_id):
    from chalicelib.web.portal import payments

    return payments.detail(payment_id, _req())


@app.route("/portal/payments/{payment_id}/refund", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_refund(payment_id):
    from chalicelib.web.portal import payments

    return payments.refund(payment_id, _req())


@app.route("/portal/balance", methods=["GET"])
@page_endpoint
def portal_balance():
    from chalicelib.web.portal import balance

    return balance.page(_req())


@app.route("/portal/balance/statement", methods=["GET"])
@page_endpoint
def portal_statement():
    from chalicelib.web.portal import balance

    return balance.statement(_req())


@app.route("/portal/codes", methods=["GET"])
@page_endpoint
def portal_codes():
    from chalicelib.web.portal import codes

    return codes.page(_req())


@app.route("/portal/codes", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_create_code():
    from chalicelib.web.portal import codes

    return codes.act(_req(), "create")


@app.route("/portal/codes/{code_id}/{action}", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_code_action(code_id, action):
    from chalicelib.web.portal import codes

    if action not in ("disable", "rotate"):
        return codes.page(_req(), "portal_code_refused", 404)
    return codes.act(_req(), action, code_id)


@app.route("/portal/alerts", methods=["GET"])
@page_endpoint
def portal_alerts():
    from chalicelib.web.portal import alerts

    return alerts.page(_req())


@app.route("/portal/alerts/codes", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_alert_bind_code():
    from chalicelib.web.portal import alerts

    return alerts.new_code(_req())


@app.route("/portal/alerts/{binding_id}/remove", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_alert_unbind(binding_id):
    from chalicelib.web.portal import alerts

    return alerts.remove(binding_id, _req())


# Scanned in WeChat by the staff member (no portal session): the Official Account's OAuth, then the binding.
@app.route("/portal/alerts/bind/{token}", methods=["GET"])
@page_endpoint
def portal_alert_bind(token):
    from chalicelib.web.portal import alerts

    return alerts.bind(token, _req())


@app.route("/portal/developers", methods=["GET"])
@page_endpoint
def portal_developers():
    from chalicelib.web.portal import developers

    return developers.page(_req())


@app.route("/portal/developers/keys", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_create_key():
    from chalicelib.web.portal import developers

    return developers.act(_req(), "key_create")


@app.route("/portal/developers/endpoints", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_add_endpoint():
    from chalicelib.web.portal import developers

    return developers.act(_req(), "endpoint_add")


# {kind}/{ref}/{verb}: keys/<ref>/roll|revoke, endpoints/<id>/disable|enable, events/<id>/resend
@app.route("/portal/developers/{kind}/{ref}/{verb}", methods=["POST"], content_types=PAGE_FORMS)
@page_endpoint
def portal_developer_action(kind, ref, verb):
    from chalicelib.web.portal import developers

    action = {("keys", "roll"): "key_roll", ("keys", "revoke"): "key_revoke",
              ("endpoints", "disable"): "endpoint_disable", ("endpoints", "enable"): "endpoint_enable",
              ("events", "resend"): "event_resend"}.get((kind, verb))
    if action is None:
        return developers.page(_req(), error_key="portal_dev_refused", status=404)
    return developers.act(_req(), action, ref)


# ---- scheduled jobs --------------------------------------------------------------------------
# Each is idempotent per period (services.jobs) and answers one summary. Hand-run params (optional):
# {"dry_run": true, "force": true, "merchant_id": "mch_..."}; fx_pull takes {"date": "2026-11-25"}.
@app.schedule(Rate(1, unit=Rate.MINUTES), name="retry_webhooks")
def retry_webhooks(event):
    from chalicelib.services import jobs

    return jobs.run(jobs.RETRY_WEBHOOKS, event.to_dict(), event.context)


@app.schedule(Rate(5, unit=Rate.MINUTES), name="chase_payments")
def chase_payments(event):
    from chalicelib.services import jobs

    return jobs.run(jobs.CHASE_PAYMENTS, event.to_dict(), event.context)


@app.schedule(Rate(30, unit=Rate.MINUTES), name="fx_pull")
def fx_pull(event):
    from chalicelib.services import jobs

    return jobs.run(jobs.FX_PULL, event.to_dict())


@app.schedule(Rate(1, unit=Rate.MINUTES), name="merchant_alerts")
def merchant_alerts(event):
    from chalicelib.services import jobs

    return jobs.run(jobs.MERCHANT_ALERTS, event.to_dict(), event.context)


# Kauri's own mail (staff invitations), queued with what it tells of; retried like webhooks.
@app.schedule(Rate(1, unit=Rate.MINUTES), name="send_mail")
def send_mail(event):
    from chalicelib.services import jobs

    return jobs.run(jobs.SEND_MAIL, event.to_dict(), event.context)


# Daily at 03:30 UTC = 16:30 NZDT / 15:30 NZST: always before the 17:00 local auto_withdraw.
# Hand-run: {"date": "2026-11-25", "merchant_id": "mch_...", "dry_run": true} (all optional).
@app.schedule(Cron(30, 3, "*", "*", "?", "*"), name="release_funds")
def release_funds(event):
    from chalicelib.services import balances, reconciliation

    reconciliation.install()
    return balances.release_funds_job(event.to_dict())


# EventBridge cron is UTC only and Auckland's offset moves: fire every hour and act only in the firing
# that is settings.withdrawal_local_hour (default 17:00) in Auckland; see services.withdrawals.job_day.
@app.schedule(Cron(0, "*", "*", "*", "?", "*"), name="auto_withdraw")
def auto_withdraw(event):
    from chalicelib.services import withdrawals

    return withdrawals.auto_withdraw_job(event.to_dict())


# Statements: WeChat and Alipay publish the previous Beijing day from about 10:00 Beijing (02:00 UTC).
# Hourly 02:15-08:15 UTC: a bill not published yet is fetched by a later firing; a stored one is skipped.
# Hand-run: {"channel": "wechat", "bill_date": "2026-11-25"} or {"channel": ..., "from": ..., "to": ...}.
@app.schedule(Cron(15, "2-8", "*", "*", "?", "*"), name="download_statements")
def download_statements(event):
    from chalicelib.services import statements

    return statements.download_job(event.to_dict())


hand_runnable(retry_webhooks, chase_payments, fx_pull, merchant_alerts, send_mail, release_funds, auto_withdraw,
              download_statements)


# A file under statements/ in the bucket: S3 notifies the queue, the queue invokes this (README: why SQS).
@app.on_sqs_message(queue=_settings.statements_queue, batch_size=1, name="statement_landed")
def statement_landed(event):
    from chalicelib.services import statements

    return statements.handle_sqs_messages([record.body for record in event])


# Ops: {"channel": "wechat", "bill_date": "2026-11-25"} -> the day's summary and discrepancies.
@app.lambda_function(name="reconciliation_report")
def reconciliation_report(event, context):
    from chalicelib.services import reconciliation

    return reconciliation.report(event)


# Ops: {"discrepancy_id": "dsc_...", "action": "apply|refund|write_off|accept", "reason": "...", "by": "..."}
@app.lambda_function(name="resolve_discrepancy")
def resolve_discrepancy(event, context):
    from chalicelib.services import reconciliation

    return reconciliation.resolve_job(event)


# Ops actions, invoked by hand: {"batch_id": "wdb_20261125_nzd"} / {"withdrawal_id": "wd_...", "reason": "..."}
@app.lambda_function(name="withdrawal_batch_paid")
def withdrawal_batch_paid(event, context):
    from chalicelib.services import withdrawals

    return withdrawals.batch_paid((event or {}).get("batch_id"))


@app.lambda_function(name="withdrawal_failed")
def withdrawal_failed(event, context):
    from chalicelib.services import withdrawals

    return withdrawals.failed((event or {}).get("withdrawal_id"), (event or {}).get("reason"))


# Ops managing merchants by hand (AWS console or `make job`); JSON events, one summary each, idempotent on
# request_id, e.g. {"request_id": "onb-42", "legal_name": ..., "trading_name": ..., ...}: see chalicelib/api/ops.py.
@app.lambda_function(name="onboard_merchant")
def onboard_merchant(event, context):
    from chalicelib.api import ops

    return ops.answer("onboard_merchant", event, ops.onboard_merchant)


@app.lambda_function(name="update_merchant")
def update_merchant(event, context):
    from chalicelib.api import ops

    return ops.answer("update_merchant", event, ops.update_merchant)


@app.lambda_function(name="suspend_merchant")
def suspend_merchant(event, context):
    from chalicelib.api import ops

    return ops.answer("suspend_merchant", event, ops.suspend_merchant)


@app.lambda_function(name="invite_owner")
def invite_owner(event, context):
    from chalicelib.api import ops

    return ops.answer("invite_owner", event, ops.invite_owner)


# ---- sandbox channel simulators (never in prod) ----------------------------------------------
if _settings.sandbox_enabled and not _settings.is_prod:
    for _name in channels.names():
        app.register_blueprint(channels.sandbox_blueprint(_name), url_prefix=f"/sandbox/{_name}")
    from chalicelib.channels.wechat_oa import sandbox as _oa_sandbox  # not a payment channel: no REGISTRY

    app.register_blueprint(_oa_sandbox.blueprint, url_prefix="/sandbox/wechat_oa")

"""A simulator of Alipay's MAPI `gateway.do`, same wire format (spec §11 checklist).

Mounted at /sandbox/alipay outside prod. It knows one partner (ours, from settings), checks our
MD5/RSA/RSA2 signatures, keeps its own books in chalicelib.store.sandbox (imported inside the
handlers: pynamodb is slow to import), and signs what it sends with the shared MD5 key or its own
"Alipay" RSA key (whose public half is the sandbox default of settings.alipay.alipay_public_key_pem).

Test hooks: POST /simulate/pay (a shopper pays / fails / lets it close) and POST /simulate/pump
(deliver due notification retries; the local stack calls pump() every second).
"""
from __future__ import annotations

import html
from html import escape  # XML text and attribute escaping (xml.sax.saxutils costs ~40 ms of imports)
import json
import re
import secrets
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable
from urllib.parse import urlencode

from chalice import Blueprint, Response

from chalicelib import clock, egress, log, settings
from chalicelib.channels.alipay import BEIJING, FormError, beijing_compact, beijing_str, parse_beijing, parse_form, signing
from chalicelib.money import Money, MoneyError, bps_of, convert

blueprint = Blueprint(__name__)

NOTIFY_QUEUE = "alipay#notify"
RETRY_SCHEDULE = (120, 600, 600, 3600, 7200, 21600, 54000)  # 2m,10m,10m,1h,2h,6h,15h after each miss (spec §3)
NOTIFY_ID_TTL_SECONDS = 60        # "notify_id一分钟失效" (spec §3)
REFUND_SPACING_SECONDS = 3        # refunds for one partner at least 3 s apart (spec §5.2)
FEE_BPS = 180                     # the simulator's merchant service charge, for the recon files
SETTLEMENT_DELAY_DAYS = 2
MAX_LEDGER_ROWS_PER_DAY = 5000

# CNY per one unit (forex_rate_file fixture, spec §7).
RATES = {"NZD": "4.35120000", "AUD": "4.72030000", "USD": "7.18850000", "HKD": "0.91860000",
         "GBP": "9.12340000", "EUR": "7.80120000", "JPY": "0.04812000", "KRW": "0.00531000",
         "SGD": "5.33010000", "CAD": "5.27540000"}

_FORM = "application/x-www-form-urlencoded"
_CONTENT_TYPES = [_FORM, "application/json", "text/plain", "text/xml", "application/xml"]
_ORDER_NO = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_AMOUNT = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,2})?$")
_URL = re.compile(r"^https?://[^\s<>\"']{1,190}$")
_TIMEOUT_RULES = {"5m": 5, "10m": 10, "15m": 15, "30m": 30, "1h": 60, "2h": 120, "3h": 180, "5h": 300,
                  "10h": 600, "12h": 720, "1d": 1440, "3d": 4320, "7d": 10080, "15d": 21600}
_ONLINE_PRODUCTS = {"create_forex_trade": "NEW_OVERSEAS_SELLER", "create_forex_trade_wap": "NEW_WAP_OVERSEAS_SELLER"}

# The simulator's own "Alipay" signing key (sandbox only; generated for Kauri, never a real key).
SANDBOX_ALIPAY_PRIVATE_KEY_PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAsQtRyWeDYH6A/ygoltDTNq4MpGUSYss/+6D+DZ9LZI0/lXBJ\n"
    "VbleZAYKys7vMUIXrqgLCoiUyfTypoON3AUSWAIs+esW56pmc4ZaDKfkHheDFGhA\n"
    "Q4HAFXslo3bi37K2TGLgs7E6bT+YDtBIQSzbKOCdwsjTyhG/zLJhN+yD+2vKzo5A\n"
    "a/SUZFI2de2sx4clZvqyZ5mH6xxDjqTy3WZPRWobN1F8szzWT6mS1NXWT4/eJltC\n"
    "9KzUczR6n+FNMALrfMrE1OFx3lYYUZnSBnSUjnBOzndCPn3Kt3ZSPUORZDK9QMFJ\n"
    "GaKFIstMV5AbNYKLd/kuWBd4W1ClD0Ze7SW+xwIDAQABAoIBABN53M3sqrmvQO6Q\n"
    "0uJAZ7PQsshU7BBdLpU2USxbdTZDCZcdapvZEAat2XsVB6AiFqvahZhrjP6oiRcD\n"
    "StRE5I808hCuKW9jwfB8e6R/xar/yCYzD7q9Z82VJf9VAUE9jitaB0ENQpGpGMes\n"
    "Zv5wek2FZCV85TuJ91ED4Ij/5kb+lbS+6TRG89q2hoJ2UFwOTmoFBmoQ2KlgPqsC\n"
    "+aLRq9X9O/yXCsAFxcY+VttZ9hbaU/vHu8f0sKHp0nyLqweQuQJfrvwrQC6gtYHl\n"
    "+FCYGV4+5mYUrYlWO+r2ZU48FUE8oHb5uImgyQMIRSkxdPwCYFrBHUqSih7XctKu\n"
    "WKP1GdUCgYEA+lK8mPFucxr6K+MMTBnvCic/VTdeWAykHvMPOZoHWTgTeIR4xTrm\n"
    "Wyv6J8e1OACdqya2is56k3teaH6c9yQOw5fo7Yxoq425zv1/eTTzvBA/b6GzuQcJ\n"
    "PkFIjTj8wBzulGTIHOF6zuOTKHUQrnSnsdk1+0ayPPfkQv2aSsIRUX0CgYEAtQ8o\n"
    "fhYnLNIpyIcrNOH7OuS1HeieX1qg+fhvXnmHT7ApPQ+qT/7Tg629MSXG49dNbUhE\n"
    "zuLELHVKQkRF5VVyopvVfSrQSokuAmVlfllKqSXIT69Tm8BrpQtgDuNPjZHWtvGX\n"
    "bz9VjHWt/Jh+UVeBaJLVKk70rigfEyV2V7sGBJMCgYAEOXU5V4m3o5LpPrGsbxub\n"
    "nkHxXDfZYI08gHmXTUQme03I0OOA4JeWnk1gcnxab5g5lTOrcASdjI1xUgGwIgml\n"
    "v2CM8buqeX/TQG/wSbZ7TALmDWKNEtNTG6LvzzBkxZg5JOJDqoJ6D1kia6dWal2S\n"
    "IMpKbU0AvmY5wzHhZRkJuQKBgBHoZ+bgpgtG1h8hT2KxnzmZ+Vf19AQWYKmYqts7\n"
    "RejZ0ZpafEvhNmZlvrqns95BI0VVyohz4VdMWoXnXspqAyaWJy10GJnmq4hNIxa2\n"
    "Gi5UsFVBUBGtnHf8ggm27d1guU3q40F7kCiOUyESrBu7fe8r5q2ClazMBxbLs8LF\n"
    "mrjFAoGBAIwN6+u7Iih5eBh9DaEqv6HrNTPKMk+Ww3wZwWb229vR1Dcb5OacLmbG\n"
    "1oarM0YByn8FFPeI6X1GCswdCwQLz9Y8V4sPYYdnYFEpog1MiOgCV6UAa6pCg9it\n"
    "JoU6ewW7RWhnf2mdJbdur1o3DYvFmlnrIJoz54XboKFSkCLuw7f4\n"
    "-----END RSA PRIVATE KEY-----\n"
)


class GatewayError(Exception):
    """An answer in Alipay's own error format."""

    def __init__(self, code: str, kind: str = "xml"):
        super().__init__(code)
        self.code = code
        self.kind = kind  # xml | text (file services) | verify (notify_verify)


class BusinessError(Exception):
    """In-store failure: is_success=T with result_code=FAIL and detail_error_code."""

    def __init__(self, code: str, description: str = ""):
        super().__init__(code)
        self.code = code
        self.description = description


# ---- small helpers ------------------------------------------------------------------------------

def _store():
    from chalicelib.store import sandbox as store

    return store


def _cfg():
    return settings.get().sandbox_account("alipay")


def _now() -> datetime:
    return clock.now()


def _epoch(dt: datetime | None = None) -> int:
    return int((dt or _now()).timestamp())


def _our_public_pem() -> str:
    pem = _cfg().private_key_pem
    return signing.public_pem_of(pem) if pem else ""


def _sign(params: dict[str, Any], sign_type: str) -> dict[str, str]:
    return signing.signed(params, sign_type, md5_key=_cfg().md5_key, private_pem=SANDBOX_ALIPAY_PRIVATE_KEY_PEM)


def _xml_response(request: dict[str, str], business: dict[str, str] | None, tag: str, sign_type: str) -> Response:
    parts = ["<?xml version=\"1.0\" encoding=\"utf-8\"?><alipay><is_success>T</is_success><request>"]
    for k, v in request.items():
        if k != "sign":
            parts.append(f"<param name=\"{escape(k)}\">{escape(v)}</param>")
    parts.append("</request>")
    if business is not None:
        body = {k: str(v) for k, v in business.items() if v is not None and v != ""}
        parts.append(f"<response><{tag}>")
        parts.extend(f"<{k}>{escape(v)}</{k}>" for k, v in body.items())
        parts.append(f"</{tag}></response>")
        st = sign_type if sign_type in signing.SIGN_TYPES else "MD5"
        sig = signing.sign(body, st, md5_key=_cfg().md5_key, private_pem=SANDBOX_ALIPAY_PRIVATE_KEY_PEM)
        parts.append(f"<sign>{escape(sig)}</sign><sign_type>{st}</sign_type>")
    parts.append("</alipay>")
    return Response(body="".join(parts), status_code=200, headers={"Content-Type": "text/xml; charset=utf-8"})


def _xml_error(code: str) -> Response:
    body = f"<?xml version=\"1.0\" encoding=\"utf-8\"?><alipay><is_success>F</is_success><error>{escape(code)}</error></alipay>"
    return Response(body=body, status_code=200, headers={"Content-Type": "text/xml; charset=utf-8"})


def _text(body: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": content_type})


def _json(data: dict, status: int = 200) -> Response:
    return Response(body=json.dumps(data, sort_keys=True), status_code=status,
                    headers={"Content-Type": "application/json"})


def _amount(params: dict[str, str], key: str, currency: str, required: bool = True) -> Money | None:
    text = params.get(key, "")
    if not text:
        if required:
            raise GatewayError("ILLEGAL_ARGUMENT")
        return None
    if not _AMOUNT.match(text):
        raise GatewayError("ILLEGAL_ARGUMENT")
    try:
        money = Money.from_major(text, currency)
    except MoneyError:
        raise GatewayError("ILLEGAL_ARGUMENT") from None  # e.g. decimals on JPY (spec §2.2)
    if money.amount <= 0 or money > Money.from_major("1000000", currency):
        raise GatewayError("ILLEGAL_ARGUMENT")
    return money


def _currency(params: dict[str, str], key: str = "currency") -> str:
    ccy = params.get(key, "")
    if ccy not in RATES:
        raise GatewayError("ILLEGAL_ARGUMENT")
    return ccy


def _order_no(params: dict[str, str], key: str, required: bool = True) -> str:
    value = params.get(key, "")
    if not value and not required:
        return ""
    if not _ORDER_NO.match(value):
        raise GatewayError("ILLEGAL_ARGUMENT")
    return value


def _text_param(params: dict[str, str], key: str, limit: int, required: bool = False) -> str:
    value = params.get(key, "")
    if (required and not value.strip()) or len(value) > limit or any(c in value for c in "\"<>"):
        raise GatewayError("ILLEGAL_ARGUMENT")
    return value


def _url(params: dict[str, str], key: str, required: bool) -> str:
    value = params.get(key, "")
    if not value and not required:
        return ""
    if not _URL.match(value):
        raise GatewayError("ILLEGAL_ARGUMENT")
    return value


def _notify_url(params: dict[str, str]) -> str:
    """A notify URL is POSTed to: only a receiver chalicelib.egress allows (never our own network)."""
    url = _url(params, "notify_url", required=True)
    try:
        egress.check(url)
    except egress.Refused:
        raise GatewayError("ILLEGAL_ARGUMENT") from None
    return url


def _secondary(params: dict[str, str]) -> dict[str, str]:
    sub = {k: params.get(k, "") for k in ("secondary_merchant_id", "secondary_merchant_name",
                                          "secondary_merchant_industry")}
    if not _ORDER_NO.match(sub["secondary_merchant_id"]) or not sub["secondary_merchant_name"].strip() \
            or len(sub["secondary_merchant_name"]) > 128 or not re.fullmatch(r"\d{4}", sub["secondary_merchant_industry"]):
        raise GatewayError("ILLEGAL_ARGUMENT")
    return sub


def _rate(currency: str) -> Decimal:
    return Decimal(RATES[currency])


def _new_trade_no() -> str:
    return _now().astimezone(BEIJING).strftime("%Y%m%d") + "2100100" + "".join(
        secrets.choice("0123456789") for _ in range(13))


def _trade_pk(out_trade_no: str) -> str:
    return f"alipay#trade#{out_trade_no}"


def _load_trade(out_trade_no: str = "", trade_no: str = "") -> dict | None:
    store = _store()
    if trade_no:
        link = store.get(f"alipay#tradeno#{trade_no}")
        if link is None:
            return None
        out_trade_no = link["out_trade_no"]
    if not out_trade_no:
        return None
    return _expire(store.get(_trade_pk(out_trade_no)))


def _expire(trade: dict | None) -> dict | None:
    """Unpaid trades past their time limit close (lazily, when next looked at)."""
    if trade and trade["status"] == "WAIT_BUYER_PAY" and trade.get("expires_at") and _epoch() >= trade["expires_at"]:
        def close(d):
            if d["status"] != "WAIT_BUYER_PAY":
                return None
            d["status"] = "TRADE_CLOSED"
            return d
        trade = _store().update(_trade_pk(trade["out_trade_no"]), close)
    return trade


def _update_trade(out_trade_no: str, change: Callable[[dict], dict | None]) -> dict | None:
    return _store().update(_trade_pk(out_trade_no), change)


# ---- the gateway -------------------------------------------------------------------------------

def _request_params() -> dict[str, str]:
    req = blueprint.current_request
    params: dict[str, str] = {}
    query = req.query_params or {}
    for key in list(query.keys())[:80]:
        values = query.getlist(key) if hasattr(query, "getlist") else [query[key]]
        if len(values) != 1 or len(key) > 64 or len(values[0]) > 4096:
            raise GatewayError("ILLEGAL_ARGUMENT")
        params[key] = values[0]
    if req.method == "POST":
        raw = req.raw_body or b""
        if len(raw) > settings.get().max_body_bytes:
            raise GatewayError("ILLEGAL_ARGUMENT")
        if raw:
            try:
                form = parse_form(raw, max_bytes=settings.get().max_body_bytes)
            except FormError:
                raise GatewayError("ILLEGAL_ARGUMENT") from None
            for k, v in form.items():
                if k in params and params[k] != v:
                    raise GatewayError("ILLEGAL_ARGUMENT")
                params[k] = v
    return params


@blueprint.route("/gateway.do", methods=["GET", "POST"], content_types=_CONTENT_TYPES)
def gateway():
    try:
        params = _request_params()
        return _dispatch(params)
    except GatewayError as exc:
        if exc.kind == "text":
            return _text(f"File download failed:{exc.code}")
        if exc.kind == "verify":
            return _text(exc.code)
        return _xml_error(exc.code)
    except Exception as exc:  # never a 500: Alipay answers its own SYSTEM_EXCEPTION
        log.error("alipay_sandbox_error", error=type(exc).__name__, detail=str(exc)[:200])
        return _xml_error("SYSTEM_EXCEPTION")


_FILE_SERVICES = ("forex_rate_file", "forex_compare_file", "forex_liquidation_file")


def _dispatch(params: dict[str, str]) -> Response:
    service = params.get("service", "")
    if service == "notify_verify":
        return _notify_verify(params)
    handler = _HANDLERS.get(service)
    if handler is None:
        raise GatewayError("ILLEGAL_SERVICE")
    cfg = _cfg()
    if params.get("partner") != cfg.partner:
        raise GatewayError("ILLEGAL_PARTNER")
    charset = params.get("_input_charset", "utf-8").lower()
    if charset not in ("utf-8", "gbk") or (service == "create_forex_trade_wap" and charset != "utf-8"):
        raise GatewayError("ILLEGAL_CHARSET")
    sign_type = params.get("sign_type", "")
    if sign_type not in signing.SIGN_TYPES:
        raise GatewayError("ILLEGAL_SIGN_TYPE")
    if not signing.verify(params, sign_type, md5_key=cfg.md5_key, public_pem=_our_public_pem()):
        log.info("alipay_sandbox_bad_sign", service=service)
        raise GatewayError("ILLEGAL_SIGN")
    return handler(params)


# ---- online: create_forex_trade[_wap] -----------------------------------------------------------

def _create_forex_trade(params: dict[str, str]) -> Response:
    service = params["service"]
    out_trade_no = _order_no(params, "out_trade_no")
    subject = _text_param(params, "subject", 256, required=True)
    body = _text_param(params, "body", 400)
    currency = _currency(params)
    if currency == "CNY":
        raise GatewayError("ILLEGAL_ARGUMENT")
    if params.get("rmb_fee"):
        raise GatewayError("ILLEGAL_ARGUMENT")  # the simulator prices in the settlement currency only
    amount = _amount(params, "total_fee", currency)
    product = params.get("product_code", "")
    if product and product != _ONLINE_PRODUCTS[service]:
        raise GatewayError("ILLEGAL_ARGUMENT")
    rule = params.get("timeout_rule", "12h")
    if rule not in _TIMEOUT_RULES:
        raise GatewayError("ILLEGAL_ARGUMENT")
    notify_url = _notify_url(params)
    return_url = _url(params, "return_url", required=False)
    sub = _secondary(params)
    now = _epoch()
    _check_login_window(params, now)
    trade = {
        "kind": "online", "service": service, "out_trade_no": out_trade_no, "subject": subject, "body": body,
        "currency": currency, "total_fee": params["total_fee"], "amount_minor": amount.amount,
        "notify_url": notify_url, "return_url": return_url, "status": "WAIT_BUYER_PAY", "trade_no": "",
        "created_at": now, "expires_at": now + 60 * _TIMEOUT_RULES[rule], "refunded_minor": 0,
        "sign_type": params["sign_type"], **sub,
    }
    store = _store()
    if not store.create(_trade_pk(out_trade_no), trade):
        existing = _load_trade(out_trade_no)
        if existing["status"] in ("TRADE_FINISHED", "TRADE_SUCCESS"):
            raise GatewayError("TRADE_HAS_SUCCESS")
        if existing["status"] == "TRADE_CLOSED" or existing["kind"] != "online":
            raise GatewayError("TRADE_HAS_CLOSE")

        def resubmit(d):  # an unpaid order may come back with a new amount (spec §2.1)
            if d["status"] != "WAIT_BUYER_PAY":
                return None
            keep = {"trade_no": d.get("trade_no", ""), "created_at": d["created_at"]}
            return {**trade, **keep}
        trade = _update_trade(out_trade_no, resubmit)
    return _cashier_page(trade)


def _check_login_window(params: dict[str, str], now: int) -> None:
    """order_gmt_create + order_valid_time (used together, spec §2.2): the cashier opens only inside
    that window; a link opened later is refused, so no trade (and no timeout_rule) starts after it.
    The error code is the simulator's own: the sources do not name Alipay's."""
    created, valid = params.get("order_gmt_create", ""), params.get("order_valid_time", "")
    if not created and not valid:
        return
    start = parse_beijing(created) if created and len(created) == 19 else None
    if start is None or not valid.isdigit() or not 0 < int(valid) <= 2592000:
        raise GatewayError("ILLEGAL_ARGUMENT")
    if now > _epoch(start) + int(valid):
        raise GatewayError("TRADE_LOGIN_WINDOW_EXPIRED")


def _cashier_page(trade: dict) -> Response:
    pay_url = settings.get().public_base_url + "/sandbox/alipay/simulate/pay"
    e = html.escape
    amount = f"{trade['currency']} {trade['total_fee']}"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Alipay sandbox cashier</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body data-service="{e(trade['service'])}">
<h1>Alipay (sandbox)</h1>
<p>Merchant: <span id="merchant">{e(trade.get('secondary_merchant_name', ''))}</span></p>
<p>Order: <span id="subject">{e(trade['subject'])}</span></p>
<p>Amount: <strong id="amount">{e(amount)}</strong></p>
<p>Order number: <code id="out-trade-no">{e(trade['out_trade_no'])}</code></p>
<form id="pay-form" method="post" action="{e(pay_url)}">
<input type="hidden" name="out_trade_no" value="{e(trade['out_trade_no'])}">
<button id="pay" type="submit" name="outcome" value="success">Pay {e(amount)}</button>
<button id="fail" type="submit" name="outcome" value="fail">Payment fails</button>
<button id="close" type="submit" name="outcome" value="close">Let it expire</button>
</form>
</body></html>"""
    return _text(page, content_type="text/html; charset=utf-8")


# ---- online: single_trade_query, forex_refund ---------------------------------------------------

def _single_trade_query(params: dict[str, str]) -> Response:
    trade_no = params.get("trade_no", "")
    out_trade_no = params.get("out_trade_no", "")
    if not trade_no and not out_trade_no:
        raise GatewayError("ILLEGAL_ARGUMENT")
    if (trade_no and len(trade_no) > 64) or (out_trade_no and not _ORDER_NO.match(out_trade_no)):
        raise GatewayError("ILLEGAL_ARGUMENT")
    trade = _load_trade(out_trade_no, trade_no)  # trade_no wins when both are given (spec §5.1)
    if not trade or trade["kind"] != "online" or not trade.get("trade_no"):
        raise GatewayError("TRADE_NOT_EXIST")  # no trade until the shopper logs in (spec §2.1)
    business = {
        "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"], "subject": trade["subject"],
        "trade_status": trade["status"], "total_fee": trade["total_fee"], "currency": trade["currency"],
        "gmt_create": beijing_str(datetime.fromtimestamp(trade["created_at"], timezone.utc)),
        "gmt_payment": beijing_str(datetime.fromtimestamp(trade["paid_at"], timezone.utc)) if trade.get("paid_at") else "",
    }
    return _xml_response(params, business, "trade", params["sign_type"])


def _gmt_return_ok(text: str) -> bool:
    for fmt in ("%Y%m%d%H%M%S", "%Y-%m-%d %H:%M:%S"):  # docs and SDKs disagree; accept both (spec §5.2)
        try:
            datetime.strptime(text, fmt)
            return True
        except ValueError:
            continue
    return False


def _apply_refund(trade: dict, refund_no: str, amount: Money, service: str) -> tuple[str, dict]:
    """Shared refund rules. Returns ('new'|'replay', refund record) or raises the error code (str)."""
    store = _store()
    existing = store.get(f"alipay#refund#{refund_no}")
    if existing is not None:
        if existing["out_trade_no"] == trade["out_trade_no"] and existing["amount_minor"] == amount.amount:
            return "replay", existing  # same refund sent again: answered, not repeated
        raise BusinessError("REPEAT_OUT_RETURN_NO")
    if trade["status"] not in ("TRADE_FINISHED", "TRADE_SUCCESS"):
        raise BusinessError("TRADE_STATUS_NOT_AVAILD")
    if amount.currency != trade["currency"]:
        raise BusinessError("CURRENCY_NOT_SAME")
    if trade["refunded_minor"] + amount.amount > trade["amount_minor"]:
        raise BusinessError("RETURN_AMOUNT_EXCEED")
    now = _epoch()
    pacer = f"alipay#pacer#{_cfg().partner}"
    if not store.create(pacer, {"last_refund_at": now}):
        def pace(d):
            if now - d["last_refund_at"] < REFUND_SPACING_SECONDS:
                raise BusinessError("REFUND_TOO_FREQUENT")
            return {"last_refund_at": now}
        store.update(pacer, pace)

    def add(d):
        if d["refunded_minor"] + amount.amount > d["amount_minor"]:
            raise BusinessError("RETURN_AMOUNT_EXCEED")
        d["refunded_minor"] += amount.amount
        return d
    record = {"out_trade_no": trade["out_trade_no"], "amount_minor": amount.amount, "currency": amount.currency,
              "created_at": now, "service": service, "out_return_no": refund_no}
    if not store.create(f"alipay#refund#{refund_no}", record):
        raise BusinessError("REPEAT_OUT_RETURN_NO")
    trade = _update_trade(trade["out_trade_no"], add)
    _ledger_add(trade, "R", amount, refund_no)
    return "new", record


def _forex_refund(params: dict[str, str]) -> Response:
    refund_no = _order_no(params, "out_return_no")
    out_trade_no = _order_no(params, "out_trade_no")
    currency = _currency(params)
    if params.get("return_rmb_amount"):
        raise GatewayError("ILLEGAL_ARGUMENT")  # the simulator refunds in the settlement currency only
    amount = _amount(params, "return_amount", currency)
    if not _gmt_return_ok(params.get("gmt_return", "")):
        raise GatewayError("ILLEGAL_ARGUMENT")
    _text_param(params, "reason", 100)
    _url(params, "notify_url", required=False)
    trade = _load_trade(out_trade_no)
    if not trade or trade["kind"] != "online" or not trade.get("trade_no"):
        raise GatewayError("PURCHASE_TRADE_NOT_EXIST")
    try:
        outcome, _ = _apply_refund(trade, refund_no, amount, "forex_refund")
    except BusinessError as exc:
        raise GatewayError(exc.code) from None
    if outcome == "new" and params.get("is_sync", "N") != "Y" and params.get("notify_url"):
        _queue_notification(f"alipay#notify#refund#{refund_no}", params["notify_url"], {
            "notify_type": "refund_status_sync", "out_trade_no": out_trade_no, "out_return_no": refund_no,
            "refund_status": "REFUND_SUCCESS", "currency": currency, "return_amount": params["return_amount"],
        })
    return _xml_response(params, None, "", params["sign_type"])


# ---- in-store ----------------------------------------------------------------------------------

def _instore_answer(params: dict[str, str], run: Callable[[], dict[str, str]]) -> Response:
    try:
        business = {"result_code": "SUCCESS", **run()}
    except BusinessError as exc:
        business = {"result_code": "FAIL", "detail_error_code": exc.code, "detail_error_des": exc.description,
                    "error": exc.code}
    return _xml_response(params, business, "alipay", params["sign_type"])


def _timestamp_ok(text: str) -> bool:
    if re.fullmatch(r"\d{13}", text):  # epoch ms (HK doc)
        return True
    return _gmt_return_ok(text)  # yyyy-MM-dd HH:mm:ss or yyyyMMddHHmmss (spec §6.1)


def _it_b_pay_minutes(text: str) -> int:
    if not text:
        return 120
    if text == "1c":
        midnight = (_now().astimezone(BEIJING) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return max(1, int((midnight - _now()).total_seconds() // 60))
    m = re.fullmatch(r"(\d{1,5})([mhd])", text)
    if not m:
        raise GatewayError("ILLEGAL_ARGUMENT")
    minutes = int(m.group(1)) * {"m": 1, "h": 60, "d": 1440}[m.group(2)]
    if not 1 <= minutes <= 15 * 1440:
        raise GatewayError("ILLEGAL_ARGUMENT")
    return minutes


def _precreate(params: dict[str, str]) -> Response:
    out_trade_no = _order_no(params, "out_trade_no")
    subject = _text_param(params, "subject", 256, required=True)
    if params.get("product_code") != "OVERSEAS_MBARCODE_PAY":
        raise GatewayError("ILLEGAL_ARGUMENT")
    currency = _currency(params)
    trans_currency = params.get("trans_currency", currency)
    if trans_currency != currency:
        raise GatewayError("ILLEGAL_ARGUMENT")  # the simulator does not price in a second currency
    amount = _amount(params, "total_fee", trans_currency)
    notify_url = _notify_url(params)
    if params.get("timestamp") and not _timestamp_ok(params["timestamp"]):
        raise GatewayError("ILLEGAL_ARGUMENT")
    if params.get("seller_id") and params["seller_id"] != _cfg().partner:
        raise GatewayError("ILLEGAL_ARGUMENT")
    minutes = _it_b_pay_minutes(params.get("it_b_pay", ""))
    try:
        extend = json.loads(params.get("extend_params", ""))
    except ValueError:
        raise GatewayError("ILLEGAL_ARGUMENT") from None
    if not isinstance(extend, dict):
        raise GatewayError("ILLEGAL_ARGUMENT")
    sub = _secondary({k: str(v) for k, v in extend.items()})  # mandatory for aggregators (spec §6.5)

    def run() -> dict[str, str]:
        code = "bax" + secrets.token_hex(10)
        now = _epoch()
        trade = {
            "kind": "instore", "service": "alipay.acquire.precreate", "out_trade_no": out_trade_no,
            "subject": subject, "body": params.get("body", "")[:400], "currency": currency,
            "total_fee": params["total_fee"], "amount_minor": amount.amount, "notify_url": notify_url,
            "return_url": "", "status": "WAIT_BUYER_PAY", "trade_no": "", "created_at": now,
            "expires_at": now + 60 * minutes, "refunded_minor": 0, "qr_code": f"https://qr.alipay.com/{code}",
            "sign_type": params["sign_type"], **sub,
        }
        if not _store().create(_trade_pk(out_trade_no), trade):
            existing = _load_trade(out_trade_no)
            if existing["status"] != "WAIT_BUYER_PAY" or existing["kind"] != "instore":
                raise BusinessError("TRADE_HAS_SUCCESS" if existing["status"] in ("TRADE_SUCCESS", "TRADE_FINISHED")
                                    else "TRADE_HAS_CLOSE")
            if existing["amount_minor"] != amount.amount:
                raise BusinessError("OUT_TRADE_NO_USED", "same out_trade_no, different amount")
            trade = existing
        code = trade["qr_code"].rsplit("/", 1)[-1]
        return {"out_trade_no": out_trade_no, "voucher_type": "qrcode", "qr_code": trade["qr_code"],
                "pic_url": f"https://mobilecodec.alipay.com/show.htm?code={code}&picSize=M",
                "small_pic_url": f"https://mobilecodec.alipay.com/show.htm?code={code}&picSize=S",
                "big_pic_url": f"https://mobilecodec.alipay.com/show.htm?code={code}&picSize=L"}
    return _instore_answer(params, run)


def _instore_trade(params: dict[str, str], order_key: str, id_key: str) -> dict:
    trade_no = params.get(id_key, "")
    out_trade_no = params.get(order_key, "")
    if not trade_no and not out_trade_no:
        raise GatewayError("ILLEGAL_ARGUMENT")
    if (out_trade_no and not _ORDER_NO.match(out_trade_no)) or len(trade_no) > 64:
        raise GatewayError("ILLEGAL_ARGUMENT")
    trade = _load_trade(out_trade_no, trade_no)
    if not trade or trade["kind"] != "instore":
        raise BusinessError("TRADE_NOT_EXIST")
    return trade


def _overseas_query(params: dict[str, str]) -> Response:
    def run() -> dict[str, str]:
        trade = _instore_trade(params, "partner_trans_id", "alipay_trans_id")
        money = Money(trade["amount_minor"], trade["currency"])
        out = {"alipay_trans_status": trade["status"], "partner_trans_id": trade["out_trade_no"],
               "out_trade_no": trade["out_trade_no"], "alipay_trans_id": trade.get("trade_no", ""),
               "currency": trade["currency"], "trans_amount": trade["total_fee"],
               "exchange_rate": RATES[trade["currency"]],
               "trans_amount_cny": convert(money, "CNY", _rate(trade["currency"]), "HALF_UP").to_major_str()}
        if trade.get("paid_at"):
            out.update({"alipay_pay_time": beijing_compact(datetime.fromtimestamp(trade["paid_at"], timezone.utc)),
                        "alipay_buyer_login_id": "132****6685", "alipay_buyer_user_id": "2088102122524333",
                        "payment_inst": "ALIPAYCN"})
        return out
    return _instore_answer(params, run)


def _spot_refund(params: dict[str, str]) -> Response:
    refund_no = _order_no(params, "partner_refund_id")
    _order_no(params, "partner_trans_id")
    currency = _currency(params)
    amount = _amount(params, "refund_amount", currency)
    if len(params.get("refund_reason", "")) > 100:
        raise GatewayError("ILLEGAL_ARGUMENT")

    def run() -> dict[str, str]:
        trade = _instore_trade(params, "partner_trans_id", "alipay_trans_id")
        _apply_refund(trade, refund_no, amount, "spot_refund")
        return {"partner_trans_id": trade["out_trade_no"], "partner_refund_id": refund_no,
                "alipay_trans_id": trade.get("trade_no", ""), "refund_amount": amount.to_major_str(),
                "currency": currency, "exchange_rate": RATES[currency],
                "refund_amount_cny": convert(amount, "CNY", _rate(currency), "HALF_UP").to_major_str()}
    return _instore_answer(params, run)


def _cancel(params: dict[str, str]) -> Response:
    if params.get("timestamp") and not _timestamp_ok(params["timestamp"]):
        raise GatewayError("ILLEGAL_ARGUMENT")

    def run() -> dict[str, str]:
        trade = _instore_trade(params, "out_trade_no", "trade_no")
        base = {"out_trade_no": trade["out_trade_no"], "trade_no": trade.get("trade_no", ""), "retry_flag": "N"}
        if trade["status"] == "TRADE_CLOSED":
            return {**base, "action": "close"}
        if trade["status"] == "WAIT_BUYER_PAY":
            def close(d):
                if d["status"] != "WAIT_BUYER_PAY":
                    raise BusinessError("TRADE_STATUS_ERROR")
                d["status"] = "TRADE_CLOSED"
                return d
            _update_trade(trade["out_trade_no"], close)
            return {**base, "action": "close"}
        paid_day = datetime.fromtimestamp(trade["paid_at"], timezone.utc).astimezone(BEIJING).date()
        if paid_day != _now().astimezone(BEIJING).date():
            raise BusinessError("TRADE_CANCEL_TIME_OUT", "paid trades cancel only on the day of payment")
        remaining = trade["amount_minor"] - trade["refunded_minor"]

        def reverse(d):
            d["refunded_minor"] = d["amount_minor"]
            d["status"] = "TRADE_CLOSED"
            return d
        _update_trade(trade["out_trade_no"], reverse)
        if remaining > 0:
            _ledger_add(trade, "R", Money(remaining, trade["currency"]), f"CANCEL_{trade['out_trade_no']}"[:64])
        return {**base, "action": "refund"}
    return _instore_answer(params, run)


# ---- files -------------------------------------------------------------------------------------

def _rate_file(params: dict[str, str]) -> Response:
    today = _now().astimezone(BEIJING).strftime("%Y%m%d")
    lines = [f"{today}|093000|{ccy}|{rate}" for ccy, rate in RATES.items()]
    return _text("\n".join(lines) + "\n")


_HEADER = ("Partner_transaction_id|Transaction_id|Amount|Rmb_amount|Fee|Distribute_amount|Distribute_rmb_amount|"
           "Settlement|Rmb_settlement|Currency|Rate|Payment_time|Settlement_time|Type|Status|Remarks")


def _file_dates(params: dict[str, str]) -> tuple[date, date]:
    try:
        start = datetime.strptime(params.get("start_date", ""), "%Y%m%d").date()
        end = datetime.strptime(params.get("end_date", ""), "%Y%m%d").date()
    except ValueError:
        raise GatewayError("Date format incorrect YYYYMMDD", "text") from None
    if end < start:
        raise GatewayError("Finish date ahead of begin date", "text")
    if end >= _now().astimezone(BEIJING).date():
        raise GatewayError("Finish date not ahead of today", "text")
    if (end - start).days + 1 > 10:
        raise GatewayError("Over 10 days to Date period", "text")
    return start, end


def _compare_file(params: dict[str, str]) -> Response:
    settlement = params["service"] == "forex_liquidation_file"
    start, end = _file_dates(params)
    shift = timedelta(days=SETTLEMENT_DELAY_DAYS if settlement else 0)
    rows = []
    day = start - shift
    while day <= end - shift:
        record = _store().get(f"alipay#day#{day.strftime('%Y%m%d')}")
        rows.extend((record or {}).get("rows", []))
        day += timedelta(days=1)
    if not rows:
        raise GatewayError("No balance account data in the period", "text")
    lines = [_HEADER]
    for r in rows:
        if settlement:
            paid = datetime.strptime(r["time"], "%Y-%m-%d %H:%M:%S") + shift
            settle_time, status = paid.strftime("%Y-%m-%d 15:36:00"), "L"
        else:
            settle_time, status = "", "P"
        lines.append("|".join([r["our_no"], r["trade_no"], r["amount"], r["rmb_amount"], r["fee"], "0.0", "0.0",
                               r["settlement"], r["rmb_settlement"], r["currency"], r["rate"], r["time"],
                               settle_time, r["type"], status, r["remarks"]]))
    return _text("\n".join(lines) + "\n")


def _ledger_add(trade: dict, kind: str, amount: Money, our_no: str) -> None:
    rate = _rate(amount.currency)
    fee = bps_of(amount, FEE_BPS) if kind == "P" else Money(0, amount.currency)
    settlement = amount - fee
    now = _now().astimezone(BEIJING)
    row = {"our_no": our_no, "trade_no": trade.get("trade_no", ""), "amount": amount.to_major_str(),
           "rmb_amount": convert(amount, "CNY", rate, "HALF_UP").to_major_str(), "fee": fee.to_major_str(),
           "settlement": settlement.to_major_str(),
           "rmb_settlement": convert(settlement, "CNY", rate, "HALF_UP").to_major_str(),
           "currency": amount.currency, "rate": RATES[amount.currency], "time": now.strftime("%Y-%m-%d %H:%M:%S"),
           "type": kind, "remarks": trade["out_trade_no"]}
    pk = f"alipay#day#{now.strftime('%Y%m%d')}"
    store = _store()
    if not store.create(pk, {"rows": [row]}):
        store.update(pk, lambda d: {"rows": (d["rows"] + [row])[-MAX_LEDGER_ROWS_PER_DAY:]})


_HANDLERS: dict[str, Callable[[dict[str, str]], Response]] = {
    "create_forex_trade": _create_forex_trade,
    "create_forex_trade_wap": _create_forex_trade,
    "single_trade_query": _single_trade_query,
    "forex_refund": _forex_refund,
    "alipay.acquire.precreate": _precreate,
    "alipay.acquire.overseas.query": _overseas_query,
    "alipay.acquire.overseas.spot.refund": _spot_refund,
    "alipay.acquire.cancel": _cancel,
    "forex_rate_file": _rate_file,
    "forex_compare_file": _compare_file,
    "forex_liquidation_file": _compare_file,
}


# ---- notifications -----------------------------------------------------------------------------

def _notify_verify(params: dict[str, str]) -> Response:
    """`true` once per notify_id we issued in the last minute; `false` otherwise; `invalid` on bad params."""
    notify_id = params.get("notify_id", "")
    if not re.fullmatch(r"[A-Za-z0-9]{1,128}", notify_id) or params.get("partner") != _cfg().partner:
        raise GatewayError("invalid", "verify")
    if params.get("sign") and not signing.verify(params, params.get("sign_type", ""), md5_key=_cfg().md5_key,
                                                 public_pem=_our_public_pem()):
        raise GatewayError("invalid", "verify")  # signed (MEL style) is accepted, but then it must verify
    now = _epoch()
    answer = {"ok": False}

    def use(d):
        if d.get("used") or now - d["issued_at"] > NOTIFY_ID_TTL_SECONDS:
            return None
        d["used"] = True
        answer["ok"] = True
        return d
    _store().update(f"alipay#nid#{notify_id}", use)
    return _text("true" if answer["ok"] else "false")


def _notification_job(url: str, fields: dict[str, str], now: int) -> dict[str, Any]:
    return {"url": url, "fields": fields, "sign_type": _cfg().sign_type, "attempts": 0, "due_at": now,
            "delivered": False, "history": []}


def _queue_notification(pk: str, url: str, fields: dict[str, str]) -> None:
    """Owe a notification: first attempt now (inline), then on RETRY_SCHEDULE until `success`."""
    now = _epoch()
    if _store().create(pk, _notification_job(url, fields, now), queue=NOTIFY_QUEUE, due_at=now):
        _deliver(pk, now)


def _deliver(pk: str, expected_due: int | None) -> bool:
    """One delivery attempt if the job is still due as seen; True when an attempt was made."""
    store = _store()
    now = _epoch()
    claimed: dict[str, Any] = {}

    def claim(d):
        if d.get("delivered") or d.get("due_at") is None or (expected_due is not None and d["due_at"] != expected_due):
            return None
        d["attempts"] += 1
        n = d["attempts"]
        d["due_at"] = now + RETRY_SCHEDULE[n - 1] if n <= len(RETRY_SCHEDULE) else None
        claimed.update(d)
        return d
    store.update(pk, claim)
    if not claimed:
        return False
    store.schedule(pk, NOTIFY_QUEUE if claimed["due_at"] is not None else None, claimed["due_at"])

    notify_id = secrets.token_hex(17)
    store.create(f"alipay#nid#{notify_id}", {"issued_at": now, "used": False})
    fields = {"notify_id": notify_id, "notify_time": beijing_str(_now()), "notify_type": "trade_status_sync",
              **claimed["fields"]}
    body = _sign(fields, claimed["sign_type"])
    ok, status = False, 0
    try:
        answer = egress.post(claimed["url"], urlencode(body).encode("ascii"),
                             {"Content-Type": _FORM + "; charset=utf-8"},
                             timeout=settings.get().http_timeout_seconds, max_bytes=1024)
        status = answer.status
        ok = status == 200 and answer.body == b"success"  # exactly `success` (spec §3)
    except egress.Failed as exc:
        log.info("alipay_sandbox_notify_unreachable", error=str(exc)[:80])

    def record(d):
        d["history"] = (d["history"] + [{"at": now, "status": status, "ok": ok}])[-10:]
        if ok:
            d["delivered"] = True
            d["due_at"] = None
        return d
    store.update(pk, record)
    if ok:
        store.schedule(pk, None, None)
    log.info("alipay_sandbox_notify", attempt=claimed["attempts"], delivered=ok, status=status)
    return True


def pump(now: datetime | None = None) -> int:
    """Deliver every notification retry that is due; returns the number of attempts made."""
    now_epoch = _epoch(now)
    made = 0
    for pk, job in _store().due(NOTIFY_QUEUE, now_epoch):
        if _deliver(pk, job.get("due_at")):
            made += 1
    return made


# ---- simulator hooks -----------------------------------------------------------------------------

def _read_simulate_body() -> tuple[dict[str, str], bool]:
    """(fields, came_from_a_browser_form). Read fully before any outbound call re-enters the app."""
    req = blueprint.current_request
    raw = req.raw_body or b""
    if len(raw) > 8192:
        raise GatewayError("ILLEGAL_ARGUMENT")
    ctype = (req.headers.get("content-type") or "").lower()
    if ctype.startswith(_FORM):
        try:
            return parse_form(raw), True
        except FormError:
            raise GatewayError("ILLEGAL_ARGUMENT") from None
    if not raw:
        return {}, False
    try:
        data = json.loads(raw)
    except ValueError:
        raise GatewayError("ILLEGAL_ARGUMENT") from None
    if not isinstance(data, dict):
        raise GatewayError("ILLEGAL_ARGUMENT")
    return {str(k): str(v) for k, v in data.items()}, False


@blueprint.route("/simulate/pay", methods=["POST"], content_types=[_FORM, "application/json"])
def simulate_pay():
    try:
        fields, from_browser = _read_simulate_body()
    except GatewayError:
        return _json({"error": "ILLEGAL_ARGUMENT"}, 400)
    out_trade_no = fields.get("out_trade_no", "")
    outcome = fields.get("outcome", "success") or "success"
    if not _ORDER_NO.match(out_trade_no) or outcome not in ("success", "fail", "close"):
        return _json({"error": "ILLEGAL_ARGUMENT"}, 400)
    try:
        result = simulate(out_trade_no, outcome)
    except BusinessError as exc:
        return _json({"error": exc.code}, 404 if exc.code == "TRADE_NOT_EXIST" else 409)
    if from_browser:
        trade = result["trade"]
        if trade.get("return_url") and outcome == "success":
            query = urlencode(_sign({"is_success": "T", "out_trade_no": trade["out_trade_no"],
                                     "trade_no": trade["trade_no"], "trade_status": trade["status"],
                                     "currency": trade["currency"], "total_fee": trade["total_fee"]},
                                    trade.get("sign_type") or _cfg().sign_type))
            sep = "&" if "?" in trade["return_url"] else "?"
            return Response(body="", status_code=302, headers={"Location": trade["return_url"] + sep + query})
        return _text(f"<!doctype html><html><body><h1 id=\"result\">{html.escape(trade['status'])}</h1>"
                     f"</body></html>", content_type="text/html; charset=utf-8")
    return _json({k: v for k, v in result.items() if k != "trade"})


def simulate(out_trade_no: str, outcome: str = "success") -> dict[str, Any]:
    """The shopper logs in / scans and pays (success), fails to pay (fail) or walks away (close)."""
    trade = _load_trade(out_trade_no)
    if trade is None:
        raise BusinessError("TRADE_NOT_EXIST")
    if trade["status"] == "TRADE_CLOSED":
        raise BusinessError("TRADE_CLOSED")
    paid_status = "TRADE_FINISHED" if trade["kind"] == "online" else "TRADE_SUCCESS"
    if trade["status"] == paid_status:
        return {"out_trade_no": out_trade_no, "trade_no": trade["trade_no"], "trade_status": paid_status,
                "notified": False, "trade": trade}
    new_trade_no = trade.get("trade_no") or _new_trade_no()
    now = _epoch()
    changed = {"notify": False}

    def apply(d):
        changed.update(notify=False, trade=None)  # a lost race runs this again
        if d is None or d["status"] != "WAIT_BUYER_PAY":
            return None
        if not d.get("trade_no"):  # the trade number appears when the shopper logs in / scans
            d["trade_no"] = new_trade_no
        if outcome == "success":
            d["status"], d["paid_at"] = paid_status, now
            changed["notify"] = True
        elif outcome == "close":
            d["status"] = "TRADE_CLOSED"
            changed["notify"] = True
        changed["trade"] = d
        return d

    def owe(job):  # the notification the change above owes: written with it, or not at all
        if job is not None or not changed["notify"]:
            return None
        t = changed["trade"]
        fields = {"out_trade_no": out_trade_no, "trade_no": t["trade_no"], "trade_status": t["status"],
                  "currency": t["currency"], "total_fee": t["total_fee"]}
        if t.get("paid_at"):
            fields["gmt_payment"] = beijing_str(datetime.fromtimestamp(t["paid_at"], timezone.utc))
        if t["kind"] == "instore":
            fields.update({"notify_action_type": "payByAccountAction" if outcome == "success" else "closeTradeAction",
                           "subject": t["subject"]})
        return _notification_job(t["notify_url"], fields, now)

    notify_pk = f"alipay#notify#{out_trade_no}#{paid_status if outcome == 'success' else 'TRADE_CLOSED'}"
    written = _store().change_together(
        {_trade_pk(out_trade_no): apply,
         f"alipay#tradeno#{new_trade_no}": lambda d: {"out_trade_no": out_trade_no}
         if d is None and changed["trade"] is not None else None,
         notify_pk: owe},
        queues={notify_pk: (NOTIFY_QUEUE, now)})
    trade = written[_trade_pk(out_trade_no)]
    if changed["notify"]:
        if trade["status"] == paid_status:
            _ledger_add(trade, "P", Money(trade["amount_minor"], trade["currency"]), out_trade_no)
        _deliver(notify_pk, now)
    return {"out_trade_no": out_trade_no, "trade_no": trade["trade_no"], "trade_status": trade["status"],
            "notified": changed["notify"], "trade": trade}


@blueprint.route("/simulate/pump", methods=["POST"], content_types=[_FORM, "application/json", "text/plain"])
def simulate_pump():
    return _json({"attempts": pump()})

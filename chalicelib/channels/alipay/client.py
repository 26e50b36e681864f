"""AlipayChannel: Kauri's Channel protocol over Alipay's MAPI `gateway.do` (spec §1-§8).

Online (web/wap): create_forex_trade[_wap] is a signed browser redirect, no server call.
In-store (qr): alipay.acquire.precreate returns a `https://qr.alipay.com/...` code.
Top-level imports are stdlib + chalicelib only; requests/defusedxml/cryptography load on first use.
"""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterator
from urllib.parse import urlencode

from chalicelib import clock, http, log, settings
from chalicelib.channels.alipay import TRADE_STATUS, beijing_compact, beijing_str, notify, parse_beijing, signing
from chalicelib.channels.alipay.statement import StatementFormatError, parse_rate_file
from chalicelib.channels.base import (
    Ack,
    ChannelError,
    ChannelPayment,
    ChannelRefund,
    ChannelStatus,
    CreateRequest,
    CreateResult,
    InvalidNotification,
    MerchantChannelConfig,
    Notification,
    OrderRef,
    RefundRequest,
    RefundStatus,
    join_bounded,
    streamed,
)
from chalicelib.money import Money, MoneyError

MAX_API_RESPONSE_BYTES = 256 * 1024
MAX_FILE_RESPONSE_BYTES = 32 * 1024 * 1024

PRODUCT_WEB = "NEW_OVERSEAS_SELLER"
PRODUCT_WAP = "NEW_WAP_OVERSEAS_SELLER"
PRODUCT_INSTORE = "OVERSEAS_MBARCODE_PAY"

# timeout_rule values Alipay accepts (spec §2.2), longest first, in minutes.
_TIMEOUT_RULES = (("15d", 21600), ("7d", 10080), ("3d", 4320), ("1d", 1440), ("12h", 720), ("10h", 600),
                  ("5h", 300), ("3h", 180), ("2h", 120), ("1h", 60), ("30m", 30), ("15m", 15), ("10m", 10),
                  ("5m", 5))
_STANDARD_MAX_MINUTES = 1440  # 3d/7d/15d only on newer contracts; stay within the classic list
# order_valid_time maximum: the sources disagree (21600 s vs 2592000 s, spec §2.2); the smaller is safe.
LOGIN_WINDOW_MAX_SECONDS = 21600
# Our clock and Alipay's may differ a little: the hard deadline of an unknown online order adds this.
CLOCK_MARGIN = timedelta(minutes=2)

# Error codes worth trying again later; everything else is a refusal.
_RETRYABLE = {"SYSTEM_ERROR", "SYSTEM_EXCEPTION", "SYSTEM_BUSY", "NETWORK", "HTTP_5XX", "UNKNOW", "UNKNOWN",
              "AQC_SYSTEM_ERROR", "REFUND_PROCESSING"}
_NOT_FOUND = {"TRADE_NOT_EXIST", "PURCHASE_TRADE_NOT_EXIST", "TRADE_NOT_EXISTS"}

_ORDER_NO = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_MCC = re.compile(r"^\d{4}$")
_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f\"'<>&=\\]")


def _clean_text(text: str, limit: int) -> str:
    """Subject/reason: Alipay rejects special characters; collapse them to spaces, bound the length."""
    return " ".join(_UNSAFE_TEXT.sub(" ", text or "").split())[:limit]


def _minutes_left(expires_at: datetime, now: datetime) -> int:
    # nearest minute: an expiry set 30 minutes ahead a few milliseconds ago still means 30m
    return int(((expires_at - now).total_seconds() + 30) // 60)


def _rule_for(minutes: int) -> tuple[str, int]:
    """The longest timeout_rule within `minutes` (and its length in minutes)."""
    for rule, length in _TIMEOUT_RULES:
        if length <= min(minutes, _STANDARD_MAX_MINUTES):
            return rule, length
    return "5m", 5  # under five minutes left: the shortest Alipay offers


def _timeout_rule(expires_at: datetime) -> str:
    minutes = _minutes_left(expires_at, clock.now())
    if minutes < 1:
        raise ChannelError("ORDER_EXPIRED", "expires_at is in the past")
    return _rule_for(minutes)[0]


def _login_window_seconds(created_at: datetime, expires_at: datetime) -> int:
    """order_valid_time: the shopper must open the cashier (log in) before our expires_at (spec §2.2)."""
    return max(1, min(int((expires_at - created_at).total_seconds()), LOGIN_WINDOW_MAX_SECONDS))


def _it_b_pay(expires_at: datetime) -> str:
    minutes = int(((expires_at - clock.now()).total_seconds() + 30) // 60)
    if minutes < 1:
        raise ChannelError("ORDER_EXPIRED", "expires_at is in the past")
    return f"{min(minutes, 15 * 1440)}m"  # 1m..15d, whole minutes (spec §6.1)


def _secondary_merchant(merchant: MerchantChannelConfig) -> dict[str, str]:
    sub = {
        "secondary_merchant_id": merchant.get("secondary_merchant_id"),
        "secondary_merchant_name": merchant.get("secondary_merchant_name"),
        "secondary_merchant_industry": merchant.get("secondary_merchant_industry"),
    }
    if not _ORDER_NO.match(sub["secondary_merchant_id"] or "") or not sub["secondary_merchant_name"] \
            or not _MCC.match(sub["secondary_merchant_industry"] or ""):
        raise ChannelError("SECONDARY_MERCHANT_MISSING",
                           "merchant needs secondary_merchant_id, _name and a 4-digit _industry (MCC)")
    return sub


def _channel_error(code: str, message: str = "") -> ChannelError:
    code = (code or "UNKNOWN_ERROR")[:64]
    return ChannelError(code, message[:200], retryable=code.upper() in _RETRYABLE, refused=True)



FILE_PEEK_BYTES = 256   # enough to tell a file from Alipay's XML or "File download failed" answers


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body.decode("gbk", errors="replace")


class AlipayChannel:
    name = "alipay"
    flows = ("web", "wap", "qr")
    resends_refunds_safely = True   # out_return_no / partner_refund_id de-duplicate at the gateway
    closes_on_kauri_clock = False  # in-store trades are cancelled; online ones lapse at timeout_rule

    def unknown_order_payable_until(self, flow: str, created_at: datetime, expires_at: datetime) -> datetime | None:
        """Online (web/wap): Alipay creates the trade only when the shopper opens the cashier, which
        order_valid_time allows until our expires_at (at most LOGIN_WINDOW_MAX_SECONDS after creation);
        timeout_rule then runs from that moment. So an order Alipay does not know can still be paid up to
        login deadline + timeout_rule (+ CLOCK_MARGIN). In-store: precreate made it, "not found" is final."""
        if flow not in ("web", "wap"):
            return None
        login_deadline = created_at + timedelta(seconds=_login_window_seconds(created_at, expires_at))
        rule_minutes = _rule_for(_minutes_left(expires_at, created_at))[1]
        return login_deadline + timedelta(minutes=rule_minutes) + CLOCK_MARGIN

    def __init__(self, cfg=None):
        self._cfg = cfg  # AlipaySettings; None = settings.get().alipay at call time

    @property
    def cfg(self):
        from chalicelib import secrets

        return secrets.resolve(self._cfg if self._cfg is not None else settings.get().alipay)

    # ---- wire helpers ------------------------------------------------------------------------

    def _base(self, service: str) -> dict[str, str]:
        return {"service": service, "partner": self.cfg.partner, "_input_charset": "utf-8"}

    def _signed(self, params: dict[str, Any]) -> dict[str, str]:
        cfg = self.cfg
        try:
            return signing.signed(params, cfg.sign_type, md5_key=cfg.md5_key, private_pem=cfg.private_key_pem)
        except signing.SignatureError as exc:
            raise ChannelError("SIGN_CONFIG", str(exc)) from None

    def signed_url(self, params: dict[str, Any]) -> str:
        """The gateway URL carrying the signed params (what the shopper's browser is sent to)."""
        url = self.cfg.gateway_url
        return url + ("&" if "?" in url else "?") + urlencode(self._signed(params))

    def _send(self, method: str, params: dict[str, str], max_bytes: int) -> str:
        """One HTTP exchange with the gateway; returns the body text."""
        import requests

        resp = self._open(method, params)
        try:
            body = http.read_bounded(resp, max_bytes)
        except requests.RequestException as exc:
            log.warning("alipay_network_error", service=params.get("service"), error=type(exc).__name__)
            raise ChannelError("NETWORK", type(exc).__name__, retryable=True) from None
        if body is None:
            raise ChannelError("RESPONSE_TOO_LARGE", retryable=False)
        return _text(body)

    def _open(self, method: str, params: dict[str, str]):
        """Send the request; the response (body not read yet) if the gateway answered 200."""
        import requests

        url = self.cfg.gateway_url
        timeout = settings.get().http_timeout_seconds
        try:
            if method == "GET":
                resp = http.session().get(url, params=params, timeout=timeout, stream=True)
            else:  # POST wants _input_charset on the URL too (spec §1.1)
                resp = http.session().post(url + ("&" if "?" in url else "?") + "_input_charset=utf-8",
                                           data=params, timeout=timeout, stream=True)
        except requests.RequestException as exc:
            log.warning("alipay_network_error", service=params.get("service"), error=type(exc).__name__)
            raise ChannelError("NETWORK", type(exc).__name__, retryable=True) from None
        if resp.status_code != 200:
            resp.close()
            if resp.status_code >= 500:
                raise ChannelError("HTTP_5XX", f"status {resp.status_code}", retryable=True)
            raise ChannelError(f"HTTP_{resp.status_code}", retryable=False)
        return resp

    def _parse_xml(self, text: str) -> tuple[dict[str, str], dict[str, str]]:
        """(top-level fields, verified business fields) of an `<alipay>` answer; raises on is_success=F."""
        from xml.etree.ElementTree import ParseError

        from defusedxml import DefusedXmlException
        from defusedxml.ElementTree import fromstring

        try:
            root = fromstring(text)
        except (ParseError, DefusedXmlException, ValueError):
            raise ChannelError("INVALID_RESPONSE", "not XML", retryable=True) from None
        if root.tag != "alipay":
            raise ChannelError("INVALID_RESPONSE", "unexpected XML root", retryable=True)
        top = {child.tag: (child.text or "").strip() for child in root if len(child) == 0}
        if top.get("is_success") != "T":
            raise _channel_error(top.get("error") or "UNKNOWN_ERROR")
        business: dict[str, str] = {}
        response = root.find("response")
        if response is not None and len(response):
            inner = response[0]
            business = {child.tag: (child.text or "") for child in inner if len(child) == 0}
            sign_type = top.get("sign_type", "").upper()
            cfg = self.cfg
            if not signing.verify_text(signing.presign(business), top.get("sign", ""), sign_type,
                                       md5_key=cfg.md5_key, public_pem=cfg.alipay_public_key_pem):
                log.warning("alipay_response_bad_signature", service=business.get("service"))
                raise ChannelError("INVALID_RESPONSE_SIGN", "response signature does not verify")
        return top, business

    def _api(self, params: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        return self._parse_xml(self._send("POST", self._signed(params), MAX_API_RESPONSE_BYTES))

    def _instore(self, params: dict[str, Any]) -> dict[str, str]:
        """In-store call: business result_code must be SUCCESS."""
        _, biz = self._api(params)
        result = biz.get("result_code", "")
        if result == "SUCCESS":
            return biz
        code = biz.get("detail_error_code") or biz.get("error") or result or "UNKNOWN_ERROR"
        if result in ("UNKNOW", "UNKNOWN", "PROCESSING"):
            raise ChannelError(code, biz.get("detail_error_des", ""), retryable=True)
        raise _channel_error(code, biz.get("detail_error_des", ""))

    # ---- Channel protocol --------------------------------------------------------------------

    def create(self, req: CreateRequest) -> CreateResult:
        if req.flow not in self.flows:
            raise ChannelError("UNSUPPORTED_FLOW", req.flow)
        if not _ORDER_NO.match(req.channel_order_id):
            raise ChannelError("ILLEGAL_ARGUMENT", "channel_order_id must be [A-Za-z0-9_-]{1,64}")
        sub = _secondary_merchant(req.merchant)
        subject = _clean_text(req.description, 256) or f"Order {req.channel_order_id}"
        if req.flow == "qr":
            return self._precreate(req, sub, subject)
        service = "create_forex_trade" if req.flow == "web" else "create_forex_trade_wap"
        product = PRODUCT_WEB if req.flow == "web" else PRODUCT_WAP
        params = {
            **self._base(service),
            "notify_url": req.notify_url,
            "return_url": req.return_url or "",
            "out_trade_no": req.channel_order_id,
            "subject": subject,
            "currency": req.amount.currency,
            "total_fee": req.amount.to_major_str(),
            "product_code": product,
            "timeout_rule": _timeout_rule(req.expires_at),
            "order_gmt_create": beijing_str(clock.now()),
            "order_valid_time": str(_login_window_seconds(clock.now(), req.expires_at)),
            "supplier": _clean_text(sub["secondary_merchant_name"], 64),
            **sub,
        }
        return CreateResult(next_action={"type": "redirect", "url": self.signed_url(params)},
                            channel_data={"service": service, "product_code": product})

    def _precreate(self, req: CreateRequest, sub: dict[str, str], subject: str) -> CreateResult:
        extend = dict(sub)
        for key in ("store_id", "store_name", "terminal_id"):
            if req.merchant.get(key):
                extend[key] = req.merchant.get(key)
        params = {
            **self._base("alipay.acquire.precreate"),
            "notify_url": req.notify_url,
            "timestamp": beijing_str(clock.now()),
            "out_trade_no": req.channel_order_id,
            "subject": subject,
            "product_code": PRODUCT_INSTORE,
            "total_fee": req.amount.to_major_str(),
            "seller_id": self.cfg.partner,
            "currency": req.amount.currency,
            "trans_currency": req.amount.currency,
            "it_b_pay": _it_b_pay(req.expires_at),
            "extend_params": json.dumps(extend, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        }
        biz = self._instore(params)
        qr = biz.get("qr_code", "")
        if not qr.startswith("https://") or len(qr) > 512:
            raise ChannelError("INVALID_RESPONSE", "precreate returned no usable qr_code", retryable=True)
        return CreateResult(next_action={"type": "qr_code", "qr_code": qr},
                            channel_data={"service": "alipay.acquire.precreate"})

    # query ---------------------------------------------------------------------------------------
    # OrderRef does not say which product made the order, so online is asked first and in-store
    # second; each product only knows its own trades.

    def _query_online(self, ref: OrderRef) -> ChannelPayment | None:
        params = {**self._base("single_trade_query"), "out_trade_no": ref.channel_order_id}
        if ref.channel_transaction_id:
            params["trade_no"] = ref.channel_transaction_id
        try:
            _, trade = self._api(params)
        except ChannelError as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise
        return self._payment(ref, trade, "trade_status", "trade_no", "total_fee", "gmt_payment")

    def _query_instore(self, ref: OrderRef) -> ChannelPayment | None:
        params = {**self._base("alipay.acquire.overseas.query"), "partner_trans_id": ref.channel_order_id}
        if ref.channel_transaction_id:
            params["alipay_trans_id"] = ref.channel_transaction_id
        try:
            biz = self._instore(params)
        except ChannelError as exc:
            if exc.code in _NOT_FOUND:
                return None
            raise
        return self._payment(ref, biz, "alipay_trans_status", "alipay_trans_id", "trans_amount", "alipay_pay_time")

    def _payment(self, ref: OrderRef, biz: dict[str, str], status_key: str, id_key: str, amount_key: str,
                 time_key: str) -> ChannelPayment:
        got = biz.get("out_trade_no") or biz.get("partner_trans_id")
        if got and got != ref.channel_order_id:
            raise ChannelError("INVALID_RESPONSE", "answer is about another order")
        state = TRADE_STATUS.get(biz.get(status_key, ""))
        if state is None:
            raise ChannelError("UNKNOWN_TRADE_STATUS", biz.get(status_key, "")[:40], retryable=True)
        amount = None
        currency = biz.get("currency", "")
        if biz.get(amount_key) and currency:
            try:
                amount = Money.from_major(biz[amount_key], currency)
            except MoneyError:
                raise ChannelError("INVALID_RESPONSE", "bad amount") from None
        rate = None
        if biz.get("exchange_rate"):
            try:
                rate = Decimal(biz["exchange_rate"])
            except ArithmeticError:
                rate = None
        return ChannelPayment(
            channel_order_id=ref.channel_order_id,
            status=ChannelStatus(state),
            amount=amount,
            rate=rate,
            channel_transaction_id=biz.get(id_key) or None,
            paid_at=parse_beijing(biz.get(time_key, "")) if state == "paid" else None,
            raw=dict(biz),
        )

    def query(self, ref: OrderRef) -> ChannelPayment:
        found = self._query_online(ref) or self._query_instore(ref)
        return found or ChannelPayment(channel_order_id=ref.channel_order_id, status=ChannelStatus.NOT_FOUND)

    def close(self, ref: OrderRef) -> ChannelPayment | None:
        """In-store: alipay.acquire.cancel on an unpaid trade. Online: Alipay has no close service
        (spec §5.3); the trade lapses by timeout_rule, so a late payment must be refunded upstream.

        The overseas MAPI has no close that leaves a paid trade alone (spec §6.4): cancel closes an unpaid
        trade and refunds one paid the same day. So the trade is read first (a paid one is refused), and
        cancel's `action` is read after: `refund` means the shopper paid in between and Alipay has given
        the money back; the reversed payment (paid, then refunded in full) is returned for booking."""
        online = self._query_online(ref)
        if online is not None:
            if online.status == ChannelStatus.PAID:
                raise ChannelError("TRADE_PAID", "paid orders are refunded, not closed")
            if online.status != ChannelStatus.CLOSED:
                # Still payable until timeout_rule: saying "closed" now would invite a payment we refuse.
                raise ChannelError("NOT_SUPPORTED", "Alipay online trades lapse at their timeout_rule")
            return None
        instore = self._query_instore(ref)
        if instore is None:
            # Unknown to both: an online trade the shopper has not opened yet, still payable by its URL.
            raise ChannelError("NOT_SUPPORTED", "Alipay online trades lapse at their timeout_rule")
        if instore.status == ChannelStatus.PAID:
            raise ChannelError("TRADE_PAID", "paid orders are refunded, not closed")
        if instore.status == ChannelStatus.CLOSED:
            return None
        params = {**self._base("alipay.acquire.cancel"), "out_trade_no": ref.channel_order_id,
                  "timestamp": beijing_str(clock.now())}
        _, biz = self._api(params)
        if biz.get("result_code") != "SUCCESS":
            code = biz.get("detail_error_code") or biz.get("error") or "CANCEL_FAILED"
            raise ChannelError(code, biz.get("detail_error_des", "")[:200], retryable=biz.get("retry_flag") == "Y")
        action = biz.get("action", "")
        if action == "close":
            return None
        if action != "refund":
            raise ChannelError("CANCEL_ACTION_UNKNOWN", action[:40], retryable=True)
        return self._reversed(ref)

    def _reversed(self, ref: OrderRef) -> ChannelPayment:
        """The trade a cancel refunded: what was paid (amount, trade id, time), marked REFUNDED."""
        after = self._query_instore(ref)
        if after is None or after.amount is None:
            raise ChannelError("INVALID_RESPONSE", "cancel refunded a trade the query cannot show", retryable=True)
        log.warning("alipay_cancel_refunded_paid_trade", channel_order_id=ref.channel_order_id)
        return ChannelPayment(
            channel_order_id=ref.channel_order_id, status=ChannelStatus.REFUNDED, amount=after.amount,
            rate=after.rate, channel_transaction_id=after.channel_transaction_id,
            paid_at=parse_beijing(after.raw.get("alipay_pay_time", "")), raw={**after.raw, "cancel_action": "refund"},
        )

    # refund --------------------------------------------------------------------------------------

    def refund(self, req: RefundRequest) -> ChannelRefund:
        """forex_refund (is_sync=Y, so the answer is final); spot refund when the order is in-store."""
        if not _ORDER_NO.match(req.channel_refund_id) or not _ORDER_NO.match(req.payment.channel_order_id):
            raise ChannelError("ILLEGAL_ARGUMENT", "refund and order numbers must be [A-Za-z0-9_-]{1,64}",
                               refused=True)
        if req.amount.currency != req.total.currency or req.amount.amount <= 0 or req.amount.amount > req.total.amount:
            raise ChannelError("ILLEGAL_ARGUMENT", "refund amount must be positive and at most the payment",
                               refused=True)
        reason = _clean_text(req.reason, 100) or "refund"
        params = {
            **self._base("forex_refund"),
            "out_return_no": req.channel_refund_id,
            "out_trade_no": req.payment.channel_order_id,
            "return_amount": req.amount.to_major_str(),
            "currency": req.amount.currency,
            "gmt_return": beijing_compact(clock.now()),
            "reason": reason,
            "is_sync": "Y",
        }
        try:
            self._api(params)
        except ChannelError as exc:
            if exc.code not in _NOT_FOUND:
                raise
            return self._spot_refund(req, reason)
        return ChannelRefund(channel_refund_id=req.channel_refund_id, status=RefundStatus.SUCCEEDED,
                             amount=req.amount, raw={"service": "forex_refund"})

    def _spot_refund(self, req: RefundRequest, reason: str) -> ChannelRefund:
        params = {
            **self._base("alipay.acquire.overseas.spot.refund"),
            "partner_trans_id": req.payment.channel_order_id,
            "partner_refund_id": req.channel_refund_id,
            "refund_amount": req.amount.to_major_str(),
            "currency": req.amount.currency,
            "refund_reason": reason,
            "is_sync": "Y",
        }
        if req.payment.channel_transaction_id:
            params["alipay_trans_id"] = req.payment.channel_transaction_id
        try:
            biz = self._instore(params)
        except ChannelError as exc:
            if exc.retryable:
                return ChannelRefund(channel_refund_id=req.channel_refund_id, status=RefundStatus.PROCESSING,
                                     amount=req.amount, raw={"error": exc.code})
            raise
        return ChannelRefund(channel_refund_id=req.channel_refund_id, status=RefundStatus.SUCCEEDED,
                             channel_refund_ref=biz.get("alipay_trans_id") or None, amount=req.amount,
                             raw=dict(biz))

    def refund_query(self, req: RefundRequest) -> ChannelRefund:
        """Alipay MAPI has no refund query (spec §5.2, §6.4). Refunds are sent is_sync=Y, so the first
        answer is final; this re-sends the same refund under the same out_return_no/partner_refund_id,
        which the gateway de-duplicates, and reports that answer."""
        return self.refund(req)

    # notifications -------------------------------------------------------------------------------

    def notify_verify(self, notify_id: str) -> bool:
        """Ask the gateway whether it really sent notify_id (unsigned, as most clients do; spec §3)."""
        params = {"service": "notify_verify", "partner": self.cfg.partner, "notify_id": notify_id}
        return self._send("GET", params, 1024).strip() == "true"

    def parse_notification(self, body: bytes, headers: dict[str, str]) -> Notification:
        if not isinstance(body, (bytes, bytearray)):
            raise InvalidNotification("body must be bytes")
        return notify.verify(bytes(body), self.notify_verify, self.cfg)

    def verify_return(self, params: dict[str, str]) -> dict[str, str]:
        """Browser return_url: signature only, for display. Never changes state."""
        return notify.verify_return(params, self.cfg)

    def ack(self, ok: bool, message: str = "") -> Ack:
        return Ack(body="success" if ok else "fail", content_type="text/plain")

    # files ---------------------------------------------------------------------------------------

    def forex_rates(self) -> dict[str, Decimal]:
        """forex_rate_file: CNY per one unit of each currency (max 100 calls/day at Alipay: cache it)."""
        return {ccy: row["rate"] for ccy, row in self.forex_rate_rows().items()}

    def forex_rate_rows(self) -> dict[str, dict]:
        """Like forex_rates, with each line's own time: {currency: {"rate": Decimal, "at": iso}}."""
        text = self._send("GET", self._signed(self._base("forex_rate_file")), MAX_API_RESPONSE_BYTES)
        if text.lstrip().startswith("<"):
            self._parse_xml(text)
            raise ChannelError("INVALID_RESPONSE", "rate file answered XML")
        try:
            return parse_rate_file(text)
        except StatementFormatError as exc:
            raise ChannelError("INVALID_RESPONSE", f"rate file {exc}") from None

    def download_statement(self, kind: str, start: date | str, end: date | str) -> str:
        """The raw file text: kind 'transactions' (forex_compare_file) or 'settlement'
        (forex_liquidation_file), dates inclusive, Beijing days, at most 10 days, ending before today.
        Holds the whole file: the download job streams it with statement_chunks instead."""
        return _text(b"".join(self.statement_chunks(kind, start, end)))

    @staticmethod
    def _statement_params(kind: str, start: date | str, end: date | str) -> dict[str, str]:
        service = {"transactions": "forex_compare_file", "settlement": "forex_liquidation_file",
                   "forex_compare_file": "forex_compare_file",
                   "forex_liquidation_file": "forex_liquidation_file"}.get(kind)
        if service is None:
            raise ChannelError("ILLEGAL_ARGUMENT", f"unknown statement kind {kind[:40]!r}")

        def day(value: date | str) -> str:
            text = value.strftime("%Y%m%d") if isinstance(value, date) else str(value)
            if not re.fullmatch(r"\d{8}", text):
                raise ChannelError("ILLEGAL_ARGUMENT", "dates are YYYYMMDD")
            return text

        return {"service": service, "partner": "", "start_date": day(start), "end_date": day(end)}

    def statement_chunks(self, kind: str, start: date | str, end: date | str) -> Iterator[bytes]:
        """download_statement's file as it arrives, exactly the bytes Alipay sent, in chunks of at most
        64 KiB (nothing at all for a period without trade). Alipay's answers instead of a file (XML,
        "File download failed: ...") are told from the first bytes and raised before any chunk."""
        # The published vectors sign these without _input_charset.
        params = {**self._statement_params(kind, start, end), "partner": self.cfg.partner}
        return self._file_chunks(params)

    def _file_chunks(self, params: dict[str, str]) -> Iterator[bytes]:
        resp = self._open("GET", self._signed(params))
        chunks = streamed(http.iter_bounded(resp, MAX_FILE_RESPONSE_BYTES), ChannelError("RESPONSE_TOO_LARGE"),
                          "alipay_network_error", service=params.get("service"))
        head, body = http.peek(chunks, FILE_PEEK_BYTES)
        lead = _text(head).lstrip()[:200]
        if lead.lower().startswith("no balance account data"):  # empty period, with or without the prefix
            resp.close()
            return iter(())
        if lead.startswith("<") or lead.lower().startswith("file download failed"):
            text = _text(join_bounded(body, MAX_API_RESPONSE_BYTES, ChannelError("RESPONSE_TOO_LARGE")))
            if lead.startswith("<"):
                self._parse_xml(text)
                raise ChannelError("INVALID_RESPONSE", "statement answered XML")
            reason = text.lstrip()[:200].split(":", 1)[-1].strip()
            if "no balance account data" in reason.lower():
                return iter(())
            retry = "exception" in reason.lower()
            raise ChannelError("STATEMENT_UNAVAILABLE", reason[:120], retryable=retry)
        return body

"""PayEase (首信易支付) online banking: the Channel implementation, wire protocol per peers.md §3.

Flow: `create` returns a signed form the shopper's browser POSTs to the PayEase cashier; PayEase
sends the browser back to `v_url` (display only) and POSTs a server notify to the URL configured
in the PayEase merchant console (there is no per-order notify URL, so `CreateRequest.notify_url`
is not sent). Our callback endpoint answers `sent` (see `ack`).

Order numbers: PayEase requires `v_oid` = `yyyymmdd-<v_mid>-<serial>` (Beijing date). The serial is
Kauri's channel_order_id verbatim (`pay_...`; whether PayEase accepts `_` in serials is not
documented), so notifications map back without a lookup: ChannelPayment.channel_order_id = serial,
channel_transaction_id = the full v_oid, which services keep and hand back in OrderRef for refunds.

Only stdlib and chalicelib at import time (cold start); requests comes via `chalicelib.http`.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Mapping
from urllib.parse import urlencode

from chalicelib import clock, http, log, settings
from chalicelib.channels.base import (
    Ack,
    ChannelError,
    ChannelPayment,
    ChannelRefund,
    ChannelStatus,
    CreateRequest,
    CreateResult,
    InvalidNotification,
    Notification,
    OrderRef,
    RefundRequest,
    RefundStatus,
)
from chalicelib.channels.payease import notify, signing
from chalicelib.money import Money, MoneyError

PAYMENT_PATH = "/prs/user_payment.checkit"          # standard cashier (payer picks the bank)
DIRECT_BANK_PATH = "/customer/gb/pay_bank.jsp"      # skip the cashier: v_pmode names the bank
QUERY_PATH = "/merchant/order/order_ack_oid_list.jsp"
REFUND_PATH = "/merchant/refund/ref_ack_submit.jsp"
REFUND_QUERY_PATH = "/merchant/refund/ref_ack_oid_list_utf8.jsp"

CHINA_TZ = timezone(timedelta(hours=8))  # v_ymd and the date in v_oid are Beijing dates
MAX_RESPONSE_BYTES = 1 << 20
_PMODE_RE = re.compile(r"^\d{1,6}$")

# Query reply messagebody/order/pstatus (integrations: 1 paid, 2 unpaid, anything else failed).
QUERY_LOOKBACK_DAYS = 2  # a pending order's v_oid date is unknown to query(): try today and 2 days back
QUERY_STATUS = {"1": ChannelStatus.PAID, "2": ChannelStatus.PENDING, "3": ChannelStatus.FAILED}
# Refund list refstatus: not published; most likely reading (uncertain).
REFUND_STATUS = {"0": RefundStatus.PROCESSING, "1": RefundStatus.SUCCEEDED, "2": RefundStatus.FAILED}


def china_date(at: datetime | None = None) -> str:
    return (at or clock.now()).astimezone(CHINA_TZ).strftime("%Y%m%d")


def make_order_id(channel_order_id: str, at: datetime | None = None, mid: str | None = None) -> str:
    """The PayEase v_oid `yyyymmdd-<mid>-<channel_order_id>` for a Beijing date."""
    if not notify.SERIAL_RE.match(channel_order_id or ""):
        raise ChannelError("INVALID_ORDER_ID", "channel_order_id must be [0-9A-Za-z_], at most 40 characters")
    return f"{china_date(at)}-{mid or settings.get().payease.mid}-{channel_order_id}"


def serial_of(v_oid: str) -> str | None:
    """Our channel_order_id inside a v_oid, or None if it is not one."""
    m = notify.OID_RE.match(v_oid or "")
    return m.group(3) if m else None


class PayEaseChannel:
    name = "payease"
    flows = ("bank",)
    charge_currency = "CNY"  # payments priced in NZD are charged in CNY at a locked quote
    resends_refunds_safely = False  # PayEase takes no refund number: a second submit is a second refund
    # No close and no expiry at PayEase (spec): the payer's form stays payable for good, so an expired
    # payment is closed on Kauri's clock and a late paid notice is the callbacks' late-money rule.
    closes_on_kauri_clock = True

    def unknown_order_payable_until(self, flow, created_at, expires_at):
        return None  # never bounded at PayEase: closes_on_kauri_clock decides instead

    # ---- configuration ------------------------------------------------------------------------

    def __init__(self, config: settings.PayEaseSettings | None = None):
        self._config = config  # None: the live settings, read at call time

    def _conf(self) -> settings.PayEaseSettings:
        from chalicelib import secrets

        return secrets.resolve(self._config or settings.get().payease)

    def direct_bank_url(self) -> str:
        """Where the payer's form goes to skip the cashier: the form carries v_pmode (not in the MAC)."""
        return self._conf().gateway_url + DIRECT_BANK_PATH

    def _key(self) -> str:
        key = self._conf().md5_key
        if not key:
            raise ChannelError("NOT_CONFIGURED", "PayEase MD5 key is not set")
        return key

    # ---- payment --------------------------------------------------------------------------------

    def create(self, req: CreateRequest) -> CreateResult:
        """The signed browser form for the PayEase cashier (or direct bank with extra["v_pmode"]).

        Consignee/orderer fields carry the merchant number, as PayEase integrations do, so no
        Chinese text enters the MAC. `extra["sandbox_notify_url"]` (sandbox only) adds a field the
        simulator reads to override the console-configured notify URL; PayEase itself ignores it.
        """
        conf = self._conf()
        if req.amount.currency != "CNY":
            raise ChannelError("CURRENCY_NOT_SUPPORTED", "PayEase charges CNY only")
        if req.flow not in self.flows:
            raise ChannelError("FLOW_NOT_SUPPORTED", f"PayEase has no {req.flow!r} flow")
        if req.amount.amount <= 0:
            raise ChannelError("INVALID_AMOUNT", "amount must be positive")
        v_oid = make_order_id(req.channel_order_id, mid=conf.mid)
        v_ymd = v_oid[:8]
        if not req.return_url or not req.return_url.startswith(("https://", "http://")) or len(req.return_url) > 255:
            raise ChannelError("INVALID_RETURN_URL", "PayEase needs an http(s) return_url (v_url)")
        fields = {
            "v_mid": conf.mid,
            "v_oid": v_oid,
            "v_rcvname": conf.mid,
            "v_rcvaddr": conf.mid,
            "v_rcvtel": conf.mid,
            "v_rcvpost": conf.mid,
            "v_amount": req.amount.to_major_str(),
            "v_ymd": v_ymd,
            "v_orderstatus": "1",
            "v_ordername": conf.mid,
            "v_moneytype": notify.CURRENCY_MONEYTYPE["CNY"],
            "v_url": req.return_url,
        }
        fields["v_md5info"] = signing.request_md5info(self._key(), fields)
        if req.client_ip and len(req.client_ip) <= 45:
            fields["v_ordip"] = req.client_ip
        path = PAYMENT_PATH
        pmode = str(req.extra.get("v_pmode", "") or "")
        if pmode:
            if not _PMODE_RE.match(pmode):
                raise ChannelError("INVALID_BANK", "v_pmode must be a PayEase bank id")
            fields["v_pmode"] = pmode
            path = DIRECT_BANK_PATH
        sandbox_notify = req.extra.get("sandbox_notify_url")
        if sandbox_notify:
            fields["kauri_sandbox_notify_url"] = str(sandbox_notify)[:512]
        return CreateResult(
            next_action={"type": "form_post", "url": conf.gateway_url + path, "fields": fields},
            channel_data={"v_oid": v_oid, "v_ymd": v_ymd},
        )

    def query(self, ref: OrderRef) -> ChannelPayment:
        """单笔对账: POST v_mid, v_oid, v_mac; XML reply messagebody/order (pstatus 1 paid, 2 unpaid).

        The v_oid is `ref.channel_transaction_id` when known (every verified notify carries it);
        otherwise the order date is unknown, so today's and the previous QUERY_LOOKBACK_DAYS Beijing
        dates are tried in turn. Uncertain: messagehead status codes are not published (a missing
        <order> reads as NOT_FOUND); the reply's RSA `sign` is not verified (no PayEase public key).
        """
        for v_oid in self._candidate_oids(ref):
            found = self._query_oid(ref.channel_order_id, v_oid)
            if found.status is not ChannelStatus.NOT_FOUND:
                return found
        return ChannelPayment(channel_order_id=ref.channel_order_id, status=ChannelStatus.NOT_FOUND)

    def _candidate_oids(self, ref: OrderRef) -> list[str]:
        known = ref.channel_transaction_id
        if known and serial_of(known) == ref.channel_order_id:
            return [known]
        now = clock.now()
        return [make_order_id(ref.channel_order_id, now - timedelta(days=d), self._conf().mid) for d in range(QUERY_LOOKBACK_DAYS + 1)]

    def _resolve_oid(self, ref: OrderRef) -> str:
        candidates = self._candidate_oids(ref)
        if len(candidates) == 1:
            return candidates[0]
        found = self.query(ref)
        if found.status is ChannelStatus.NOT_FOUND or not found.channel_transaction_id:
            raise ChannelError("ORDER_NOT_FOUND", "PayEase does not know this order", refused=True)
        return found.channel_transaction_id

    def _query_oid(self, channel_order_id: str, oid: str) -> ChannelPayment:
        conf = self._conf()
        root = self._post_xml(QUERY_PATH, {"v_mid": conf.mid, "v_oid": oid,
                                           "v_mac": signing.query_mac(self._key(), conf.mid, oid)})
        order = root.find(".//messagebody/order")
        if order is None:
            status = (root.findtext(".//messagehead/status") or "").strip()
            if status in ("", "0", "1"):
                return ChannelPayment(channel_order_id=channel_order_id, status=ChannelStatus.NOT_FOUND)
            raise ChannelError("QUERY_FAILED", (root.findtext(".//messagehead/statusdesc") or "")[:200])
        got_oid = (order.findtext("oid") or "").strip()
        if got_oid and got_oid != oid:
            raise ChannelError("QUERY_MISMATCH", "PayEase answered for another order")
        pstatus = (order.findtext("pstatus") or "").strip()
        status = QUERY_STATUS.get(pstatus, ChannelStatus.FAILED)
        amount = None
        amount_text = (order.findtext("amount") or "").strip()
        if amount_text:
            currency = notify.MONEYTYPE_CURRENCY.get((order.findtext("moneytype") or "0").strip())
            if currency is None:
                raise ChannelError("UNEXPECTED_CURRENCY", "query reply is not in CNY")
            try:
                amount = Money.from_major(amount_text, currency)
            except MoneyError:
                raise ChannelError("BAD_REPLY", "unreadable amount") from None
        raw = {child.tag: (child.text or "").strip() for child in order if child.tag != "sign"}
        return ChannelPayment(channel_order_id=channel_order_id, status=status, amount=amount,
                              payer_amount=amount, channel_transaction_id=oid, raw=raw)

    def close(self, ref: OrderRef) -> None:
        """PayEase has no close/cancel API: an unpaid order simply never gets paid. Services must
        treat PayEase orders as closed on their own clock (and still accept a late paid notify as a
        reconciliation case)."""
        raise ChannelError("NOT_SUPPORTED", "PayEase has no close API")

    # ---- refunds ----------------------------------------------------------------------------------

    def refund(self, req: RefundRequest) -> ChannelRefund:
        """ref_ack_submit: v_mid, v_oid, v_refamount, v_refreason, v_refoprt, v_mac.

        PayEase takes no merchant refund number, so our `channel_refund_id` travels at the start of
        `v_refreason` (echoed by the refund list) and is how `refund_query` finds the refund.
        Not idempotent at PayEase: after a NETWORK error, `refund_query` before retrying.
        Uncertain (not published): reply root children status/statusdesc/refid; status "0" read as
        accepted (PROCESSING), anything else as a refusal.
        """
        conf = self._conf()
        if req.amount.currency != "CNY" or req.total.currency != "CNY":
            raise ChannelError("CURRENCY_NOT_SUPPORTED", "PayEase refunds CNY only", refused=True)
        if not 0 < req.amount.amount <= req.total.amount:
            raise ChannelError("INVALID_AMOUNT", "refund must be positive and at most the payment", refused=True)
        oid = self._resolve_oid(req.payment)
        refamount = req.amount.to_major_str()
        reason = (req.channel_refund_id + (" " + req.reason if req.reason else ""))[:64]
        fields = {"v_mid": conf.mid, "v_oid": oid, "v_refamount": refamount, "v_refreason": reason,
                  "v_refoprt": conf.refund_operator,
                  "v_mac": signing.refund_mac(self._key(), conf.mid, oid, refamount, conf.refund_operator)}
        root = self._post_xml(REFUND_PATH, fields)
        status = (root.findtext("status") or "").strip()
        desc = (root.findtext("statusdesc") or "").strip()[:200]
        if status != "0":
            raise ChannelError("REFUND_REJECTED", desc or f"status {status!r}", refused=True)
        return ChannelRefund(channel_refund_id=req.channel_refund_id, status=RefundStatus.PROCESSING,
                             channel_refund_ref=(root.findtext("refid") or "").strip() or None,
                             amount=req.amount, raw={"status": status, "statusdesc": desc})

    def refund_query(self, req: RefundRequest) -> ChannelRefund:
        """ref_ack_oid_list_utf8: every refund of the order; ours is the one whose refreason starts
        with our channel_refund_id. Uncertain: refstatus codes (read as 0 processing, 1 succeeded,
        2 failed). No matching refund -> FAILED with raw {"reason": "not_found"}."""
        conf = self._conf()
        oid = self._resolve_oid(req.payment)
        root = self._post_xml(REFUND_QUERY_PATH, {
            "v_mid": conf.mid, "v_oid": oid, "v_mac": signing.refund_query_mac(self._key(), conf.mid, oid)})
        for item in root.findall(".//messagebody/refund"):
            reason = (item.findtext("refreason") or "").strip()
            if reason.split(" ", 1)[0] != req.channel_refund_id:
                continue
            status = REFUND_STATUS.get((item.findtext("refstatus") or "").strip(), RefundStatus.PROCESSING)
            amount = None
            try:
                amount = Money.from_major((item.findtext("refamount") or "").strip(), "CNY")
            except MoneyError:
                pass
            raw = {child.tag: (child.text or "").strip() for child in item if child.tag != "sign"}
            return ChannelRefund(channel_refund_id=req.channel_refund_id, status=status,
                                 channel_refund_ref=raw.get("refid") or None, amount=amount, raw=raw)
        # Not listed (yet): PayEase's list lags its refund desk, so this is no verdict on its own; the
        # chase job decides what an old unlisted refund means (services.chase).
        return ChannelRefund(channel_refund_id=req.channel_refund_id, status=RefundStatus.NOT_FOUND,
                             raw={"reason": "not_listed"})

    # ---- callbacks --------------------------------------------------------------------------------

    def parse_notification(self, body: bytes, headers: dict[str, str]) -> Notification:
        """The server notify: verified, split into one Notification per batched order."""
        conf = self._conf()
        if not conf.md5_key:
            raise InvalidNotification("PayEase key not configured")
        payments = notify.verify_notification(body, headers, conf.md5_key, expected_mid=conf.mid,
                                              max_bytes=settings.get().max_body_bytes)
        rest = tuple(Notification(kind="payment", payment=p) for p in payments[1:])
        return Notification(kind="payment", payment=payments[0], more=rest)

    def verify_return(self, params: Mapping[str, str]) -> ChannelPayment:
        """The browser return to v_url, verified. Show a page with it; never change state on it."""
        conf = self._conf()
        if not conf.md5_key:
            raise InvalidNotification("PayEase key not configured")
        return notify.verify_return(params, conf.md5_key, expected_mid=conf.mid)

    def ack(self, ok: bool, message: str = "") -> Ack:
        """PayEase stops resending only on the plain body `sent`; `error` asks it to try again."""
        return Ack(body="sent" if ok else "error", content_type="text/plain", status_code=200)

    # ---- wire -------------------------------------------------------------------------------------

    def _post_xml(self, path: str, fields: dict[str, str]):
        from xml.etree import ElementTree as ET

        conf = self._conf()
        url = (conf.api_url or conf.gateway_url) + path
        body = urlencode(fields, encoding="gbk", errors="strict")
        try:
            resp = http.session().post(
                url, data=body.encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=settings.get().http_timeout_seconds)
        except Exception as exc:  # requests' errors: connection, timeout, TLS
            log.warning("payease.http_error", path=path, error=type(exc).__name__)
            raise ChannelError("NETWORK", type(exc).__name__, retryable=True) from None
        if resp.status_code >= 500:
            raise ChannelError("UPSTREAM", f"HTTP {resp.status_code}", retryable=True)
        if resp.status_code != 200:
            raise ChannelError("UPSTREAM", f"HTTP {resp.status_code}")
        content = resp.content or b""
        if len(content) > MAX_RESPONSE_BYTES:
            raise ChannelError("BAD_REPLY", "reply too large")
        text = _xml_text(content)
        try:
            return ET.fromstring(text)
        except ET.ParseError:
            raise ChannelError("BAD_REPLY", "reply is not XML") from None


def _xml_text(content: bytes) -> str:
    """XML bytes as text without the declaration (expat cannot decode GBK itself)."""
    head = content[:100].decode("ascii", "ignore")
    m = re.search(r"encoding=[\"']([A-Za-z0-9_\-]+)", head)
    text = notify.decode_text(content, m.group(1).lower() if m else None)
    text = text.lstrip("\ufeff").lstrip()
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2:]
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ChannelError("BAD_REPLY", "DTDs are not accepted")
    return text

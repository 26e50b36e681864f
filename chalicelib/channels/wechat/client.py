"""WeChat Pay API v2 client, overseas institution mode: appid + mch_id (ours) + sub_mch_id (merchant)."""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import date as date_type
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterator, Mapping
from urllib.parse import quote

from chalicelib import clock, http, log, settings
from chalicelib.channels.base import (
    Ack, ChannelError, ChannelPayment, ChannelRefund, ChannelStatus, CreateRequest, CreateResult,
    Notification, OrderRef, RefundRequest, RefundStatus, join_bounded, streamed,
)
from chalicelib.channels.wechat import notify, signing, wire
from chalicelib.money import Money, MoneyError, exponent, rate_from_e8

TRADE_TYPES = {"native": "NATIVE", "jsapi": "JSAPI", "h5": "MWEB"}
TRADE_STATES = {
    "SUCCESS": ChannelStatus.PAID,
    "REFUND": ChannelStatus.REFUNDED,
    "NOTPAY": ChannelStatus.PENDING,
    "USERPAYING": ChannelStatus.PENDING,
    "CLOSED": ChannelStatus.CLOSED,
    "REVOKED": ChannelStatus.CLOSED,
    "PAYERROR": ChannelStatus.FAILED,
}
REFUND_STATES = notify.REFUND_STATES
RETRYABLE = frozenset({"SYSTEMERROR", "BIZERR_NEED_RETRY"})
MAX_BODY_CHARS = 127
MAX_BILL_BYTES = 512 * 1024 * 1024
SETTLEMENT_PAGE = 10          # records per settlementquery page ("not more than 10 is best", WeChat's page)
SETTLEMENT_PAGE_MAX = 50
MAX_SETTLEMENT_PAGES = 200
MAX_SETTLEMENT_DAYS = 31      # a batch's trade period (date_start..date_end) longer than this is refused
_BATCH_NO = re.compile(r"[0-9A-Za-z_-]{1,64}")
_AMOUNT_FIELDS = ("unsettlement_fee", "pay_fee", "refund_fee")


def _minor(record: Mapping[str, str], name: str, signed: bool = False) -> int:
    """An amount field: ASCII digits (a leading '-' only where `signed`), in minor units."""
    text = record.get(name, "")
    body = text[1:] if signed and text.startswith("-") else text
    if not body or not body.isascii() or not body.isdigit() or len(body) > 15:
        raise ValueError(f"{name} is not an integer amount in minor units")
    return int(text)


def _day(record: Mapping[str, str], name: str) -> date_type:
    text = record.get(name, "")
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        raise ValueError(f"{name} is not yyyyMMdd")
    try:
        return datetime.strptime(text, wire.DATE_FORMAT).date()
    except ValueError:
        raise ValueError(f"{name} is not a date") from None


@dataclass(frozen=True)
class Settlement:
    """One settled batch (a `<setteinfo_N>` record of /pay/settlementquery), amounts in minor units of
    `currency` (settlementfee_type): WeChat paid `settled` into the institution's bank on `settled_on`
    for trades of period_start..period_end (UTC+8 days): `pay` minus `refund` is `net`, `fee` kept."""
    batch_no: str
    settled_on: date_type
    period_start: date_type
    period_end: date_type
    currency: str
    settled: int
    unsettled: int
    pay: int
    refund: int
    net: int
    fee: int

    @classmethod
    def from_record(cls, r: Mapping[str, str]) -> "Settlement":
        batch_no = r.get("fbatchno", "")
        if not _BATCH_NO.fullmatch(batch_no):
            raise ValueError("fbatchno must be 1-64 of [0-9A-Za-z_-]")
        currency = r.get("settlementfee_type", "")
        try:
            exponent(currency)
        except MoneyError:
            raise ValueError("settlementfee_type is not a currency Kauri knows") from None
        settled_on, start, end = _day(r, "date_settlement"), _day(r, "date_start"), _day(r, "date_end")
        if not start <= end <= settled_on or (end - start).days >= MAX_SETTLEMENT_DAYS:
            raise ValueError("date_start <= date_end <= date_settlement within 31 days does not hold")
        amounts = {name: _minor(r, name) for name in _AMOUNT_FIELDS}
        net = _minor(r, "pay_net_fee", signed=True)        # a day of refunds only nets below zero
        fee = _minor(r, "poundage_fee", signed=True)       # refunds give their fee back
        settled = _minor(r, "settlement_fee", signed=True)  # below zero: refunds WeChat took back that period
        if net != amounts["pay_fee"] - amounts["refund_fee"]:
            raise ValueError("pay_net_fee is not pay_fee - refund_fee")
        return cls(batch_no, settled_on, start, end, currency, settled, amounts["unsettlement_fee"],
                   amounts["pay_fee"], amounts["refund_fee"], net, fee)


BILL_PEEK_BYTES = 64                       # enough to tell a bill from WeChat's `<xml>` error answer
MAX_GZIP_BYTES = MAX_BILL_BYTES           # compressed bytes read at most (the text is bounded on its own)


def _bill_error(content: bytes) -> ChannelError:
    """The FAIL XML WeChat sends instead of a bill (spec §9: e.g. No Bill Exist, error_code 20002)."""
    try:
        fields = wire.from_xml(content)
    except wire.WireError as exc:
        return ChannelError("BAD_RESPONSE", str(exc), retryable=True)
    code = fields.get("error_code") or fields.get("err_code") or _return_fail_code(fields.get("return_msg", ""))
    return ChannelError(code, fields.get("return_msg", "")[:128], retryable=code in RETRYABLE)


def _inflated(chunks: Iterator[bytes], max_bytes: int) -> Iterator[bytes]:
    """A gzip stream inflated as it flows, never more than CHUNK_BYTES out per step (a small body that
    inflates hugely is stopped at max_bytes, not buffered)."""
    import zlib

    inflater = zlib.decompressobj(wbits=31)
    out = 0
    for chunk in chunks:
        data = chunk
        while data:
            piece = inflater.decompress(data, http.CHUNK_BYTES)
            data = inflater.unconsumed_tail
            out += len(piece)
            if out > max_bytes:
                raise ChannelError("BAD_RESPONSE", f"bill larger than {max_bytes} bytes inflated")
            if piece:
                yield piece
            if inflater.eof:
                break
    if not inflater.eof:
        raise ChannelError("BAD_RESPONSE", "the GZIP bill ends early", retryable=True)


def _utf8_checked(chunks: Iterator[bytes]) -> Iterator[bytes]:
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for chunk in chunks:
            decoder.decode(chunk)
            yield chunk
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise ChannelError("BAD_RESPONSE", "bill is not UTF-8") from None


# An unsigned return_code=FAIL carries only free text (return_msg); merchants get a stable code instead.
_RETURN_MSG_CODES = {"签名错误": "SIGNERROR", "签名失败": "SIGNERROR", "sign error": "SIGNERROR"}


def _return_fail_code(return_msg: str) -> str:
    return _RETURN_MSG_CODES.get(return_msg.strip(), "RETURN_FAIL")


def nonce() -> str:
    return secrets.token_hex(16)  # 32 chars, letters and digits


def _clean(text: str, limit: int) -> str:
    """One line of printable text, at most `limit` characters (not bytes: WeChat counts characters)."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(flat.split())[:limit].strip()


class WeChatChannel:
    name = "wechat"
    flows = ("native", "jsapi", "h5")
    charge_currency: str | None = None  # WeChat charges in the pricing currency (NZD, AUD, ...)
    # After PAYERROR (e.g. NOTENOUGH) the shopper can pay the same order again until it expires.
    payable_after_failed_attempt = True
    closes_on_kauri_clock = False       # /pay/closeorder closes an unpaid order

    def unknown_order_payable_until(self, flow, created_at, expires_at):
        return None  # unifiedorder creates the order: one WeChat does not know cannot be paid
    resends_refunds_safely = True       # the same out_refund_no is the same refund (spec: retries reuse it)

    def __init__(self, config: settings.WeChatSettings | None = None):
        self._config = config

    @property
    def config(self) -> settings.WeChatSettings:
        from chalicelib import secrets

        return secrets.resolve(self._config or settings.get().wechat)

    # ---- payments ---------------------------------------------------------------------------

    def create(self, req: CreateRequest) -> CreateResult:
        cfg = self.config
        trade_type = TRADE_TYPES.get(req.flow)
        if trade_type is None:
            raise ChannelError("UNSUPPORTED_FLOW", f"wechat has no flow {req.flow!r}")
        sub_mch_id = req.merchant.get("sub_mch_id")
        if not sub_mch_id:
            raise ChannelError("MISSING_SUB_MCH_ID", "merchant has no WeChat sub_mch_id")
        description = _clean(req.description, MAX_BODY_CHARS) or "Payment"
        params: dict[str, Any] = {
            "sub_mch_id": sub_mch_id,
            "body": description,
            "out_trade_no": req.channel_order_id,
            "fee_type": req.amount.currency,
            "total_fee": req.amount.amount,
            "spbill_create_ip": req.client_ip,
            "time_expire": wire.format_time(req.expires_at),
            "notify_url": req.notify_url,
            "trade_type": trade_type,
        }
        pay_appid = cfg.appid
        if trade_type == "NATIVE":
            params["product_id"] = (req.product_id or req.channel_order_id)[:32]
        elif trade_type == "JSAPI":
            if req.payer.get("sub_openid"):
                pay_appid = req.merchant.get("sub_appid")
                params["sub_appid"] = pay_appid
                params["sub_openid"] = req.payer["sub_openid"]
            else:
                params["openid"] = req.payer.get("openid", "")
        else:
            params["scene_info"] = json.dumps(
                {"h5_info": {"type": "Wap", "wap_url": req.return_url or settings.get().public_base_url,
                             "wap_name": _clean(req.description, 32) or "Payment"}},
                ensure_ascii=False, separators=(",", ":"))
        fields = self._call("/pay/unifiedorder", params)
        prepay_id = fields.get("prepay_id", "")
        if not prepay_id:
            raise ChannelError("BAD_RESPONSE", "unifiedorder answered without prepay_id", retryable=True)
        channel_data = {"prepay_id": prepay_id}
        if trade_type == "NATIVE":
            if not fields.get("code_url"):
                raise ChannelError("BAD_RESPONSE", "NATIVE order without code_url", retryable=True)
            return CreateResult({"type": "qr_code", "qr_code": fields["code_url"]}, channel_data)
        if trade_type == "JSAPI":
            return CreateResult({"type": "jsapi", "jsapi": self.jsapi_params(prepay_id, pay_appid)}, channel_data)
        url = fields.get("mweb_url", "")
        if not url.startswith("https://"):
            raise ChannelError("BAD_RESPONSE", "MWEB order without an https mweb_url", retryable=True)
        if req.return_url:
            url += "&redirect_url=" + quote(req.return_url, safe="")
        return CreateResult({"type": "redirect", "url": url}, channel_data)

    def jsapi_params(self, prepay_id: str, appid: str | None = None) -> dict[str, str]:
        """getBrandWCPayRequest parameters; paySign covers exactly these five keys (spec §4)."""
        cfg = self.config
        params = {
            "appId": appid or cfg.appid,
            "timeStamp": str(clock.epoch()),
            "nonceStr": nonce(),
            "package": f"prepay_id={prepay_id}",
            "signType": cfg.sign_type,
        }
        params["paySign"] = signing.sign(params, cfg.api_key, cfg.sign_type)
        return params

    def query(self, ref: OrderRef) -> ChannelPayment:
        params = {"sub_mch_id": ref.merchant.get("sub_mch_id")}
        if ref.channel_transaction_id:
            params["transaction_id"] = ref.channel_transaction_id
        else:
            params["out_trade_no"] = ref.channel_order_id
        try:
            fields = self._call("/pay/orderquery", params)
        except ChannelError as exc:
            if exc.code == "ORDERNOTEXIST":
                return ChannelPayment(channel_order_id=ref.channel_order_id, status=ChannelStatus.NOT_FOUND)
            raise
        status = TRADE_STATES.get(fields.get("trade_state", ""))
        if status is None:
            raise ChannelError("BAD_RESPONSE", "unknown trade_state", retryable=True)
        try:
            return notify.payment_from_fields(fields, status)
        except notify.FieldError as exc:
            raise ChannelError("BAD_RESPONSE", str(exc)) from None

    def close(self, ref: OrderRef) -> None:
        params = {"sub_mch_id": ref.merchant.get("sub_mch_id"), "out_trade_no": ref.channel_order_id}
        try:
            self._call("/pay/closeorder", params)
        except ChannelError as exc:
            if exc.code != "ORDERCLOSED":  # already closed is what we wanted; ORDERPAID propagates
                raise

    # ---- refunds ----------------------------------------------------------------------------

    def refund(self, req: RefundRequest) -> ChannelRefund:
        if req.amount.currency != req.total.currency:
            raise ChannelError("INVALID_REQUEST", "refund currency must equal the payment currency", refused=True)
        params: dict[str, Any] = {
            "sub_mch_id": req.payment.merchant.get("sub_mch_id"),
            "out_refund_no": req.channel_refund_id,
            "total_fee": req.total.amount,
            "refund_fee": req.amount.amount,
            "refund_fee_type": req.amount.currency,
            "refund_desc": _clean(req.reason, 80),
            "notify_url": req.notify_url or "",
        }
        params.update(self._order_key(req.payment))
        fields = self._call("/secapi/pay/refund", params, client_cert=True)
        amount = req.amount
        if fields.get("refund_fee", "").isdigit():
            amount = Money(int(fields["refund_fee"]), fields.get("refund_fee_type") or req.amount.currency)
        return ChannelRefund(
            channel_refund_id=req.channel_refund_id,
            status=RefundStatus.PROCESSING,  # acceptance only; refund_query tells the outcome
            channel_refund_ref=fields.get("refund_id") or None,
            amount=amount,
            raw={k: v for k, v in fields.items() if k != "sign"},
        )

    def refund_query(self, req: RefundRequest) -> ChannelRefund:
        params = {"sub_mch_id": req.payment.merchant.get("sub_mch_id"), "out_refund_no": req.channel_refund_id}
        fields = self._call("/pay/refundquery", params)
        count = fields.get("refund_count", "0")
        for n in range(int(count) if count.isdigit() else 0):
            if fields.get(f"out_refund_no_{n}") != req.channel_refund_id:
                continue
            status = REFUND_STATES.get(fields.get(f"refund_status_{n}", ""))
            if status is None:
                raise ChannelError("BAD_RESPONSE", "unknown refund_status", retryable=True)
            fee = fields.get(f"refund_fee_{n}", "")
            try:
                amount = Money(int(fee), fields.get("refund_fee_type") or fields.get("fee_type") or req.amount.currency) \
                    if fee.isdigit() else req.amount
            except MoneyError as exc:
                raise ChannelError("BAD_RESPONSE", str(exc)) from None
            return ChannelRefund(
                channel_refund_id=req.channel_refund_id,
                status=status,
                channel_refund_ref=fields.get(f"refund_id_{n}") or None,
                amount=amount,
                raw={k: v for k, v in fields.items() if k != "sign"},
            )
        raise ChannelError("REFUNDNOTEXIST", "refund not in the channel's answer")

    # ---- rates and bills (for the scheduled jobs) ------------------------------------------

    def exchange_rate(self, currency: str, date: date_type, sub_mch_id: str | None = None) -> Decimal:
        """The indicative rate (CNY per one unit of `currency`) WeChat publishes for a UTC+8 day."""
        return self.exchange_rate_with_time(currency, date, sub_mch_id)[0]

    def exchange_rate_with_time(self, currency: str, date: date_type,
                                sub_mch_id: str | None = None) -> tuple[Decimal, str | None]:
        """The rate and the `rate_time` WeChat reports for it (yyyyMMdd or yyyyMMddHHmmss, UTC+8), if any."""
        params = {"sub_mch_id": sub_mch_id or "", "fee_type": currency, "date": date.strftime(wire.DATE_FORMAT)}
        # The documented request has neither nonce_str nor sign_type: it is signed with MD5 (V5).
        fields = self._call("/pay/queryexchagerate", params, with_nonce=False)
        value = fields.get("rate", "")
        if fields.get("fee_type", "") not in ("", currency) or not value.isdigit() or int(value) == 0:
            raise ChannelError("BAD_RESPONSE", "queryexchagerate answered without a usable rate", retryable=True)
        return rate_from_e8(value), fields.get("rate_time") or None

    def download_bill(self, date: date_type, sub_mch_id: str | None = None, bill_type: str = "ALL") -> str:
        """The day's bill as text (spec §9); a FAIL XML answer (e.g. No Bill Exist) raises ChannelError.
        Holds the whole bill: the download job streams it with bill_chunks instead."""
        return b"".join(self.bill_chunks(date, sub_mch_id, bill_type)).decode("utf-8-sig")

    def bill_chunks(self, date: date_type, sub_mch_id: str | None = None, bill_type: str = "ALL",
                    gzip: bool = False) -> Iterator[bytes]:
        """The day's bill as it arrives, in chunks of at most 64 KiB, exactly the bytes WeChat sent (a
        GZIP bill, tar_type=GZIP, is inflated as it flows). WeChat answers an error (no bill, not yet
        generated) with a small XML body instead of the bill: that is told from the first bytes and
        raised as ChannelError before any chunk is handed over. While streaming: ChannelError for a
        network failure, a body past MAX_BILL_BYTES, or bytes that are not UTF-8."""
        params = {"sub_mch_id": sub_mch_id or "", "bill_date": date.strftime(wire.DATE_FORMAT), "bill_type": bill_type,
                  "tar_type": "GZIP" if gzip else None}
        signed, _ = self._signed(params)
        resp = self._post("/pay/downloadbill", signed, max_bytes=MAX_BILL_BYTES, stream=True,
                          accept="text/plain, text/xml, application/gzip, application/octet-stream" if gzip
                          else "text/plain, text/xml")
        bound = MAX_BILL_BYTES if not gzip else MAX_GZIP_BYTES
        chunks = streamed(http.iter_bounded(resp, bound), ChannelError("BAD_RESPONSE", f"body larger than {bound} bytes"),
                          "wechat_download_network_error")
        head, body = http.peek(chunks, BILL_PEEK_BYTES)
        wanted = BILL_PEEK_BYTES
        while len(head.lstrip()) < 5 and len(head) >= wanted and wanted < wire.MAX_BODY_BYTES:
            wanted = len(head) + BILL_PEEK_BYTES          # only blank space so far, and more to come: look further
            head, body = http.peek(body, wanted)
        if head.lstrip()[:5] == b"<xml>":
            raise _bill_error(join_bounded(body, wire.MAX_BODY_BYTES, ChannelError(
                "BAD_RESPONSE", "an XML answer larger than an error answer", retryable=True)))
        if gzip and head[:2] == b"\x1f\x8b":
            body = _inflated(body, MAX_BILL_BYTES)
        return _utf8_checked(body)

    def settlements(self, first: date_type, last: date_type, limit: int = SETTLEMENT_PAGE) -> list[Settlement]:
        """Every batch WeChat settled (usetag=1) with a settlement date in first..last (UTC+8 days), page
        by page (offset/limit) until a page comes back short. Each page is verified and validated whole."""
        out: list[Settlement] = []
        seen: dict[str, Settlement] = {}
        for _ in range(MAX_SETTLEMENT_PAGES):
            page = self.settlement_page(first, last, len(out), limit)
            for batch in page:
                if batch.batch_no in seen:
                    raise ChannelError("BAD_RESPONSE", "a settlement batch listed twice", retryable=True)
                seen[batch.batch_no] = batch
            out.extend(page)
            if len(page) < limit:
                return out
        raise ChannelError("BAD_RESPONSE", f"more than {MAX_SETTLEMENT_PAGES} pages of settlements")

    def settlement_page(self, first: date_type, last: date_type, offset: int, limit: int) -> list[Settlement]:
        """One /pay/settlementquery page (institution-wide: no sub_mch_id)."""
        if last < first or not 0 <= offset or not 1 <= limit <= SETTLEMENT_PAGE_MAX:
            raise ValueError("bad settlement query range")
        params = {"usetag": 1, "offset": offset, "limit": limit,
                  "date_start": first.strftime(wire.DATE_FORMAT), "date_end": last.strftime(wire.DATE_FORMAT)}
        fields, records = self._exchange("/pay/settlementquery", params, records="setteinfo_")
        count = fields.get("record_num", "")
        if not count.isascii() or not count.isdigit() or int(count) != len(records) or len(records) > limit:
            raise ChannelError("BAD_RESPONSE", "record_num does not count the records", retryable=True)
        try:
            batches = [Settlement.from_record(r) for r in records]
        except ValueError as exc:
            raise ChannelError("BAD_RESPONSE", f"settlement record: {exc}", retryable=True) from None
        for b in batches:
            if not first <= b.settled_on <= last:
                raise ChannelError("BAD_RESPONSE", "a settlement outside the dates asked for", retryable=True)
        return batches

    # ---- callbacks --------------------------------------------------------------------------

    def parse_notification(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        return notify.parse(body, headers, self.config)

    def ack(self, ok: bool, message: str = "") -> Ack:
        body = wire.to_xml({"return_code": "SUCCESS" if ok else "FAIL", "return_msg": message or ("OK" if ok else "FAIL")})
        return Ack(body=body.decode("utf-8"), content_type="text/xml")

    # ---- transport --------------------------------------------------------------------------

    @staticmethod
    def _order_key(ref: OrderRef) -> dict[str, str]:
        if ref.channel_transaction_id:
            return {"transaction_id": ref.channel_transaction_id}
        return {"out_trade_no": ref.channel_order_id}

    def _signed(self, params: Mapping[str, Any], with_nonce: bool = True) -> tuple[dict[str, Any], str]:
        """Our ids + `params` (blank ones dropped) + sign; also the sign_type the answer will use."""
        cfg = self.config
        full: dict[str, Any] = {"appid": cfg.appid, "mch_id": cfg.mch_id}
        sign_type = signing.MD5
        if with_nonce:
            full["nonce_str"] = nonce()
            sign_type = cfg.sign_type
            full["sign_type"] = sign_type
        for key, value in params.items():
            if value is None:
                continue
            text = value if isinstance(value, int) else str(value).strip()  # never send padded values (§2)
            if text != "":
                full[key] = text
        full["sign"] = signing.sign(full, cfg.api_key, sign_type)
        return full, sign_type

    def _post(self, path: str, params: Mapping[str, Any], client_cert: bool = False,
              max_bytes: int = wire.MAX_BODY_BYTES, stream: bool = False, accept: str = "text/xml, text/plain"):
        cfg = self.config
        kwargs: dict[str, Any] = {}
        if client_cert and cfg.cert_path and cfg.key_path:
            kwargs["cert"] = (cfg.cert_path, cfg.key_path)  # /secapi/ calls need mutual TLS
        import requests

        started = clock.ticks()
        try:
            resp = http.session().post(
                cfg.base_url + path, data=wire.to_xml(params),
                headers={"Content-Type": "text/xml; charset=utf-8", "Accept": accept},
                timeout=settings.get().http_timeout_seconds, stream=stream, **kwargs)
        except requests.RequestException as exc:
            log.warning("wechat_call_network_error", path=path, error=type(exc).__name__)
            raise ChannelError("NETWORK", type(exc).__name__, retryable=True) from None
        log.info("wechat_call", path=path, status=resp.status_code,
                 ms=clock.ms_since(started))
        declared = resp.headers.get("Content-Length", "")
        if resp.status_code != 200 or (declared.isdigit() and int(declared) > max_bytes):
            resp.close()
            if resp.status_code != 200:
                raise ChannelError(f"HTTP_{resp.status_code}", "unexpected HTTP status",
                                   retryable=resp.status_code >= 500)
            raise ChannelError("BAD_RESPONSE", "response too large")
        if not stream and len(resp.content) > max_bytes:
            raise ChannelError("BAD_RESPONSE", "response too large")
        return resp  # streamed: the caller reads it, bounded (http.iter_bounded)

    def _call(self, path: str, params: Mapping[str, Any], client_cert: bool = False,
              with_nonce: bool = True) -> dict[str, str]:
        """POST a signed request; return the verified SUCCESS/SUCCESS fields, else raise ChannelError."""
        return self._exchange(path, params, client_cert, with_nonce)[0]

    def _exchange(self, path: str, params: Mapping[str, Any], client_cert: bool = False, with_nonce: bool = True,
                  records: str | None = None) -> tuple[dict[str, str], list[dict[str, str]]]:
        """_call, and the answer's `<{records}N>` records (verified with it) when `records` names them."""
        cfg = self.config
        signed, sign_type = self._signed(params, with_nonce)
        resp = self._post(path, signed, client_cert)
        try:
            if records is None:
                fields, listed = wire.from_xml(resp.content), []
            else:
                fields, listed = wire.from_xml_records(resp.content, records)
        except wire.WireError as exc:
            raise ChannelError("BAD_RESPONSE", str(exc), retryable=True) from None
        if fields.get("return_code") != "SUCCESS":
            # Protocol-level failure: unsigned, only return_msg to go on.
            msg = fields.get("return_msg", "")[:128]
            log.warning("wechat_call_fail", path=path, return_msg=msg)
            # WeChat's documented "request not processed" answer: a refusal, though unsigned.
            raise ChannelError(fields.get("err_code") or _return_fail_code(msg), msg, refused=True)
        if not signing.verify(fields, cfg.api_key, sign_type):
            log.error("wechat_response_bad_signature", path=path)
            raise ChannelError("INVALID_SIGNATURE", "response signature did not verify")
        if fields.get("appid") != cfg.appid or fields.get("mch_id") != cfg.mch_id:
            raise ChannelError("ID_MISMATCH", "response is for another appid/mch_id")
        if "result_code" in fields and fields["result_code"] != "SUCCESS":
            code = fields.get("err_code") or "FAIL"
            log.info("wechat_call_refused", path=path, err_code=code)
            raise ChannelError(code, fields.get("err_code_des", ""), retryable=code in RETRYABLE, refused=True)
        return fields, listed

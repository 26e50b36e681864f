"""Payment result notifications (WeChat -> our notify_url): verify, then turn into a Notification.

The one home of callback checking: XML shape, signature over every received field, return_code,
and that the ids are ours. The amount-against-our-order check belongs to the service that owns
the order (services.callbacks), which gets `amount` from here.
"""
from __future__ import annotations

import re
from typing import Mapping

from chalicelib import log, settings
from chalicelib.channels.base import (
    ChannelPayment, ChannelRefund, ChannelStatus, InvalidNotification, Notification, RefundStatus,
)
from chalicelib.channels.wechat import signing, wire
from chalicelib.money import Money, MoneyError, rate_from_e8

_INT = re.compile(r"-?[0-9]{1,18}")
# refund_status of refund queries and refund notifications (spec §7).
REFUND_STATES = {
    "SUCCESS": RefundStatus.SUCCEEDED,
    "PROCESSING": RefundStatus.PROCESSING,
    "REFUNDCLOSE": RefundStatus.FAILED,
    "CHANGE": RefundStatus.ABNORMAL,   # paid out, not received (e.g. card cancelled): ops route it
}
_UINT = re.compile(r"[0-9]{1,18}")


class FieldError(ValueError):
    """A received field that does not have the shape the protocol promises."""


def _int(fields: Mapping[str, str], name: str) -> int:
    value = fields.get(name, "")
    if not _INT.fullmatch(value):
        raise FieldError(f"{name} is not an integer")
    return int(value)


def payment_from_fields(fields: Mapping[str, str], status: ChannelStatus) -> ChannelPayment:
    """Map verified order fields (orderquery response or notification) to a ChannelPayment."""
    try:
        amount = None
        if fields.get("total_fee"):
            amount = Money(_int(fields, "total_fee"), fields.get("fee_type") or "CNY")
        payer_amount = None
        if fields.get("cash_fee"):
            payer_amount = Money(_int(fields, "cash_fee"), fields.get("cash_fee_type") or "CNY")
        rate = None
        rate_e8 = fields.get("rate") or fields.get("rate_value")  # both names seen in the wild (§8)
        if rate_e8:
            if not _UINT.fullmatch(rate_e8) or int(rate_e8) == 0:
                raise FieldError("rate is not a positive integer")
            rate = rate_from_e8(rate_e8)
        paid_at = wire.parse_time(fields["time_end"]) if fields.get("time_end") else None
    except (MoneyError, ValueError) as exc:
        raise FieldError(str(exc)) from None
    return ChannelPayment(
        channel_order_id=fields.get("out_trade_no", ""),
        status=status,
        amount=amount,
        payer_amount=payer_amount,
        rate=rate,
        channel_transaction_id=fields.get("transaction_id") or None,
        paid_at=paid_at,
        merchant_channel_id=fields.get("sub_mch_id") or None,
        raw={k: v for k, v in fields.items() if k != "sign"},
    )


def verify(body: bytes, config: settings.WeChatSettings | None = None) -> dict[str, str]:
    """The notification's fields (without `sign`) if it is genuine and addressed to us; else raise."""
    from chalicelib import secrets

    cfg = config or secrets.resolve(settings.get().wechat)
    try:
        fields = wire.from_xml(body)
    except wire.WireError as exc:
        raise InvalidNotification(f"bad XML: {exc}") from None
    return _verified(fields, cfg)


def _verified(fields: Mapping[str, str], cfg: settings.WeChatSettings) -> dict[str, str]:
    if not fields.get("sign"):
        raise InvalidNotification("missing sign")
    # Notifications are signed like the order request was; without sign_type, infer from length.
    if not signing.verify(fields, cfg.api_key, default_sign_type=None):
        log.warning("wechat_notify_bad_signature", out_trade_no=fields.get("out_trade_no", "")[:64])
        raise InvalidNotification("bad signature")
    if fields.get("return_code") != "SUCCESS":
        raise InvalidNotification("return_code is not SUCCESS")
    if fields.get("appid") != cfg.appid or fields.get("mch_id") != cfg.mch_id:
        raise InvalidNotification("appid/mch_id are not ours")
    if not fields.get("out_trade_no"):
        raise InvalidNotification("missing out_trade_no")
    return {k: v for k, v in fields.items() if k != "sign"}


def parse(body: bytes, headers: Mapping[str, str] | None = None,
          config: settings.WeChatSettings | None = None) -> Notification:
    """Verify and map a payment or refund notification. Raises InvalidNotification on anything wrong."""
    from chalicelib import secrets

    cfg = config or secrets.resolve(settings.get().wechat)
    try:
        outer = wire.from_xml(body)
    except wire.WireError as exc:
        raise InvalidNotification(f"bad XML: {exc}") from None
    if "req_info" in outer and "sign" not in outer:
        return parse_refund(outer, cfg)
    fields = _verified(outer, cfg)
    status = ChannelStatus.PAID if fields.get("result_code") == "SUCCESS" else ChannelStatus.FAILED
    if status is ChannelStatus.PAID and not (fields.get("total_fee") and fields.get("fee_type")):
        raise InvalidNotification("paid notification without total_fee/fee_type")
    try:
        payment = payment_from_fields(fields, status)
    except FieldError as exc:
        raise InvalidNotification(f"bad field: {exc}") from None
    return Notification(kind="payment", payment=payment)


def parse_refund(outer: Mapping[str, str], cfg: settings.WeChatSettings) -> Notification:
    """A refund result notification: unsigned, its result AES-encrypted in `req_info` under our key.

    Decrypting it proves it came from someone holding our API key; whether it belongs to a refund of
    ours (ids and amounts) is for the service that owns refunds to check.
    """
    if outer.get("return_code") != "SUCCESS":
        raise InvalidNotification("return_code is not SUCCESS")
    if outer.get("appid") != cfg.appid or outer.get("mch_id") != cfg.mch_id:
        raise InvalidNotification("appid/mch_id are not ours")
    try:
        plain = signing.decrypt_req_info(outer.get("req_info", ""), cfg.api_key)
        fields = wire.from_xml(plain, root_tag="root")
    except signing.ReqInfoError as exc:
        log.warning("wechat_refund_notify_undecryptable", reason=str(exc))
        raise InvalidNotification(f"req_info: {exc}") from None
    except wire.WireError as exc:
        raise InvalidNotification(f"req_info is not a flat <root> document: {exc}") from None
    status = REFUND_STATES.get(fields.get("refund_status", ""))
    if status is None or status is RefundStatus.PROCESSING:
        raise InvalidNotification("refund_status is not a final result")
    if not fields.get("out_refund_no") or not fields.get("out_trade_no"):
        raise InvalidNotification("missing out_refund_no/out_trade_no")
    try:
        refund_minor, total_minor = _int(fields, "refund_fee"), _int(fields, "total_fee")
    except FieldError as exc:
        raise InvalidNotification(f"bad field: {exc}") from None
    if outer.get("sub_mch_id"):
        fields = {**fields, "sub_mch_id": outer["sub_mch_id"]}
    return Notification(kind="refund", refund=ChannelRefund(
        channel_refund_id=fields["out_refund_no"], status=status,
        channel_refund_ref=fields.get("refund_id") or None, raw=dict(fields),
        channel_order_id=fields["out_trade_no"], channel_transaction_id=fields.get("transaction_id") or None,
        refund_minor=refund_minor, order_total_minor=total_minor))

"""Payment result notifications (WeChat -> our notify_url): verify, then turn into a Notification.

The one home of callback checking: XML shape, signature over every received field, return_code,
and that the ids are ours. The amount-against-our-order check belongs to the service that owns
the order (services.callbacks), which gets `amount` from here.
"""
from __future__ import annotations

import re
from typing import Mapping

from chalicelib import log, settings
from chalicelib.channels.base import ChannelPayment, ChannelStatus, InvalidNotification, Notification
from chalicelib.channels.wechat import signing, wire
from chalicelib.money import Money, MoneyError, rate_from_e8

_INT = re.compile(r"-?[0-9]{1,18}")
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
    cfg = config or settings.get().wechat
    try:
        fields = wire.from_xml(body)
    except wire.WireError as exc:
        raise InvalidNotification(f"bad XML: {exc}") from None
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
    """Verify and map a payment notification. Raises InvalidNotification on anything wrong."""
    fields = verify(body, config)
    status = ChannelStatus.PAID if fields.get("result_code") == "SUCCESS" else ChannelStatus.FAILED
    if status is ChannelStatus.PAID and not (fields.get("total_fee") and fields.get("fee_type")):
        raise InvalidNotification("paid notification without total_fee/fee_type")
    try:
        payment = payment_from_fields(fields, status)
    except FieldError as exc:
        raise InvalidNotification(f"bad field: {exc}") from None
    return Notification(kind="payment", payment=payment)

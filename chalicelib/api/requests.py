"""Merchant request bodies -> service inputs. Every field checked; unknown fields refused."""
from __future__ import annotations

from datetime import timedelta

from chalicelib.api import validate as v
from chalicelib.api.errors import invalid
from chalicelib.money import EXPONENTS, Money, MoneyError
from chalicelib.services.payments import NewPayment

PAYMENT_FIELDS = {"amount", "currency", "channel", "flow", "merchant_reference", "description", "return_url",
                  "metadata", "payer", "expires_in", "client_ip", "allowed_channels"}


def new_payment(data: dict, source_ip: str | None) -> NewPayment:
    v.only(data, PAYMENT_FIELDS)
    amount = v.integer(data, "amount")
    currency = v.string(data, "currency", max_len=3, pattern=r"[A-Z]{3}")
    if currency not in EXPONENTS:
        raise invalid("currency_unknown", f"unknown currency {currency}", "currency")
    payer = data.get("payer") or {}
    if not isinstance(payer, dict):
        raise invalid("parameter_invalid", "payer must be an object", "payer")
    payer = v.string_map({"payer": payer}, "payer", max_keys=5, max_len=128)
    expires_in = v.integer(data, "expires_in", minimum=60, maximum=24 * 3600, default=30 * 60)
    try:
        money = Money(amount, currency)
    except MoneyError as exc:
        raise invalid("parameter_invalid", str(exc), "amount") from None
    client_ip = v.ip_address(data, "client_ip", default=None) or source_ip
    # Without a channel the hosted checkout (pay_url) lets the shopper choose, among allowed_channels.
    channel = v.string(data, "channel", max_len=32, pattern=r"[a-z]+", default=None)
    allowed = data.get("allowed_channels")
    if allowed is not None and (channel is not None or not isinstance(allowed, list) or not 0 < len(allowed) <= 5
                                or not all(isinstance(c, str) and c.isalpha() and len(c) <= 32 for c in allowed)):
        raise invalid("parameter_invalid", "allowed_channels: a list of channel names, only without channel",
                      "allowed_channels")
    if channel is None and "flow" in data:
        raise invalid("parameter_invalid", "flow needs a channel; without one the shopper chooses", "flow")
    return NewPayment(
        amount=money,
        channel=channel or "",
        flow=v.string(data, "flow", max_len=16, pattern=r"[a-z0-9_]+") if channel else "",
        allowed_channels=tuple(allowed or ()),
        merchant_reference=v.string(data, "merchant_reference", max_len=64),
        description=v.string(data, "description", max_len=127),
        return_url=v.url(data, "return_url", default=None, https_only=True),
        metadata=v.string_map(data, "metadata"),
        payer=payer,
        client_ip=client_ip or "127.0.0.1",
        expires_in=timedelta(seconds=expires_in),
    )


def new_refund(data: dict) -> tuple[int, str]:
    v.only(data, {"amount", "reason"})
    return v.integer(data, "amount"), v.string(data, "reason", max_len=80, default="")


def new_webhook_endpoint(data: dict) -> str:
    from chalicelib import egress

    v.only(data, {"url"})
    url = v.url(data, "url")
    try:  # checked again at every delivery: DNS answers change
        egress.check(url)
    except egress.Refused as exc:
        raise invalid("url_not_allowed", f"url {exc}: webhooks go to public https receivers only", "url") from None
    return url


def webhook_endpoint_update(data: dict) -> bool:
    """{"disabled": true|false}: whether deliveries to the endpoint stop."""
    v.only(data, {"disabled"})
    disabled = v.required(data, "disabled")
    if not isinstance(disabled, bool):
        raise invalid("parameter_invalid", "disabled must be true or false", "disabled")
    return disabled


def new_qr_code(data: dict) -> tuple[str, int | None, int | None]:
    v.only(data, {"store_name", "fixed_amount", "max_amount"})
    store_name = v.string(data, "store_name", max_len=40)
    if not store_name.strip() or not store_name.isprintable():
        raise invalid("parameter_invalid", "store_name must be printable text", "store_name")
    return (store_name.strip(), v.integer(data, "fixed_amount", default=None),
            v.integer(data, "max_amount", default=None))

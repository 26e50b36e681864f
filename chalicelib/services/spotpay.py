"""SpotPay: the counter screen. A cashier types an amount, picks WeChat Pay, Alipay or "either" (one
code whose page lets the shopper's wallet decide, as with the static code), and shows the dynamic QR.

A sale is created once per sale token (the form's hidden field): a double tap or a resubmitted form
answers the same payment (services.idempotency, keyed to the merchant and the token).
"""
from __future__ import annotations

import json
import re
from datetime import timedelta

from chalicelib import log
from chalicelib.domain.merchant import Merchant
from chalicelib.services import errors, idempotency, payments
from chalicelib.services.portal import typed_amount

WALLETS = ("wechat", "alipay", "either")
FLOW = {"wechat": "native", "alipay": "qr"}
SALE_TTL = timedelta(minutes=5)        # a counter sale: the shopper is standing there
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")


def start_sale(merchant: Merchant, cashier: str, amount_text: str, wallet: str, sale_token: str,
               client_ip: str) -> str:
    """The payment id of this sale (created now, or earlier under the same sale token)."""
    if wallet not in WALLETS:
        raise errors.invalid("wallet_invalid", f"wallet must be one of {list(WALLETS)}", "wallet")
    if not _TOKEN.match(sale_token or ""):
        raise errors.invalid("sale_token_invalid", "reload the SpotPay page", "sale")
    amount = typed_amount(amount_text, merchant.settlement_currency)
    reference = f"spotpay-{sale_token[:40]}"

    def create(completion):
        req = payments.NewPayment(
            amount=amount, channel="" if wallet == "either" else wallet, flow=FLOW.get(wallet, ""),
            merchant_reference=reference, description=f"{merchant.name} (SpotPay)",
            metadata={"spotpay": "1", "cashier": cashier[:100]}, client_ip=client_ip, expires_in=SALE_TTL,
            via_pages=True)
        p = payments.create(merchant, True, req, completion)
        log.info("spotpay_sale", merchant_id=merchant.id, payment_id=p.id, wallet=wallet)
        return 201, {"id": p.id}

    body = json.dumps({"amount": amount.amount, "wallet": wallet}, sort_keys=True).encode()
    _, reply = idempotency.run(merchant.id, "portal spotpay", sale_token, body, create, key_param="sale")
    return reply["id"]


def code_data(p, base_pay_url: str) -> str | None:
    """What the sale's QR encodes: the wallet's own code, or (either wallet) our hosted checkout."""
    action = p.next_action or {}
    if action.get("type") == "qr_code":
        return action.get("qr_code")
    if not p.channel:
        return base_pay_url
    return None

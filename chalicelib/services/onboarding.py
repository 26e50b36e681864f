"""Ops managing merchants by hand: onboard, update, suspend (and resume), invite the owner.

Each action runs once per `request_id`: the change, its audit entry and the stored summary are one
DynamoDB transaction, so a re-run (a double click in the console, a retried invoke) answers the first
summary and changes nothing. Replies are kept for OPS_REPLY_DAYS.
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Callable

from chalicelib import clock, ids, settings
from chalicelib.domain.merchant import ACTIVE, SUSPENDED, Merchant
from chalicelib.services import errors, idempotency
from chalicelib.services.idempotency import Completion
from chalicelib.store import merchants as store
from chalicelib.store.unit import Conflict, Unit

OPS_REPLY_DAYS = 400
OPS_SCOPE = "ops"          # the idempotency records' owner for ops requests (merchant ids start with mch_)


def masked_account(account: str | None) -> str | None:
    """BB-bbbb-•••••NN-SSS: enough to recognise the account, not to pay into it."""
    if not account:
        return None
    bank_branch, acct, suffix = account[:7], account[8:15], account[16:]   # stored as BB-bbbb-AAAAAAA-SSS
    return f"{bank_branch}-{'•' * 5}{acct[-2:]}-{suffix}"


def view(m: Merchant) -> dict:
    return {"merchant_id": m.id, "legal_name": m.legal_name, "trading_name": m.name, "status": m.status,
            "settlement_currency": m.settlement_currency, "fee_bps": m.fee_bps, "fx_markup_bps": m.fx_markup_bps,
            "payout_schedule": {"holding_days": m.holding_days, "min_payout": m.min_payout},
            "bank_account": masked_account(m.bank_account), "channels": m.channels}


def _once(function: str, request_id: str, event: dict, work: Callable[[Completion | None], dict]) -> dict:
    """`work` at most once per request_id; the reply (or the refusal) as the function's summary."""
    def handler(completion):
        return 200, work(completion)

    raw = json.dumps({"function": function, "event": event}, sort_keys=True).encode("utf-8")
    status, body = idempotency.run(OPS_SCOPE, function, request_id, raw, handler,
                                   ttl_seconds=OPS_REPLY_DAYS * 86400, key_param="request_id")
    if status >= 400:   # a refusal stored by the first run (e.g. the merchant was unknown)
        err = body.get("error", {})
        kind = next((k for k, code in errors.STATUS_BY_KIND.items() if code == status), "conflict")
        raise errors.ServiceError(kind, err.get("code", "refused"), err.get("message", ""), err.get("param"))
    return body


def _actor(request_id: str) -> str:
    return f"ops:{request_id}"


def onboard(request_id: str, event: dict, *, legal_name: str, trading_name: str, settlement_currency: str,
            fee_bps: int, payout: dict[str, int], bank_account: str, channels: dict[str, dict[str, str]],
            fx_markup_bps: int = 0) -> dict:
    from chalicelib.services.merchants import checked_bank_account

    account = checked_bank_account(bank_account)
    defaults = Merchant(id="mch_0000000000000000", name="-", settlement_currency=settlement_currency, fee_bps=0)
    merchant = Merchant(id=ids.new("mch", 16), name=trading_name, legal_name=legal_name,
                        settlement_currency=settlement_currency, fee_bps=fee_bps, channels=channels,
                        fx_markup_bps=fx_markup_bps, bank_account=account,
                        holding_days=payout.get("holding_days", defaults.holding_days),
                        min_payout=payout.get("min_payout", defaults.min_payout))

    def work(completion: Completion | None) -> dict:
        summary = {"function": "onboard_merchant", "outcome": "ok", "request_id": request_id,
                   "merchant_id": merchant.id, "merchant": view(merchant)}
        unit = Unit().put_new(store.to_item(merchant)).audit(
            merchant.id, _actor(request_id), "merchant.onboarded",
            {"trading_name": trading_name, "channels": sorted(channels)})
        completion.attach(unit, 200, summary)
        unit.commit()
        return summary

    return _once("onboard_merchant", request_id, event, work)


UPDATABLE = ("legal_name", "trading_name", "fee_bps", "fx_markup_bps", "payout_schedule", "bank_account", "channels")


def update(request_id: str, event: dict, merchant_id: str, changes: dict) -> dict:
    """Change some of UPDATABLE; the settlement currency never changes (balances are kept in it)."""
    from chalicelib.services.merchants import checked_bank_account
    from chalicelib.store.models import MerchantModel

    if "bank_account" in changes:
        changes = {**changes, "bank_account": checked_bank_account(changes["bank_account"])}

    def work(completion: Completion | None) -> dict:
        current = _merchant(merchant_id)
        updated = current
        actions = []
        for field, value in changes.items():
            if field == "payout_schedule":
                for key, number in value.items():
                    updated = replace(updated, **{key: number})
                    actions.append(getattr(MerchantModel, key).set(number))
            else:
                attr = "name" if field == "trading_name" else field
                updated = replace(updated, **{attr: value})
                actions.append(getattr(MerchantModel, attr).set(value))
        details = {f: ("changed" if f == "bank_account" else changes[f]) for f in sorted(changes)}
        summary = {"function": "update_merchant", "outcome": "ok", "request_id": request_id,
                   "merchant_id": merchant_id, "changed": sorted(changes), "merchant": view(updated)}
        unit = Unit().update_merchant(merchant_id, actions).audit(merchant_id, _actor(request_id),
                                                                   "merchant.updated", details)
        completion.attach(unit, 200, summary)
        _commit(unit)
        return summary

    return _once("update_merchant", request_id, event, work)


def set_suspended(request_id: str, event: dict, merchant_id: str, reason: str, suspended: bool) -> dict:
    """Suspend (no new payments; refunds, releases and payouts go on) or resume a merchant."""
    from chalicelib.store.models import MerchantModel

    to_status, from_status = (SUSPENDED, ACTIVE) if suspended else (ACTIVE, SUSPENDED)

    def work(completion: Completion | None) -> dict:
        current = _merchant(merchant_id)
        summary = {"function": "suspend_merchant", "outcome": "ok", "request_id": request_id,
                   "merchant_id": merchant_id, "status": to_status, "previous_status": current.status,
                   "takes_payments": to_status == ACTIVE}
        if current.status == to_status:
            summary["unchanged"] = True
            unit = Unit()
        elif current.status != from_status:
            raise errors.conflict("merchant_status", f"the merchant is {current.status}")
        else:
            unit = Unit().update_merchant(merchant_id, [MerchantModel.status.set(to_status)],
                                          MerchantModel.status == from_status).audit(
                merchant_id, _actor(request_id), "merchant.suspended" if suspended else "merchant.resumed",
                {"reason": reason})
        completion.attach(unit, 200, summary)
        _commit(unit)
        return summary

    return _once("suspend_merchant", request_id, event, work)


def _merchant(merchant_id: str) -> Merchant:
    from pynamodb.exceptions import DoesNotExist

    from chalicelib.store.models import MerchantModel

    try:
        return store.from_item(MerchantModel.get(merchant_id, consistent_read=True))
    except DoesNotExist:
        raise errors.not_found("merchant", "merchant_id") from None


def _commit(unit: Unit) -> None:
    from chalicelib.services import merchants

    try:
        unit.commit()
    except Conflict:
        raise errors.conflict("merchant_changed", "the merchant changed meanwhile; run again with a new request_id") \
            from None
    merchants.forget_keys()  # this container's cached keys carry the merchant as it was (rare ops action)


def invite_owner(request_id: str, event: dict, merchant_id: str, email: str) -> dict:
    """An owner invitation for the merchant, mailed to the owner (services.mail) where this stage sends mail;
    the link (valid staff.INVITATION_TTL) is in the summary only where settings.shows_invitation_links (mail
    off: for ops to send on). `mail`: queued (sent by this run or the send_mail job) or off. Accepting it
    creates the owner's sign-in in the staff directory."""
    from chalicelib.domain.staff import OWNER
    from chalicelib.services import staff

    email = staff.normal_email(email)

    def work(completion: Completion | None) -> dict:
        _merchant(merchant_id)
        unit = Unit()
        invitation = staff.invite(merchant_id, email, OWNER, _actor(request_id), unit=unit)
        summary = {"function": "invite_owner", "outcome": "ok", "request_id": request_id, "merchant_id": merchant_id,
                   "email": email, "role": OWNER, "expires_at": clock.iso(invitation.expires_at),
                   "mail": "queued" if invitation.mail_id else "off"}
        if settings.get().shows_invitation_links:
            summary["invitation_url"] = invitation.url
        completion.attach(unit, 200, summary)
        unit.commit()
        invitation.send_mail()
        return summary

    return _once("invite_owner", request_id, event, work)

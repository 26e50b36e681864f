"""Ops functions invoked by hand (AWS console, `make job`): JSON events in, one JSON summary out.

Each event is read strictly (unknown fields, wrong types and bad values answer an error naming the
field) before anything is claimed, so a corrected retry with the same `request_id` is not refused as
"a different request". The work itself runs once per `request_id` (services.onboarding).
"""
from __future__ import annotations

import re
from typing import Any, Callable

from chalicelib import log
from chalicelib.api import validate
from chalicelib.api.errors import ApiError, invalid

REQUEST_ID = r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}"
MERCHANT_ID = r"mch_[0-9a-z]{16}"
MAX_EVENT_BYTES = 16 * 1024

# What each channel needs to know about a merchant (the channel clients check the same shapes).
CHANNEL_FIELDS: dict[str, dict[str, str]] = {
    "wechat": {"sub_mch_id": r"[0-9]{1,32}"},
    "alipay": {"secondary_merchant_id": r"[A-Za-z0-9_\-]{1,64}", "secondary_merchant_name": r"[^\x00-\x1f]{1,64}",
               "secondary_merchant_industry": r"[0-9]{4}"},
    "payease": {},
}
PAYOUT_FIELDS = {"holding_days": (0, 30), "min_payout": (0, validate.MAX_AMOUNT)}


def answer(function: str, event: Any, work: Callable[[dict], dict]) -> dict:
    """Run `work(event)`; every refusal becomes {"function", "outcome": "error", "error": {...}}."""
    from chalicelib.services import errors as service_errors

    try:
        if not isinstance(event, dict):
            raise invalid("parameter_invalid", "the event must be a JSON object", None)
        _bounded(event)
        summary = work(event)
    except ApiError as exc:
        summary = _error(function, exc.code, exc.message, exc.param, event)
    except service_errors.ServiceError as exc:
        summary = _error(function, exc.code, exc.message, exc.param, event)
    except RecursionError:
        summary = _error(function, "parameter_invalid", "the event is nested too deeply", None, None)
    log.info("ops_summary", function=function, outcome=summary.get("outcome"),
             merchant_id=summary.get("merchant_id"), request_id=summary.get("request_id"))
    return summary


def _error(function: str, code: str, message: str, param: str | None, event: Any) -> dict:
    out = {"function": function, "outcome": "error", "error": {"code": code, "message": message, "param": param}}
    if isinstance(event, dict) and isinstance(event.get("request_id"), str) and len(event["request_id"]) <= 128:
        out["request_id"] = event["request_id"]
    return out


def _bounded(event: dict) -> None:
    import json

    if len(json.dumps(event, ensure_ascii=False, default=str).encode("utf-8")) > MAX_EVENT_BYTES:
        raise invalid("event_too_large", f"the event must be at most {MAX_EVENT_BYTES} bytes", None)
    validate.texts(event)     # no control characters, lone surrogates or noncharacters anywhere


def request_id(event: dict) -> str:
    return validate.string(event, "request_id", max_len=128, pattern=REQUEST_ID)


def merchant_id(event: dict) -> str:
    return validate.string(event, "merchant_id", max_len=20, pattern=MERCHANT_ID)


def names(event: dict, required: bool) -> dict:
    out = {}
    for field, max_len in (("legal_name", 200), ("trading_name", 64)):
        if required or field in event:
            out[field] = validate.string(event, field, max_len=max_len).strip()
            if not out[field]:
                raise invalid("parameter_invalid", f"{field} must not be blank", field)
    return out


def fee_bps(event: dict) -> int:
    return validate.integer(event, "fee_bps", minimum=0, maximum=10000)


def fx_markup_bps(event: dict) -> int:
    return validate.integer(event, "fx_markup_bps", minimum=0, maximum=2000)


def payout_schedule(event: dict) -> dict[str, int]:
    """{"holding_days": 0-30, "min_payout": minor units}: the daily sweep pays out available money
    once it is held `holding_days` and reaches `min_payout`. Each key is optional."""
    value = event.get("payout_schedule")
    if not isinstance(value, dict):
        raise invalid("parameter_invalid", "payout_schedule must be an object {holding_days, min_payout}",
                      "payout_schedule")
    out = {}
    for key in value:
        if key not in PAYOUT_FIELDS:
            raise invalid("parameter_unknown", f"unknown parameter payout_schedule.{key}", f"payout_schedule.{key}")
    for key, (low, high) in PAYOUT_FIELDS.items():
        if key in value:
            try:
                out[key] = validate.integer(value, key, minimum=low, maximum=high)
            except ApiError as exc:
                raise invalid(exc.code, f"payout_schedule.{exc.message}", f"payout_schedule.{key}") from None
    return out


def channels(event: dict) -> dict[str, dict[str, str]]:
    """{"wechat": {"sub_mch_id": "..."}, "alipay": {...}, "payease": {}}: each channel with exactly its ids."""
    value = event.get("channels")
    if not isinstance(value, dict) or not value:
        raise invalid("parameter_invalid", f"channels must be an object with some of {sorted(CHANNEL_FIELDS)}",
                      "channels")
    out: dict[str, dict[str, str]] = {}
    for name, ids_at in value.items():
        where = f"channels.{name}"
        if name not in CHANNEL_FIELDS:
            raise invalid("parameter_unknown", f"unknown channel {name!r}; one of {sorted(CHANNEL_FIELDS)}", where)
        if not isinstance(ids_at, dict):
            raise invalid("parameter_invalid", f"{where} must be an object", where)
        fields = CHANNEL_FIELDS[name]
        for key in ids_at:
            if key not in fields:
                raise invalid("parameter_unknown", f"unknown parameter {where}.{key}", f"{where}.{key}")
        for key, pattern in fields.items():
            v = ids_at.get(key)
            if not isinstance(v, str) or not re.fullmatch(pattern, v):
                raise invalid("parameter_invalid" if key in ids_at else "parameter_missing",
                              f"{where}.{key} is required and must match {pattern}", f"{where}.{key}")
        out[name] = dict(ids_at)
    return out


def only(event: dict, allowed: set[str]) -> None:
    validate.only(event, allowed)


def boolean(event: dict, name: str, default: bool) -> bool:
    v = event.get(name, default)
    if not isinstance(v, bool):
        raise invalid("parameter_invalid", f"{name} must be true or false", name)
    return v


# ---- the functions app.py exposes ------------------------------------------------------------

ONBOARD_FIELDS = {"request_id", "legal_name", "trading_name", "settlement_currency", "fee_bps", "fx_markup_bps",
                  "payout_schedule", "bank_account", "channels"}


def onboard_merchant(event: dict) -> dict:
    """{request_id, legal_name, trading_name, settlement_currency, fee_bps, payout_schedule, bank_account,
    channels[, fx_markup_bps]} -> the new merchant."""
    from chalicelib.money import SETTLEMENT_CURRENCIES
    from chalicelib.services import onboarding

    only(event, ONBOARD_FIELDS)
    rid = request_id(event)
    named = names(event, required=True)
    return onboarding.onboard(
        rid, event, legal_name=named["legal_name"], trading_name=named["trading_name"],
        settlement_currency=validate.string(event, "settlement_currency", max_len=3, choices=SETTLEMENT_CURRENCIES),
        fee_bps=fee_bps(event), payout=payout_schedule(event),
        bank_account=validate.string(event, "bank_account", max_len=40), channels=channels(event),
        fx_markup_bps=fx_markup_bps(event) if "fx_markup_bps" in event else 0)


def update_merchant(event: dict) -> dict:
    """{request_id, merchant_id, and any of legal_name, trading_name, fee_bps, fx_markup_bps, payout_schedule,
    bank_account, channels (replaces all of them)}."""
    from chalicelib.services import onboarding

    if "settlement_currency" in event:
        raise invalid("parameter_not_updatable", "settlement_currency cannot change: balances are kept in it; "
                      "onboard a new merchant instead", "settlement_currency")
    only(event, {"request_id", "merchant_id", *onboarding.UPDATABLE})
    rid = request_id(event)
    mid = merchant_id(event)
    changes: dict = dict(names(event, required=False))
    if "fee_bps" in event:
        changes["fee_bps"] = fee_bps(event)
    if "fx_markup_bps" in event:
        changes["fx_markup_bps"] = fx_markup_bps(event)
    if "payout_schedule" in event:
        changes["payout_schedule"] = payout_schedule(event)
    if "bank_account" in event:
        changes["bank_account"] = validate.string(event, "bank_account", max_len=40)
    if "channels" in event:
        changes["channels"] = channels(event)
    if not changes:
        raise invalid("parameter_missing", f"nothing to change: send some of {list(onboarding.UPDATABLE)}", None)
    return onboarding.update(rid, event, mid, changes)


def suspend_merchant(event: dict) -> dict:
    """{request_id, merchant_id, reason[, "resume": true]}: stop new payments (or take them again)."""
    from chalicelib.services import onboarding

    only(event, {"request_id", "merchant_id", "reason", "resume"})
    rid = request_id(event)
    mid = merchant_id(event)
    reason = validate.string(event, "reason", max_len=500)
    return onboarding.set_suspended(rid, event, mid, reason, suspended=not boolean(event, "resume", False))


def invite_owner(event: dict) -> dict:
    """{request_id, merchant_id, email}: an invitation link for the merchant's owner."""
    from chalicelib.services import onboarding

    only(event, {"request_id", "merchant_id", "email"})
    rid = request_id(event)
    mid = merchant_id(event)
    return onboarding.invite_owner(rid, event, mid, validate.string(event, "email", max_len=254))

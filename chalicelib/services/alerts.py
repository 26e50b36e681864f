"""Payment alerts in WeChat for merchants' staff.

Staff bind their Official Account openid to the merchant (with a store name for the message). When a
payment succeeds, one alert per bound openid is written in the payment's own transaction (see
callbacks._commit_transition), so an alert is never lost and never made twice; the `merchant_alerts`
job sends due alerts as template messages, retrying on the webhook timetable. WeChat's
client_msg_id (= our alert id) makes a resend after a lost answer a no-op at WeChat.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta, timezone

from chalicelib import clock, ids, log
from chalicelib.domain.payment import Payment
from chalicelib.services import errors
from chalicelib.services.idempotency import Completion
from chalicelib.store.unit import Conflict, Unit
from chalicelib.services import notifications
from chalicelib.store import alerts as store

MAX_BINDINGS = 20          # every alert of a payment rides in its transaction (<= 100 items in all)
STORE_NAME_MAX = 20        # the template's `thing` value limit
OPENID_PATTERN = r"^[A-Za-z0-9_\-]{20,64}$"
MERCHANT_TZ = "Pacific/Auckland"
_REFERENCE_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


# ---- bindings ----------------------------------------------------------------------------------

def add_binding(merchant_id: str, openid: str, store_name: str, completion: Completion | None = None,
                unit: Unit | None = None, staff_email: str | None = None, actor: str | None = None) -> dict:
    """Bind an openid; the binding, the idempotent reply, for a person (`actor`) the audit entry, and
    whatever the caller's `unit` holds (a bind code used up) are written in one transaction."""
    existing = store.bindings(merchant_id, limit=MAX_BINDINGS + 1)
    if any(b.openid == openid for b in existing):
        raise errors.conflict("binding_exists", "this openid already receives this merchant's alerts")
    if len(existing) >= MAX_BINDINGS:
        raise errors.invalid("too_many_bindings", f"at most {MAX_BINDINGS} openids per merchant", "openid")
    item = store.AlertBindingModel(merchant_id, ids.new("alb", 16), openid=openid, store_name=store_name,
                                   created_at=clock.now(), staff_email=staff_email)
    unit = (unit or Unit()).put_new(item)
    if actor:
        unit.audit(merchant_id, actor, "alert_binding.added", {"binding": item.binding_id, "store": store_name})
    if completion is not None:
        completion.attach(unit, 201, view(item))
    try:
        unit.commit()
    except Conflict:  # a bind code used meanwhile (or a 16-character random id collided)
        raise errors.conflict("binding_conflict", "this changed meanwhile") from None
    _copy_to_merchant(merchant_id)
    log.info("alert_binding_added", merchant_id=merchant_id, binding_id=item.binding_id)
    return view(item)


def list_bindings(merchant_id: str) -> list[dict]:
    return [view(b) for b in store.bindings(merchant_id)]


def delete_binding(merchant_id: str, binding_id: str, actor: str | None = None) -> bool:
    """Stop alerts to this openid, including any not sent yet. For a person (`actor`), the audit entry is
    written in the same transaction."""
    if not isinstance(binding_id, str) or len(binding_id) > 64 or not binding_id.replace("_", "").isalnum():
        return False
    unit = Unit().remove_alert_binding(merchant_id, binding_id)
    if actor:
        unit.audit(merchant_id, actor, "alert_binding.removed", {"binding": binding_id})
    try:
        unit.commit()
    except Conflict:
        return False
    _copy_to_merchant(merchant_id)
    log.info("alert_binding_deleted", merchant_id=merchant_id, binding_id=binding_id)
    return True


# ---- binding from the portal: a one-use code the staff member scans in WeChat -------------------------

BIND_CODE_TTL = timedelta(minutes=10)
BIND_PATH = "/portal/alerts/bind/"


def store_name_of(text: str | None) -> str:
    """The store named in alerts, as typed in the portal: 1-20 printable characters."""
    name = (text or "").strip()
    if not name or len(name) > STORE_NAME_MAX or not name.isprintable():
        raise errors.invalid("store_invalid", f"name the store in at most {STORE_NAME_MAX} characters", "store_name")
    return name


def new_bind_code(merchant_id: str, store_name: str, staff_email: str) -> tuple[str, datetime]:
    """(the URL to show as a QR, when it lapses): one use, BIND_CODE_TTL, unguessable (256 bits); only
    the token's SHA-256 is stored."""
    from chalicelib import settings

    token = secrets.token_urlsafe(32)
    now = clock.now()
    item = store.BindCodeModel(_token_hash(token), merchant_id=merchant_id, store_name=store_name_of(store_name),
                               staff_email=staff_email, status="pending", expires_at=now + BIND_CODE_TTL,
                               expires=now + BIND_CODE_TTL + timedelta(days=1))
    Unit().put_new(item).commit()
    return f"{settings.get().public_base_url}{BIND_PATH}{token}", item.expires_at


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bind_code(token: str):
    """The pending, unexpired code behind a token, or not_found (unknown, forged, used, lapsed: one
    answer for all, so a token's state cannot be probed)."""
    item = store.bind_code(_token_hash(token)) if 32 <= len(token or "") <= 64 and token.isascii() else None
    if item is None or item.status != "pending" or clock.now() >= item.expires_at:
        raise errors.not_found("bind code", "token")
    return item


def bind_by_code(token: str, openid: str) -> tuple[dict, str]:
    """Bind the openid WeChat's OAuth gave us to the code's merchant and store, using the code up in the
    same transaction (with the audit entry): a code binds once. Returns (binding view, merchant id)."""
    code = bind_code(token)
    unit = Unit().update(store.BindCodeModel(code.token_hash), [store.BindCodeModel.status.set("used")],
                         (store.BindCodeModel.status == "pending") & (store.BindCodeModel.expires_at > clock.now()))
    try:
        done = add_binding(code.merchant_id, openid, code.store_name, unit=unit, staff_email=code.staff_email,
                           actor=f"staff:{code.staff_email}")
    except errors.ServiceError as exc:
        if exc.code == "binding_conflict":      # the code was used (or lapsed) while we exchanged the OAuth code
            raise errors.not_found("bind code", "token") from None
        raise
    return done, code.merchant_id


def _copy_to_merchant(merchant_id: str) -> None:
    """Keep the merchant item's copy of its bindings (which new payments carry) equal to the table.

    Re-read after writing until the copy matches what the table says, so two staff binding at once
    cannot leave one of them out. Payments created in other containers within the API-key cache's
    lifetime (merchants.KEY_CACHE_SECONDS) still carry the bindings they had before."""
    from chalicelib.services import merchants
    from chalicelib.store import merchants as merchant_store

    written = None
    for _ in range(3):
        now = [(b.binding_id, b.openid, b.store_name) for b in store.bindings(merchant_id, limit=MAX_BINDINGS)]
        if now == written:
            break
        merchant_store.set_alert_bindings(merchant_id, now)
        written = now
    merchants.forget_keys(merchant_id)


def view(b) -> dict:
    return {"id": b.binding_id, "object": "alert_binding", "openid": b.openid, "store_name": b.store_name,
            "created": clock.iso(b.created_at)}


def bindings_of(merchant_id: str) -> list:
    """The merchant's bindings as stored (the portal shows who bound them)."""
    return store.bindings(merchant_id)


# ---- what a successful payment owes the staff ----------------------------------------------------

def alert_id(payment_id: str, openid: str) -> str:
    return "alt_" + hashlib.sha256(f"{payment_id}\n{openid}".encode("utf-8")).hexdigest()[:32]


def template_data(p: Payment, store_name: str) -> dict[str, str]:
    """The template's values: amount, store, local time, reference (typed keys, spec §14)."""
    reference = _REFERENCE_CHARS.sub("", p.merchant_reference or "") or p.id
    if not p.livemode:
        reference = "TEST-" + reference
    return {
        "amount1": f"{p.amount.currency} {p.amount.to_major_str()}",
        "thing2": store_name[:STORE_NAME_MAX],
        "time3": _local(p.paid_at or clock.now()).strftime("%Y-%m-%d %H:%M"),
        "character_string4": reference[:32],
    }


def outbox_items(p: Payment) -> list:
    """One pending alert per bound openid, to be written in the payment success's own transaction.

    Never blocks the money: if the bindings cannot be read, the payment succeeds without alerts
    (logged at error level).
    """
    if p.alert_bindings is not None:
        bindings = list(p.alert_bindings)  # carried since creation: nothing to read on the callback path
    else:  # a payment written before payments carried them
        try:
            bindings = [(b.binding_id, b.openid, b.store_name)
                        for b in store.bindings(p.merchant_id, limit=MAX_BINDINGS)]
        except Exception as exc:
            log.error("merchant_alerts_skipped", payment_id=p.id, error=type(exc).__name__)
            return []
    now = clock.now()
    out, seen = [], set()
    for binding_id, openid, store_name in bindings[:MAX_BINDINGS]:
        if openid in seen:
            continue
        seen.add(openid)
        out.append(store.AlertModel(
            alert_id(p.id, openid), merchant_id=p.merchant_id, payment_id=p.id, binding_id=binding_id,
            openid=openid, data=template_data(p, store_name), status="pending", attempts=0,
            next_attempt_at=int(now.timestamp()), due_shard=store.DUE_SHARD, created_at=now))
    return out


def _local(at: datetime) -> datetime:
    try:
        from zoneinfo import ZoneInfo

        return at.astimezone(ZoneInfo(MERCHANT_TZ))
    except Exception:  # no tz database in this runtime: UTC is still a true time
        return at.astimezone(timezone.utc)


# ---- delivery (the merchant_alerts job) ----------------------------------------------------------

def deliver_due(dry_run: bool = False, merchant_id: str | None = None, limit: int = 200, budget=None) -> dict:
    from chalicelib.channels.wechat_oa.client import OAError, OfficialAccountClient

    due, out = notifications.due_of(store.due(clock.epoch(), limit=limit), merchant_id)
    if dry_run or not due:
        return out
    client = OfficialAccountClient()
    try:
        client.config
    except OAError:
        log.error("merchant_alerts_not_configured", due=len(due))
        out["not_configured"] = True
        return out
    return notifications.attempt_due(due, lambda item, timeout: deliver(item, client, timeout),
                                     budget or notifications.Budget(), out)


def deliver(item, client, timeout: int | None = None) -> str | None:
    """One attempt at one alert (notifications.attempt_one: leased and counted before it is sent)."""
    from chalicelib.channels.wechat_oa.client import OAError

    def send(alert) -> None:
        try:
            alert.msgid = client.send_template(alert.openid, dict(alert.data), client_msg_id=alert.alert_id,
                                               timeout=timeout)
        except OAError as exc:
            raise notifications.SendFailed(str(exc.code), exc.retryable) from None

    unbound = store.binding(item.merchant_id, item.binding_id) is None  # unbound before we got to it
    return notifications.attempt_one(item, send, "merchant_alert", cancelled=unbound, alert_id=item.alert_id,
                                     merchant_id=item.merchant_id, payment_id=item.payment_id)

"""Merchant webhooks: deliver outbox events, signed, retried with backoff for about two days."""
from __future__ import annotations

import hashlib
import hmac

from chalicelib import clock, egress, ids, log, settings
from chalicelib.store import events as store
from chalicelib.store import merchants as merchant_store
from chalicelib.services.jobs import Budget
from chalicelib.services.idempotency import Completion
from chalicelib.store.unit import DUE_SHARD, Conflict, Unit

# Seconds to wait after attempt n (1-based) failed: 15 s ... 24 h, about 52 hours in all.
BACKOFF = (15, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400)
MAX_ATTEMPTS = len(BACKOFF) + 1
LEASE_SECONDS = 60          # a worker owns an event this long after its last send began (renewed per send)
SIGNATURE_HEADER = "Kauri-Signature"
RESEND_INLINE_MS = 15_000   # a resend tries the endpoints inside the API call for at most this long


def signature(secret: str, timestamp: int, body: str) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.{body}".encode("utf-8"), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: str, tolerance: int = 300, now: int | None = None) -> bool:
    """What a merchant's receiver does (also used by our tests)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (ValueError, KeyError):
        return False
    now = clock.epoch() if now is None else now
    if abs(now - t) > tolerance:
        return False
    expected = signature(secret, t, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def deliver_due(limit: int = 100, budget=None) -> int:
    """Attempt every event whose time has come, while the run has time. Returns how many were attempted."""
    budget = budget or Budget()
    attempted = 0
    now = clock.epoch()
    due = store.due(now, limit=limit)
    report_backlog(due, now)
    for item in due:
        if not budget.allows(send_ms()):
            break
        if deliver(item, budget):
            attempted += 1
    return attempted


def report_backlog(due: list, now: int) -> int:
    """The WebhookBacklogAgeSeconds metric: how long the oldest event due for delivery has existed."""
    from chalicelib import metrics

    oldest = min((int(i.created_at.timestamp()) for i in due if i.created_at is not None), default=now)
    age = max(0, now - oldest)
    metrics.emit("WebhookBacklogAgeSeconds", age, unit="Seconds")
    return age


RECORD_MS = 1000          # time kept back after a send to record its outcome
MIN_SEND_SECONDS = 1


def send_ms() -> int:
    """The least time a send needs: its shortest timeout plus recording it."""
    return MIN_SEND_SECONDS * 1000 + RECORD_MS


def send_timeout(budget) -> int:
    """The HTTP timeout for the next send: the configured one, cut to what the run has left."""
    return max(MIN_SEND_SECONDS, min(settings.get().http_timeout_seconds, (budget.left_ms() - RECORD_MS) // 1000))


def start_attempt(item, now: int) -> bool:
    """Lease the item and count the attempt in one versioned write, before anything is sent.

    Its retry is scheduled here too (never sooner than the lease): a run killed mid-send has still made
    its attempt, the next worker waits for the backoff, and the attempts still run out (see
    `out_of_attempts`). False: another worker holds it or changed it since we read it."""
    item.attempts = int(item.attempts or 0) + 1
    wait = BACKOFF[item.attempts - 1] if item.attempts <= len(BACKOFF) else 0
    item.next_attempt_at = now + max(LEASE_SECONDS, wait)
    return store.save_if_unchanged(item)


def out_of_attempts(item) -> bool:
    """Every attempt has started already (the last one died before it could say how it went)."""
    return int(item.attempts or 0) >= MAX_ATTEMPTS


class SendFailed(Exception):
    """One outbox item's send did not go through; `retryable`: the same send may succeed later."""

    def __init__(self, code: str, retryable: bool = True):
        super().__init__(code)
        self.code = code
        self.retryable = retryable


def due_of(due: list, merchant_id: str | None) -> tuple[list, dict]:
    """A single-recipient job's due items (one merchant's, if asked) and its run's counters."""
    if merchant_id:
        due = [item for item in due if item.merchant_id == merchant_id]
    return due, {"due": len(due), "delivered": 0, "retrying": 0, "failed": 0, "cancelled": 0}


def attempt_due(due: list, attempt, budget, out: dict) -> dict:
    """Attempt each due single-recipient item (`attempt(item, timeout)` -> its outcome, counted in `out`)
    while the run has time; the rest stay due for the next run."""
    for item in due:
        if not budget.allows(send_ms()):
            out["out_of_time"] = True
            break
        outcome = attempt(item, send_timeout(budget))
        if outcome:
            out[outcome] += 1
    return out


def attempt_one(item, send, what: str, cancelled: bool = False, **log_ids) -> str | None:
    """One attempt at a single-recipient outbox item (a staff alert, a mail): the shared life of both.

    As for webhook events, the attempt is counted (and its retry scheduled) in the versioned write that
    leases the item (`start_attempt`), before anything is sent: a run killed mid-send still counts, the
    next worker waits for the backoff, and an item whose last attempt never finished ends `failed`.
    `send(item)` sends it (noting on the item what the receiver answered) or raises SendFailed.
    `cancelled`: nobody wants it any more. Returns delivered / retrying / failed / cancelled, or None
    when another worker holds or changed the item."""
    now = clock.epoch()
    if cancelled:
        outcome = "cancelled"
        item.status, item.due_shard, item.next_attempt_at = "cancelled", None, None
    elif out_of_attempts(item):
        outcome = "failed"
        item.status, item.due_shard, item.next_attempt_at = "failed", None, None
        item.last_error = "LAST_ATTEMPT_UNFINISHED"
        log.error(f"{what}_failed", code=item.last_error, attempts=item.attempts, **log_ids)
    elif not start_attempt(item, now):
        return None  # another worker has it
    else:
        try:
            send(item)
        except SendFailed as exc:
            item.last_error = str(exc.code)[:100]
            if not exc.retryable or out_of_attempts(item):
                outcome = "failed"
                item.status, item.due_shard, item.next_attempt_at = "failed", None, None
                log.error(f"{what}_failed", code=item.last_error, attempts=item.attempts, **log_ids)
            else:
                outcome = "retrying"
                item.next_attempt_at = clock.epoch() + BACKOFF[item.attempts - 1]
        else:
            outcome = "delivered"
            item.status, item.due_shard, item.next_attempt_at, item.last_error = "delivered", None, None, None
    if not store.save_if_unchanged(item):
        log.error(f"{what}_state_lost", **log_ids)
        return None
    log.info(f"{what}_attempt", attempt=int(item.attempts or 0), status=item.status, **log_ids)
    return outcome


def deliver(item, budget=None) -> bool:
    """One delivery attempt of one event to each of the merchant's endpoints not yet served.

    The attempt counts when it starts (start_attempt). Before each send the lease is renewed in a
    versioned write that also saves every 2xx so far, so however slow the receivers, no second worker
    takes the event while this one sends, and no 2xx is forgotten. A send that would not fit in the
    run's remaining time is left for the next run. True when an attempt was made.
    """
    budget = budget or Budget()
    now = clock.epoch()
    if out_of_attempts(item):
        _settle(item, ["the last attempt never finished"])
        return store.save_if_unchanged(item)
    if not start_attempt(item, now):
        return False  # another worker has it
    endpoints = merchant_store.endpoints(item.merchant_id, store.mode_of(item))  # test events: test endpoints
    delivered = set(item.delivered_endpoints or [])
    saved = set(delivered)
    errors = []
    for ep in endpoints:
        if ep.endpoint_id in delivered:
            continue
        if not budget.allows(send_ms()):
            errors.append(f"{ep.endpoint_id}: not tried (run out of time)")
            break
        timeout = send_timeout(budget)
        if delivered != saved or int(item.next_attempt_at) < clock.epoch() + timeout + RECORD_MS // 1000 + 1:
            # Keep the 2xx answers so far, and a lease that outlasts this send.
            item.next_attempt_at = max(int(item.next_attempt_at), clock.epoch() + LEASE_SECONDS)
            item.delivered_endpoints = sorted(delivered)
            if not store.save_if_unchanged(item):
                log.error("webhook_lease_lost", event_id=item.event_id)
                return True
            saved = set(delivered)
        ok, detail = _send(ep.url, merchant_store.signing_secret(ep), item.payload, timeout)
        if ok:
            delivered.add(ep.endpoint_id)
        else:
            errors.append(f"{ep.endpoint_id}: {detail}")
    item.delivered_endpoints = sorted(delivered)
    _settle(item, errors, has_endpoints=bool(endpoints))
    if not store.save_if_unchanged(item):
        log.error("webhook_state_lost", event_id=item.event_id)
    if errors:
        from chalicelib import metrics

        metrics.emit("WebhookFailures", value=len(errors),
                     Outcome="failed" if item.status == "failed" else "retrying")
    log.info("webhook_attempt", event_id=item.event_id, type=item.type, attempt=item.attempts,
             status=item.status, failures=len(errors))
    return True


def _settle(item, errors: list[str], has_endpoints: bool = True) -> None:
    """The event's state after an attempt: delivered, failed for good, or due again after its backoff."""
    if not errors:
        item.status = "delivered" if has_endpoints else "no_endpoint"
        item.due_shard = None
        item.next_attempt_at = None
        item.last_error = None
    elif out_of_attempts(item):
        item.status = "failed"
        item.due_shard = None
        item.next_attempt_at = None
        item.last_error = "; ".join(errors)[:1000]
        log.error("webhook_failed", event_id=item.event_id, merchant_id=item.merchant_id, attempts=item.attempts)
        from chalicelib import metrics

        metrics.emit("DeadLetters", Kind="webhook")
    else:
        item.next_attempt_at = clock.epoch() + BACKOFF[int(item.attempts) - 1]
        item.last_error = "; ".join(errors)[:1000]


def _send(url: str, secret: str, body: str, timeout: int) -> tuple[bool, str]:
    ts = clock.epoch()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, ts, body),
               "User-Agent": "Kauri-Webhooks/1"}
    try:  # egress checks the URL and the address it connects to, follows no redirect, reads a bounded answer
        answer = egress.post(url, body.encode("utf-8"), headers, timeout=timeout)
    except egress.Failed as exc:
        return False, str(exc)
    if 200 <= answer.status < 300:
        return True, str(answer.status)
    return False, f"HTTP {answer.status}"


def resend(merchant_id: str, livemode: bool, event_id: str, completion: Completion | None = None,
           actor: str | None = None) -> dict | None:
    """Queue an event again for every endpoint (ops or the merchant asked), and try it now.

    The re-queue, the reply saying so and, for a person (`actor`), the audit entry are one transaction;
    once the attempt is made, the stored reply is brought up to date."""
    item = _own(merchant_id, livemode, event_id)
    if item is None:
        return None
    item.status = "pending"
    item.due_shard = DUE_SHARD
    item.delivered_endpoints = []
    item.attempts = 0
    item.next_attempt_at = clock.epoch()
    unit = Unit().save_versioned(item)
    if actor:
        unit.audit(merchant_id, actor, "event.resent", {"event": event_id})
    if completion is not None:
        completion.attach(unit, 200, view(item))
    try:
        unit.commit()
    except Conflict:  # a worker is sending it right now: it is being delivered anyway
        if completion is not None:
            completion.attached = False
        return view(store.get(event_id))
    deliver(store.get(event_id), Budget(total_ms=RESEND_INLINE_MS))
    out = view(store.get(event_id))
    if completion is not None:
        completion.refresh(200, out)
    return out


def _own(merchant_id: str, livemode: bool, event_id: str):
    """The merchant's event of the caller's mode; a test key never sees a live event, nor the reverse."""
    item = store.get(event_id) if ids.looks_like(event_id, "evt") else None
    if item is None or item.merchant_id != merchant_id or store.mode_of(item) != livemode:
        return None
    return item


def view(item) -> dict:
    return {"id": item.event_id, "object": "event", "type": item.type, "livemode": store.mode_of(item),
            "status": item.status,
            "attempts": int(item.attempts or 0), "created": int(item.created_at.timestamp()),
            "next_attempt_at": int(item.next_attempt_at) if item.next_attempt_at else None}


def get_for(merchant_id: str, livemode: bool, event_id: str) -> dict | None:
    item = _own(merchant_id, livemode, event_id)
    return None if item is None else view(item)


def list_for(merchant_id: str, livemode: bool, query: dict | None = None) -> dict:
    """A page of the merchant's events of the caller's mode, newest first (chalicelib.api.pages)."""
    from chalicelib.api import pages

    limit, after = pages.params(query)
    start = None
    if after is not None:
        start = _own(merchant_id, livemode, after)
        if start is None:
            raise pages.invalid("parameter_invalid", "starting_after must be the id of one of your events",
                                "starting_after")
    found, more = pages.query_page(store.for_merchant(merchant_id, livemode, start, page_size=limit + 1), limit)
    return pages.listing([view(i) for i in found], more)

"""Merchant webhooks: deliver outbox events, signed, retried with backoff for about two days."""
from __future__ import annotations

import hashlib
import hmac

from chalicelib import clock, http, ids, log, settings
from chalicelib.store import events as store
from chalicelib.store import merchants as merchant_store
from chalicelib.store.unit import DUE_SHARD

# Seconds to wait after attempt n (1-based) failed: 15 s ... 24 h, about 52 hours in all.
BACKOFF = (15, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400)
MAX_ATTEMPTS = len(BACKOFF) + 1
LEASE_SECONDS = 60          # a worker owns an event this long while it sends
SIGNATURE_HEADER = "Kauri-Signature"


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


def deliver_due(limit: int = 100) -> int:
    """Attempt every event whose time has come. Returns how many events were attempted."""
    now = clock.epoch()
    attempted = 0
    due = store.due(now, limit=limit)
    report_backlog(due, now)
    for item in due:
        if deliver(item):
            attempted += 1
    return attempted


def report_backlog(due: list, now: int) -> int:
    """The WebhookBacklogAgeSeconds metric: how long the oldest event due for delivery has existed."""
    from chalicelib import metrics

    oldest = min((int(i.created_at.timestamp()) for i in due if i.created_at is not None), default=now)
    age = max(0, now - oldest)
    metrics.emit("WebhookBacklogAgeSeconds", age, unit="Seconds")
    return age


def deliver(item) -> bool:
    """One delivery attempt of one event to each of the merchant's endpoints not yet served.

    The event is leased first (a versioned write), so two workers never send it at once; an endpoint
    that answered 2xx is remembered and never sent the event again.
    """
    now = clock.epoch()
    item.next_attempt_at = now + LEASE_SECONDS
    if not store.save_if_unchanged(item):
        return False  # another worker has it
    endpoints = merchant_store.endpoints(item.merchant_id, store.mode_of(item))  # test events: test endpoints
    delivered = set(item.delivered_endpoints or [])
    errors = []
    for ep in endpoints:
        if ep.endpoint_id in delivered:
            continue
        ok, detail = _send(ep.url, merchant_store.signing_secret(ep), item.payload)
        if ok:
            delivered.add(ep.endpoint_id)
        else:
            errors.append(f"{ep.endpoint_id}: {detail}")
    item.attempts = int(item.attempts or 0) + 1
    item.delivered_endpoints = sorted(delivered)
    if not errors:
        item.status = "delivered" if endpoints else "no_endpoint"
        item.due_shard = None
        item.next_attempt_at = None
        item.last_error = None
    elif item.attempts >= MAX_ATTEMPTS:
        item.status = "failed"
        item.due_shard = None
        item.next_attempt_at = None
        item.last_error = "; ".join(errors)[:1000]
        log.error("webhook_failed", event_id=item.event_id, merchant_id=item.merchant_id, attempts=item.attempts)
        from chalicelib import metrics

        metrics.emit("DeadLetters", Kind="webhook")
    else:
        item.next_attempt_at = clock.epoch() + BACKOFF[item.attempts - 1]
        item.last_error = "; ".join(errors)[:1000]
    if not store.save_if_unchanged(item):
        log.error("webhook_state_lost", event_id=item.event_id)
    if errors:
        from chalicelib import metrics

        metrics.emit("WebhookFailures", value=len(errors),
                     Outcome="failed" if item.status == "failed" else "retrying")
    log.info("webhook_attempt", event_id=item.event_id, type=item.type, attempt=item.attempts,
             status=item.status, failures=len(errors))
    return True


def _send(url: str, secret: str, body: str) -> tuple[bool, str]:
    import requests

    ts = clock.epoch()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, ts, body),
               "User-Agent": "Kauri-Webhooks/1"}
    try:
        resp = http.session().post(url, data=body.encode("utf-8"), headers=headers,
                                   timeout=settings.get().http_timeout_seconds, allow_redirects=False)
    except requests.RequestException as exc:
        return False, type(exc).__name__
    if 200 <= resp.status_code < 300:
        return True, str(resp.status_code)
    return False, f"HTTP {resp.status_code}"


def resend(merchant_id: str, livemode: bool, event_id: str) -> dict | None:
    """Queue an event again for every endpoint (ops or the merchant asked), and try it now."""
    item = _own(merchant_id, livemode, event_id)
    if item is None:
        return None
    item.status = "pending"
    item.due_shard = DUE_SHARD
    item.delivered_endpoints = []
    item.attempts = 0
    item.next_attempt_at = clock.epoch()
    if store.save_if_unchanged(item):
        deliver(store.get(event_id))
    return view(store.get(event_id))


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


def list_for(merchant_id: str, livemode: bool) -> list[dict]:
    return [view(i) for i in store.for_merchant(merchant_id, livemode)]

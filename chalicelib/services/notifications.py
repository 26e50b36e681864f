"""Merchant webhooks: deliver outbox events, signed, retried with backoff for about two days."""
from __future__ import annotations

import hashlib
import hmac

from chalicelib import clock, egress, ids, log, settings
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
    for item in store.due(now, limit=limit):
        if deliver(item):
            attempted += 1
    return attempted


def deliver(item) -> bool:
    """One delivery attempt of one event to each of the merchant's endpoints not yet served.

    The event is leased first (a versioned write), so two workers never send it at once; an endpoint
    that answered 2xx is remembered and never sent the event again.
    """
    now = clock.epoch()
    item.next_attempt_at = now + LEASE_SECONDS
    if not store.save_if_unchanged(item):
        return False  # another worker has it
    endpoints = merchant_store.endpoints(item.merchant_id)
    delivered = set(item.delivered_endpoints or [])
    errors = []
    for ep in endpoints:
        if ep.endpoint_id in delivered:
            continue
        ok, detail = _send(ep.url, ep.secret, item.payload)
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
    else:
        item.next_attempt_at = clock.epoch() + BACKOFF[item.attempts - 1]
        item.last_error = "; ".join(errors)[:1000]
    if not store.save_if_unchanged(item):
        log.error("webhook_state_lost", event_id=item.event_id)
    log.info("webhook_attempt", event_id=item.event_id, type=item.type, attempt=item.attempts,
             status=item.status, failures=len(errors))
    return True


def _send(url: str, secret: str, body: str) -> tuple[bool, str]:
    ts = clock.epoch()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, ts, body),
               "User-Agent": "Kauri-Webhooks/1"}
    try:  # egress checks the URL and the address it connects to, follows no redirect, reads a bounded answer
        answer = egress.post(url, body.encode("utf-8"), headers, timeout=settings.get().http_timeout_seconds)
    except egress.Failed as exc:
        return False, str(exc)
    if 200 <= answer.status < 300:
        return True, str(answer.status)
    return False, f"HTTP {answer.status}"


def resend(merchant_id: str, event_id: str) -> dict | None:
    """Queue an event again for every endpoint (ops or the merchant asked), and try it now."""
    item = store.get(event_id) if ids.looks_like(event_id, "evt") else None
    if item is None or item.merchant_id != merchant_id:
        return None
    item.status = "pending"
    item.due_shard = DUE_SHARD
    item.delivered_endpoints = []
    item.attempts = 0
    item.next_attempt_at = clock.epoch()
    if store.save_if_unchanged(item):
        deliver(store.get(event_id))
    return view(store.get(event_id))


def view(item) -> dict:
    return {"id": item.event_id, "object": "event", "type": item.type, "status": item.status,
            "attempts": int(item.attempts or 0), "created": int(item.created_at.timestamp()),
            "next_attempt_at": int(item.next_attempt_at) if item.next_attempt_at else None}


def get_for(merchant_id: str, event_id: str) -> dict | None:
    item = store.get(event_id) if ids.looks_like(event_id, "evt") else None
    if item is None or item.merchant_id != merchant_id:
        return None
    return view(item)


def list_for(merchant_id: str) -> list[dict]:
    return [view(i) for i in store.for_merchant(merchant_id)]

"""One DynamoDB transaction for one business change: state, ledger posting and outbox together.

Either all of it is written or none of it. A failed condition means someone else got there first;
the caller re-reads and decides (usually: nothing left to do).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib import clock, ids
from chalicelib.clock import iso
from chalicelib.domain.ledger import Posting
from chalicelib.domain.payment import Payment, PaymentStatus
from chalicelib.store import payments as payment_store
from chalicelib.store.connection import connection
from chalicelib.store.models import (
    ENDPOINT_COUNTER,
    BalanceModel,
    EntryModel,
    EventModel,
    IdempotencyModel,
    OpsRecordModel,
    PaymentModel,
    PostingModel,
    RefundModel,
    WebhookEndpointModel,
)

DUE_SHARD = "due"


def _count_is(attr, value: int):
    """`attr` holds `value`, an absent attribute counting as 0."""
    return (attr.does_not_exist() | (attr == 0)) if value == 0 else (attr == value)


def _released_is(released: bool):
    return (PaymentModel.released == True) if released else PaymentModel.released.does_not_exist()  # noqa: E712


class Conflict(Exception):
    """A condition in the transaction failed: the world changed since we read it."""

    def __init__(self, reasons: list[str | None]):
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons


@dataclass(frozen=True)
class Event:
    id: str
    merchant_id: str
    type: str
    body: str            # exact JSON the merchant receives
    created_at: datetime
    livemode: bool = True


def new_event(merchant_id: str, type_: str, obj: dict) -> Event:
    """An event about `obj` (a view, which always says its `livemode`): test events reach test endpoints only."""
    now = clock.now()
    event_id = ids.new("evt")
    livemode = bool(obj["livemode"])
    body = json.dumps({"id": event_id, "object": "event", "type": type_, "livemode": livemode,
                       "created": int(now.timestamp()), "data": {"object": obj}}, sort_keys=True, separators=(",", ":"))
    return Event(event_id, merchant_id, type_, body, now, livemode)


class Unit:
    def __init__(self):
        self._ops: list[Callable[[TransactWrite], None]] = []

    # -- payments ---------------------------------------------------------------------------
    def create_payment(self, p: Payment) -> "Unit":
        item = payment_store.to_item(p)
        self._ops.append(lambda tx: tx.save(item, condition=PaymentModel.payment_id.does_not_exist()))
        return self

    # The attributes a state transition may change; everything else (documents, refunds) is left alone.
    _TRANSITION_FIELDS = ("status", "channel_transaction_id", "payer_amount", "payer_currency", "rate", "paid_at",
                          "closed_at", "failure_code", "closed_by", "pending_shard", "unreleased_by", "recon_day")

    def move_payment(self, p: Payment, from_status: PaymentStatus) -> "Unit":
        """Write the payment's new state, only if it is still in `from_status`."""
        item = payment_store.to_item(p)
        actions = []
        for name in self._TRANSITION_FIELDS:
            attr = getattr(PaymentModel, name)
            value = getattr(item, name)
            actions.append(attr.remove() if value is None else attr.set(value))
        # The channel order the caller verified must still be the payment's (a re-quote replaces it).
        cond = (PaymentModel.status == from_status.value) & (PaymentModel.channel_order_id == p.channel_order_id)
        self._ops.append(lambda tx: tx.update(PaymentModel(p.id), actions=actions, condition=cond))
        return self

    def note_failed_attempt(self, p: Payment, failure_code: str) -> "Unit":
        """Write why the last attempt failed on a payment that stays open for the next one."""
        cond = (PaymentModel.status == PaymentStatus.PENDING.value) & (PaymentModel.channel_order_id == p.channel_order_id)
        self._ops.append(lambda tx: tx.update(PaymentModel(p.id), actions=[PaymentModel.failure_code.set(failure_code)],
                                              condition=cond))
        return self

    def replace_pending_payment(self, p: Payment, expected_order: str) -> "Unit":
        """Rewrite a pending payment (a re-quote), only if nothing else changed it meanwhile."""
        item = payment_store.to_item(p)
        self._ops.append(lambda tx: tx.save(item, condition=(PaymentModel.status == PaymentStatus.PENDING.value)
                                            & (PaymentModel.channel_order_id == expected_order)))
        return self

    def choose_payment_channel(self, p: Payment) -> "Unit":
        """Fix the channel the shopper chose for a payment created without one: once, while pending."""
        item = payment_store.to_item(p)
        self._ops.append(lambda tx: tx.save(item, condition=(PaymentModel.status == PaymentStatus.PENDING.value)
                                            & (PaymentModel.channel == "")))
        return self

    def reserve_refund(self, p: Payment, amount: int, fee_back: int, channel_back: int,
                       pending_own: int) -> "Unit":
        """Add a refund to the payment's running totals, only if they are still the ones it was priced on
        (refunded, fee and channel amount returned, pending drawn, released or not) and stay within it.
        `pending_own`: what the refund takes from pending while the payment is unreleased (its own money)."""
        if p.refunded + amount > p.amount.amount or p.fee_returned + fee_back > p.fee.amount:
            raise ValueError("refund above the payment")
        if p.channel_amount is not None and p.channel_returned + channel_back > p.channel_amount.amount:
            raise ValueError("refund above what the channel received")
        if pending_own and p.released:
            raise ValueError("a released payment has no pending money of its own")
        actions = [PaymentModel.refunded.add(amount)]
        for attr, delta in ((PaymentModel.fee_returned, fee_back), (PaymentModel.channel_returned, channel_back),
                            (PaymentModel.pending_drawn, pending_own)):
            if delta:
                actions.append(attr.add(delta))
        cond = ((PaymentModel.status == PaymentStatus.SUCCEEDED.value) & (PaymentModel.refunded == p.refunded)
                & _count_is(PaymentModel.fee_returned, p.fee_returned)
                & _count_is(PaymentModel.channel_returned, p.channel_returned)
                & _count_is(PaymentModel.pending_drawn, p.pending_drawn) & _released_is(p.released))
        self._ops.append(lambda tx: tx.update(PaymentModel(p.id), actions=actions, condition=cond))
        return self

    def unreserve_refund(self, payment_id: str, amount: int, fee_back: int, channel_back: int,
                         pending_own: int, released: bool) -> "Unit":
        """Take a failed refund out of the payment's running totals, if the payment's funds are (or are not
        yet) released as the caller planned the reversal for. `pending_own` leaves `pending_drawn` only
        while unreleased: after the release it was already left out of what was released."""
        actions = [PaymentModel.refunded.add(-amount)]
        for attr, delta in ((PaymentModel.fee_returned, fee_back), (PaymentModel.channel_returned, channel_back),
                            (PaymentModel.pending_drawn, 0 if released else pending_own)):
            if delta:
                actions.append(attr.add(-delta))
        cond = _released_is(released)
        self._ops.append(lambda tx: tx.update(PaymentModel(payment_id), actions=actions, condition=cond))
        return self

    def save_refund(self, item: RefundModel, new: bool, from_status: str | None = None) -> "Unit":
        if new:
            cond = RefundModel.refund_id.does_not_exist()
        else:
            cond = RefundModel.status == from_status
        self._ops.append(lambda tx: tx.save(item, condition=cond))
        return self

    # -- ledger -----------------------------------------------------------------------------
    def post(self, posting: Posting, floors: dict[str, int] | None = None,
             borrowed: dict[str, tuple[int | None, int]] | None = None) -> "Unit":
        """The journal item (once per id, ever), one entry per leg, merchant balances in step.

        `floors`: merchant accounts that must not drop below a value (e.g. 0) after this posting.
        `borrowed`: pending account -> (the `borrowed` figure read, or None to add blindly; its change),
        written with that account's balance (services.balances explains the figure).
        """
        borrowed = dict(borrowed or {})
        now = clock.now()
        journal = PostingModel(posting.id, kind=posting.kind, ref=posting.ref, merchant_id=posting.merchant_id,
                               legs=[[l.account, l.amount, l.currency] for l in posting.legs],
                               memo=posting.memo, created_at=now)
        self._ops.append(lambda tx: tx.save(journal, condition=PostingModel.posting_id.does_not_exist()))
        stamp = iso(now)
        for n, leg in enumerate(posting.legs):
            entry = EntryModel(leg.account, f"{stamp}#{posting.id}#{n}", posting_id=posting.id,
                               kind=posting.kind, ref=posting.ref, amount=leg.amount, currency=leg.currency)
            self._ops.append(lambda tx, e=entry: tx.save(e))
        deltas = posting.merchant_deltas()
        for account in list(deltas) + [a for a in borrowed if a not in deltas]:
            delta = deltas.get(account, 0)
            floor = (floors or {}).get(account)
            actions, cond = [], None
            if delta:
                actions.append(BalanceModel.balance.add(delta))
            if floor is not None and delta < 0:
                # balance + delta >= floor  <=>  balance >= floor - delta
                cond = BalanceModel.balance >= floor - delta
            if account in borrowed:
                expected, change = borrowed[account]
                if change:
                    actions.append(BalanceModel.borrowed.add(change))
                if expected is not None:
                    seen = _count_is(BalanceModel.borrowed, expected)
                    cond = seen if cond is None else cond & seen
            if actions:
                self._ops.append(lambda tx, a=account, acts=actions, c=cond: tx.update(BalanceModel(a), actions=acts,
                                                                                     condition=c))
            elif cond is not None:
                self._ops.append(lambda tx, a=account, c=cond: tx.condition_check(BalanceModel, a, condition=c))
        return self

    def adjust_borrowed(self, pending_account: str, expected: int, change: int) -> "Unit":
        """Only the `borrowed` figure of a pending account (no money moves), if it is still `expected`."""
        self._ops.append(lambda tx: tx.update(BalanceModel(pending_account),
                                              actions=[BalanceModel.borrowed.add(change)],
                                              condition=_count_is(BalanceModel.borrowed, expected)))
        return self

    # -- outbox / ops -----------------------------------------------------------------------
    def emit(self, event: Event) -> "Unit":
        item = EventModel(event.id, merchant_id=event.merchant_id, type=event.type, payload=event.body,
                          created_at=event.created_at, status="pending", attempts=0,
                          next_attempt_at=int(event.created_at.timestamp()), due_shard=DUE_SHARD,
                          livemode=event.livemode)
        self._ops.append(lambda tx: tx.save(item, condition=EventModel.event_id.does_not_exist()))
        return self

    def move_ops_record(self, record_id: str, from_status: str, to_status: str, note: str = "") -> "Unit":
        """Move an ops record on (e.g. returning -> returned), only if it is still in `from_status`; it no
        longer awaits a job."""
        actions = [OpsRecordModel.status.set(to_status), OpsRecordModel.awaiting.remove()]
        if note:
            actions.append(OpsRecordModel.note.set(note[:200]))
        self._ops.append(lambda tx: tx.update(OpsRecordModel(record_id), actions=actions,
                                              condition=OpsRecordModel.status == from_status))
        return self

    def put_new(self, item) -> "Unit":
        """Any other new item that must be written with this change (e.g. a staff alert), once, never replaced."""
        first_write = type(item)._hash_key_attribute().does_not_exist()
        self._ops.append(lambda tx: tx.save(item, condition=first_write))
        return self

    def save_versioned(self, item) -> "Unit":
        """Save an item that carries a VersionAttribute, only if nobody changed it since it was read."""
        self._ops.append(lambda tx: tx.save(item))
        return self

    # -- merchant settings ------------------------------------------------------------------
    def update_merchant(self, merchant_id: str, actions: list, condition=None) -> "Unit":
        """Change a merchant's settings (only an existing merchant; `condition` adds to that)."""
        from chalicelib.store.models import MerchantModel

        cond = MerchantModel.merchant_id.exists()
        if condition is not None:
            cond = cond & condition
        self._ops.append(lambda tx: tx.update(MerchantModel(merchant_id), actions=actions, condition=cond))
        return self

    def remove_alert_binding(self, merchant_id: str, binding_id: str) -> "Unit":
        """Stop a staff member's WeChat alerts (the binding must still exist)."""
        from chalicelib.store.alerts import AlertBindingModel

        self._ops.append(lambda tx: tx.delete(AlertBindingModel(merchant_id, binding_id),
                                              condition=AlertBindingModel.binding_id.exists()))
        return self

    def close_pending_difference(self, pool: str, key: str) -> "Unit":
        """Remove a settlement difference's waiting record (it must still be waiting)."""
        from chalicelib.store.reconciliation import SuspenseModel

        self._ops.append(lambda tx: tx.delete(SuspenseModel(pool, key), condition=SuspenseModel.key.exists()))
        return self

    def update(self, item, actions: list, condition) -> "Unit":
        """A conditional update of any other item that must change with this transaction."""
        self._ops.append(lambda tx: tx.update(item, actions=actions, condition=condition))
        return self

    def audit(self, merchant_id: str, actor: str, action: str, details: dict | None = None) -> "Unit":
        """One audit-trail entry for the change this transaction makes."""
        from chalicelib.store import audit

        return self.put_new(audit.new_entry(merchant_id, actor, action, details))

    def add_webhook_endpoint(self, item: WebhookEndpointModel, max_count: int, uncounted: int | None) -> "Unit":
        """The endpoint, and the merchant's endpoint counter, which must stay at most `max_count`.
        `uncounted`: the merchant has no counter yet and has this many endpoints (made before it)."""
        self._ops.append(lambda tx: tx.save(item, condition=WebhookEndpointModel.endpoint_id.does_not_exist()))
        return self._count_endpoints(item.merchant_id, +1, max_count, uncounted)

    def remove_webhook_endpoint(self, merchant_id: str, endpoint_id: str, uncounted: int | None) -> "Unit":
        self._ops.append(lambda tx: tx.delete(WebhookEndpointModel(merchant_id, endpoint_id),
                                              condition=WebhookEndpointModel.endpoint_id.exists()))
        return self._count_endpoints(merchant_id, -1, None, uncounted)

    def _count_endpoints(self, merchant_id: str, delta: int, max_count: int | None, uncounted: int | None) -> "Unit":
        count = WebhookEndpointModel.endpoint_count
        counter = WebhookEndpointModel(merchant_id, ENDPOINT_COUNTER)
        if uncounted is not None:  # the first counted change starts the counter from what exists
            action, cond = count.set(uncounted + delta), count.does_not_exist()
        else:
            action, cond = count.add(delta), count.exists()
            if max_count is not None:
                cond = cond & (count < max_count)
        self._ops.append(lambda tx: tx.update(counter, actions=[action], condition=cond))
        return self

    def set_webhook_endpoint_enabled(self, merchant_id: str, endpoint_id: str, enabled: bool,
                                     sealed: dict | None = None) -> "Unit":
        """`sealed`: the sealed form of a plaintext secret left by older code, stored in its place."""
        actions = [WebhookEndpointModel.enabled.set(enabled)]
        if sealed is not None:
            actions += [WebhookEndpointModel.secret_sealed.set(sealed), WebhookEndpointModel.secret.remove()]
        self._ops.append(lambda tx: tx.update(WebhookEndpointModel(merchant_id, endpoint_id),
                                              actions=actions,
                                              condition=WebhookEndpointModel.endpoint_id.exists()))
        return self

    def update_if(self, item, actions: list, condition) -> "Unit":
        """Any other item's conditional update that belongs to this change (e.g. resolving a finding)."""
        self._ops.append(lambda tx: tx.update(item, actions=actions, condition=condition))
        return self

    def complete_idempotency(self, key: str, status_code: int, body: str, expires: datetime) -> "Unit":
        def op(tx):
            tx.update(IdempotencyModel(key), actions=[
                IdempotencyModel.status.set("completed"),
                IdempotencyModel.response_status.set(status_code),
                IdempotencyModel.response_body.set(body),
                IdempotencyModel.expires.set(expires),
            ], condition=IdempotencyModel.status == "in_progress")
        self._ops.append(op)
        return self

    # -- commit -----------------------------------------------------------------------------
    def commit(self) -> None:
        if not self._ops:
            return
        if len(self._ops) > 100:
            raise ValueError("a DynamoDB transaction holds at most 100 items")
        try:
            with TransactWrite(connection=connection()) as tx:
                for op in self._ops:
                    op(tx)
        except TransactWriteError as exc:
            reasons = [getattr(r, "code", None) if r is not None else None
                       for r in (getattr(exc, "cancellation_reasons", None) or [])]
            if getattr(exc, "cause_response_code", None) == "TransactionCanceledException":
                raise Conflict(reasons) from exc
            raise

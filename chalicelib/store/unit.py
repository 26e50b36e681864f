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
    BalanceModel,
    EntryModel,
    EventModel,
    IdempotencyModel,
    PaymentModel,
    PostingModel,
    RefundModel,
)

DUE_SHARD = "due"


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


def new_event(merchant_id: str, type_: str, obj: dict) -> Event:
    now = clock.now()
    event_id = ids.new("evt")
    body = json.dumps({"id": event_id, "object": "event", "type": type_, "created": int(now.timestamp()),
                       "data": {"object": obj}}, sort_keys=True, separators=(",", ":"))
    return Event(event_id, merchant_id, type_, body, now)


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
                          "closed_at", "failure_code", "pending_shard", "recon_day")

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

    def replace_pending_payment(self, p: Payment, expected_order: str) -> "Unit":
        """Rewrite a pending payment (a re-quote), only if nothing else changed it meanwhile."""
        item = payment_store.to_item(p)
        self._ops.append(lambda tx: tx.save(item, condition=(PaymentModel.status == PaymentStatus.PENDING.value)
                                            & (PaymentModel.channel_order_id == expected_order)))
        return self

    def reserve_refund(self, payment_id: str, amount: int, refunded_before: int, total: int) -> "Unit":
        """Add `amount` to the refunded total, only if it is still the total the refund was priced on
        (pro-rata fee and CNY shares depend on it) and stays within the payment."""
        if refunded_before + amount > total:
            raise ValueError("refund above the payment")

        def op(tx):
            tx.update(PaymentModel(payment_id), actions=[PaymentModel.refunded.add(amount)],
                      condition=(PaymentModel.status == PaymentStatus.SUCCEEDED.value)
                      & (PaymentModel.refunded == refunded_before))
        self._ops.append(op)
        return self

    def release_refund(self, payment_id: str, amount: int, released: bool) -> "Unit":
        """Give a failed refund's amount back to the payment, if the payment's funds are (or are not yet)
        released as the caller planned for: the reversal's pending share goes where the money now is."""
        cond = (PaymentModel.released == True) if released else PaymentModel.released.does_not_exist()  # noqa: E712
        self._ops.append(lambda tx: tx.update(PaymentModel(payment_id), actions=[PaymentModel.refunded.add(-amount)],
                                              condition=cond))
        return self

    def save_refund(self, item: RefundModel, new: bool, from_status: str | None = None) -> "Unit":
        if new:
            cond = RefundModel.refund_id.does_not_exist()
        else:
            cond = RefundModel.status == from_status
        self._ops.append(lambda tx: tx.save(item, condition=cond))
        return self

    # -- ledger -----------------------------------------------------------------------------
    def post(self, posting: Posting, floors: dict[str, int] | None = None) -> "Unit":
        """The journal item (once per id, ever), one entry per leg, merchant balances in step.

        `floors`: merchant accounts that must not drop below a value (e.g. 0) after this posting.
        """
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
        for account, delta in posting.merchant_deltas().items():
            floor = (floors or {}).get(account)

            def op(tx, account=account, delta=delta, floor=floor):
                cond = None
                if floor is not None and delta < 0:
                    # balance + delta >= floor  <=>  balance >= floor - delta
                    cond = BalanceModel.balance >= floor - delta
                tx.update(BalanceModel(account), actions=[BalanceModel.balance.add(delta)], condition=cond)
            self._ops.append(op)
        return self

    # -- outbox / ops -----------------------------------------------------------------------
    def emit(self, event: Event) -> "Unit":
        item = EventModel(event.id, merchant_id=event.merchant_id, type=event.type, payload=event.body,
                          created_at=event.created_at, status="pending", attempts=0,
                          next_attempt_at=int(event.created_at.timestamp()), due_shard=DUE_SHARD)
        self._ops.append(lambda tx: tx.save(item, condition=EventModel.event_id.does_not_exist()))
        return self

    def put_new(self, item) -> "Unit":
        """Any other new item that must be written with this change (e.g. a staff alert), once, never replaced."""
        first_write = type(item)._hash_key_attribute().does_not_exist()
        self._ops.append(lambda tx: tx.save(item, condition=first_write))
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

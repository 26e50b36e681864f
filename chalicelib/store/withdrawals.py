"""Releases, withdrawals and bank batches: reads, and the transaction steps the money jobs add to a Unit."""
from __future__ import annotations

from datetime import datetime

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from chalicelib import clock
from chalicelib.domain.withdrawal import Withdrawal, WithdrawalStatus, period_key
from chalicelib.store.base import is_conditional_failure
from chalicelib.store.models import (
    MerchantModel,
    PaymentModel,
    RefundModel,
    WithdrawalBatchModel,
    WithdrawalModel,
)
from chalicelib.store.unit import Unit


class FundsUnit(Unit):
    """A Unit that can also mark payments released and move withdrawals, each conditionally."""

    def mark_released(self, payment_id: str) -> "FundsUnit":
        self._ops.append(lambda tx: tx.update(
            PaymentModel(payment_id), actions=[PaymentModel.released.set(True)],
            condition=PaymentModel.released.does_not_exist() & (PaymentModel.status == "succeeded")))
        return self

    def create_withdrawal(self, w: Withdrawal) -> "FundsUnit":
        item = to_item(w)
        self._ops.append(lambda tx: tx.save(item, condition=WithdrawalModel.withdrawal_id.does_not_exist()))
        return self

    def move_withdrawal(self, w: Withdrawal, from_status: WithdrawalStatus) -> "FundsUnit":
        actions = [WithdrawalModel.status.set(w.status.value)]
        if w.settled_at is not None:
            actions.append(WithdrawalModel.settled_at.set(w.settled_at))
        if w.failure_reason is not None:
            actions.append(WithdrawalModel.failure_reason.set(w.failure_reason))
        self._ops.append(lambda tx: tx.update(WithdrawalModel(w.id), actions=actions,
                                              condition=WithdrawalModel.status == from_status.value))
        return self


# ---- merchants and payments the jobs walk -----------------------------------------------------
def set_payout_account(merchant_id: str, account: str) -> bool:
    """Only the payout account changes (a validated BB-bbbb-AAAAAAA-SSS). False: no such merchant."""
    try:
        MerchantModel(merchant_id).update(actions=[MerchantModel.bank_account.set(account)],
                                          condition=MerchantModel.merchant_id.exists())
        return True
    except UpdateError as exc:
        if is_conditional_failure(exc):
            return False
        raise


def active_merchant_ids() -> list[str]:
    return [m.merchant_id for m in MerchantModel.by_status.query("active")]


def paid_unreleased(merchant_id: str, paid_from: datetime, paid_to: datetime) -> list[str]:
    """Ids of a merchant's payments paid in [paid_from, paid_to] and not yet released (oldest first)."""
    return [m.payment_id for m in PaymentModel.paid_by_merchant.query(
        merchant_id, PaymentModel.paid_at.between(paid_from, paid_to),
        filter_condition=PaymentModel.released.does_not_exist())]


def pending_drawn_by_refunds(payment_id: str) -> int:
    """What this payment's refunds (other than failed ones, which were reversed) took from pending."""
    return sum(int((r.draw or {}).get("pending", 0)) for r in RefundModel.by_payment.query(payment_id)
               if r.status != "failed")


# ---- withdrawals -----------------------------------------------------------------------------
def to_item(w: Withdrawal) -> WithdrawalModel:
    return WithdrawalModel(
        w.id, period_key=period_key(w.merchant_id, datetime.strptime(w.period, "%Y-%m-%d").date()),
        merchant_id=w.merchant_id, amount=w.amount, currency=w.currency, bank_account=w.bank_account,
        batch_id=w.batch_id, period=w.period, status=w.status.value, failure_reason=w.failure_reason,
        created_at=w.created_at, settled_at=w.settled_at)


def from_item(m: WithdrawalModel) -> Withdrawal:
    return Withdrawal(
        id=m.withdrawal_id, merchant_id=m.merchant_id, amount=int(m.amount), currency=m.currency,
        bank_account=m.bank_account, batch_id=m.batch_id, period=m.period, status=WithdrawalStatus(m.status),
        created_at=m.created_at, failure_reason=m.failure_reason, settled_at=m.settled_at)


def get(withdrawal_id: str) -> Withdrawal | None:
    try:
        return from_item(WithdrawalModel.get(withdrawal_id, consistent_read=True))
    except DoesNotExist:
        return None


def of_batch(batch_id: str) -> list[Withdrawal]:
    return [from_item(m) for m in WithdrawalModel.by_batch.query(batch_id)]


def of_merchant(merchant_id: str, limit: int = 100, newest_first: bool = True) -> list[Withdrawal]:
    return [from_item(m) for m in WithdrawalModel.by_merchant.query(
        merchant_id, scan_index_forward=not newest_first, limit=limit)]


def open_of_merchant(merchant_id: str) -> list[Withdrawal]:
    """Withdrawals still waiting for the bank (filed, neither paid nor failed)."""
    return [from_item(m) for m in WithdrawalModel.by_merchant.query(
        merchant_id, filter_condition=WithdrawalModel.status == WithdrawalStatus.FILED.value)]


# ---- batches ---------------------------------------------------------------------------------
def get_batch(batch_id: str) -> WithdrawalBatchModel | None:
    try:
        return WithdrawalBatchModel.get(batch_id, consistent_read=True)
    except DoesNotExist:
        return None


def file_batch(batch_id: str, period: str, currency: str, s3_key: str, count: int, total: int,
               hash_total: str, sha256: str) -> bool:
    """Record (or re-record after a re-run) the batch file; never over a batch already paid."""
    item = WithdrawalBatchModel(batch_id, period=period, currency=currency, status="filed", s3_key=s3_key,
                                count=count, total=total, hash_total=hash_total, sha256=sha256,
                                created_at=clock.now())
    try:
        item.save(condition=WithdrawalBatchModel.batch_id.does_not_exist() | (WithdrawalBatchModel.status == "filed"))
        return True
    except PutError as exc:
        if is_conditional_failure(exc):
            return False
        raise


def mark_batch_paid(batch_id: str) -> bool:
    try:
        WithdrawalBatchModel(batch_id).update(
            actions=[WithdrawalBatchModel.status.set("paid"), WithdrawalBatchModel.paid_at.set(clock.now())],
            condition=WithdrawalBatchModel.status == "filed")
        return True
    except UpdateError as exc:
        if is_conditional_failure(exc):
            return False
        raise

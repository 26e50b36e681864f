"""Releases, withdrawals and bank batches: reads, and the transaction steps the money jobs add to a Unit."""
from __future__ import annotations

from datetime import date, datetime

from pynamodb.exceptions import DoesNotExist, UpdateError

from chalicelib import clock
from chalicelib.domain.withdrawal import Withdrawal, WithdrawalStatus, period_key
from chalicelib.store.base import applied, is_conditional_failure
from chalicelib.store.models import (
    MerchantModel,
    PaymentModel,
    WithdrawalBatchModel,
    WithdrawalModel,
    WithdrawalPeriodModel,
)
from chalicelib.store.unit import Unit


class FundsUnit(Unit):
    """A Unit that can also mark payments released and move withdrawals, each conditionally."""

    def mark_released(self, payment_id: str, pending_drawn: int) -> "FundsUnit":
        """Released (and out of the unreleased index), only if its refunds' pending draw is still the one
        the release was computed from: a refund reserved or failed meanwhile makes the release read again."""
        drawn = (PaymentModel.pending_drawn.does_not_exist() | (PaymentModel.pending_drawn == 0)) \
            if pending_drawn == 0 else (PaymentModel.pending_drawn == pending_drawn)
        self._ops.append(lambda tx: tx.update(
            PaymentModel(payment_id), actions=[PaymentModel.released.set(True), PaymentModel.unreleased_by.remove()],
            condition=PaymentModel.released.does_not_exist() & (PaymentModel.status == "succeeded") & drawn))
        return self

    def create_withdrawal(self, w: Withdrawal) -> "FundsUnit":
        """The withdrawal, its merchant#day key (at most one per merchant and NZ date) and its place in
        the open batch, together: a withdrawal exists only as a member of exactly one batch."""
        item = to_item(w)
        guard = WithdrawalPeriodModel(item.period_key, withdrawal_id=w.id, batch_id=w.batch_id,
                                      created_at=w.created_at)
        batch_actions = [
            WithdrawalBatchModel.status.set(WithdrawalBatchModel.status | "open"),
            WithdrawalBatchModel.period.set(WithdrawalBatchModel.period | w.period),
            WithdrawalBatchModel.currency.set(WithdrawalBatchModel.currency | w.currency),
            WithdrawalBatchModel.created_at.set(WithdrawalBatchModel.created_at | w.created_at),
            WithdrawalBatchModel.joined.add({w.id}),
            WithdrawalBatchModel.joined_count.add(1),
            WithdrawalBatchModel.joined_total.add(w.amount),
        ]
        batch_open = WithdrawalBatchModel.batch_id.does_not_exist() | (WithdrawalBatchModel.status == "open")
        self._ops.append(lambda tx: tx.save(item, condition=WithdrawalModel.withdrawal_id.does_not_exist()))
        self._ops.append(lambda tx: tx.save(guard, condition=WithdrawalPeriodModel.period_key.does_not_exist()))
        self._ops.append(lambda tx: tx.update(WithdrawalBatchModel(w.batch_id), actions=batch_actions,
                                              condition=batch_open))
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


    def batch_unchanged_for_failure(self, batch_id: str, withdrawal_id: str, status: str) -> "FundsUnit":
        """Check, in the failure's transaction, that the batch is as the failure was allowed on: still open
        (nothing filed), or filed/paid with the withdrawal among the members its file lists."""
        if status == "open":
            cond = WithdrawalBatchModel.status == "open"
        elif status in ("filed", "paid"):
            cond = WithdrawalBatchModel.status.is_in("filed", "paid") & WithdrawalBatchModel.members.contains(
                withdrawal_id)
        else:
            raise ValueError(f"a withdrawal cannot fail while its batch is {status}")
        self._ops.append(lambda tx: tx.condition_check(WithdrawalBatchModel, batch_id, condition=cond))
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
    """Merchants whose money still moves: active and suspended (a suspension stops new payments only)."""
    from chalicelib.domain.merchant import STATUSES

    return [m.merchant_id for status in STATUSES for m in MerchantModel.by_status.query(status)]


def index_unreleased(merchant_id: str) -> list[str]:
    """Put the merchant's succeeded, unreleased payments written before `unreleased_by` and `pending_drawn`
    existed into the unreleased index, with the pending draw of their live refunds (a one-off backfill:
    those refunds are long settled in the by_payment index). Returns the payment ids it changed."""
    from chalicelib.store.models import RefundModel

    changed = []
    for m in PaymentModel.paid_by_merchant.query(merchant_id, filter_condition=PaymentModel.released.does_not_exist()):
        drawn = sum(int((r.draw or {}).get("pending", 0)) - int(r.borrowed or 0)
                    for r in RefundModel.by_payment.query(m.payment_id) if r.status != "failed")
        actions = [PaymentModel.unreleased_by.set(merchant_id)]
        if drawn:
            actions.append(PaymentModel.pending_drawn.set(drawn))
        if applied(lambda: PaymentModel(m.payment_id).update(actions=actions, condition=(
                PaymentModel.status == "succeeded") & PaymentModel.released.does_not_exist()
                & PaymentModel.unreleased_by.does_not_exist() & PaymentModel.pending_drawn.does_not_exist())):
            changed.append(m.payment_id)
    return changed


def unreleased_of(merchant_id: str) -> list[tuple[str, datetime]]:
    """(id, paid_at) of every succeeded payment of the merchant not yet released, oldest first, from the
    sparse index (eventually consistent: callers re-read each payment before acting on it)."""
    return [(m.payment_id, m.paid_at) for m in PaymentModel.unreleased_by_merchant.query(merchant_id)]


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


def get_many(withdrawal_ids: list[str]) -> list[Withdrawal]:
    """Consistent reads of exactly these withdrawals (those that exist), in the order asked."""
    found = {m.withdrawal_id: from_item(m)
             for m in WithdrawalModel.batch_get(list(dict.fromkeys(withdrawal_ids)), consistent_read=True)}
    return [found[i] for i in withdrawal_ids if i in found]


def of_period(merchant_id: str, day: date) -> WithdrawalPeriodModel | None:
    """The merchant's withdrawal for this NZ date, if it has one (a consistent read of the natural key)."""
    try:
        return WithdrawalPeriodModel.get(period_key(merchant_id, day), consistent_read=True)
    except DoesNotExist:
        return None


def of_merchant(merchant_id: str, limit: int = 100, newest_first: bool = True) -> list[Withdrawal]:
    return [from_item(m) for m in WithdrawalModel.by_merchant.query(
        merchant_id, scan_index_forward=not newest_first, limit=limit)]


def page_of_merchant(merchant_id: str, limit: int, after_id: str | None) -> tuple[list[Withdrawal], bool] | None:
    """A page of the merchant's withdrawals, newest first, after withdrawal `after_id` (None: not theirs)."""
    start = None
    if after_id is not None:
        try:
            after = WithdrawalModel.get(after_id, consistent_read=True)
        except WithdrawalModel.DoesNotExist:
            return None
        if after.merchant_id != merchant_id:
            return None
        start = {"withdrawal_id": {"S": after.withdrawal_id}, "merchant_id": {"S": merchant_id},
                 "created_at": {"S": WithdrawalModel.created_at.serialize(after.created_at)}}
    found = list(WithdrawalModel.by_merchant.query(merchant_id, scan_index_forward=False, limit=limit + 1,
                                                   last_evaluated_key=start))
    return [from_item(m) for m in found[:limit]], len(found) > limit


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


def unfiled_batches(before_period: str) -> list[str]:
    """Ids of batches with funds reserved but no file closed on them (open, or a filing that died),
    for NZ dates before `before_period`."""
    return [m.batch_id for status in ("open", "filing") for m in WithdrawalBatchModel.by_status.query(
        status, WithdrawalBatchModel.period < before_period)]


def freeze_batch(batch_id: str, joined_count: int) -> bool:
    """open -> filing: no withdrawal joins from now on. False: not open, or one joined since it was read."""
    return applied(lambda: WithdrawalBatchModel(batch_id).update(
        actions=[WithdrawalBatchModel.status.set("filing")],
        condition=(WithdrawalBatchModel.status == "open") & (WithdrawalBatchModel.joined_count == joined_count)))


def file_batch(batch_id: str, s3_key: str | None, members: list[str], count: int, total: int,
               hash_total: str | None, sha256: str | None) -> bool:
    """filing -> filed, with exactly what the file pays. False: another run closed it first."""
    actions = [WithdrawalBatchModel.status.set("filed"), WithdrawalBatchModel.members.set(members),
               WithdrawalBatchModel.count.set(count), WithdrawalBatchModel.total.set(total),
               WithdrawalBatchModel.filed_at.set(clock.now())]
    for attr, value in ((WithdrawalBatchModel.s3_key, s3_key), (WithdrawalBatchModel.hash_total, hash_total),
                        (WithdrawalBatchModel.sha256, sha256)):
        if value is not None:
            actions.append(attr.set(value))
    return applied(lambda: WithdrawalBatchModel(batch_id).update(
        actions=actions, condition=WithdrawalBatchModel.status == "filing"))


def mark_batch_paid(batch_id: str) -> bool:
    return applied(lambda: WithdrawalBatchModel(batch_id).update(
        actions=[WithdrawalBatchModel.status.set("paid"), WithdrawalBatchModel.paid_at.set(clock.now())],
        condition=WithdrawalBatchModel.status == "filed"))

"""Property tests over random money flows: payments, refunds, releases and withdrawals.

The pure test drives the real posting builders and the real refund draw planner over an in-memory
book that enforces floors the way the DynamoDB transaction does (a failed floor rejects the whole
posting). Invariants: every posting balances per currency; each merchant balance equals the sum of
its account's entries; no merchant bucket goes negative unless the merchant may go negative.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.domain import ledger
from chalicelib.domain import withdrawal as funds
from chalicelib.money import Money

CUR = "NZD"
MID = "mch_prop"


class Rejected(Exception):
    pass


@dataclass
class Book:
    entries: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    balances: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    postings: list[ledger.Posting] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    def post(self, p: ledger.Posting, floors: dict[str, int] | None = None) -> None:
        if p.id in self.ids:
            raise Rejected("posting id already used")
        deltas = p.merchant_deltas()
        for account, floor in (floors or {}).items():
            if deltas.get(account, 0) < 0 and self.balances[account] + deltas[account] < floor:
                raise Rejected(f"{account} would fall below {floor}")
        self.ids.add(p.id)
        self.postings.append(p)
        for leg in p.legs:
            self.entries[leg.account].append(leg.amount)
        for account, d in deltas.items():
            self.balances[account] += d

    def bucket(self, name: str) -> int:
        return self.balances[ledger.merchant_account(MID, CUR, name)]


def acc(bucket: str) -> str:
    return ledger.merchant_account(MID, CUR, bucket)


ops = st.lists(st.one_of(
    st.tuples(st.just("pay"), st.integers(1, 500_000), st.integers(0, 500)),
    st.tuples(st.just("refund"), st.integers(0, 20), st.integers(1, 500_000)),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.tuples(st.just("withdraw"), st.integers(0, 5000)),
    st.tuples(st.just("settle"), st.booleans()),
), max_size=40)


def run(sequence, allow_negative: bool) -> Book:
    from chalicelib.domain.merchant import Merchant
    from chalicelib.services import errors, refunds

    book = Book()
    merchant = Merchant(MID, "Prop Ltd", CUR, 200, allow_negative_balance=allow_negative)
    payments: list[dict] = []     # {id, amount, fee, refunded, drawn_pending, released}
    open_withdrawals: list[funds.Withdrawal] = []
    n = 0

    def balances_get_many(accounts):
        return {a: book.balances[a] for a in accounts}

    for op in sequence:
        n += 1
        if op[0] == "pay":
            _, amount, fee_bps = op
            fee = amount * fee_bps // 10000          # FLOOR, as any fee rule must stay within the amount
            pid = f"pay_{n}"
            book.post(ledger.payment_succeeded(f"payment:{pid}", MID, pid, "wechat", Money(amount, CUR),
                                               Money(fee, CUR)))
            payments.append({"id": pid, "amount": amount, "fee": fee, "refunded": 0, "drawn_pending": 0,
                             "fee_returned": 0, "released": False})
        elif op[0] == "refund" and payments:
            p = payments[op[1] % len(payments)]
            amount = min(op[2], p["amount"] - p["refunded"])
            if amount <= 0:
                continue
            from chalicelib.domain.payment import Payment, PaymentStatus
            from datetime import datetime, timezone
            now = datetime(2026, 1, 1, tzinfo=timezone.utc)
            payment = Payment(p["id"], MID, True, Money(p["amount"], CUR), "wechat", "native",
                              PaymentStatus.SUCCEEDED, p["id"], "r", "d", now, now, Money(p["fee"], CUR),
                              refunded=p["refunded"], fee_returned=p["fee_returned"],
                              pending_drawn=p["drawn_pending"], released=p["released"])
            fee_back = refunds.fee_share(payment, amount)
            # The real planner, reading our in-memory book instead of DynamoDB.
            with mock.patch.object(refunds.balances, "get_many", balances_get_many):
                try:
                    draw, borrowed = refunds.plan_draw(merchant, payment, amount - fee_back)
                except errors.ServiceError as exc:
                    assert not allow_negative and exc.code == "insufficient_balance"
                    continue
            floors = {} if allow_negative else {acc(b): 0 for b in draw}
            book.post(refunds.refund_posting(f"refund:{n}", payment, f"re_{n}", amount, fee_back, draw, None),
                      floors)
            p["refunded"] += amount
            p["fee_returned"] += fee_back
            p["drawn_pending"] += draw.get("pending", 0) - borrowed
        elif op[0] == "release" and payments:
            p = payments[op[1] % len(payments)]
            if p["released"]:
                continue
            amount = funds.release_amount(p["amount"] - p["fee"], p["drawn_pending"], book.bucket("pending"))
            if amount:
                book.post(funds.release_posting(MID, p["id"], CUR, amount), {acc("pending"): 0})
            p["released"] = True
        elif op[0] == "withdraw":
            available = book.bucket("available")
            if available <= 0 or available < op[1]:
                continue
            w = funds.Withdrawal(f"wd_{n:09d}", MID, available, CUR, "0109020068389000", "b", "2026-01-01",
                                 funds.WithdrawalStatus.FILED, None)
            book.post(funds.withdrawal_posting(w), {acc("available"): 0})
            open_withdrawals.append(w)
        elif op[0] == "settle" and open_withdrawals:
            w = open_withdrawals.pop(0)
            if op[1]:
                for posting in funds.paid_postings(w):
                    book.post(posting, {acc("reserved"): 0})
            else:
                book.post(funds.reversal_posting(w, "returned"), {acc("reserved"): 0})
    return book


def check(book: Book, allow_negative: bool) -> None:
    for p in book.postings:
        totals = defaultdict(int)
        for leg in p.legs:
            totals[leg.currency] += leg.amount
        assert not any(totals.values()), p
    for bucket in ("pending", "available", "reserved"):
        a = acc(bucket)
        assert book.balances[a] == -sum(book.entries[a])          # credit-normal balance = -(sum of legs)
        if not allow_negative or bucket == "reserved":
            assert book.balances[a] >= 0, (bucket, book.balances[a])
    assert sum(book.entries["X:payout_clearing:NZD"]) == 0       # clearing always nets out


@settings(max_examples=200, deadline=None)
@given(ops)
def test_random_flows_keep_the_books_balanced_and_never_negative(sequence):
    check(run(sequence, allow_negative=False), allow_negative=False)


@settings(max_examples=100, deadline=None)
@given(ops)
def test_merchants_allowed_negative_still_balance(sequence):
    check(run(sequence, allow_negative=True), allow_negative=True)


def test_release_amount_bounds():
    assert funds.release_amount(9800, 0, 9800) == 9800
    assert funds.release_amount(9800, 4900, 9800) == 4900
    assert funds.release_amount(9800, 0, 3000) == 3000
    assert funds.release_amount(9800, 0, -500) == 0
    assert funds.release_amount(9800, 9800, 9800) == 0


def test_withdrawal_ids_are_12_characters_and_stable_per_merchant_and_day():
    from datetime import date

    a = funds.withdrawal_id("mch_a", date(2026, 11, 25))
    assert a == funds.withdrawal_id("mch_a", date(2026, 11, 25)) and len(a) == 12 and a.startswith("wd_")
    assert a != funds.withdrawal_id("mch_a", date(2026, 11, 26)) != funds.withdrawal_id("mch_b", date(2026, 11, 25))

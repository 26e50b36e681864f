"""Balances, release after T+N NZ business days, auto-withdrawal batch files, ops actions, refund draws."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone

import boto3
import pytest

from chalicelib import clock, settings
from chalicelib.services import errors, merchants
from chalicelib.services import withdrawals as withdrawal_service
from chalicelib.store.models import EntryModel, PaymentModel, PostingModel, WithdrawalModel
from infra.local import invoke_configured
from tests.integration.helpers import new_merchant, shopper_pays

ACCOUNT = "01-0902-0068389-000"
# Thu 19 Nov 2026, 10:00 in Auckland (NZDT, UTC+13).
THURSDAY = datetime(2026, 11, 18, 21, 0, tzinfo=timezone.utc)


@pytest.fixture
def merchant(client):
    clock.freeze(THURSDAY)
    return new_merchant(client, bank_account=ACCOUNT, holding_days=2, min_payout=2000)


def pay(merchant, client, amount=10000, ref="order-1"):
    p = merchant.create_payment(amount=amount, merchant_reference=ref).json_body
    shopper_pays(client, p)
    return p


def invoke(client, name, event):
    return invoke_configured(client, name, event)   # the function's configured timeout, as Lambda gives it


def balance(merchant):
    r = merchant.get("/v1/balance")
    assert r.status_code == 200, r.body
    row = next(b for b in r.json_body["balances"] if b["currency"] == "NZD")
    return row["pending"], row["available"], row["reserved"]


def entries_total(account):
    return sum(int(e.amount) for e in EntryModel.query(account))


def assert_books_balance():
    for posting in PostingModel.scan():
        assert sum(int(a) for _, a, _ in posting.legs) == 0, posting.posting_id


def test_release_waits_for_two_nz_business_days_then_moves_the_net_once(merchant, client):
    p = pay(merchant, client)
    assert balance(merchant) == (9800, 0, 0)
    first = invoke(client, "release_funds", {})
    assert first["date"] == "2026-11-19" and first["not_due"] == 1 and first["released"] == 0
    clock.advance(timedelta(days=1))        # Fri 20: T+1
    assert invoke(client, "release_funds", {})["not_due"] == 1
    clock.advance(timedelta(days=3))        # Mon 23: T+2 (the weekend does not count)
    done = invoke(client, "release_funds", {"merchant_id": merchant.merchant.id})
    assert done["released"] == 1 and done["released_amount"] == {"NZD": 9800}
    assert balance(merchant) == (0, 9800, 0)
    assert PaymentModel.get(p["id"]).released is True
    legs = {a: n for a, n, _ in PostingModel.get(f"release:{p['id']}").legs}
    assert legs == {f"M:{merchant.merchant.id}:NZD:pending": 9800, f"M:{merchant.merchant.id}:NZD:available": -9800}
    again = invoke(client, "release_funds", {})
    assert again["released"] == 0 and again["checked"] == 0
    assert balance(merchant) == (0, 9800, 0)
    assert_books_balance()


def test_release_dry_run_and_an_explicit_date(merchant, client):
    pay(merchant, client)
    dry = invoke(client, "release_funds", {"date": "2026-11-23", "dry_run": True})
    assert dry["released"] == 1 and dry["dry_run"] is True
    assert balance(merchant) == (9800, 0, 0)
    assert invoke(client, "release_funds", {"date": "2026-11-23"})["released"] == 1
    assert balance(merchant) == (0, 9800, 0)
    assert invoke(client, "release_funds", {"date": "23/11/2026"})["error"] == "date must be YYYY-MM-DD"
    assert invoke(client, "auto_withdraw", {"date": "tomorrow"})["skipped"] == "date must be YYYY-MM-DD"


def test_release_over_christmas_skips_mondayised_boxing_day(client):
    clock.freeze(datetime(2026, 12, 23, 22, 0, tzinfo=timezone.utc))   # Thu 24 Dec 11:00 NZDT
    m = new_merchant(client, bank_account=ACCOUNT, holding_days=2)
    pay(m, client)
    for day in ("2026-12-25", "2026-12-28", "2026-12-29"):
        assert invoke(client, "release_funds", {"date": day})["not_due"] == 1, day
    assert invoke(client, "release_funds", {"date": "2026-12-30"})["released"] == 1


def test_release_held_for_recon_when_required(merchant, client, monkeypatch):
    from chalicelib.services import balances

    pay(merchant, client)
    monkeypatch.setenv("KAURI_RELEASE_REQUIRES_RECON", "1")
    settings.reset()
    try:
        held = invoke(client, "release_funds", {"date": "2026-11-23"})
        assert held["held_for_recon"] == 1 and held["released"] == 0
        balances.register_recon_check(lambda payment: True)
        assert invoke(client, "release_funds", {"date": "2026-11-23"})["released"] == 1
    finally:
        balances.register_recon_check(None)
        monkeypatch.delenv("KAURI_RELEASE_REQUIRES_RECON")
        settings.reset()


def test_release_is_reduced_by_what_its_refunds_took_from_pending(merchant, client):
    p = pay(merchant, client)
    r = merchant.post(f"/v1/payments/{p['id']}/refunds", {"amount": 5000})
    assert r.status_code == 201, r.body
    assert balance(merchant) == (4900, 0, 0)
    done = invoke(client, "release_funds", {"date": "2026-11-23"})
    assert done["released_amount"] == {"NZD": 4900}
    assert balance(merchant) == (0, 4900, 0)


def released_merchant(merchant, client, amount=10000):
    pay(merchant, client, amount)
    invoke(client, "release_funds", {"date": "2026-11-23"})


def test_auto_withdraw_reserves_available_and_files_one_bank_batch(merchant, client):
    released_merchant(merchant, client)
    other = new_merchant(client, name="Tui Cafe", sub_mch_id="20000101", bank_account="08-6523-1954512-001",
                         holding_days=0)
    pay(other, client, 5000, ref="o-2")
    invoke(client, "release_funds", {"date": "2026-11-23"})
    poor = new_merchant(client, name="Small Shop", sub_mch_id="20000102", bank_account=ACCOUNT, min_payout=100000,
                        holding_days=0)
    pay(poor, client, 5000, ref="o-3")
    nobank = new_merchant(client, name="No Bank", sub_mch_id="20000103", holding_days=0)
    pay(nobank, client, 5000, ref="o-4")
    invoke(client, "release_funds", {"date": "2026-11-23"})

    out = invoke(client, "auto_withdraw", {"date": "2026-11-23"})
    assert out["withdrawn"] == 2 and out["withdrawn_amount"] == 9800 + 4900
    assert out["below_minimum"] == 1 and out["no_bank_account"] == 1
    assert out["file"] == "withdrawals/2026-11-23/batch-wdb_20261123_nzd.csv"
    assert balance(merchant) == (0, 0, 9800)

    body = boto3.client("s3", region_name="ap-southeast-2").get_object(
        Bucket=settings.get().bucket, Key=out["file"])["Body"].read().decode()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0][0] == "1" and rows[0][6] == "20261123"
    details = sorted(rows[1:-1], key=lambda r: r[1])
    assert [(r[1], r[2], r[3]) for r in details] == [("0109020068389000", "50", "9800"),
                                                     ("0865231954512001", "50", "4900")]
    assert rows[-1] == ["3", "14700", "2", "74252022901"]

    listed = merchant.get("/v1/withdrawals").json_body["data"]
    assert len(listed) == 1 and listed[0]["amount"] == 9800 and listed[0]["status"] == "filed"
    assert listed[0]["id"].startswith("wd_") and listed[0]["bank_account_last4"] == "8389"

    again = invoke(client, "auto_withdraw", {"date": "2026-11-23"})
    assert again["skipped"] == "batch already filed" and again["withdrawn"] == 2
    assert len(list(WithdrawalModel.scan())) == 2
    assert_books_balance()


def test_batch_paid_moves_reserved_through_clearing_to_the_bank_once(merchant, client):
    released_merchant(merchant, client)
    invoke(client, "auto_withdraw", {"date": "2026-11-23"})
    paid = invoke(client, "withdrawal_batch_paid", {"batch_id": "wdb_20261123_nzd"})
    assert paid["paid"] == 1 and paid["paid_amount"] == 9800 and paid["batch_marked_paid"] is True
    assert balance(merchant) == (0, 0, 0)
    assert entries_total("X:payout_clearing:NZD") == 0
    assert entries_total("B:settlement_bank:NZD") == -9800
    again = invoke(client, "withdrawal_batch_paid", {"batch_id": "wdb_20261123_nzd"})
    assert again["paid"] == 0 and again["already_paid"] == 1 and again["batch_marked_paid"] is False
    assert entries_total("B:settlement_bank:NZD") == -9800
    assert merchant.get("/v1/withdrawals").json_body["data"][0]["status"] == "paid"
    assert merchant.get("/v1/withdrawals?limit=101").status_code == 400
    assert invoke(client, "withdrawal_batch_paid", {"batch_id": "wdb_nope"})["error"] == "no such batch"
    assert_books_balance()


def test_failed_withdrawal_returns_to_available_once(merchant, client):
    released_merchant(merchant, client)
    invoke(client, "auto_withdraw", {"date": "2026-11-23"})
    wid = merchant.get("/v1/withdrawals").json_body["data"][0]["id"]
    out = invoke(client, "withdrawal_failed", {"withdrawal_id": wid, "reason": "account closed"})
    assert out["result"] == "reversed" and out["amount"] == 9800
    assert balance(merchant) == (0, 9800, 0)
    assert invoke(client, "withdrawal_failed", {"withdrawal_id": wid, "reason": "x"})["result"] == "already_failed"
    assert balance(merchant) == (0, 9800, 0)
    paid = invoke(client, "withdrawal_batch_paid", {"batch_id": "wdb_20261123_nzd"})
    assert paid["paid"] == 0 and paid["failed_before"] == 1
    assert invoke(client, "withdrawal_failed", {"withdrawal_id": "wd_missing"})["error"] == "no such withdrawal"
    # The next day's run pays it out again under a new id.
    clock.advance(timedelta(days=5))
    nxt = invoke(client, "auto_withdraw", {"date": "2026-11-24"})
    assert nxt["withdrawn"] == 1 and balance(merchant) == (0, 0, 9800)
    assert_books_balance()


def test_an_open_withdrawal_blocks_the_next_one(merchant, client):
    released_merchant(merchant, client)
    invoke(client, "auto_withdraw", {"date": "2026-11-23"})
    pay(merchant, client, ref="order-2")
    invoke(client, "release_funds", {"date": "2026-11-26"})
    assert invoke(client, "auto_withdraw", {"date": "2026-11-24"})["open_withdrawal"] == 1


def test_scheduled_run_acts_only_at_17_auckland_time(merchant, client):
    released_merchant(merchant, client)

    def scheduled(at):
        return {"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
                "time": at, "region": "ap-southeast-2", "resources": [], "detail": {}}
    # November is NZDT (+13): 04:00 UTC is 17:00 local, 05:00 UTC is 18:00.
    assert "skipped" in invoke(client, "auto_withdraw", scheduled("2026-11-23T05:00:00Z"))
    out = invoke(client, "auto_withdraw", scheduled("2026-11-23T04:00:00Z"))
    assert out["date"] == "2026-11-23" and out["withdrawn"] == 1
    # July is NZST (+12): the 05:00 UTC firing is the one that acts.
    now = datetime(2026, 7, 1, tzinfo=timezone.utc)
    assert withdrawal_service.job_day(scheduled("2026-07-01T04:00:00Z"), now)[0] is None
    assert withdrawal_service.job_day(scheduled("2026-07-01T05:00:00Z"), now)[0] == date(2026, 7, 1)


def test_bank_account_is_validated_and_formatted_at_onboarding(client):
    m = merchants.create_merchant("Kauri Kiwi", bank_account="01 0902 0068389 00")
    assert m.bank_account == "01-0902-0068389-000"
    with pytest.raises(errors.ServiceError) as e:
        merchants.create_merchant("Bad Digits", bank_account="01-0242-0100195-00")
    assert e.value.code == "bank_account_check_digit"
    updated = merchants.set_bank_account(m.id, "26-2600-0320871-032")
    assert updated.bank_account == "26-2600-0320871-032"
    with pytest.raises(errors.ServiceError):
        merchants.set_bank_account(m.id, "26-2600-3522457-096")
    with pytest.raises(errors.ServiceError) as e:
        merchants.set_bank_account("mch_nobody", ACCOUNT)
    assert e.value.kind == "not_found"


def test_balance_transactions_newest_first_and_paginated(merchant, client):
    p = pay(merchant, client)
    clock.advance(timedelta(days=4, minutes=1))
    invoke(client, "release_funds", {})
    clock.advance(timedelta(minutes=1))
    merchant.post(f"/v1/payments/{p['id']}/refunds", {"amount": 1000})
    page = merchant.get("/v1/balance/transactions?limit=2").json_body
    assert page["has_more"] is True and len(page["data"]) == 2
    assert page["data"][0]["type"] == "refund" and page["data"][0]["amount"] == -980
    assert page["data"][0]["bucket"] == "available"
    rest = merchant.get(f"/v1/balance/transactions?limit=10&starting_after={page['next_starting_after']}").json_body
    assert rest["has_more"] is False
    kinds = [(t["type"], t["bucket"], t["amount"]) for t in page["data"] + rest["data"]]
    assert kinds[-1] == ("payment", "pending", 9800)
    assert ("release", "pending", -9800) in kinds and ("release", "available", 9800) in kinds
    assert merchant.get("/v1/balance/transactions?limit=0").status_code == 400
    assert merchant.get("/v1/balance/transactions?starting_after=btx_%21%21").status_code == 400
    assert merchant.get("/v1/balance/transactions?currency=CNY").status_code == 400


def test_balance_needs_a_key(client):
    assert client.http.get("/v1/balance").status_code == 401


# ---- refunds draw on available first, then pending (services/refunds.py) --------------------
def test_refund_draws_available_first_then_pending(merchant, client):
    a = pay(merchant, client, ref="a")
    invoke(client, "release_funds", {"date": "2026-11-23"})
    b = pay(merchant, client, ref="b")
    assert balance(merchant) == (9800, 9800, 0)
    r = merchant.post(f"/v1/payments/{b['id']}/refunds", {"amount": 6000})     # net 5880
    assert r.status_code == 201, r.body
    assert balance(merchant) == (9800, 3920, 0)
    r = merchant.post(f"/v1/payments/{a['id']}/refunds", {"amount": 6000})     # 3920 available + 1960 pending
    assert r.status_code == 201, r.body
    assert balance(merchant) == (7840, 0, 0)
    legs = {acc.rsplit(":", 1)[1]: n for acc, n, _ in PostingModel.get(f"refund:{r.json_body['id']}").legs
            if acc.startswith("M:")}
    assert legs == {"available": 3920, "pending": 1960}


def test_refund_the_balance_cannot_cover_is_refused(merchant, client):
    p = pay(merchant, client)
    invoke(client, "release_funds", {"date": "2026-11-23"})
    invoke(client, "auto_withdraw", {"date": "2026-11-23"})
    assert balance(merchant) == (0, 0, 9800)
    r = merchant.post(f"/v1/payments/{p['id']}/refunds", {"amount": 1000})
    assert r.status_code == 422 and r.json_body["error"]["code"] == "insufficient_balance"
    assert "cannot cover" in r.json_body["error"]["message"]
    assert balance(merchant) == (0, 0, 9800)
    assert PaymentModel.get(p["id"]).refunded == 0


def test_merchant_allowed_negative_may_refund_beyond_its_balance(client):
    clock.freeze(THURSDAY)
    m = new_merchant(client, bank_account=ACCOUNT, allow_negative_balance=True)
    p = pay(m, client)
    invoke(client, "release_funds", {"date": "2026-11-23"})
    invoke(client, "auto_withdraw", {"date": "2026-11-23"})
    r = m.post(f"/v1/payments/{p['id']}/refunds", {"amount": 5000})
    assert r.status_code == 201, r.body
    assert balance(m) == (-4900, 0, 9800)
    assert_books_balance()


# ---- property: random flows through app.py keep the books straight ---------------------------
from hypothesis import HealthCheck, event, given  # noqa: E402
from hypothesis import settings as hsettings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from chalicelib.domain import calendar_nz  # noqa: E402
from chalicelib.store.models import BalanceModel  # noqa: E402

_EXAMPLE = iter(range(10_000))
FLOW = st.lists(st.one_of(
    st.tuples(st.just("pay"), st.integers(1, 50_000)),
    st.tuples(st.just("refund"), st.integers(0, 9), st.integers(1, 50_000)),
    st.tuples(st.just("release"), st.integers(2, 6)),
    st.tuples(st.just("withdraw")),
    st.tuples(st.just("settle"), st.booleans()),
), min_size=2, max_size=10)


@hsettings(max_examples=15, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=FLOW, allow_negative=st.booleans())
def test_random_flows_through_the_api_keep_the_books_straight(client, sequence, allow_negative):
    # Each example gets its own stretch of calendar, so its batches (one per NZ date) are its own.
    clock.freeze(datetime(2030, 1, 7, 22, 0, tzinfo=timezone.utc) + timedelta(days=40 * next(_EXAMPLE)))
    m = new_merchant(client, bank_account=ACCOUNT, holding_days=1, min_payout=100,
                     allow_negative_balance=allow_negative)
    mid = m.merchant.id
    paid, withdrawn = [], []
    for n, op in enumerate([("pay", 10_000), *sequence]):
        clock.advance(timedelta(minutes=1))
        if op[0] == "pay":
            paid.append(pay(m, client, op[1], ref=f"p{n}")["id"])
        elif op[0] == "refund" and paid:
            r = m.post(f"/v1/payments/{paid[op[1] % len(paid)]}/refunds", {"amount": op[2]})
            assert r.status_code in (201, 400, 422), r.body
            if r.status_code == 422:
                assert not allow_negative and r.json_body["error"]["code"] == "insufficient_balance"
        elif op[0] == "release":
            clock.advance(timedelta(days=op[1]))
            out = invoke(client, "release_funds", {"merchant_id": mid})
            assert out["errors"] == 0
            if out["released"]:
                event("released")
        elif op[0] == "withdraw":
            clock.advance(timedelta(days=1))
            day = calendar_nz.local_date(clock.now()).isoformat()
            out = invoke(client, "auto_withdraw", {"date": day, "merchant_id": mid})
            assert out["errors"] == 0
            if out["withdrawn"]:
                event("withdrew")
                withdrawn.append(m.get("/v1/withdrawals").json_body["data"][0]["id"])
        elif op[0] == "settle" and withdrawn:
            w = WithdrawalModel.get(withdrawn.pop(0))
            event("settled paid" if op[1] else "settled failed")
            if op[1]:
                invoke(client, "withdrawal_batch_paid", {"batch_id": w.batch_id})
            else:
                invoke(client, "withdrawal_failed", {"withdrawal_id": w.withdrawal_id, "reason": "returned"})

    for posting in PostingModel.scan(PostingModel.merchant_id == mid):
        totals = {}
        for _, amount, ccy in posting.legs:
            totals[ccy] = totals.get(ccy, 0) + int(amount)
        assert not any(totals.values()), posting.posting_id
    for bucket in ("pending", "available", "reserved"):
        account = f"M:{mid}:NZD:{bucket}"
        held = int(BalanceModel.get(account).balance) if BalanceModel.count(account) else 0
        assert held == -entries_total(account), bucket
        if bucket == "reserved" or not allow_negative:
            assert held >= 0, (bucket, held)


# ---- review regressions: batches, hand runs, schedule, stranded days, id clashes --------------
TUI = dict(name="Tui Cafe", sub_mch_id="20000101", bank_account="08-6523-1954512-001")


def two_released_merchants(client):
    """Two merchants, 9800 available each on Thu 19 Nov 2026."""
    clock.freeze(THURSDAY)
    a = new_merchant(client, bank_account=ACCOUNT, holding_days=0, min_payout=2000)
    b = new_merchant(client, **TUI, holding_days=0, min_payout=2000)
    pay(a, client, ref="a-1")
    pay(b, client, ref="b-1")
    invoke(client, "release_funds", {"date": "2026-11-19"})
    assert balance(a) == balance(b) == (0, 9800, 0)
    return a, b


def batch_file(key):
    return boto3.client("s3", region_name="ap-southeast-2").get_object(
        Bucket=settings.get().bucket, Key=key)["Body"].read().decode()


def credit_lines(key):
    return [r for r in csv.reader(io.StringIO(batch_file(key))) if r and r[0] == "2"]


def test_bank_file_and_batch_paid_do_not_depend_on_the_lagging_batch_index(client, monkeypatch):
    from chalicelib.store.models import WithdrawalBatchModel
    from chalicelib.store.withdrawals import from_item, to_item

    a, b = two_released_merchants(client)
    # The by_batch index lags: right after the writes it shows only the first withdrawal.
    real_query = WithdrawalModel.by_batch.query
    monkeypatch.setattr(WithdrawalModel.by_batch, "query",
                        lambda *args, **kw: sorted(real_query(*args, **kw), key=lambda m: m.created_at)[:1])
    out = invoke(client, "auto_withdraw", {"date": "2026-11-19"})
    assert out["withdrawn"] == 2 and out["withdrawn_amount"] == 19600
    assert len(credit_lines(out["file"])) == 2                     # both reservations are in the file
    record = WithdrawalBatchModel.get(out["batch_id"])
    ids = sorted(w["id"] for m in (a, b) for w in m.get("/v1/withdrawals").json_body["data"])
    assert record.status == "filed" and sorted(record.members) == ids
    assert int(record.count) == 2 and int(record.total) == 19600
    monkeypatch.undo()
    # A withdrawal that names the batch but is not in its file (what a late index row would show).
    stray_item = to_item(from_item(WithdrawalModel.get(ids[0])))
    stray_item.withdrawal_id = "wd_stray00000"
    stray_item.save()
    paid = invoke(client, "withdrawal_batch_paid", {"batch_id": out["batch_id"]})
    assert paid["paid"] == 2 and paid["paid_amount"] == 19600      # exactly the file
    assert WithdrawalModel.get("wd_stray00000").status == "filed"
    assert balance(a) == balance(b) == (0, 0, 0)
    assert_books_balance()


def test_batch_paid_refuses_when_the_record_does_not_match_its_members(client):
    from chalicelib.store.models import WithdrawalBatchModel

    a, b = two_released_merchants(client)
    out = invoke(client, "auto_withdraw", {"date": "2026-11-19"})
    WithdrawalBatchModel(out["batch_id"]).update(actions=[WithdrawalBatchModel.total.set(9800)])
    refused = invoke(client, "withdrawal_batch_paid", {"batch_id": out["batch_id"]})
    assert "do not match" in refused["error"] and refused["paid"] == 0
    assert balance(a) == balance(b) == (0, 0, 9800)                # nothing moved
    assert WithdrawalBatchModel.get(out["batch_id"]).status == "filed"


def test_a_hand_run_for_one_merchant_files_its_own_batch_and_the_day_still_pays_everyone(client):
    a, b = two_released_merchants(client)
    one = invoke(client, "auto_withdraw", {"date": "2026-11-19", "merchant_id": a.merchant.id})
    assert one["withdrawn"] == 1 and one["batch_id"] == f"wdb_20261119_nzd_{a.merchant.id}"
    assert [r[1] for r in credit_lines(one["file"])] == ["0109020068389000"]
    daily = invoke(client, "auto_withdraw", {"date": "2026-11-19"})
    assert "skipped" not in daily and daily["batch_id"] == "wdb_20261119_nzd"
    assert daily["withdrawn"] == 1 and daily["already_withdrawn"] == 1 and daily["withdrawn_amount"] == 9800
    assert [r[1] for r in credit_lines(daily["file"])] == ["0865231954512001"]
    assert balance(a) == balance(b) == (0, 0, 9800)
    assert invoke(client, "withdrawal_batch_paid", {"batch_id": daily["batch_id"]})["paid_amount"] == 9800
    assert balance(a) == (0, 0, 9800) and balance(b) == (0, 0, 0)
    assert invoke(client, "auto_withdraw", {"date": "2026-11-19", "merchant_id": "nope"})["error"]
    assert_books_balance()


def _fires_utc_hours() -> set[int]:
    import app as app_module

    [rule] = [e for e in app_module.app.event_sources if getattr(e, "name", None) == "auto_withdraw"]
    hours = rule.schedule_expression.to_string()[len("cron("):-1].split()[1]
    return set(range(24)) if hours == "*" else {int(h) for h in hours.split(",")}


@pytest.mark.parametrize("hour", [9, 12, 16, 17, 18])
@pytest.mark.parametrize("nz_day", [date(2026, 7, 15), date(2026, 11, 23), date(2027, 4, 4), date(2026, 9, 27)],
                         ids=["NZST", "NZDT", "DST-ends", "DST-starts"])
def test_the_schedule_acts_once_at_the_configured_auckland_hour_all_year(monkeypatch, hour, nz_day):
    monkeypatch.setenv("KAURI_WITHDRAWAL_LOCAL_HOUR", str(hour))
    settings.reset()
    try:
        acted = []
        start = datetime.combine(nz_day, datetime.min.time(), timezone.utc) - timedelta(hours=14)
        for k in range(48):
            t = start + timedelta(hours=k)
            if t.hour not in _fires_utc_hours():
                continue
            ev = {"detail-type": "Scheduled Event", "time": t.strftime("%Y-%m-%dT%H:%M:%SZ")}
            day, why_not = withdrawal_service.job_day(ev, t)
            if day == nz_day:
                acted.append(calendar_nz.local_time(t).hour)
            elif why_not == f"{nz_day.isoformat()} is not an NZ business day":   # DST changes on Sundays
                acted.append(("rolled", calendar_nz.local_time(t).hour))
        business = calendar_nz.is_business_day(nz_day)
        assert acted == [hour if business else ("rolled", hour)]
    finally:
        settings.reset()


def test_bad_payout_settings_reserve_nothing_and_say_why(client, monkeypatch):
    clock.freeze(THURSDAY)
    a = new_merchant(client, bank_account=ACCOUNT, holding_days=0, min_payout=2000)
    pay(a, client, ref="a-1")
    invoke(client, "release_funds", {"date": "2026-11-19"})
    monkeypatch.setenv("KAURI_PAYOUT_SOURCE_ACCOUNT", "")
    settings.reset()
    try:
        out = withdrawal_service.auto_withdraw(date(2026, 11, 19))
        assert "KAURI_PAYOUT_SOURCE_ACCOUNT" in out["error"] and out["withdrawn"] == 0
        assert balance(a) == (0, 9800, 0)                          # nothing reserved
        assert len(list(WithdrawalModel.scan())) == 0
    finally:
        monkeypatch.delenv("KAURI_PAYOUT_SOURCE_ACCOUNT")
        settings.reset()
    again = invoke(client, "auto_withdraw", {"date": "2026-11-19"})
    assert again["withdrawn"] == 1 and again["file"] and balance(a) == (0, 0, 9800)


def test_a_day_whose_file_failed_is_filed_by_the_next_run_with_an_error_logged(client, monkeypatch, caplog):
    import logging

    import botocore.exceptions

    a, b = two_released_merchants(client)
    real_client = boto3.client

    def s3_down(service, *args, **kw):
        c = real_client(service, *args, **kw)
        if service == "s3":
            def put_object(**_):
                raise botocore.exceptions.EndpointConnectionError(endpoint_url="https://s3.test")
            c.put_object = put_object
        return c
    monkeypatch.setattr(boto3, "client", s3_down)
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        withdrawal_service.auto_withdraw(date(2026, 11, 19))
    monkeypatch.undo()
    assert balance(a) == balance(b) == (0, 0, 9800)                # reserved, in no file yet
    caplog.set_level(logging.INFO)
    clock.advance(timedelta(days=1))
    pay(a, client, ref="a-2")
    invoke(client, "release_funds", {"date": "2026-11-20"})
    nxt = invoke(client, "auto_withdraw", {"date": "2026-11-20"})
    assert nxt["refiled"] == ["wdb_20261119_nzd"]
    assert nxt["open_withdrawal"] == 2 and nxt["file"] is None      # yesterday's withdrawals still with the bank
    unfiled = [r for r in caplog.records if "withdrawal_batch_unfiled" in r.getMessage()]
    assert unfiled and all(r.levelno == logging.ERROR for r in unfiled)
    assert len(credit_lines("withdrawals/2026-11-19/batch-wdb_20261119_nzd.csv")) == 2
    paid = invoke(client, "withdrawal_batch_paid", {"batch_id": "wdb_20261119_nzd"})
    assert paid["paid"] == 2 and paid["paid_amount"] == 19600
    assert invoke(client, "auto_withdraw", {"date": "2026-11-21"})["refiled"] == []
    assert_books_balance()


def test_a_run_that_died_while_filing_is_finished_by_a_rerun_and_nothing_joins_meanwhile(client, monkeypatch):
    import botocore.exceptions

    from chalicelib.store.models import WithdrawalBatchModel

    a, b = two_released_merchants(client)
    real_client = boto3.client

    def s3_down(service, *args, **kw):
        c = real_client(service, *args, **kw)
        if service == "s3":
            def put_object(**_):
                raise botocore.exceptions.EndpointConnectionError(endpoint_url="https://s3.test")
            c.put_object = put_object
        return c
    monkeypatch.setattr(boto3, "client", s3_down)
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        withdrawal_service.auto_withdraw(date(2026, 11, 19))
    monkeypatch.undo()
    assert WithdrawalBatchModel.get("wdb_20261119_nzd").status == "filing"
    assert "not closed" in invoke(client, "withdrawal_batch_paid", {"batch_id": "wdb_20261119_nzd"})["error"]
    late = new_merchant(client, name="Late Shop", sub_mch_id="20000102", bank_account=ACCOUNT, holding_days=0,
                        min_payout=2000)
    pay(late, client, ref="late-1")
    invoke(client, "release_funds", {"date": "2026-11-19"})
    again = invoke(client, "auto_withdraw", {"date": "2026-11-19"})
    assert again["skipped"] == "batch already filed" and again["withdrawn"] == 2
    assert len(credit_lines(again["file"])) == 2
    assert balance(late) == (0, 9800, 0)                            # waits for tomorrow's batch
    assert invoke(client, "withdrawal_batch_paid", {"batch_id": "wdb_20261119_nzd"})["paid_amount"] == 19600
    assert_books_balance()


def test_a_withdrawal_id_clash_does_not_skip_the_second_merchant(client, monkeypatch):
    from chalicelib.domain import withdrawal as funds

    a, b = two_released_merchants(client)
    real = funds.withdrawal_id

    def clashing(merchant_id, day, *attempt):
        # B's first derived id is A's: the ~46-bit id clashes; uniqueness must come from merchant#day.
        if merchant_id == b.merchant.id and not any(attempt):
            return real(a.merchant.id, day)
        return real(merchant_id, day, *attempt)
    monkeypatch.setattr(funds, "withdrawal_id", clashing)
    out = invoke(client, "auto_withdraw", {"date": "2026-11-19"})
    assert out["withdrawn"] == 2 and out["already_withdrawn"] == 0
    assert balance(a) == balance(b) == (0, 0, 9800)
    [wa] = a.get("/v1/withdrawals").json_body["data"]
    [wb] = b.get("/v1/withdrawals").json_body["data"]
    # Whichever merchant ran first kept the clashing id; the other moved on to its next derived id.
    assert wa["id"] != wb["id"] and real(a.merchant.id, date(2026, 11, 19)) in (wa["id"], wb["id"])
    assert len(wa["id"]) == len(wb["id"]) == 12 and sorted(r[5] for r in credit_lines(out["file"])) == sorted(
        i.replace("_", "-") for i in (wa["id"], wb["id"]))
    again = invoke(client, "auto_withdraw", {"date": "2026-11-19", "merchant_id": b.merchant.id})
    assert again["already_withdrawn"] == 1 and again["withdrawn"] == 0
    assert_books_balance()

"""A stateful property test of the money paths (issue 7, last section; issue 12's payout steps).

Hypothesis plays a merchant, shoppers, the channels, the network and ops against the real app (app.py
under moto, the real channel clients and signing, the in-process sandboxes) and after every step checks
that the books hold: postings balance per currency, balances equal their entries, nothing is refunded
beyond what was paid (NZD and CNY), no payment's money is available before its release date, no
withdrawal is in two bank files or paid twice, and nothing is stuck past its limit without an ops record.
"""
from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

import boto3
import moto
from hypothesis import HealthCheck, settings as hsettings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from chalicelib import channels, clock, http, settings
from chalicelib.channels.wechat import sandbox as wechat_sandbox
from chalicelib.domain import calendar_nz
from chalicelib.domain.fx import Rate
from chalicelib.services import balances, chase, fx, merchants
from chalicelib.services import payments as payment_service
from chalicelib.services import withdrawals as withdrawal_service
from chalicelib.store import withdrawals as withdrawal_store
from chalicelib.store.models import (
    BalanceModel, EntryModel, OpsRecordModel, PaymentModel, PostingModel, RefundModel, WithdrawalBatchModel,
    WithdrawalModel,
)
from tests.conftest import BASE, PROJECT_DIR
from tests.integration.test_chase_under_faults import ALIPAY_IDS, ShopperPaysBeforeCancel
from tests.integration.helpers import MerchantApi
from tests.support.transport import ChaliceAdapter, Faulty

START = datetime(2026, 11, 18, 21, 0, tzinfo=timezone.utc)     # Thu 19 Nov 2026, 10:00 NZDT
ACCOUNT = "01-0902-0068389-000"
REFUND_PATHS = {"wechat": "/sandbox/wechat/secapi/pay/refund",
                "payease": "/sandbox/payease/merchant/refund/ref_ack_submit.jsp"}


def _json(client, path, body):
    r = client.http.post(path, headers={"Content-Type": "application/json"}, body=json.dumps(body).encode())
    assert r.status_code == 200, r.body
    return r.json_body


class MoneyMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        from chalice.test import Client

        import app as app_module
        from chalicelib.store import tables

        self.aws = moto.mock_aws()
        self.aws.start()
        tables.create_all()
        tables.create_bucket()
        clock.freeze(START)
        self._client_cm = Client(app_module.app, stage_name="dev", project_dir=PROJECT_DIR)
        self.client = self._client_cm.__enter__()
        self.net = Faulty(ChaliceAdapter(self.client))
        http.mount(BASE, self.net)
        channels.reset()
        self.payments: list[dict] = []
        self._files: dict[str, tuple[str, str]] = {}

    def teardown(self):
        http.unmount_all()
        channels.reset()
        self._client_cm.__exit__(None, None, None)
        self.aws.stop()
        clock.reset()

    @initialize()
    def merchant(self):
        m = merchants.create_merchant("Kiwi Honey & Language Ltd", "NZD", fee_bps=200, bank_account=ACCOUNT,
                                      holding_days=2, min_payout=100, fx_markup_bps=150,
                                      channels={"wechat": {"sub_mch_id": "20000100"}, "payease": {},
                                                "alipay": ALIPAY_IDS})
        self.m = MerchantApi(self.client, merchants.issue_key(m.id, livemode=True), m)

    # ---- the shopper pays --------------------------------------------------------------------
    @rule(amount=st.integers(100, 30000))
    def wechat_payment(self, amount):
        p = self.m.create_payment(amount=amount, merchant_reference=f"o-{len(self.payments)}").json_body
        _json(self.client, "/sandbox/wechat/simulate/pay", {"out_trade_no": p["channel_order_id"]})
        self.payments.append(p)

    @rule(amount=st.integers(1000, 300000))
    def tuition_payment_with_quote(self, amount):
        now = clock.now()
        fx.record(Rate("wechat", "NZD", Decimal("4.30"), now, now))
        r = self.m.post("/v1/payments", {"amount": amount, "currency": "NZD", "channel": "payease", "flow": "bank",
                                         "merchant_reference": f"inv-{len(self.payments)}", "description": "Tuition",
                                         "return_url": "https://school.example.nz/paid"})
        assert r.status_code == 201, r.body
        p = r.json_body
        action = p["next_action"]["channel_action"]
        form = self.client.http.post(urlsplit(action["url"]).path,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"},
                                     body=urlencode(action["fields"]).encode())
        assert form.status_code == 200
        _json(self.client, "/sandbox/payease/simulate/pay", {"out_trade_no": action["fields"]["v_oid"]})
        self.payments.append(p)

    @rule(trouble=st.sampled_from(["none", "crash_before_the_reversal", "cancel_answer_lost"]))
    def alipay_in_store_payment_closed_as_the_shopper_pays(self, trouble):
        """The merchant closes an in-store order just as the shopper pays: Alipay's cancel refunds the
        trade (issue 13), booked paid then refunded, even when the first run dies between the two or the
        cancel's answer is lost."""
        from tests.integration.test_review_money_seams import CancelAnswerLost

        crash_before_the_reversal = trouble == "crash_before_the_reversal"
        r = self.m.post("/v1/payments", {"amount": 4400, "currency": "NZD", "channel": "alipay", "flow": "qr",
                                         "merchant_reference": f"q-{len(self.payments)}", "description": "Coffee"})
        assert r.status_code == 201, r.body
        p = r.json_body
        race = CancelAnswerLost if trouble == "cancel_answer_lost" else ShopperPaysBeforeCancel
        http.mount(BASE + "/sandbox/alipay", race(self.client, p["channel_order_id"]))
        real = payment_service._book_channel_refund
        if crash_before_the_reversal:
            def dies(*args, **kwargs):
                raise RuntimeError("lambda timed out")
            payment_service._book_channel_refund = dies
        try:
            first = self.m.post(f"/v1/payments/{p['id']}/close")
        finally:
            payment_service._book_channel_refund = real
            http.mount(BASE + "/sandbox/alipay", self.net)
        if crash_before_the_reversal:
            assert first.status_code == 500
            first = self.m.post(f"/v1/payments/{p['id']}/close")   # the merchant tries again
        assert first.status_code == 409 and first.json_body["error"]["code"] == "payment_refunded", first.body
        self.payments.append(p)

    @rule()
    def wechat_paid_just_after_the_merchant_closed(self):
        """The shopper pays while our edge is down; the merchant's close wins locally; WeChat's resent
        notification is applied and refunded in full (issue 7: money for an ended payment)."""
        p = self.m.create_payment(amount=5000, merchant_reference=f"c-{len(self.payments)}").json_body
        self.net.faults["/callbacks/wechat"] = "reset"
        try:
            _json(self.client, "/sandbox/wechat/simulate/pay", {"out_trade_no": p["channel_order_id"]})
        finally:
            self.net.faults.clear()
        payment_service.mark_closed(payment_service.store.get(p["id"]), reason="merchant")
        wechat_sandbox.pump(clock.now() + timedelta(minutes=1))
        self.payments.append(p)

    @rule()
    def tuition_paid_after_its_quote_lapsed(self):
        """The payer opens the bank form and pays 26 minutes later: not credited at the lapsed rate, booked
        to suspense and returned (issue 7: locked quotes)."""
        now = clock.now()
        fx.record(Rate("wechat", "NZD", Decimal("4.30"), now, now))
        r = self.m.post("/v1/payments", {"amount": 52000, "currency": "NZD", "channel": "payease", "flow": "bank",
                                         "merchant_reference": f"late-{len(self.payments)}", "description": "Tuition",
                                         "return_url": "https://school.example.nz/paid"})
        assert r.status_code == 201, r.body
        action = r.json_body["next_action"]["channel_action"]
        form = self.client.http.post(urlsplit(action["url"]).path,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"},
                                     body=urlencode(action["fields"]).encode())
        assert form.status_code == 200
        clock.advance(timedelta(minutes=26))
        _json(self.client, "/sandbox/payease/simulate/pay", {"out_trade_no": action["fields"]["v_oid"]})
        self.payments.append(r.json_body)

    # ---- the merchant refunds; the channel or the network misbehaves --------------------------
    @rule(pick=st.integers(0, 10 ** 6), share=st.integers(1, 100),
          trouble=st.sampled_from(["none", "none", "refuse", "timeout", "garble", "404", "reset"]))
    def partial_refund(self, pick, share, trouble):
        if not self.payments:
            return
        p = self.payments[pick % len(self.payments)]
        item = PaymentModel.get(p["id"], consistent_read=True)
        left = int(item.amount) - int(item.refunded or 0)
        if item.status != "succeeded" or left <= 0:
            return
        amount = max(1, left * share // 100)
        refuse = trouble == "refuse" and p["channel"] == "wechat"
        if refuse:
            _json(self.client, "/sandbox/wechat/simulate/refuse_refunds",
                  {"out_trade_no": p["channel_order_id"], "refuse": True})
        elif trouble not in ("none", "refuse"):
            self.net.faults[REFUND_PATHS[p["channel"]]] = trouble
        try:
            r = self.m.post(f"/v1/payments/{p['id']}/refunds", {"amount": amount})
        finally:
            self.net.faults.clear()
            if refuse:
                _json(self.client, "/sandbox/wechat/simulate/refuse_refunds",
                      {"out_trade_no": p["channel_order_id"], "refuse": False})
        assert r.status_code in (201, 400, 422), r.body   # never a 500
        if r.status_code == 201 and refuse:
            assert r.json_body["status"] == "failed"

    # ---- time passes and the schedules run ----------------------------------------------------
    @rule(hours=st.sampled_from([0, 1, 7, 20, 30, 70]))
    def time_passes_and_jobs_run(self, hours):
        """Time passes (weekends and holidays too): the chase and release run, and today's 17:00
        auto_withdraw firing, which acts on business days only."""
        clock.advance(timedelta(hours=hours, minutes=5))
        wechat_sandbox.pump()         # WeChat's resends and its refund-result notifications
        chase.chase_payments()
        balances.release_funds()
        day = calendar_nz.local_date(clock.now())
        fired = datetime.combine(day, time(17), tzinfo=calendar_nz._zone()).astimezone(timezone.utc)
        out = withdrawal_service.auto_withdraw_job({"detail-type": "Scheduled Event",
                                                    "time": fired.strftime("%Y-%m-%dT%H:%M:%SZ")})
        assert calendar_nz.is_business_day(day) or out.get("skipped", "").endswith("not an NZ business day")

    @rule(crash_while_filing=st.booleans())
    def next_business_day_sweep(self, crash_while_filing):
        """The clock moves to 17:00 Auckland on the next business day: the 16:30 release and the 17:00
        auto_withdraw run (the latter dies after writing its file when `crash_while_filing`)."""
        day = calendar_nz.local_date(clock.now()) + timedelta(days=1)
        day = calendar_nz.business_day_on_or_after(day)
        fired = datetime.combine(day, time(17), tzinfo=calendar_nz._zone()).astimezone(timezone.utc)
        clock.freeze(fired)
        chase.chase_payments()
        balances.release_funds()
        event = {"detail-type": "Scheduled Event", "time": fired.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if not crash_while_filing:
            withdrawal_service.auto_withdraw_job(event)
            return
        real = withdrawal_store.file_batch

        def dies_after_writing_the_file(*args, **kwargs):
            raise RuntimeError("lambda timed out")
        withdrawal_store.file_batch = dies_after_writing_the_file
        try:
            withdrawal_service.auto_withdraw_job(event)
        except RuntimeError:
            pass
        finally:
            withdrawal_store.file_batch = real

    @rule()
    def bank_pays_filed_batches(self):
        for b in WithdrawalBatchModel.scan():
            if b.status == "filed":
                withdrawal_service.batch_paid(b.batch_id)

    @rule(pick=st.integers(0, 10 ** 6))
    def ops_fail_a_withdrawal_or_book_a_bank_return(self, pick):
        ws = sorted(WithdrawalModel.scan(), key=lambda w: w.withdrawal_id)
        if ws:
            withdrawal_service.failed(ws[pick % len(ws)].withdrawal_id, "bank returned it")

    # ---- the books hold after every step ------------------------------------------------------
    def _snapshot(self) -> dict:
        """One read of every table the checks need (scans: moto is the slow part of this test)."""
        s3 = boto3.client("s3", region_name=settings.get().region)
        files = {}
        for obj in s3.list_objects_v2(Bucket=settings.get().bucket, Prefix="withdrawals/").get("Contents", []):
            etag, body = self._files.get(obj["Key"], (None, None))
            if etag != obj["ETag"]:      # a re-filed batch writes its key again
                body = s3.get_object(Bucket=settings.get().bucket, Key=obj["Key"])["Body"].read().decode()
                self._files[obj["Key"]] = (obj["ETag"], body)
            files[obj["Key"]] = body
        entries = defaultdict(int)
        for e in EntryModel.scan():
            entries[e.account] += int(e.amount)
        return {"postings": list(PostingModel.scan()), "balances": list(BalanceModel.scan()), "entries": entries,
                "payments": list(PaymentModel.scan()), "refunds": list(RefundModel.scan()),
                "withdrawals": list(WithdrawalModel.scan()), "batches": {b.batch_id: b for b in WithdrawalBatchModel.scan()},
                "ops": list(OpsRecordModel.scan()), "files": files}

    @invariant()
    def the_books_hold(self):
        if not hasattr(self, "m"):
            return
        snap = self._snapshot()
        self.postings_balance_per_currency(snap)
        self.balances_equal_their_entries(snap)
        self.nothing_refunded_beyond_what_was_paid(snap)
        self.no_money_available_before_its_release_date(snap)
        self.no_withdrawal_in_two_bank_files_or_paid_twice(snap)
        self.nothing_stuck_past_its_limit_without_an_ops_record(snap)
        self.money_for_ended_payments_goes_back(snap)

    @staticmethod
    def money_for_ended_payments_goes_back(snap):
        """A close Alipay reversed is booked; money paid after the merchant closed is refunded (or a person
        is on it); money paid at a lapsed quote sits in suspense only until it is returned."""
        ops = {o.record_id: o for o in snap["ops"]}
        for o in ops.values():
            if o.kind == "close_reversal":
                assert o.status == "booked", f"{o.record_id} not booked"
        live = defaultdict(int)
        for r in snap["refunds"]:
            if r.status != "failed":
                live[r.payment_id] += int(r.amount)
        for p in snap["payments"]:
            if p.status == "succeeded" and p.closed_by == "merchant":
                assert live[p.payment_id] == int(p.amount) or f"late_refund:{p.payment_id}" in ops, \
                    f"{p.payment_id} paid after the merchant closed it, kept by the merchant"
        held = sum(int(o.detail["amount"]) for o in ops.values()
                   if o.kind == "unapplied_receipt" and o.status != "returned")
        suspense = sum(int(amount) for posting in snap["postings"] for account, amount, _ in posting.legs
                       if account.startswith("S:suspense:"))
        assert -suspense == held, "suspense holds other money than the unreturned receipts"

    @staticmethod
    def postings_balance_per_currency(snap):
        for posting in snap["postings"]:
            per = defaultdict(int)
            for _, amount, currency in posting.legs:
                per[currency] += int(amount)
            assert not any(per.values()), f"posting {posting.posting_id} does not balance"

    @staticmethod
    def balances_equal_their_entries(snap):
        for b in snap["balances"]:
            assert int(b.balance or 0) == -snap["entries"][b.account], f"{b.account} differs from its entries"
            assert int(b.balance or 0) >= 0, f"{b.account} is negative"

    @staticmethod
    def nothing_refunded_beyond_what_was_paid(snap):
        live = defaultdict(list)
        for r in snap["refunds"]:
            if r.status != "failed":
                live[r.payment_id].append(r)
        for p in snap["payments"]:
            rs = live.get(p.payment_id, [])
            assert sum(int(r.amount) for r in rs) == int(p.refunded or 0) <= int(p.amount), p.payment_id
            assert int(p.fee_returned or 0) <= int(p.fee), f"{p.payment_id} returned more fee than it charged"
            if p.channel_amount is not None and p.channel_currency != p.currency:
                asked = sum(int(r.channel_amount) for r in rs)
                assert asked == int(p.channel_returned or 0) <= int(p.channel_amount), \
                    f"{p.payment_id} asks the channel for more {p.channel_currency} than it received"

    def no_money_available_before_its_release_date(self, snap):
        today = calendar_nz.local_date(clock.now())
        live = [r for r in snap["refunds"] if r.status != "failed"]
        not_due = 0
        for p in snap["payments"]:
            if p.status != "succeeded":
                continue
            due = balances.release_date(p.paid_at, 2) <= today
            assert due or not p.released, f"{p.payment_id} released before its date"
            if not due:
                own = sum(int(r.draw.get("pending", 0)) - int(r.borrowed or 0) for r in live
                          if r.payment_id == p.payment_id)
                not_due += int(p.amount) - int(p.fee) - own
        borrowed = sum(int(r.borrowed or 0) for r in live)
        account = f"M:{self.m.merchant.id}:NZD:pending"
        pending = sum(int(b.balance or 0) for b in snap["balances"] if b.account == account)
        # Pending holds every not-yet-due payment's money, except what refunds borrowed from it.
        assert pending + borrowed >= not_due, "money became available before its release date"

    @staticmethod
    def no_withdrawal_in_two_bank_files_or_paid_twice(snap):
        seen: dict[str, str] = {}
        for key, body in snap["files"].items():
            rows = list(csv.reader(io.StringIO(body)))
            due = datetime.strptime(rows[0][6], "%Y%m%d").date()
            assert calendar_nz.is_business_day(due), f"{key} is due on {due}, not an NZ business day"
            refs = [row[5] for row in rows if row and row[0] == "2"]
            for ref in refs:
                assert seen.setdefault(ref, key) == key, f"{ref} in two bank files"
            batch = snap["batches"][key.rsplit("batch-", 1)[1][:-len(".csv")]]
            if batch.status in ("filed", "paid"):   # the file pays exactly the members the batch lists
                assert sorted(refs) == sorted(w.replace("_", "-") for w in batch.members or []), \
                    f"{key} pays other withdrawals than its batch lists"
        paid = defaultdict(int)
        for p in snap["postings"]:
            if p.kind == "withdrawal_paid":
                paid[p.ref] += 1
        for w in snap["withdrawals"]:
            assert paid[w.withdrawal_id] == (1 if w.status == "paid" else 0), f"{w.withdrawal_id} paid twice"

    @staticmethod
    def nothing_stuck_past_its_limit_without_an_ops_record(snap):
        now = clock.now()
        flagged = {o.ref for o in snap["ops"]}
        for r in snap["refunds"]:
            if r.status == "processing" and now - r.created_at > chase.REFUND_STUCK_AFTER + timedelta(minutes=10):
                assert r.refund_id in flagged, f"refund {r.refund_id} stuck without an ops record"
        alert = timedelta(days=settings.get().release_alert_days, hours=1)
        for p in snap["payments"]:
            if p.status == "succeeded" and not p.released and now - p.paid_at > alert:
                assert p.payment_id in flagged, f"payment {p.payment_id} unreleased without an ops record"


MoneyMachine.TestCase.settings = hsettings(max_examples=10, stateful_step_count=25, deadline=None,
                                           suppress_health_check=list(HealthCheck))
test_money_state_machine = MoneyMachine.TestCase

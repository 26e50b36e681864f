"""`make job` (infra/job.py): hand runs reach the job as typed, against the running stack's app."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib import clock, http
from infra import job
from tests.integration.helpers import new_merchant, shopper_pays
from tests.support.jobs import scheduled
from tests.support.transport import ChaliceAdapter, FakeReceiver

BASE = "http://kauri.test"


@pytest.fixture(autouse=True)
def _period_aligned_clock(aws):
    clock.freeze(datetime(2026, 11, 25, 2, 0, 5, tzinfo=timezone.utc))


@pytest.fixture
def stack(client, monkeypatch):
    """`make job` pointed at this test's app instead of a `make run` stack (the moto here is in-process)."""
    monkeypatch.setattr(job, "load_stack", lambda: {"api_url": BASE, "aws_endpoint_url": "http://moto.test"})
    monkeypatch.setattr(job, "apply_environment", lambda values: None)
    return client


def make_job(capsys, name: str, event: str) -> tuple[int, object]:
    code = job.main([name, event])
    out = capsys.readouterr().out
    return code, (json.loads(out) if code == 0 else out)


def test_make_job_dry_run_of_chase_payments_changes_nothing_and_leaves_the_period_unclaimed(stack, capsys):
    merchant = new_merchant(stack)
    payment = merchant.create_payment().json_body
    dead = FakeReceiver()
    dead.down = True
    http.mount(BASE + "/callbacks", dead)       # the shopper pays; the callback never arrives
    shopper_pays(stack, payment)
    http.mount(BASE + "/callbacks", ChaliceAdapter(stack))
    clock.advance(timedelta(minutes=3))

    code, summary = make_job(capsys, "chase_payments", '{"dry_run": true}')
    assert code == 0
    assert summary["outcome"] == "ok" and summary["dry_run"] is True
    assert summary["succeeded"] == 1                         # what it would do...
    assert merchant.get(f"/v1/payments/{payment['id']}").json_body["status"] == "pending"   # ...not done

    real = scheduled(stack, "chase_payments")               # the period was not claimed by the dry run
    assert real["outcome"] == "ok" and real["succeeded"] == 1
    assert merchant.get(f"/v1/payments/{payment['id']}").json_body["status"] == "succeeded"


def test_make_job_hand_date_reaches_auto_withdraw_at_any_hour(stack, capsys):
    code, summary = make_job(capsys, "auto_withdraw", '{"date": "2026-11-25", "dry_run": true}')
    assert code == 0
    assert "skipped" not in summary, summary   # an envelope would make it wait for 17:00 Auckland


def test_make_job_unknown_name_lists_the_functions(stack, capsys):
    assert job.main(["chase_payment", "{}"]) == 2
    err = capsys.readouterr().err
    assert "unknown function 'chase_payment'" in err and "chase_payments" in err and "withdrawal_failed" in err


def test_make_job_rejects_an_event_that_is_not_json(capsys):
    assert job.main(["chase_payments", "{dry_run: true}"]) == 2
    assert "event is not valid JSON" in capsys.readouterr().err


def test_make_job_without_a_running_stack_says_to_start_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KAURI_LOCAL_DIR", str(tmp_path))
    assert job.main(["chase_payments", "{}"]) == 2
    assert "make run" in capsys.readouterr().err


def test_make_job_bad_params_are_reported_by_the_job(stack, capsys):
    code, summary = make_job(capsys, "chase_payments", '{"dry_run": "yes"}')
    assert code == 0 and summary["outcome"] == "bad_params"

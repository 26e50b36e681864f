"""`make run` end to end: the local stack in a subprocess, driven over real HTTP like a merchant would."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

PROJECT_DIR = Path(__file__).resolve().parents[2]
START_TIMEOUT = 25.0
PAY_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env(local_dir: Path) -> dict[str, str]:
    # The stack must not inherit the test run's settings (conftest sets KAURI_* for in-process tests).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAURI_", "AWS_"))}
    env.update({
        "KAURI_LOCAL_DIR": str(local_dir),
        "KAURI_API_PORT": str(_free_port()),
        "KAURI_MOTO_PORT": str(_free_port()),
        "KAURI_PUMP_INTERVAL": "0.2",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture
def stack(tmp_path):
    log_path = tmp_path / "stack.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "infra.local"], cwd=PROJECT_DIR, env=_clean_env(tmp_path),
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        facts_path = tmp_path / "stack.json"
        deadline = time.monotonic() + START_TIMEOUT
        while not facts_path.exists():
            if proc.poll() is not None:
                pytest.fail(f"local stack exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"local stack did not start in {START_TIMEOUT}s:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.1)
        facts = json.loads(facts_path.read_text())
        facts["log"] = log_path
        facts["proc"] = proc
        yield facts
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def test_merchant_creates_a_payment_shopper_pays_in_sandbox_and_it_succeeds(stack, tmp_path):
    api, key = stack["api_url"], stack["api_key"]
    assert key and key.startswith("sk_test_"), "the stack seeds a demo merchant with a test key"
    auth = {"Authorization": f"Bearer {key}"}
    http = requests.Session()
    http.trust_env = False  # no proxies between us and 127.0.0.1

    created = http.post(f"{api}/v1/payments", timeout=10,
                        headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                        json={"amount": 1250, "currency": "NZD", "channel": "wechat", "flow": "native",
                              "merchant_reference": "e2e-order-1", "description": "Honey"})
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "pending"
    assert payment["next_action"]

    paid = http.post(f"{api}/sandbox/wechat/simulate/pay", timeout=10,
                     json={"out_trade_no": payment["channel_order_id"]})
    assert paid.status_code == 200, paid.text

    deadline = time.monotonic() + PAY_TIMEOUT
    status = None
    while time.monotonic() < deadline:
        got = http.get(f"{api}/v1/payments/{payment['id']}", headers=auth, timeout=10)
        assert got.status_code == 200, got.text
        status = got.json()["status"]
        if status == "succeeded":
            break
        time.sleep(0.2)
    assert status == "succeeded", stack["log"].read_text()[-4000:]

    # Ctrl-C / SIGTERM: everything stops, the exit is clean and no stale stack.json is left behind.
    proc = stack["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0, stack["log"].read_text()[-4000:]
    assert not (tmp_path / "stack.json").exists()


def test_local_scheduler_reads_rates_and_eventbridge_crons():
    from datetime import datetime, timezone

    from infra.local import cron_matches, parse_schedule

    assert parse_schedule("retry_webhooks", "rate(1 minute)").every_seconds == 60
    assert parse_schedule("fx_pull", "rate(6 hours)").every_seconds == 6 * 3600
    tue_0230 = datetime(2026, 11, 24, 2, 30, tzinfo=timezone.utc)  # a Tuesday
    assert cron_matches("30 2 * * ? *".split(), tue_0230)
    assert cron_matches("*/15 2 ? * TUE *".split(), tue_0230)
    assert cron_matches("0,30 1-3 ? * 3 *".split(), tue_0230)  # EventBridge: 1 = Sunday, so 3 = Tuesday
    assert not cron_matches("30 2 ? * MON-FRI/2 *".split(), tue_0230)  # MON, WED, FRI
    assert not cron_matches("0 2 * * ? *".split(), tue_0230)

    daily = parse_schedule("release_funds", "cron(0 14 * * ? *)")
    assert daily.due(tue_0230) is False
    assert daily.next_at == datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc)


def _job(stack, name: str, event: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAURI_", "AWS_"))}
    env["KAURI_LOCAL_DIR"] = str(Path(stack["log"]).parent)
    out = subprocess.run([sys.executable, "-m", "infra.job", name, json.dumps(event)], cwd=PROJECT_DIR, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def _until(fetch, ok, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    value = fetch()
    while not ok(value) and time.monotonic() < deadline:
        time.sleep(0.3)
        value = fetch()
    return value


def test_reconciliation_on_the_local_stack_finds_the_unnotified_payment_and_resolve_applies_it(stack):
    import boto3
    from datetime import datetime, timedelta, timezone

    api, key = stack["api_url"], stack["api_key"]
    auth = {"Authorization": f"Bearer {key}"}
    http = requests.Session()
    http.trust_env = False
    made = []
    for ref, notify in (("e2e-recon-1", True), ("e2e-recon-lost", False)):
        r = http.post(f"{api}/v1/payments", timeout=10, headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                      json={"amount": 2000, "currency": "NZD", "channel": "wechat", "flow": "native",
                            "merchant_reference": ref, "description": "Honey"})
        assert r.status_code == 201, r.text
        made.append(r.json())
        paid = http.post(f"{api}/sandbox/wechat/simulate/pay", timeout=10,
                         json={"out_trade_no": r.json()["channel_order_id"], "notify": notify})
        assert paid.status_code == 200, paid.text
    ok, lost = made
    assert _until(lambda: http.get(f"{api}/v1/payments/{ok['id']}", headers=auth, timeout=10).json()["status"],
                  lambda s: s == "succeeded") == "succeeded"
    bill_date = (datetime.now(timezone.utc) + timedelta(hours=8)).date().isoformat()

    got = _job(stack, "download_statements", {"channel": "wechat", "bill_date": bill_date})
    assert got["results"][f"wechat/{bill_date}"][0]["status"] == "done", got
    report = _until(lambda: _job(stack, "reconciliation_report", {"channel": "wechat", "bill_date": bill_date}),
                    lambda r: r["status"] == "done")
    assert report["status"] == "done", stack["log"].read_text()[-4000:]
    assert report["summary"]["matched"] == 1
    [finding] = report["discrepancies"]
    assert finding["kind"] == "status_differs" and finding["our_no"] == lost["channel_order_id"]

    done = _job(stack, "resolve_discrepancy", {"discrepancy_id": finding["id"], "action": "apply",
                                               "reason": "e2e: notification lost"})
    assert done["discrepancy"]["status"] == "resolved"
    assert http.get(f"{api}/v1/payments/{lost['id']}", headers=auth, timeout=10).json()["status"] == "succeeded"

    # A file ops got some other way, put with a plain S3 client, is processed by the trigger alone.
    s3 = boto3.client("s3", endpoint_url=stack["aws_endpoint_url"], region_name=stack["region"],
                      aws_access_key_id="local", aws_secret_access_key="local")
    s3.put_object(Bucket=stack["bucket"], Key=f"statements/payease/{bill_date}/day.txt",
                  Body="type|oid|refid|pstatus|amount|moneytype|fee|time|pmode|refreason\n".encode())
    payease = _until(lambda: _job(stack, "reconciliation_report", {"channel": "payease", "bill_date": bill_date}),
                     lambda r: r["status"] == "done")
    assert payease["status"] == "done" and payease["summary"]["lines"] == 0

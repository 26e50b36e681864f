"""Secrets (issue 9): prod's channel credentials come from Secrets Manager, cached per container, never
from plain environment variables; a rotated key never refuses a genuine callback; webhook signing
secrets are stored sealed under KMS and opened only to sign."""
from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest

from chalicelib import clock, secrets, settings
from chalicelib.channels.wechat import signing, wire
from chalicelib.services import callbacks
from chalicelib.store import merchants as merchant_store
from chalicelib.store.models import WebhookEndpointModel
from tests.integration.helpers import new_merchant

REGION = "ap-southeast-2"
OLD_KEY = "0123456789abcdef0123456789abcdef"
NEW_KEY = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def prod(aws, monkeypatch):
    """This process as the prod stage (no sandboxes), its WeChat key in Secrets Manager."""
    monkeypatch.setenv("KAURI_STAGE", "prod")
    monkeypatch.setenv("KAURI_SANDBOX_ENABLED", "0")
    monkeypatch.setenv("KAURI_WECHAT_BASE_URL", "https://api.mch.weixin.qq.com")
    settings.reset()
    secrets.reset()
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="kauri-prod-wechat", SecretString=json.dumps({"api_key": OLD_KEY}))
    yield sm
    monkeypatch.undo()
    settings.reset()
    secrets.reset()


def wechat_notification(key: str, out_trade_no: str = "pay_unknown00000000000") -> bytes:
    fields = {"return_code": "SUCCESS", "appid": "wxd930ea5d5a258f4f", "mch_id": "10000100",
              "sub_mch_id": "20000100", "nonce_str": "Qk3Zp9dR7sT1uV5w", "result_code": "SUCCESS",
              "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "trade_type": "NATIVE", "total_fee": "1250",
              "fee_type": "NZD", "cash_fee": "5375", "cash_fee_type": "CNY", "rate": "430000000",
              "transaction_id": "4200000000202611250000000001", "out_trade_no": out_trade_no,
              "time_end": "20261125120501"}
    fields["sign"] = signing.sign(fields, key, "MD5")
    return wire.to_xml(fields)


def secret_reads(sm_calls: list):
    def on_call(model, **_):
        sm_calls.append(model.name)
    return on_call


@pytest.mark.parametrize("variable", [p + v for p in ("KAURI_", "KAURI_TEST_") for v in settings.SECRET_VARIABLES])
def test_prod_refuses_channel_credentials_in_plain_environment_variables(variable):
    with pytest.raises(settings.SettingsError) as refused:
        settings.load({"KAURI_STAGE": "prod", variable: "s3cr3t-value"})
    assert variable in str(refused.value) and "s3cr3t-value" not in str(refused.value)
    assert settings.load({"KAURI_STAGE": "sandbox", variable: "s3cr3t-value"}) is not None


def test_prod_reads_the_wechat_key_from_secrets_manager_once_per_container_lifetime(prod):
    calls: list[str] = []
    client = secrets._client("secretsmanager")
    client.meta.events.register("before-call.secrets-manager", secret_reads(calls))
    cfg = settings.get().wechat
    assert cfg.api_key == "" and cfg.secret_id == "kauri-prod-wechat"
    assert secrets.resolve(cfg).api_key == OLD_KEY
    assert secrets.resolve(cfg).api_key == OLD_KEY
    assert calls == ["GetSecretValue"]
    clock.advance(timedelta(seconds=secrets.SECRET_CACHE_SECONDS))
    assert secrets.resolve(cfg).api_key == OLD_KEY and calls == ["GetSecretValue"] * 2


def test_callbacks_signed_with_the_old_or_the_new_key_verify_while_a_key_rotates(prod):
    note, _, _, _ = callbacks.verify("wechat", wechat_notification(OLD_KEY), {})
    assert note is not None and note.payment.channel_order_id == "pay_unknown00000000000"
    # Rotation step 1: the new key becomes AWSCURRENT (the old one AWSPREVIOUS); this container still
    # caches the old one, and the channel may sign with either until it has switched.
    prod.put_secret_value(SecretId="kauri-prod-wechat", SecretString=json.dumps({"api_key": NEW_KEY}))
    assert callbacks.verify("wechat", wechat_notification(OLD_KEY), {})[0] is not None
    assert callbacks.verify("wechat", wechat_notification(NEW_KEY), {})[0] is not None   # re-read at once
    assert secrets.resolve(settings.get().wechat).api_key == NEW_KEY                    # and kept
    assert callbacks.verify("wechat", wechat_notification(OLD_KEY), {})[0] is not None   # still the previous
    forged, _, _, reason = callbacks.verify("wechat", wechat_notification("f" * 32), {})
    assert forged is None and reason


def test_a_forged_callback_does_not_make_every_container_hammer_secrets_manager(prod):
    calls: list[str] = []
    secrets._client("secretsmanager").meta.events.register("before-call.secrets-manager", secret_reads(calls))
    after = []
    for _ in range(5):
        assert callbacks.verify("wechat", wechat_notification("f" * 32), {})[0] is None
        after.append(len(calls))
    # current, previous, one forced re-read (current, then previous again); then nothing more until
    # REFRESH_MIN_SECONDS have passed
    assert after[1] <= 4 and after[1:] == [after[1]] * 4
    clock.advance(timedelta(seconds=secrets.REFRESH_MIN_SECONDS))
    assert callbacks.verify("wechat", wechat_notification("f" * 32), {})[0] is None
    assert len(calls) > after[-1]


def test_prod_callback_fails_closed_without_its_secret(prod):
    prod.delete_secret(SecretId="kauri-prod-wechat", ForceDeleteWithoutRecovery=True)
    secrets.reset()
    ack = callbacks.handle("wechat", wechat_notification(OLD_KEY), {})
    assert "FAIL" in ack.body and OLD_KEY not in ack.body     # WeChat resends later; nothing is applied


def test_webhook_secrets_are_stored_sealed_and_opened_only_to_sign(client):
    merchant = new_merchant(client)
    r = merchant.post("/v1/webhook_endpoints", {"url": "http://kauri.test/hooks/a"})
    assert r.status_code in (200, 201), r.body
    secret = r.json_body["secret"]
    [item] = merchant_store.all_endpoints(merchant.merchant.id)
    assert item.secret is None and item.secret_sealed
    assert secret not in json.dumps(item.secret_sealed)
    assert merchant_store.signing_secret(item) == secret


def test_a_plaintext_webhook_secret_from_before_sealing_still_signs_and_is_sealed_when_written(client):
    merchant = new_merchant(client)
    legacy = WebhookEndpointModel(merchant.merchant.id, "we_legacy000000001", url="http://kauri.test/hooks/b",
                                  secret="whsec_legacy", enabled=True, created_at=clock.now(), livemode=True)
    legacy.save()                                            # as older code stored it
    item = WebhookEndpointModel.get(merchant.merchant.id, "we_legacy000000001")
    assert merchant_store.signing_secret(item) == "whsec_legacy"
    r = merchant.post("/v1/webhook_endpoints/we_legacy000000001", {"disabled": True})   # any write of it
    assert r.status_code == 200, r.body
    item = WebhookEndpointModel.get(merchant.merchant.id, "we_legacy000000001")
    assert item.secret is None and item.secret_sealed and item.enabled is False
    assert merchant_store.signing_secret(item) == "whsec_legacy"


def test_reading_a_channel_secret_on_the_payment_path_loads_neither_boto3_nor_s3transfer():
    """Cold start: the create-payment path (its modules, pynamodb, a Secrets Manager client) stays on
    botocore; boto3 would add itself and s3transfer to every first payment of a container."""
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import sys, app; from chalicelib.api import requests; from chalicelib.services import payments; "
             "from chalicelib import secrets; secrets._client('secretsmanager'); "
             "print(','.join(m for m in ('boto3', 's3transfer') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=str(Path(__file__).resolve().parents[2]),
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "KAURI_STAGE": "prod", "KAURI_SANDBOX_ENABLED": "0",
                              "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
                              "AWS_SECRET_ACCESS_KEY": "testing"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == ""

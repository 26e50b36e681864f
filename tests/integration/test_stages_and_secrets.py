"""Stages: the sandbox exists only where enabled, never in prod. Secrets never reach logs or responses."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys


from chalicelib import settings
from tests.integration.helpers import new_merchant, shopper_pays

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def routes_for(stage: str, sandbox: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAURI_")}
    env.update(KAURI_STAGE=stage, KAURI_SANDBOX_ENABLED=sandbox, AWS_DEFAULT_REGION="ap-southeast-2")
    out = subprocess.run([sys.executable, "-c", "import json, app; print(json.dumps(sorted(app.app.routes)))"],
                         cwd=PROJECT, env=env, capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_prod_has_no_sandbox_routes_even_if_asked():
    routes = routes_for("prod", "1")
    assert "/v1/payments" in routes and "/callbacks/{channel}" in routes
    assert not [r for r in routes if r.startswith("/sandbox")]


def test_sandbox_stage_serves_every_channel_simulator():
    routes = routes_for("sandbox", "1")
    for channel in ("wechat", "alipay", "payease"):
        assert any(r.startswith(f"/sandbox/{channel}/") for r in routes), channel


def test_config_declares_the_three_stages_and_prod_disables_the_sandbox():
    with open(os.path.join(PROJECT, ".chalice", "config.json")) as f:
        cfg = json.load(f)
    assert set(cfg["stages"]) == {"dev", "sandbox", "prod"}
    assert cfg["stages"]["prod"]["environment_variables"]["KAURI_SANDBOX_ENABLED"] == "0"
    assert settings.load({"KAURI_STAGE": "prod", "KAURI_SANDBOX_ENABLED": "1"}).sandbox_enabled is False


def test_prod_has_no_default_channel_keys():
    s = settings.load({"KAURI_STAGE": "prod"})
    assert s.wechat.api_key == "" and s.payease.md5_key == "" and s.alipay.md5_key == ""


def test_secrets_never_appear_in_logs_or_responses(client, caplog):
    caplog.set_level(logging.INFO)  # what Lambda ships (botocore DEBUG dumps raw items; never enabled)
    merchant = new_merchant(client)
    hook = merchant.post("/v1/webhook_endpoints", {"url": "https://hooks.example.test/k"}).json_body
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    merchant.get(f"/v1/payments/{p['id']}")
    merchant.get("/v1/payments/pay_x", key=merchant.key[:-1] + "Z")
    text = caplog.text
    for secret in (merchant.key, merchant.key.rsplit("_", 1)[1], hook["secret"], settings.get().wechat.api_key):
        assert secret not in text
    body = json.dumps(merchant.get(f"/v1/payments/{p['id']}").json_body)
    assert settings.get().wechat.api_key not in body and hook["secret"] not in body

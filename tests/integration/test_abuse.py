"""Abuse (issue 9): per-key request limits answer 429 with Retry-After; what API Gateway or the framework
answers before our code runs (unknown path, wrong method, unlisted content type, throttled) comes in
our documented error shape: in the app, in the local server, and as gateway responses on the API."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from datetime import timedelta

import boto3
import moto
import pytest

from chalicelib import clock, settings
from chalicelib.api import gateway, ratelimit
from infra import deploy
from tests.integration.helpers import new_merchant

PROJECT_DIR = deploy.PROJECT_DIR


def is_our_error(body: dict, code: str) -> bool:
    return set(body) == {"error"} and set(body["error"]) == {"type", "code", "message", "param"} and \
        body["error"]["code"] == code


@pytest.fixture
def limited(monkeypatch):
    monkeypatch.setenv("KAURI_RATE_LIMIT_PER_SECOND", "2")
    monkeypatch.setenv("KAURI_RATE_LIMIT_BURST", "3")
    settings.reset()
    ratelimit.reset()
    clock.freeze()
    yield
    monkeypatch.undo()
    settings.reset()
    ratelimit.reset()


def test_a_key_over_its_limit_gets_429_with_retry_after_and_other_keys_go_on(client, limited):
    a, b = new_merchant(client), new_merchant(client, name="Other", sub_mch_id="20000200")
    path = "/v1/payments?merchant_reference=x"
    assert [a.get(path).status_code for _ in range(3)] == [200, 200, 200]          # the burst
    r = a.get(path)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert is_our_error(r.json_body, "rate_limited") and r.json_body["error"]["type"] == "rate_limit_error"
    assert b.get(path).status_code == 200                                          # per key
    clock.advance(timedelta(milliseconds=500))                                     # 2/s: one token back
    assert a.get(path).status_code == 200 and a.get(path).status_code == 429
    clock.advance(timedelta(seconds=10))
    assert [a.get(path).status_code for _ in range(3)] == [200, 200, 200]          # never above the burst


def test_wrong_method_and_unlisted_content_type_answer_in_our_error_shape(client):
    r = client.http.put("/v1/payments", headers={"Content-Type": "application/json"}, body=b"{}")
    assert r.status_code == 405 and is_our_error(r.json_body, "method_not_allowed")
    assert "POST" in r.headers["Allow"]
    r = client.http.post("/callbacks/wechat", headers={"Content-Type": "image/png"}, body=b"\x89PNG")
    assert r.status_code == 415 and is_our_error(r.json_body, "unsupported_media_type")


def test_gateway_responses_give_unknown_path_throttling_and_media_type_our_shape():
    merge = deploy.gateway_merge_template()["Resources"]
    by_type = {r["Properties"]["ResponseType"]: r["Properties"] for r in merge.values()}
    assert {"MISSING_AUTHENTICATION_TOKEN", "THROTTLED", "UNSUPPORTED_MEDIA_TYPE", "QUOTA_EXCEEDED",
            "REQUEST_TOO_LARGE", "DEFAULT_5XX"} <= set(by_type)
    for response_type, props in by_type.items():
        assert props["RestApiId"] == {"Ref": "RestAPI"}
        body = json.loads(props["ResponseTemplates"]["application/json"])
        assert is_our_error(body, gateway.ERRORS[int(props["StatusCode"])][1])
        assert props["ResponseParameters"]["gatewayresponse.header.Content-Type"] == "'application/json'"
    assert by_type["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "403"
    assert by_type["THROTTLED"]["ResponseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"


def test_deploy_puts_the_gateway_responses_and_stage_throttling_on_the_rest_api():
    with moto.mock_aws():
        api = boto3.client("apigateway", region_name="ap-southeast-2")
        rest_id = api.create_rest_api(name="kauri")["id"]
        root = api.get_resources(restApiId=rest_id)["items"][0]["id"]
        api.put_method(restApiId=rest_id, resourceId=root, httpMethod="GET", authorizationType="NONE")
        api.put_integration(restApiId=rest_id, resourceId=root, httpMethod="GET", type="MOCK")
        api.create_deployment(restApiId=rest_id, stageName="prod")
        patches = []
        events = boto3._get_default_session().events                # moto keeps no stage method settings
        events.register("before-call.api-gateway.UpdateStage", lambda params, **_: patches.append(params["body"]),
                        unique_id="kauri-test-update-stage")
        try:
            assert set(deploy.wire_api("prod", rest_id)) == set(gateway.GATEWAY_RESPONSES)
        finally:
            events.unregister("before-call.api-gateway.UpdateStage", unique_id="kauri-test-update-stage")
        found = {g["responseType"]: g for g in api.get_gateway_responses(restApiId=rest_id)["items"]}
        missing = found["MISSING_AUTHENTICATION_TOKEN"]
        assert missing["statusCode"] == "403"
        assert is_our_error(json.loads(missing["responseTemplates"]["application/json"]), "route_not_found")
        [sent] = [json.loads(p) for p in patches]
        assert {"op": "replace", "path": "/*/*/throttling/rateLimit",
                "value": str(deploy.STAGE_THROTTLE["prod"][0])} in sent["patchOperations"]


def test_the_local_server_answers_an_unknown_path_in_our_error_shape(aws):
    from chalice.cli.factory import CLIFactory

    from infra import local

    config = CLIFactory(str(PROJECT_DIR)).create_config_obj(chalice_stage_name="dev")
    server = local.local_server(config.chalice_app, config, "127.0.0.1", 0)
    port = server.server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/no-such-route", timeout=10)
        assert answer.value.code == 403
        assert is_our_error(json.loads(answer.value.read()), "route_not_found")
    finally:
        server.shutdown()

"""Observability (issue 9): every log line carries request, merchant and payment ids and never a
secret; each business event is a CloudWatch embedded-metric (EMF) line; the stack alarms on them."""
from __future__ import annotations

import json
import logging

from chalicelib import log
from infra import gen_template
from tests.integration.helpers import new_merchant, shopper_pays
from tests.support.jobs import scheduled


def lines(caplog) -> list[dict]:
    out = []
    for rec in caplog.records:
        if rec.name != "kauri.events":
            continue
        out.append(json.loads(rec.getMessage()))
    return out


def emf(capsys) -> list[dict]:
    docs = []
    for line in capsys.readouterr().err.splitlines():   # stdout in Lambda (metrics._stream)
        line = line.strip()
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def test_every_line_of_a_request_carries_its_request_merchant_and_payment_ids(client, caplog):
    caplog.set_level(logging.INFO)
    merchant = new_merchant(client)
    caplog.clear()
    p = merchant.create_payment(merchant_reference="traced").json_body
    created = lines(caplog)
    assert created and all(set(log.CORRELATION) <= set(line) for line in created)
    ours = [line for line in created if line["event"] in ("wechat_call", "payment_created")]
    assert {line["event"] for line in ours} == {"wechat_call", "payment_created"}
    assert {(line["merchant_id"], line["payment_id"]) for line in ours} == {(merchant.merchant.id, p["id"])}
    assert len({line["request_id"] for line in ours}) == 1 and ours[0]["request_id"]

    caplog.clear()
    shopper_pays(client, p)                                # the sandbox calls our callback
    succeeded = [line for line in lines(caplog) if line["event"] == "payment_succeeded"]
    assert succeeded and succeeded[0]["payment_id"] == p["id"] and succeeded[0]["merchant_id"] == merchant.merchant.id
    assert succeeded[0]["request_id"]

    caplog.clear()
    merchant.get(f"/v1/payments/{p['id']}/refunds/re_nope")   # a 404 is logged by no one; bind still works
    log.info("outside_any_request")
    [outside] = [line for line in lines(caplog) if line["event"] == "outside_any_request"]
    assert outside["request_id"] is None and outside["payment_id"] is None   # nothing leaks out of a request


def test_secret_values_are_redacted_whatever_the_field_is_called(caplog):
    caplog.set_level(logging.INFO)
    log.info("careless", note="key is sk_live_mch_0123456789abcdef_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
             other="whsec_Zm9vYmFy-baz", api_key="x")
    [line] = [x for x in lines(caplog) if x["event"] == "careless"]
    assert "sk_live_" not in json.dumps(line) and "whsec_" not in json.dumps(line)
    assert line["api_key"] == "[redacted]" and "[redacted]" in line["note"]


def test_payments_callback_rejections_and_job_runs_are_emf_metrics(client, capsys):
    merchant = new_merchant(client)
    capsys.readouterr()
    p = merchant.create_payment().json_body
    shopper_pays(client, p)
    client.http.post("/callbacks/wechat", headers={"Content-Type": "text/xml"}, body=b"<xml><a>forged</a></xml>")
    scheduled(client, "retry_webhooks")
    docs = emf(capsys)
    for doc in docs:                                   # well-formed EMF: every metric and dimension is there
        [directive] = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Kauri" and isinstance(doc["_aws"]["Timestamp"], int)
        for metric in directive["Metrics"]:
            assert metric["Name"] in doc
        for dims in directive["Dimensions"]:
            assert dims[0] == "Stage" and all(d in doc for d in dims)
    seen = {(d.get("Payments") and "Payments", d.get("Outcome"), d.get("Channel")) for d in docs if "Payments" in d}
    assert ("Payments", "created", "wechat") in seen and ("Payments", "succeeded", "wechat") in seen
    assert any(d.get("CallbackRejections") == 1 and d["Channel"] == "wechat" for d in docs)
    assert any("JobRuns" in d and d["Job"] == "retry_webhooks" and d["Outcome"] == "ok" for d in docs)
    assert any("WebhookBacklogAgeSeconds" in d for d in docs)


def test_the_stack_alarms_on_5xx_job_failures_webhook_backlog_dead_letters_and_discrepancies():
    resources = gen_template.build_template(gen_template.table_specs())["Resources"]
    alarms = {r["Properties"]["MetricName"]: r["Properties"] for r in resources.values()
              if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) >= {"5XXError", "JobFailures", "WebhookBacklogAgeSeconds", "DeadLetters", "Discrepancies"}
    assert "ApproximateNumberOfMessagesVisible" in alarms                 # the statements dead-letter queue
    for name, props in alarms.items():
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        if props["Namespace"] != "AWS/SQS":
            assert {"Name": "Stage", "Value": {"Ref": "Stage"}} in props["Dimensions"], name
    for name in ("JobFailures", "WebhookBacklogAgeSeconds", "DeadLetters", "Discrepancies"):
        assert alarms[name]["Namespace"] == "Kauri"

"""Business metrics in CloudWatch's embedded metric format (EMF): one JSON line per event (stdout in Lambda),
which CloudWatch Logs turns into a metric with no API call and nothing to import.

Namespace `Kauri`; every metric has the dimension set [Stage] (what the alarms in infra/template.yaml
watch) and [Stage, <its own dimensions>] (for dashboards). What is emitted, and where:
  Payments            Channel, Outcome (created, succeeded, failed, closed, succeeded_late)
  CallbackRejections  Channel                   (a callback no credentials verified)
  WebhookFailures     Outcome (retrying, failed) (an event's attempt failed for some endpoint)
  DeadLetters         Kind (webhook)             (given up on for good: a person must act)
  WebhookBacklogAgeSeconds                       (age of the oldest event due for delivery)
  JobRuns / JobFailures  Job, Outcome           (every run's summary; failures: outcome not ok/no-op)
  Discrepancies       Kind                       (a new ops record: something a person must look at)
  RateLimited         Scope (container, api)     (a request refused 429 by a per-key limit)
  RateLimitCounterErrors                         (the per-key counter in DynamoDB failed: served anyway)
"""
from __future__ import annotations

import json
import os
import sys

from chalicelib import clock, log, settings

NAMESPACE = "Kauri"


def emit(name: str, value: int = 1, unit: str = "Count", **dimensions: str) -> dict:
    """Write one EMF document (and return it). Dimension values must be low-cardinality strings."""
    stage = settings.get().stage
    dims = {k: str(v)[:64] for k, v in dimensions.items() if v is not None}
    doc = {
        "_aws": {
            "Timestamp": clock.epoch() * 1000,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Stage"], ["Stage", *dims]] if dims else [["Stage"]],
                "Metrics": [{"Name": name, "Unit": unit}],
            }],
        },
        "Stage": stage,
        **dims,
        name: value,
    }
    context = log.bound()
    if context.get("request_id"):
        doc["request_id"] = context["request_id"]   # a property, not a dimension: ties the metric to logs
    stream = _stream()
    stream.write(json.dumps(doc, sort_keys=True) + "\n")
    stream.flush()
    return doc


def _stream():
    """Lambda: stdout (its log, where CloudWatch finds EMF). Elsewhere stderr, so a CLI's stdout (make
    job prints the job summary there) stays its own."""
    return sys.stdout if os.environ.get("AWS_LAMBDA_FUNCTION_NAME") else sys.stderr

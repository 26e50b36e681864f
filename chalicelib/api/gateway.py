"""The error answers given before our handlers run, in our documented error shape.

API Gateway's own (unknown path, throttled, too large, ...) are gateway responses set on the REST API
by infra/deploy.py after chalice deploy (chalice cannot declare them); chalice's 405 and 415 are
reshaped by app.py's middleware. `chalice local` (make run) gives the same bodies through
infra/local.py. One table for all three.
"""
from __future__ import annotations

import json

# status -> (type, code, message)
ERRORS = {
    403: ("invalid_request_error", "route_not_found",
          "no such route: check the method and path (see /v1/openapi.json)"),
    405: ("invalid_request_error", "method_not_allowed", "this route does not take that method"),
    413: ("invalid_request_error", "request_too_large", "the request body is too large"),
    415: ("invalid_request_error", "unsupported_media_type",
          "send the body as JSON with Content-Type: application/json"),
    429: ("rate_limit_error", "rate_limited", "too many requests; retry later"),
    500: ("api_error", "internal_error", "something went wrong on our side"),
    502: ("api_error", "bad_gateway", "something went wrong on our side"),
    504: ("api_error", "timeout", "the request took too long; it may or may not have been applied: retry with "
                                  "the same Idempotency-Key"),
}

# API Gateway response type -> status we answer with
GATEWAY_RESPONSES = {
    "MISSING_AUTHENTICATION_TOKEN": 403,   # an unknown path (or method) on a REST API
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "REQUEST_TOO_LARGE": 413,
    "DEFAULT_5XX": 500,
    "INTEGRATION_FAILURE": 502,
    "INTEGRATION_TIMEOUT": 504,
}


def body(status: int) -> dict:
    type_, code, message = ERRORS[status]
    return {"error": {"type": type_, "code": code, "message": message, "param": None}}


def gateway_response(response_type: str) -> dict:
    """put_gateway_response arguments (minus restApiId) for one response type."""
    status = GATEWAY_RESPONSES[response_type]
    params = {"gatewayresponse.header.Content-Type": "'application/json'"}
    if status == 429:
        params["gatewayresponse.header.Retry-After"] = "'1'"
    return {"responseType": response_type, "statusCode": str(status), "responseParameters": params,
            "responseTemplates": {"application/json": json.dumps(body(status), sort_keys=True)}}

"""Turning requests into calls and results into responses: auth, bodies, error mapping."""
from __future__ import annotations

import functools
import json
import traceback
from typing import Any, Callable

from chalice import Response

from chalicelib import log, settings
from chalicelib.api import validate
from chalicelib.api.errors import ApiError, unauthorized
from chalicelib.services import errors as service_errors

# Services (and through them pynamodb/botocore, ~150 ms) load on a handler's first call, not at import.

JSON = {"Content-Type": "application/json"}


def respond(status: int, body: Any, headers: dict | None = None) -> Response:
    return Response(body=json.dumps(body, sort_keys=True, separators=(",", ":")), status_code=status,
                    headers={**JSON, **(headers or {})})


def _from_service(exc: service_errors.ServiceError) -> ApiError:
    status = service_errors.STATUS_BY_KIND[exc.kind]
    type_ = "channel_error" if exc.kind == "channel" else "invalid_request_error"
    return ApiError(status, type_, exc.code, exc.message, exc.param)


def json_endpoint(fn: Callable[..., Response]) -> Callable[..., Response]:
    """Every merchant route: known failures become their JSON error; anything else a logged 500."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            return respond(exc.status, exc.body(), exc.headers)
        except service_errors.ServiceError as exc:
            err = _from_service(exc)
            return respond(err.status, err.body())
        except Exception as exc:  # the one place that may produce a 500, always logged
            log.error("unhandled_error", route=fn.__name__, error=type(exc).__name__,
                      trace=traceback.format_exc(limit=8))
            return respond(500, {"error": {"type": "api_error", "code": "internal_error",
                                           "message": "something went wrong on our side", "param": None}})
    return wrapper


def framework_error(response: Response) -> Response:
    """A chalice error answer (405, 415) as our JSON error, its headers (Allow) kept."""
    from chalicelib.api.gateway import ERRORS

    status = response.status_code
    type_, code, message = ERRORS[status]
    headers = {k: v for k, v in (response.headers or {}).items() if k.lower() != "content-type"}
    return respond(status, {"error": {"type": type_, "code": code, "message": message, "param": None}}, headers)


EDGE_PREFIXES = ("/v1/", "/pay/")  # the merchant API and the payer's pages; channels speak their own protocols


def edge(request, get_response: Callable) -> Response:
    """Before any merchant or payer route: every query and path parameter must be storable text."""
    if request.path.startswith(EDGE_PREFIXES):
        try:
            query = request.query_params
            for name in (query or {}):
                for value in query.getlist(name):
                    validate.texts(name, "query parameter name")
                    validate.texts(value, name)
            validate.texts(dict(request.uri_params or {}))
        except ApiError as exc:
            return respond(exc.status, exc.body())
    return get_response(request)


def header(request, name: str) -> str | None:
    lname = name.lower()
    for k, v in (request.headers or {}).items():
        if k.lower() == lname:
            return v
    return None


def caller(request):
    """The merchant behind the request's secret key (a services.merchants.Caller), or a 401."""
    from chalicelib.services.merchants import authenticate

    auth = header(request, "Authorization") or ""
    scheme, _, key = auth.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise unauthorized("use Authorization: Bearer sk_test_... or sk_live_...")
    who = authenticate(key.strip())
    if who is None:
        raise unauthorized()
    log.bind(merchant_id=who.merchant.id)
    from chalicelib.api import ratelimit

    wait = ratelimit.take(key.strip())   # logs and counts a refusal
    if wait:
        raise ApiError(429, "rate_limit_error", "rate_limited",
                       f"too many requests for this key; retry after {wait} s", headers={"Retry-After": str(wait)})
    return who


def body(request) -> dict:
    ctype = (header(request, "Content-Type") or "application/json").split(";")[0].strip().lower()
    if request.raw_body and ctype != "application/json":
        raise ApiError(415, "invalid_request_error", "unsupported_media_type",
                       "send the body as JSON with Content-Type: application/json")
    return validate.json_body(request.raw_body, settings.get().max_body_bytes)


def idempotent(request, who, route: str, handler: Callable[..., tuple[int, dict]]) -> Response:
    from chalicelib.services import idempotency

    key = header(request, "Idempotency-Key")
    raw = request.raw_body or b""
    body(request)  # every POST body is bounded and checked here, even where the route reads no field
    status, out = idempotency.run(f"{who.merchant.id}:{'live' if who.livemode else 'test'}", route, key, raw, handler)
    return respond(status, out)

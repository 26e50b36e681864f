"""Errors a use case reports to whoever called it. The API layer turns `kind` into an HTTP status."""
from __future__ import annotations


class ServiceError(Exception):
    KINDS = ("invalid", "not_found", "conflict", "unprocessable", "channel", "unavailable")

    def __init__(self, kind: str, code: str, message: str, param: str | None = None):
        assert kind in self.KINDS
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
        self.param = param


def invalid(code: str, message: str, param: str | None = None) -> ServiceError:
    return ServiceError("invalid", code, message, param)


def not_found(what: str, param: str | None = None) -> ServiceError:
    return ServiceError("not_found", "resource_missing", f"no such {what}", param)


def conflict(code: str, message: str) -> ServiceError:
    return ServiceError("conflict", code, message)


def channel(code: str, message: str) -> ServiceError:
    return ServiceError("channel", code, message)


# How each kind reads over HTTP (the API layer and stored idempotent replies share this).
STATUS_BY_KIND = {"invalid": 400, "not_found": 404, "conflict": 409, "unprocessable": 422,
                  "channel": 502, "unavailable": 503}

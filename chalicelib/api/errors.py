"""One error type for everything a merchant can get wrong, and its JSON shape."""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, type_: str, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.headers = headers
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param

    def body(self) -> dict:
        return {"error": {"type": self.type, "code": self.code, "message": self.message, "param": self.param}}


def invalid(code: str, message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request_error", code, message, param)


def unauthorized(message: str = "invalid or missing API key") -> ApiError:
    return ApiError(401, "authentication_error", "invalid_api_key", message)


def not_found(what: str, param: str | None = None) -> ApiError:
    return ApiError(404, "invalid_request_error", "resource_missing", f"no such {what}", param)


def conflict(code: str, message: str) -> ApiError:
    return ApiError(409, "invalid_request_error", code, message)

"""Table naming and connection settings shared by every pynamodb model."""
from __future__ import annotations

from chalicelib import settings


def meta(name: str, **extra):
    """A pynamodb Meta class for table `name` under the stage's prefix (read once, at import)."""
    s = settings.get()
    attrs = {
        "table_name": s.table_prefix + name,
        "region": s.region,
        "billing_mode": "PAY_PER_REQUEST",
        "max_retry_attempts": 3,
    }
    if s.aws_endpoint_url:
        attrs["host"] = s.aws_endpoint_url
    attrs.update(extra)
    return type("Meta", (), attrs)


def is_conditional_failure(exc: Exception) -> bool:
    code = getattr(exc, "cause_response_code", None)
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")

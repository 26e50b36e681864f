"""Table naming and connection settings shared by every pynamodb model."""
from __future__ import annotations

import threading

from chalicelib import settings

_local = threading.local()


def _shared_session():
    """One botocore session per thread for every table, instead of one per model.

    pynamodb builds a session for each model's connection, and each session loads botocore's service
    data again: about 0.1 s per table on a cold start (5 tables: 0.6 s -> 0.15 s measured). Sessions
    are not thread-safe, hence one per thread, which in Lambda means one.
    """
    session = getattr(_local, "session", None)
    if session is None:
        import botocore.session

        session = _local.session = botocore.session.get_session()
    return session


def _install_shared_session() -> None:
    import pynamodb.connection.base as pynamodb_base

    pynamodb_base.get_session = _shared_session


_install_shared_session()


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


def applied(write) -> bool:
    """Run one conditional write: True if it happened, False if its condition did not hold."""
    from pynamodb.exceptions import DeleteError, PutError, UpdateError

    try:
        write()
        return True
    except (PutError, UpdateError, DeleteError) as exc:
        if is_conditional_failure(exc):
            return False
        raise


def is_conditional_failure(exc: Exception) -> bool:
    code = getattr(exc, "cause_response_code", None)
    return code in ("ConditionalCheckFailedException", "TransactionCanceledException")

"""Scheduled-job runs: one item per (job, period[, scope]), claimed under a lease, finished with a summary.

The claim is what makes a job idempotent per period: a finished period answers with its stored
summary, a live run is not overlapped, and a run that died half way can be taken over once its
lease has run out (every job's work is itself safe to repeat).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from pynamodb.attributes import JSONAttribute, NumberAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.models import Model

from chalicelib.store.base import applied, is_conditional_failure, meta

KEEP_FOR = timedelta(days=35)


class JobRunModel(Model):
    Meta = meta("job_runs")
    run_key = UnicodeAttribute(hash_key=True)      # "<job>#<period>" or "<job>#<period>#<merchant_id>"
    job = UnicodeAttribute()
    period = UnicodeAttribute()
    status = UnicodeAttribute()                    # running | done | failed
    claim_id = UnicodeAttribute()                  # which run holds it
    lease_until = NumberAttribute()                # epoch s; a running claim older than this is abandoned
    runs = NumberAttribute(default=0)              # claims so far (1 unless re-run after a crash or forced)
    started_at = UTCDateTimeAttribute()
    finished_at = UTCDateTimeAttribute(null=True)
    summary = JSONAttribute(null=True)
    expires = TTLAttribute()


def claim(run_key: str, job: str, period: str, claim_id: str, now: datetime, lease_seconds: int,
          force: bool = False) -> tuple[str, dict | None]:
    """("claimed", None), or ("done", stored summary), or ("running", None) when another run holds it.

    A period may be claimed when it was never run, when its last run failed, or when a running
    claim's lease has expired (the run crashed). `force` also re-runs a finished period.
    """
    epoch = int(now.timestamp())
    cond = JobRunModel.run_key.does_not_exist() | (JobRunModel.status == "failed") | \
        ((JobRunModel.status == "running") & (JobRunModel.lease_until < epoch))
    if force:
        cond = cond | (JobRunModel.status == "done")
    try:
        JobRunModel(run_key).update(actions=[
            JobRunModel.job.set(job),
            JobRunModel.period.set(period),
            JobRunModel.status.set("running"),
            JobRunModel.claim_id.set(claim_id),
            JobRunModel.lease_until.set(epoch + lease_seconds),
            JobRunModel.runs.add(1),
            JobRunModel.started_at.set(now),
            JobRunModel.finished_at.remove(),
            JobRunModel.summary.remove(),
            JobRunModel.expires.set(now + KEEP_FOR),
        ], condition=cond)
        return "claimed", None
    except UpdateError as exc:
        if not is_conditional_failure(exc):
            raise
    try:
        item = JobRunModel.get(run_key, consistent_read=True)
    except DoesNotExist:  # pragma: no cover - deleted between the two calls
        return "running", None
    if item.status == "done":
        return "done", dict(item.summary or {})
    return "running", None


def finish(run_key: str, claim_id: str, status: str, summary: dict, now: datetime) -> bool:
    """Record the outcome, only if this run still holds the claim. False: someone took it over."""
    return applied(lambda: JobRunModel(run_key).update(actions=[
        JobRunModel.status.set(status),
        JobRunModel.finished_at.set(now),
        JobRunModel.summary.set(summary),
    ], condition=(JobRunModel.claim_id == claim_id) & (JobRunModel.status == "running")))


def get(run_key: str) -> JobRunModel | None:
    try:
        return JobRunModel.get(run_key, consistent_read=True)
    except DoesNotExist:
        return None

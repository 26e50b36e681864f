"""Running scheduled jobs: parameters, the period key, the claim, and ONE summary per run.

EventBridge invokes each job with a "Scheduled Event"; ops invoke the same Lambda by hand with
plain JSON parameters, e.g. {"dry_run": true, "merchant_id": "mch_..."} (locally: `make job`).
Each run claims (job, period[, merchant]) so a second run of a finished period is a cheap no-op,
two runs never overlap, and a run that died half way is taken over once its lease expires.
"""
from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any, Callable

from chalicelib import clock, ids, log

LEASE_SECONDS = 900          # Lambda's longest run: a live run is never overlapped
_MERCHANT_ID = re.compile(r"^mch_[0-9a-z]{16}$")


class JobParamError(ValueError):
    """A hand-written event the job cannot run with; the message says what to fix."""


class Budget:
    """How long this run may still take: the Lambda context's remaining time when there is one
    (chalice hands scheduled functions their context), else `total_ms` (DEFAULT_MS) from its start."""
    DEFAULT_MS = 30_000           # .chalice/config.json lambda_timeout

    def __init__(self, context: Any = None, total_ms: int | None = None):
        self._remaining = getattr(context, "get_remaining_time_in_millis", None)
        self._total = self.DEFAULT_MS if total_ms is None else total_ms
        self._t0 = clock.ticks()

    def left_ms(self) -> int:
        if self._remaining is not None:
            return int(self._remaining())
        return self._total - clock.ms_since(self._t0)

    def allows(self, ms: int) -> bool:
        """Is there time for a step that may take `ms` (e.g. one HTTP call at its timeout)?"""
        return self.left_ms() > ms


@dataclass(frozen=True)
class JobParams:
    dry_run: bool = False         # look, change nothing (no claim either)
    force: bool = False           # run a period that already finished
    merchant_id: str | None = None
    date: date | None = None
    budget: Budget | None = field(default=None, compare=False)   # set by run(), never by the event


@dataclass(frozen=True)
class Job:
    name: str
    period_seconds: int
    work: Callable[[JobParams, datetime], dict]   # (params, period start) -> counters
    accepts: frozenset[str] = frozenset({"dry_run", "force"})


def params_of(raw: Any, accepts: frozenset[str]) -> JobParams:
    """Parameters from an EventBridge event (its `detail`) or a hand-written JSON object."""
    if not isinstance(raw, dict):
        raise JobParamError("the event must be a JSON object")
    data = (raw.get("detail") or {}) if raw.get("detail-type") == "Scheduled Event" else raw
    if not isinstance(data, dict):
        raise JobParamError("the event detail must be a JSON object")
    unknown = sorted(set(data) - set(accepts))
    if unknown:
        raise JobParamError(f"unknown parameter {unknown[0]!r}; this job takes {sorted(accepts)}")
    for flag in ("dry_run", "force"):
        if flag in data and not isinstance(data[flag], bool):
            raise JobParamError(f"{flag} must be true or false")
    merchant_id = data.get("merchant_id")
    if merchant_id is not None and (not isinstance(merchant_id, str) or not _MERCHANT_ID.match(merchant_id)):
        raise JobParamError("merchant_id must look like mch_ followed by 16 characters")
    day = None
    if data.get("date") is not None:
        try:
            day = datetime.strptime(str(data["date"]), "%Y-%m-%d").date()
        except ValueError:
            raise JobParamError("date must be YYYY-MM-DD") from None
    return JobParams(dry_run=bool(data.get("dry_run", False)), force=bool(data.get("force", False)),
                     merchant_id=merchant_id, date=day)


def period_start(now: datetime, period_seconds: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % period_seconds, tz=timezone.utc)


def run(job: Job, raw_event: Any, context: Any = None) -> dict:
    """Run `job` for the current period; log and return its one summary. `context`: the Lambda
    context, whose remaining time bounds the work (see Budget)."""
    from chalicelib.store import jobs as store

    started = clock.now()
    t0 = clock.ticks()
    summary: dict[str, Any] = {"job": job.name}
    try:
        params = replace(params_of(raw_event, job.accepts), budget=Budget(context))
    except JobParamError as exc:
        summary.update(outcome="bad_params", message=str(exc))
        log.error("job_summary", **summary)
        _job_metrics(summary)
        return summary
    start = period_start(started, job.period_seconds)
    period = clock.iso(start)
    summary.update(period=period, dry_run=params.dry_run)
    if params.merchant_id:
        summary["merchant_id"] = params.merchant_id
    run_key = f"{job.name}#{period}" + (f"#{params.merchant_id}" if params.merchant_id else "")
    claim_id = ids.new("run", 12)
    if not params.dry_run:
        state, previous = store.claim(run_key, job.name, period, claim_id, started, LEASE_SECONDS, params.force)
        if state != "claimed":
            summary["outcome"] = "already_done" if state == "done" else "already_running"
            if previous:
                summary["previous"] = {k: v for k, v in previous.items() if k not in ("job", "period", "previous")}
            log.info("job_summary", **summary)
            _job_metrics(summary)
            return summary
    status = "done"
    try:
        summary.update(job.work(params, start))
        summary["outcome"] = "ok"
    except JobParamError as exc:
        status = "failed"
        summary.update(outcome="bad_params", message=str(exc))
    except Exception as exc:  # one bad run must leave the period re-runnable, and say why
        status = "failed"
        summary.update(outcome="error", error=type(exc).__name__, trace=traceback.format_exc(limit=6))
    summary["ms"] = clock.ms_since(t0)
    if not params.dry_run and not store.finish(run_key, claim_id, status, _stored(summary), clock.now()):
        summary["claim_lost"] = True  # another run took the period over (forced): its summary stands
    if summary["outcome"] == "ok":
        log.info("job_summary", **summary)
    else:
        log.error("job_summary", **summary)
        summary.pop("trace", None)
    _job_metrics(summary)
    return summary


def _job_metrics(summary: dict) -> None:
    """JobRuns per job and outcome; JobFailures (alarmed) for a run that neither finished nor found its
    period done or running."""
    from chalicelib import metrics

    job, outcome = str(summary.get("job") or "unknown"), str(summary.get("outcome"))
    metrics.emit("JobRuns", Job=job, Outcome=outcome)
    if outcome not in ("ok", "already_done", "already_running"):
        metrics.emit("JobFailures", Job=job)


def _stored(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "trace"}


# ---- the jobs app.py schedules ----------------------------------------------------------------

def _fx_pull(params: JobParams, start: datetime) -> dict:
    from chalicelib.services import fx_pull

    return fx_pull.pull(day=params.date, dry_run=params.dry_run, force=params.force, period_start=start)


def _chase_payments(params: JobParams, start: datetime) -> dict:
    from chalicelib.services import chase

    return chase.chase_payments(dry_run=params.dry_run, merchant_id=params.merchant_id, budget=params.budget)


def _retry_webhooks(params: JobParams, start: datetime) -> dict:
    """Every outbox event whose retry time has come gets one more delivery attempt."""
    from chalicelib.services import notifications
    from chalicelib.store import events

    due = events.due(clock.epoch(), limit=500)
    notifications.report_backlog(due, clock.epoch())
    if params.merchant_id:
        due = [item for item in due if item.merchant_id == params.merchant_id]
    if params.dry_run:
        return {"due": len(due), "attempted": 0}
    out = {"due": len(due), "attempted": 0}
    for item in due:
        if not params.budget.allows(notifications.send_ms()):
            out["out_of_time"] = True  # the rest stay due for the next minute's run
            break
        out["attempted"] += 1 if notifications.deliver(item, params.budget) else 0
    return out


def _merchant_alerts(params: JobParams, start: datetime) -> dict:
    from chalicelib.services import alerts

    return alerts.deliver_due(dry_run=params.dry_run, merchant_id=params.merchant_id, budget=params.budget)


def _send_mail(params: JobParams, start: datetime) -> dict:
    from chalicelib.services import mail

    return mail.deliver_due(dry_run=params.dry_run, merchant_id=params.merchant_id, budget=params.budget)


FX_PULL = Job("fx_pull", 1800, _fx_pull, frozenset({"dry_run", "force", "date"}))
CHASE_PAYMENTS = Job("chase_payments", 300, _chase_payments, frozenset({"dry_run", "force", "merchant_id"}))
RETRY_WEBHOOKS = Job("retry_webhooks", 60, _retry_webhooks, frozenset({"dry_run", "force", "merchant_id"}))
MERCHANT_ALERTS = Job("merchant_alerts", 60, _merchant_alerts, frozenset({"dry_run", "force", "merchant_id"}))
SEND_MAIL = Job("send_mail", 60, _send_mail, frozenset({"dry_run", "force", "merchant_id"}))
JOBS = {j.name: j for j in (FX_PULL, CHASE_PAYMENTS, RETRY_WEBHOOKS, MERCHANT_ALERTS, SEND_MAIL)}

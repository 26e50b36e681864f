"""Channel statements: download them into S3 unchanged, and read a file that lands there.

S3 layout: statements/{channel}/{bill_date YYYY-MM-DD}/{name}. A file ops obtained some other way
(PayEase has no download) is simply put under the same prefix; the S3 trigger does the rest.
"""
from __future__ import annotations

import hashlib
import re
from datetime import date, timedelta
from typing import Iterable, Iterator

from chalicelib import channels, clock, log, settings
from chalicelib.channels.base import ChannelError
from chalicelib.channels.blocks import BLOCK_BYTES, Blocks
from chalicelib.store import reconciliation as store

PREFIX = "statements/"
_KEY = re.compile(r"^statements/(?P<channel>[a-z_]{2,20})/(?P<day>\d{4}-\d{2}-\d{2})/(?P<name>[A-Za-z0-9._-]{1,120})$")
# Which files a channel publishes per bill date: (file name, what it is).
DOWNLOADS = {
    # WeChat's settlement is no file: /pay/settlementquery's batches are booked as they are fetched.
    "wechat": (("downloadbill_ALL.txt", "transactions"), ("settlementquery", "settlement")),
    "alipay": (("forex_compare_file.txt", "transactions"), ("forex_liquidation_file.txt", "settlement")),
}
MAX_DAYS_PER_RUN = 31


class StatementRefused(ValueError):
    """Not a statement Kauri can read for this channel (wrong format, wrong place): say why, do nothing."""


def _s3():
    import boto3

    s = settings.get()
    return boto3.client("s3", region_name=s.region, endpoint_url=s.aws_endpoint_url)


def key_for(channel: str, bill_date: str, name: str) -> str:
    return f"{PREFIX}{channel}/{bill_date}/{name}"


def file_kind(channel: str, name: str) -> str:
    lowered = name.lower()
    return "settlement" if channel == "alipay" and ("liquidation" in lowered or "settlement" in lowered) \
        else "transactions"


# ---- download ------------------------------------------------------------------------------------

def _fetch(channel: str, kind: str, day: date) -> Iterator[bytes]:
    """The file's bytes as they arrive (ChannelError before the first one for "no bill" and the like)."""
    client = channels.get(channel)
    if channel == "wechat":
        return client.bill_chunks(day)
    return client.statement_chunks(kind, day, day)


# Peak memory of a download, whatever the file's size: one HTTP chunk (64 KiB, http.CHUNK_BYTES), the
# spool's in-memory part (SPOOL_MEMORY_BYTES; beyond it the file is on /tmp) and one multipart part
# (PART_BYTES) in flight to S3 (no upload threads): about 9 MiB.
SPOOL_MEMORY_BYTES = 1024 * 1024
PART_BYTES = 8 * 1024 * 1024


def store_stream(key: str, chunks: Iterable[bytes], content_type: str) -> tuple[str, int] | None:
    """Stream `chunks` into S3 at `key` unchanged, with their sha256 (computed as they flow) in the object's
    metadata; (sha256, bytes), or None when there were none (or only whitespace). The bytes go through a spooled file (memory
    up to SPOOL_MEMORY_BYTES, then /tmp): the digest must be known when the upload starts (it is metadata),
    and a download that breaks half way leaves nothing in S3, so nothing half-read is ever reconciled."""
    import tempfile

    from boto3.s3.transfer import TransferConfig

    digest = hashlib.sha256()
    size = 0
    blank = True
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        for chunk in chunks:
            digest.update(chunk)
            spool.write(chunk)
            size += len(chunk)
            blank = blank and not chunk.strip()
        if blank:  # nothing, or only blank lines: no file (as a day without trade)
            return None
        spool.seek(0)
        config = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, use_threads=False)
        _s3().upload_fileobj(spool, settings.get().bucket, key, Config=config,
                             ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": digest.hexdigest()}})
    return digest.hexdigest(), size


def download(channel: str, day: date) -> list[dict]:
    """Fetch each of the channel's files for one bill date and store it unchanged; one result per file.

    Already stored: skipped. "No bill" for a day without trade: recorded as no_bill. Not published
    yet (or the channel failed): not_ready, and the next scheduled run that day tries again.
    """
    out = []
    for name, kind in DOWNLOADS.get(channel, ()):
        run_key = f"download#{channel}#{day.isoformat()}#{name}"
        done = store.get_run(run_key)
        if done is not None and done.status == "done":  # no_bill is asked again: cheap, and a late bill is caught
            out.append({"file": name, "status": "already_" + done.status, **(done.detail or {})})
            continue
        if channel == "wechat" and kind == "settlement":
            out.append(_settle_wechat(run_key, name, day))
            continue
        key = key_for(channel, day.isoformat(), name)
        try:
            stored = store_stream(key, _fetch(channel, kind, day), "text/plain; charset=utf-8")
        except ChannelError as exc:
            no_bill = exc.code in ("20002", "No Bill Exist") or "no bill" in (exc.message or "").lower()
            status = "no_bill" if no_bill else "not_ready"
            store.put_run(run_key, status, {"code": exc.code, "message": exc.message[:200]})
            out.append({"file": name, "status": status, "code": exc.code})
            continue
        if stored is None:
            store.put_run(run_key, "no_bill", {})
            out.append({"file": name, "status": "no_bill"})
            continue
        digest, size = stored
        store.put_run(run_key, "done", {"key": key, "sha256": digest, "bytes": size})
        log.info("statement_downloaded", channel=channel, bill_date=day.isoformat(), key=key, bytes=size)
        out.append({"file": name, "status": "done", "key": key, "sha256": digest, "bytes": size})
    return out


def _settle_wechat(run_key: str, name: str, day: date) -> dict:
    """WeChat's batches settled on `day`, booked (services.settlement). The run is marked done only after
    every batch is booked, so a run that dies half way is simply run again (booking is once per batch)."""
    from chalicelib.services import settlement

    try:
        summary = settlement.settle_wechat(day)
    except ChannelError as exc:
        store.put_run(run_key, "not_ready", {"code": exc.code, "message": exc.message[:200]})
        log.warning("settlement_not_fetched", channel="wechat", bill_date=day.isoformat(), code=exc.code)
        return {"file": name, "status": "not_ready", "code": exc.code}
    status = "done" if summary["status"] == "done" else "no_bill"   # no_bill: asked again next hour
    detail = {"batches": len(summary["batches"]), "discrepancies": summary["discrepancies"]}
    store.put_run(run_key, status, detail)
    return {"file": name, "status": status, **detail}


def download_job(event: dict) -> dict:
    """{"channel": "wechat", "bill_date": "YYYY-MM-DD"} or {"from": ..., "to": ...}; no date: yesterday in
    Beijing; no channel: every channel that publishes a download."""
    event = event or {}
    # Hand-run through `make job`, the fields sit at the top level of the EventBridge envelope.
    detail = (event.get("detail") or {}) if event.get("detail-type") == "Scheduled Event" else {}
    data = {**{k: event[k] for k in ("channel", "bill_date", "from", "to") if k in event}, **detail}
    names = [data["channel"]] if data.get("channel") else list(DOWNLOADS)
    if any(n not in DOWNLOADS for n in names):
        return {"job": "download_statements", "error": f"channel must be one of {sorted(DOWNLOADS)}"}
    try:
        if data.get("bill_date"):
            first = last = date.fromisoformat(str(data["bill_date"]))
        elif data.get("from") or data.get("to"):
            first = date.fromisoformat(str(data.get("from") or data.get("to")))
            last = date.fromisoformat(str(data.get("to") or data.get("from")))
        else:
            first = last = date.fromisoformat(clock.bill_day(clock.now())) - timedelta(days=1)
    except ValueError:
        return {"job": "download_statements", "error": "bill_date, from and to are YYYY-MM-DD"}
    if last < first or (last - first).days >= MAX_DAYS_PER_RUN:
        return {"job": "download_statements", "error": f"from..to must be 1 to {MAX_DAYS_PER_RUN} days"}
    results = {}
    for name in names:
        day = first
        while day <= last:
            results[f"{name}/{day.isoformat()}"] = download(name, day)
            day += timedelta(days=1)
    summary = {"job": "download_statements", "results": results}
    if "wechat" in names:   # settlement differences waiting to be seen again: no channel call
        from chalicelib.services import settlement
        summary["settlement_recheck"] = settlement.recheck_wechat()
    log.info("download_statements_summary", days=len(results))
    return summary


# ---- reading a file that landed ----------------------------------------------------------------

def parse_key(key: str) -> tuple[str, str, str]:
    m = _KEY.match(key)
    if not m:
        raise StatementRefused("the key is not statements/{channel}/{YYYY-MM-DD}/{file name}")
    if m["channel"] not in channels.names():
        raise StatementRefused(f"unknown channel {m['channel']!r}")
    try:
        date.fromisoformat(m["day"])
    except ValueError:
        raise StatementRefused("the bill date is not a date") from None
    return m["channel"], m["day"], m["name"]


class LineTail:
    """The file's lines, from whatever pieces its source gives (lines, S3 chunks, an open file), remembering
    the last two that are not blank and whether the file ended with a newline. `lines` is the source
    itself: a channel's fast reader takes it in blocks and splits lines on its own."""

    def __init__(self, lines: Iterable[bytes]):
        self.lines = lines
        self.last: list[bytes] = []
        self.ended_cleanly = True

    def __iter__(self) -> Iterator[bytes]:
        prev = last = b""
        blocks = Blocks(self.lines)
        try:
            for block in blocks:
                parts = block.split(b"\n")
                end = parts.pop()  # b"" after a final newline, else the file's unterminated last line
                for part in parts:
                    raw = part + b"\n"
                    if part.strip():
                        prev, last = last, raw
                    yield raw
                if end:
                    if end.strip():
                        prev, last = last, end
                    yield end
        finally:
            self.last = [x for x in (prev, last) if x]
            self.ended_cleanly = blocks.ended_cleanly


def _statement_module(channel: str):
    """Every channel's statement.py offers `read_statement(lines)` (and may offer `FastRows`)."""
    import importlib

    if channel not in channels.names():
        raise StatementRefused(f"no statement parser for {channel}")
    return importlib.import_module(f"chalicelib.channels.{channel}.statement")


def records(channel: str, kind: str, lines: Iterable[bytes]) -> Iterator[dict]:
    """The channel's parser over raw lines (a transactions and a settlement file read alike)."""
    return _statement_module(channel).read_statement(lines)


def fast_rows(channel: str, lines: Iterable[bytes]):
    """The channel's fast row reader for reconciliation, or None where it has none (the full parser then)."""
    fast = getattr(_statement_module(channel), "FastRows", None)
    return fast(lines) if fast is not None else None


def truncation(channel: str, tail: LineTail, count: int) -> str | None:
    """Why a file that parsed line by line is still not whole, or None."""
    if not tail.ended_cleanly:
        return "the file ends in the middle of a line (truncated)"
    if channel == "wechat":
        # The bill ends with the summary header and one totals row; its first value is the row count.
        if len(tail.last) < 2 or tail.last[-2].startswith(b"`"):
            return "the bill has no summary rows at the end (truncated)"
        first = tail.last[-1].decode("utf-8", "replace").split(",")[0].lstrip("`").strip()
        if not first.isdigit() or int(first) != count:
            return f"the summary counts {first} rows but the bill holds {count} (truncated or altered)"
    return None


def stream_object(bucket: str, key: str):
    """The object's body in chunks of about a megabyte (the readers split lines themselves), and the object."""
    obj = _s3().get_object(Bucket=bucket, Key=key)
    return obj["Body"].iter_chunks(BLOCK_BYTES), obj


def ingest(bucket: str, key: str) -> dict:
    """A statement file that landed in S3: parse, store its standard records, reconcile its bill date."""
    from chalicelib.services import reconciliation

    try:
        channel, bill_date, name = parse_key(key)
    except StatementRefused as exc:
        log.warning("statement_refused", key=key[:200], reason=str(exc))
        return {"key": key[:200], "status": "refused", "reason": str(exc)}
    if bucket != settings.get().bucket:
        return {"key": key, "status": "refused", "reason": "not Kauri's bucket"}
    lines, obj = stream_object(bucket, key)
    version = (obj.get("Metadata") or {}).get("sha256") or (obj.get("ETag") or "").strip('"')
    return reconciliation.run_file(channel, bill_date, file_kind(channel, name), key, version, lines)


def handle_sqs_messages(bodies: list[str]) -> list[dict]:
    """Each SQS message carries one S3 event notification (JSON); S3's s3:TestEvent carries no records."""
    import json

    out = []
    for body in bodies:
        try:
            note = json.loads(body)
        except ValueError:
            log.warning("statement_message_unreadable", bytes=len(body or ""))
            continue
        out.extend(handle_s3_records(note.get("Records") or [] if isinstance(note, dict) else []))
    return out


def handle_s3_records(records_: list[dict]) -> list[dict]:
    """S3 event notification records (directly, or each SQS message's body) -> one result per object."""
    from urllib.parse import unquote_plus

    out = []
    for rec in records_:
        s3 = rec.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name", "")
        key = unquote_plus((s3.get("object") or {}).get("key", ""))
        if not key.startswith(PREFIX):
            continue
        out.append(ingest(bucket, key))
    return out

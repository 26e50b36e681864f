"""Reconciliation at scale: a whole channel day parsed, matched and stored. Prints; never asserts.

    python -m bench.reconcile [--rows 1000000] [--channels wechat,alipay,payease] [--store-sample 20000]

For each channel a synthetic day of N rows is written in the channel's real format (bench.statements'
writers), then a FRESH interpreter (so nothing else is in its heap) does, on that one file:
  kauri    Kauri's side of the day built as the service builds it (one Expected per payment/refund,
           keyed by recon.key_of); 1 in 1,000 amounts off by one fen and 1 in 2,000 lines missing, so
           the matcher has findings to make. Not timed (in AWS it is the recon_by_day Query).
  match    the channel's parser -> Line -> Matcher.feed -> finish, streaming from the open file:
           CPU seconds (time.process_time), rows per CPU second, peak RSS of the process after it.
  baseline the same file and the same matching with the standard library only: csv.reader, a plain
           dict of Kauri's rows, Decimal for amounts; rows per CPU second, in the same process, after.
  store    the first --store-sample records written as the service writes them (RecordWriter:
           BatchWriteItem of 25), each request built and serialised by botocore and answered by a
           before-send hook (no network, no emulator): calls counted, CPU per record on our side. A real day is projected from the counted calls: calls x
           DynamoDB latency / concurrent writers + our CPU, against Lambda's 15 minutes.
"""
from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
CHANNELS = ("wechat", "alipay", "payease")
DEFAULT_ROWS = 1_000_000
DEFAULT_STORE_SAMPLE = 20_000
BILL_DAY = "2024-01-01"
# Projection assumptions (stated in the output): BatchWriteItem of 25 items p50 latency in-region, and
# writer threads one Lambda runs. On-demand tables absorb ~4,000 writes/s from cold (2x the previous peak
# after), which caps a cold table at about 4 minutes per million records whatever the concurrency.
BATCH_LATENCY_S = 0.012
WRITERS = 8
COLD_TABLE_WRITES_PER_S = 4000
LAMBDA_LIMIT_S = 900
_SUFFIX = {"wechat": "csv", "alipay": "txt", "payease": "txt"}


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _sides(channel: str, path: str, plain: bool):
    """Kauri's side of the file's day as the service holds it (Expected by key), with findings injected;
    or (plain=True) the same facts as the baseline's plain dict. Built apart, so each run's peak
    memory is its own."""
    from chalicelib.domain import reconciliation as recon
    from chalicelib.services.statements import records

    out = {}
    with open(path, "rb") as fh:
        for n, rec in enumerate(records(channel, "transactions", fh)):
            line = recon.line_of(rec)
            if n % 2000 == 1999:
                continue  # only at the channel
            amount = line.amount + (1 if n % 1000 == 0 else 0)
            if plain:
                out[(line.kind, line.our_no)] = (amount, line.currency, line.status)
            else:
                out[recon.key_of(line.kind, line.our_no)] = recon.Expected(
                    line.kind, line.our_no, line.our_no, "mch_bench", line.status, amount, line.currency, BILL_DAY)
    return out


def _ours(channel: str, path: str, expected: dict) -> dict:
    from chalicelib.domain import reconciliation as recon
    from chalicelib.services import reconciliation, statements

    started, cpu = time.perf_counter(), time.process_time()
    m = recon.Matcher(channel, BILL_DAY, expected)
    with open(path, "rb") as fh:
        reconciliation.feed_file(channel, m, statements.LineTail(fh))  # what the S3-triggered function runs
    out = m.finish()
    return {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - started, "rows": out.lines,
            "matched": out.matched, "findings": len(out.discrepancies), "unknown": len(out.unknown)}


def _baseline(channel: str, path: str, plain: dict) -> dict:
    """What a plain reading would do: csv module rows, strip, Decimal amounts, dict lookups."""
    started, cpu = time.perf_counter(), time.process_time()
    rows = matched = differs = unknown = 0
    hundred = Decimal(100)
    if channel == "wechat":
        fh = open(path, encoding="utf-8-sig", newline="")
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader)]
        col = {name: header.index(name) for name in ("商户订单号", "交易状态", "货币种类", "总金额", "商户退款单号",
                                                     "退款金额", "退款状态")}
        for row in reader:
            if not row or not row[0].startswith("`"):
                break  # the summary header: the details are done
            cells = [c.lstrip("`") for c in row]
            refund_no = cells[col["商户退款单号"]]
            if cells[col["交易状态"]] == "REFUND":
                key = ("refund", refund_no)
                amount = int(Decimal(cells[col["退款金额"]]) * hundred)
                status = "succeeded" if cells[col["退款状态"]] in ("SUCCESS", "PROCESSING") else "failed"
            else:
                key = ("payment", cells[col["商户订单号"]])
                amount = int(Decimal(cells[col["总金额"]]) * hundred)
                status = "succeeded" if cells[col["交易状态"]] == "SUCCESS" else "closed"
            rows += 1
            got = plain.pop(key, None)
            if got is None:
                unknown += 1
            elif got == (amount, cells[col["货币种类"]], status):
                matched += 1
            else:
                differs += 1
    else:
        encoding = "gbk" if channel == "payease" else "utf-8-sig"
        fh = open(path, encoding=encoding, newline="")
        reader = csv.reader((line for line in fh if not line.startswith("#")), delimiter="|")
        header = [h.strip().lower() for h in next(reader)]
        if channel == "alipay":
            i_no, i_amount, i_ccy, i_type = (header.index(n) for n in ("partner_transaction_id", "amount", "currency",
                                                                        "type"))
        else:
            i_no, i_amount, i_type = (header.index(n) for n in ("oid", "amount", "type"))
            i_ref, i_status = header.index("refreason"), header.index("pstatus")
        for row in reader:
            rows += 1
            if channel == "alipay":
                kind = "payment" if row[i_type] == "P" else "refund"
                key, currency, status = (kind, row[i_no]), row[i_ccy], "succeeded"
            else:
                kind = "payment" if row[i_type] == "PAY" else "refund"
                serial = row[i_no].split("-", 2)[2]
                our_no = serial if kind == "payment" else (row[i_ref].split(" ", 1)[0] or serial)
                currency = "CNY"
                status = {"1": "succeeded", "3": "failed", "0": "processing", "2": "failed"}[row[i_status]]
                key = (kind, our_no)
            amount = int(Decimal(row[i_amount]) * hundred)
            got = plain.pop(key, None)
            if got is None:
                unknown += 1
            elif got == (amount, currency, status):
                matched += 1
            else:
                differs += 1
    fh.close()
    return {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - started, "rows": rows,
            "matched": matched, "differs": differs, "unknown": unknown}


class _Raw:
    """The body of a canned DynamoDB answer (botocore reads it as a stream)."""

    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


def _store(channel: str, path: str, sample: int) -> dict:
    """Write `sample` records through RecordWriter, every AWS call counted and answered on the spot.

    botocore builds, signs and serialises each request as for AWS; a `before-send` hook answers it
    (BatchWriteItem: nothing unprocessed) instead of the network, so the CPU measured is ours and
    botocore's, not a DynamoDB emulator's. The endpoint is a closed loopback port besides.
    """
    os.environ.update({"KAURI_STAGE": "bench", "KAURI_TABLE_PREFIX": "kauri-bench-", "AWS_DEFAULT_REGION":
                       "ap-southeast-2", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "KAURI_AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    from botocore.awsrequest import AWSResponse

    from chalicelib import settings
    from chalicelib.domain import reconciliation as recon
    from chalicelib.services.statements import records

    settings.reset()
    from chalicelib.store import reconciliation as store

    calls: dict[str, int] = {}

    def answer(request=None, event_name=None, **_):
        op = event_name.rsplit(".", 1)[-1]
        calls[op] = calls.get(op, 0) + 1
        return AWSResponse(request.url, 200, {"x-amzn-requestid": "bench",
                                              "content-type": "application/x-amz-json-1.0"},
                           _Raw(b'{"UnprocessedItems": {}}'))

    conn = store.StatementRecordModel._get_connection().connection
    conn.client.meta.events.register("before-send.dynamodb.*", answer)
    lines = []
    with open(path, "rb") as fh:
        for rec in records(channel, "transactions", fh):
            lines.append(recon.line_of(rec))
            if len(lines) >= sample:
                break
    started, cpu = time.perf_counter(), time.process_time()
    writer = store.RecordWriter(channel, BILL_DAY, f"statements/{channel}/{BILL_DAY}/bench")
    for line in lines:
        writer.add(line, "matched")
    writer.close()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"records": len(lines), "calls": calls, "wall_s": wall, "cpu_s": cpu}


def _child(channel: str, path: str, sample: int) -> dict:
    gc.collect()
    rss0 = _maxrss()
    expected = _sides(channel, path, plain=False)
    rss_kauri = _maxrss()
    ours = _ours(channel, path, expected)
    rss_ours = _maxrss()  # the high-water mark of everything so far: what one statement function needs
    del expected
    gc.collect()
    plain = _sides(channel, path, plain=True)
    base = _baseline(channel, path, plain)
    del plain
    gc.collect()
    store = _store(channel, path, sample) if sample else None
    return {"channel": channel, "ours": ours, "baseline": base, "store": store,
            "rss_start": rss0, "rss_after_kauri_side": rss_kauri, "rss_after_match": rss_ours}


def _project(r: dict, rows: int) -> dict | None:
    s = r.get("store")
    if not s or not s["records"]:
        return None
    per_record_calls = sum(s["calls"].values()) / s["records"]
    calls = per_record_calls * rows
    our_cpu = s["cpu_s"] / s["records"] * rows + r["ours"]["cpu_s"]
    io_s = calls * BATCH_LATENCY_S / WRITERS
    table_s = rows / COLD_TABLE_WRITES_PER_S
    return {"calls": round(calls), "per_record_calls": per_record_calls, "our_cpu_s": our_cpu, "io_s": io_s,
            "table_s": table_s, "total_s": our_cpu + max(io_s, table_s)}


def run(rows: int = DEFAULT_ROWS, channels=CHANNELS, sample: int = DEFAULT_STORE_SAMPLE, seed: int = 20240101) -> dict:
    from bench import statements as gen

    writers = {"wechat": gen.write_wechat, "alipay": gen.write_alipay, "payease": gen.write_payease}
    workdir = Path(tempfile.mkdtemp(prefix="kauri-bench-reconcile-"))
    results = []
    try:
        for channel in channels:
            path = workdir / f"{channel}_{rows}.{_SUFFIX[channel]}"
            writers[channel](path, rows, seed)
            env = dict(os.environ, PYTHONPATH=str(PROJECT_DIR))
            done = subprocess.run([sys.executable, "-m", "bench.reconcile", "--_child", channel, str(path),
                                   str(min(sample, rows))], cwd=PROJECT_DIR, env=env, capture_output=True, text=True)
            try:
                r = json.loads(done.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                r = {"channel": channel, "error": done.stderr.strip()[-800:]}
            r["bytes"] = path.stat().st_size
            r["projection"] = _project(r, rows) if "error" not in r else None
            results.append(r)
            path.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"rows": rows, "results": results, "load": os.getloadavg()[0]}


def _mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def report(result: dict) -> str:
    rows = result["rows"]
    out = [f"Reconciliation, {rows:,} rows per channel day (load {result['load']:.1f}); rows per CPU second",
           f"  {'channel':8s} {'parse+match':>12s} {'baseline':>10s} {'ratio':>6s} {'peak RSS':>9s} "
           f"{'findings':>9s} {'store CPU/rec':>13s} {'Dynamo calls/day':>16s} {'projected day':>14s}"]
    for r in result["results"]:
        if "error" in r:
            out.append(f"  {r['channel']:8s} error: {r['error']}")
            continue
        ours, base, p = r["ours"], r["baseline"], r["projection"]
        ours_rate = ours["rows"] / ours["cpu_s"]
        base_rate = base["rows"] / base["cpu_s"]
        s = r["store"]
        out.append(f"  {r['channel']:8s} {ours_rate:12,.0f} {base_rate:10,.0f} {ours_rate / base_rate:5.2f}x "
                   f"{_mib(r['rss_after_match']):>9s} {ours['findings'] + ours['unknown']:9,d} "
                   f"{s['cpu_s'] / s['records'] * 1e6:10.0f} us {p['calls']:16,d} {p['total_s'] / 60:11.1f} min")
    out.append(f"  projection: BatchWriteItem of 25 at {BATCH_LATENCY_S * 1000:.0f} ms, {WRITERS} writers, a cold "
               f"on-demand table at {COLD_TABLE_WRITES_PER_S:,} writes/s; Lambda limit {LAMBDA_LIMIT_S // 60} min")
    return "\n".join(out)


def summary_rows(result: dict) -> list[tuple[str, str]]:
    rows = []
    for r in result["results"]:
        if "error" in r:
            continue
        ours, base = r["ours"], r["baseline"]
        ratio = (ours["rows"] / ours["cpu_s"]) / (base["rows"] / base["cpu_s"])
        rows.append((f"recon {r['channel']}, {result['rows']:,} rows: parse+match rows/CPU-s (x baseline), peak RSS",
                     f"{ours['rows'] / ours['cpu_s']:,.0f} ({ratio:.2f}x), {_mib(r['rss_after_match'])}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_child":
        print(json.dumps(_child(argv[1], argv[2], int(argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--channels", default=",".join(CHANNELS))
    parser.add_argument("--store-sample", type=int, default=DEFAULT_STORE_SAMPLE)
    args = parser.parse_args(argv)
    print(report(run(args.rows, tuple(args.channels.split(",")), args.store_sample)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

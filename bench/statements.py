"""Statement parsers on big files: wall time, rows/s and peak memory per channel. Prints; never asserts.

    python -m bench.statements [--rows 1000000] [--channels wechat,alipay,payease] [--seed 20240101]
                               [--trace-rows 20000 | --no-tracemalloc] [--keep]

For each channel a synthetic statement of N detail rows is written to a temp dir in that channel's
real format (streamed to disk, deterministic for a seed, ~8% refunds, 2-decimal amounts):
  wechat   downloadbill Variant A (statements/wechat/): Chinese header, backtick-prefixed rows, summary
           header + totals row at the end; UTF-8; a few product names carry a comma
  alipay   forex_compare_file V2017 (statements/alipay/): 16-column header, pipe-separated; UTF-8
  payease  Kauri's assumed day list (statements/payease/): comment lines, header, GBK with Chinese bank
           names and refund reasons
Each parser then reads its file from an open binary file object (the bytes a download gives; every
parser accepts an iterable of bytes lines) in a FRESH interpreter, so nothing from generation or
another parser is in its heap:
  pass 1  untraced: wall time, rows/s, MB/s and peak-RSS delta (resource.getrusage ru_maxrss after
          the parse minus before it, imports already done)
  pass 2  (unless --no-tracemalloc) the first --trace-rows records (0 = the whole file) again under
          tracemalloc: peak traced Python allocation. tracemalloc slows these parsers 6-15x, so the
          whole 1M-row file would take many minutes; a streaming parser reaches its peak within the
          first rows, and pass 1's RSS delta over the full file is what shows growth with N.
The full untraced pass is checked against what was generated (record count, refunds, sum of
amount_minor), and a traced whole-file pass too: the speed is only marked "ok" for a correct parse.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
CHANNELS = ("wechat", "alipay", "payease")
DEFAULT_ROWS = 1_000_000
DEFAULT_SEED = 20240101
DEFAULT_TRACE_ROWS = 20_000
REFUND_SHARE = 0.08
BILL_DAY = "2024-01-01"  # Beijing date every synthetic row falls on
_CHUNK = 10_000  # rows per write

# parser entry point, how a refund record is labelled, and the format written
_PARSERS = {
    "wechat": ("chalicelib.channels.wechat.statement", "parse", "REFUND", "downloadbill Variant A, UTF-8"),
    "alipay": ("chalicelib.channels.alipay.statement", "parse_compare_file", "REFUND", "forex_compare V2017, UTF-8"),
    "payease": ("chalicelib.channels.payease.statement", "parse", "refund", "pipe list, GBK"),
}


# ---- synthetic files --------------------------------------------------------------------------------

def _major(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    minor = abs(minor)
    return f"{sign}{minor // 100}.{minor % 100:02d}"


def _amount(rng: random.Random) -> int:
    """A right-skewed order size in minor units: most a few tens of dollars, a long tail to ~50,000."""
    return max(1, min(5_000_000, int(rng.lognormvariate(8.0, 1.2))))


def _clock(i: int, rows: int) -> tuple[int, int, int]:
    sec = i * 86_400 // max(rows, 1)
    return sec // 3600, sec // 60 % 60, sec % 60


class _Expected:
    def __init__(self) -> None:
        self.rows = 0
        self.refunds = 0
        self.amount_minor = 0

    def add(self, amount_minor: int, refund: bool) -> None:
        self.rows += 1
        self.refunds += refund
        self.amount_minor += amount_minor

    def as_dict(self) -> dict:
        return {"rows": self.rows, "refunds": self.refunds, "amount_minor": self.amount_minor}


def _refund_of(rng: random.Random, recent: list) -> tuple | None:
    """A refund (full or partial) of a recent payment, or None to write a payment."""
    if not recent or rng.random() >= REFUND_SHARE:
        return None
    original = recent[rng.randrange(len(recent))]
    total = original[-1]
    amount = total if rng.random() < 0.6 else rng.randint(1, total)
    return original, amount


def _remember(recent: list, item: tuple, i: int) -> None:
    """Keep the last ~1024 payments as refund candidates (a ring, so refunds refer to recent orders)."""
    if len(recent) < 1024:
        recent.append(item)
    else:
        recent[i % 1024] = item


_WECHAT_HEADER = ("交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                  "货币种类,总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,"
                  "退款状态,商品名称,商户数据包,手续费,费率\n")
_WECHAT_PRODUCTS = ("新西兰蜂蜜", "麦卢卡蜂蜜 UMF10+", "Manuka honey, 500g", "羊毛被", "Tuition deposit",
                    "保健品套装", "Wine, Pinot Noir 750ml", "奶粉 900g")


def write_wechat(path: Path, rows: int, seed: int) -> dict:
    rng = random.Random(seed)
    exp = _Expected()
    recent: list = []
    pay_total = refund_total = fee_total = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(_WECHAT_HEADER)
        buf: list[str] = []
        for i in range(rows):
            h, m, s = _clock(i, rows)
            at = f"{BILL_DAY} {h:02d}:{m:02d}:{s:02d}"
            currency = "NZD" if rng.random() < 0.85 else "AUD"
            kind = rng.choice(("NATIVE", "JSAPI", "MICROPAY", "APP"))
            product = rng.choice(_WECHAT_PRODUCTS)
            refund = _refund_of(rng, recent)
            if refund is None:
                total = _amount(rng)
                fee = (total * 2 + 50) // 100  # 2.00%, half up
                tx_id, out_no = f"42000{i:023d}", f"NZ20240101{i:010d}"
                buf.append(f"`{at},`wxd930ea5d5a258f4f,`10000100,`20000100,`,`{tx_id},`{out_no},"
                           f"`oUpF8uMuAJO_M2pxb1Q9zNj{i % 100000:05d},`{kind},`SUCCESS,`OTHERS,`{currency},"
                           f"`{_major(total)},`0.00,`0,`0,`0.00,`0.00,`,`,`{product},`,`{_major(fee)},`2.00%\n")
                _remember(recent, (tx_id, out_no, currency, total), i)
                exp.add(total, False)
                pay_total += total
            else:
                (tx_id, out_no, currency, total), amount = refund
                fee = -((amount * 2 + 50) // 100)
                buf.append(f"`{at},`wxd930ea5d5a258f4f,`10000100,`20000100,`,`{tx_id},`{out_no},"
                           f"`oUpF8uMuAJO_M2pxb1Q9zNj{i % 100000:05d},`{kind},`REFUND,`OTHERS,`{currency},"
                           f"`{_major(total)},`0.00,`50300{i:024d},`RF{out_no}{i % 100:02d},`{_major(amount)},"
                           f"`0.00,`ORIGINAL,`SUCCESS,`{product},`,`{_major(fee)},`2.00%\n")
                exp.add(amount, True)
                refund_total += amount
            fee_total += fee
            if len(buf) >= _CHUNK:
                fh.write("".join(buf))
                buf.clear()
        fh.write("".join(buf))
        fh.write("总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额\n")
        fh.write(f"`{rows},`{_major(pay_total)},`{_major(refund_total)},`0.00,`{_major(fee_total)}\n")
    return exp.as_dict()


_ALIPAY_HEADER = ("Partner_transaction_id|Transaction_id|Amount|Rmb_amount|Fee|Distribute_amount|"
                  "Distribute_rmb_amount|Settlement|Rmb_settlement|Currency|Rate|Payment_time|"
                  "Settlement_time|Type|Status|Remarks\n")
_ALIPAY_RATES_E8 = {"NZD": 435120000, "AUD": 471530000}


def _rmb(minor: int, rate_e8: int) -> int:
    return (minor * rate_e8 + 50_000_000) // 100_000_000


def write_alipay(path: Path, rows: int, seed: int) -> dict:
    rng = random.Random(seed + 1)
    exp = _Expected()
    recent: list = []
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(_ALIPAY_HEADER)
        buf: list[str] = []
        for i in range(rows):
            h, m, s = _clock(i, rows)
            at = f"{BILL_DAY} {h:02d}:{m:02d}:{s:02d}"
            refund = _refund_of(rng, recent)
            if refund is None:
                currency = "NZD" if rng.random() < 0.85 else "AUD"
                rate = _ALIPAY_RATES_E8[currency]
                amount = _amount(rng)
                fee = (amount * 18 + 500) // 1000  # 1.8%, half up
                our_no, tx_id = f"NZ20240101{i:010d}", f"2024010121001003920{i:09d}"
                remarks, kind = our_no, "P"
                _remember(recent, (our_no, tx_id, currency, amount), i)
            else:
                (orig_no, tx_id, currency, _total), amount = refund
                rate = _ALIPAY_RATES_E8[currency]
                fee = 0
                our_no, remarks, kind = f"FOREXREFUND_{orig_no}_{i % 100:02d}", orig_no, "R"
            settle = amount - fee
            buf.append(f"{our_no}|{tx_id}|{_major(amount)}|{_major(_rmb(amount, rate))}|{_major(fee)}|0.00|0.00|"
                       f"{_major(settle)}|{_major(_rmb(settle, rate))}|{currency}|{rate // 100_000_000}."
                       f"{rate % 100_000_000:08d}|{at}||{kind}|P|{remarks}\n")
            exp.add(amount, kind == "R")
            if len(buf) >= _CHUNK:
                fh.write("".join(buf))
                buf.clear()
        fh.write("".join(buf))
    return exp.as_dict()


_PAYEASE_BANKS = ("招商银行", "中国工商银行", "中国建设银行", "中国农业银行", "中国银行", "交通银行", "浦发银行", "")
_PAYEASE_REASONS = ("部分退款", "全额退款", "客户取消订单", "")


def write_payease(path: Path, rows: int, seed: int) -> dict:
    rng = random.Random(seed + 2)
    exp = _Expected()
    recent: list = []
    with open(path, "wb") as fh:
        fh.write((f"# PayEase daily statement — synthetic, bench.statements seed {seed}\n"
                  f"# merchant 444, bill date {BILL_DAY}, GBK-encoded\n"
                  "type|oid|refid|pstatus|amount|moneytype|fee|time|pmode|refreason\n").encode("gbk"))
        buf: list[str] = []
        day = BILL_DAY.replace("-", "")
        for i in range(rows):
            h, m, s = _clock(i, rows)
            at = f"{day}{h:02d}{m:02d}{s:02d}"
            refund = _refund_of(rng, recent)
            if refund is None:
                amount = _amount(rng)
                status = "1" if rng.random() < 0.97 else "3"
                fee = (amount * 6 + 500) // 1000 if status == "1" else 0  # 0.6%
                oid = f"{day}-444-pay_{seed:08x}{i:012d}"
                buf.append(f"PAY|{oid}||{status}|{_major(amount)}|0|{_major(fee)}|{at}|{rng.choice(_PAYEASE_BANKS)}|\n")
                if status == "1":
                    _remember(recent, (oid, amount), i)
                exp.add(amount, False)
            else:
                (oid, _total), amount = refund
                r = rng.random()
                status = "1" if r < 0.9 else ("0" if r < 0.97 else "2")
                reason = rng.choice(_PAYEASE_REASONS)
                buf.append(f"REF|{oid}|R{i:010d}|{status}|{_major(amount)}|0|0.00|{at}||"
                           f"rf_{seed:08x}{i:010d}{' ' + reason if reason else ''}\n")
                exp.add(amount, True)
            if len(buf) >= _CHUNK:
                fh.write("".join(buf).encode("gbk"))
                buf.clear()
        fh.write("".join(buf).encode("gbk"))
    return exp.as_dict()


_WRITERS = {"wechat": write_wechat, "alipay": write_alipay, "payease": write_payease}
_SUFFIX = {"wechat": "csv", "alipay": "txt", "payease": "txt"}


# ---- measurement (in a fresh interpreter) -----------------------------------------------------------

def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


def _consume(parse, path: str, refund_label: str, limit: int = 0) -> dict:
    rows = refunds = amount = 0
    with open(path, "rb") as fh:
        for rec in parse(fh):
            rows += 1
            amount += rec["amount_minor"]
            if rec["record_type"] == refund_label:
                refunds += 1
            if rows == limit:
                break
    return {"rows": rows, "refunds": refunds, "amount_minor": amount}


def _child(channel: str, path: str, trace_rows: int | None) -> dict:
    import importlib
    import tracemalloc

    module_name, func, refund_label, _ = _PARSERS[channel]
    parse = getattr(importlib.import_module(module_name), func)
    out: dict = {"channel": channel}
    try:
        gc.collect()
        rss_before = _maxrss_bytes()
        started = time.perf_counter()
        got = _consume(parse, path, refund_label)
        out["seconds"] = time.perf_counter() - started
        out["rss_before"], out["rss_after"] = rss_before, _maxrss_bytes()
        out["got"] = got
        if trace_rows is not None:
            gc.collect()
            tracemalloc.start()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            started = time.perf_counter()
            traced = _consume(parse, path, refund_label, trace_rows)
            out["traced_rows"] = traced["rows"]
            if not trace_rows or trace_rows >= got["rows"]:
                out["got_traced"] = traced  # whole file: check it too
            out["traced_seconds"] = time.perf_counter() - started
            out["traced_peak"] = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
    except Exception as exc:  # noqa: BLE001 - a parser rejecting our file is a finding, reported in the table
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def measure(channel: str, path: Path, trace_rows: int | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(PROJECT_DIR))
    cmd = [sys.executable, "-m", "bench.statements", "--_child", channel, str(path)]
    cmd += ["--no-tracemalloc"] if trace_rows is None else ["--trace-rows", str(trace_rows)]
    done = subprocess.run(cmd, cwd=PROJECT_DIR, env=env, capture_output=True, text=True, check=False)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"channel": channel, "error": f"child exited {done.returncode}: {done.stderr.strip()[-500:]}"}


# ---- driver -----------------------------------------------------------------------------------------

def run(rows: int = DEFAULT_ROWS, channels: tuple[str, ...] = CHANNELS, seed: int = DEFAULT_SEED,
        trace_rows: int | None = DEFAULT_TRACE_ROWS, keep: bool = False) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="kauri-bench-statements-"))
    results = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    try:
        for channel in channels:
            path = workdir / f"{channel}_{rows}.{_SUFFIX[channel]}"
            t = time.perf_counter()
            expected = _WRITERS[channel](path, rows, seed)
            generate_s = time.perf_counter() - t
            size = path.stat().st_size
            t = time.perf_counter()
            r = measure(channel, path, trace_rows)
            r.update(expected=expected, bytes=size, generate_seconds=generate_s,
                     child_seconds=time.perf_counter() - t, format=_PARSERS[channel][3])
            results.append(r)
            if not keep:
                path.unlink()  # the WeChat file alone is ~0.3 GB at 1M rows
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return {"rows": rows, "seed": seed, "trace_rows": trace_rows, "results": results, "load": load,
            "total_seconds": time.perf_counter() - started, "dir": str(workdir) if keep else None}


def _check(r: dict) -> str:
    if "error" in r:
        return "PARSE FAILED: " + r["error"]
    exp, problems = r["expected"], []
    for key in ("got", "got_traced"):
        got = r.get(key)
        if got is None:
            continue
        for field in ("rows", "refunds", "amount_minor"):
            if got[field] != exp[field]:
                problems.append(f"{field} {got[field]:,} != generated {exp[field]:,}"
                                + (" (traced pass)" if key == "got_traced" else ""))
    return "MISMATCH: " + "; ".join(problems) if problems else "ok"


def _mib(n: float) -> str:
    return f"{n / 1024:.0f} KiB" if abs(n) < 1048576 else f"{n / 1048576:.1f} MiB"


def report(result: dict) -> str:
    load = f"; load average {result['load']:.2f} on {os.cpu_count()} CPU at start" if result["load"] is not None else ""
    lines = [(f"Statement parsers, {result['rows']:,} detail rows per channel (seed {result['seed']}; "
              f"parsed from an open 'rb' file in a fresh interpreter{load})"),
             (f"  {'channel':8s} {'format':28s} {'file':>9s} {'parse s':>8s} {'rows/s':>9s} {'MB/s':>6s} "
              f"{'peak RSS Δ':>11s} {'tracemalloc':>12s}  check")]
    for r in result["results"]:
        size = f"{r['bytes'] / 1e6:.0f} MB"
        if "seconds" in r:
            secs = r["seconds"]
            rows = r["got"]["rows"]
            speed = f"{secs:8.2f} {rows / secs:9,.0f} {r['bytes'] / 1e6 / secs:6.1f}"
            rss = f"{_mib(r['rss_after'] - r['rss_before']):>11s}"
        else:
            speed, rss = f"{'-':>8s} {'-':>9s} {'-':>6s}", f"{'-':>11s}"
        peak = _mib(r["traced_peak"]) if "traced_peak" in r else "-"
        if "traced_peak" in r and r.get("got") and r["traced_rows"] < r["got"]["rows"]:
            peak += "*"
        lines.append(f"  {r['channel']:8s} {r['format']:28s} {size:>9s} {speed} {rss} {peak:>12s}  {_check(r)}")
    lines.append(f"  expected per file: rows, refunds (~{REFUND_SHARE:.0%}) and sum(amount_minor) from the generator; "
                 f"peak RSS Δ = ru_maxrss after the untraced parse - before it (imports done)")
    if any("traced_peak" in r and r.get("got") and r["traced_rows"] < r["got"]["rows"] for r in result["results"]):
        lines.append(f"  * tracemalloc peak over the first {result['trace_rows']:,} records only (--trace-rows 0 for all)")
    extra = []
    for r in result["results"]:
        bits = [f"generate {r['generate_seconds']:.1f} s"]
        if "rss_after" in r:
            bits.append(f"process peak RSS {_mib(r['rss_after'])}")
        if "traced_seconds" in r:
            bits.append(f"traced pass {r['traced_seconds']:.1f} s for {r['traced_rows']:,} rows")
        extra.append(f"    {r['channel']:8s} " + ", ".join(bits))
    lines += ["  other timings:", *extra,
              f"  total wall time {result['total_seconds']:.0f} s"
              + (f"; files kept in {result['dir']}" if result["dir"] else "")]
    return "\n".join(lines)


def summary_rows(result: dict) -> list[tuple[str, str]]:
    out = []
    for r in result["results"]:
        key = f"statement parse, {result['rows']:,} rows: {r['channel']}"
        if "seconds" not in r:
            out.append((key, _check(r)[:60]))
            continue
        check = _check(r)
        out.append((key, f"{r['got']['rows'] / r['seconds']:,.0f} rows/s, RSS +{_mib(r['rss_after'] - r['rss_before'])}"
                         + ("" if check == "ok" else "  " + check[:40])))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="detail rows per statement file")
    parser.add_argument("--channels", default=",".join(CHANNELS), help="comma-separated subset of " + ",".join(CHANNELS))
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--trace-rows", type=int, default=DEFAULT_TRACE_ROWS,
                        help="records parsed under tracemalloc (0 = the whole file; it is 6-15x slower)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the tracemalloc pass")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and print where")
    parser.add_argument("--_child", nargs=2, metavar=("CHANNEL", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        print(json.dumps(_child(args._child[0], args._child[1], None if args.no_tracemalloc else args.trace_rows)))
        return 0
    channels = tuple(c.strip() for c in args.channels.split(",") if c.strip())
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown:
        parser.error(f"unknown channel(s) {unknown}; choose from {CHANNELS}")
    print(report(run(args.rows, channels, args.seed, None if args.no_tracemalloc else args.trace_rows, args.keep)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

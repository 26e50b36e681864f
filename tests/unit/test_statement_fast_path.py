"""The reconciliation fast path (each channel's FastRows: files read in blocks, rows matched from their text)
against the slow reference (the channel's full parser, line by line, every record through Matcher.feed), on
generated files in each real format with awkward rows: odd and refused amounts (3 decimals, signs, spaces,
other scripts' digits), quotes and embedded commas in memo fields, GBK text (one character whose second
byte is "|"), bad times, BOM, CRLF, blank lines, duplicated and unknown lines, a missing summary, a last
line cut short. Both must keep the same records with the same outcomes, find the same things, and fail
(or refuse) at the same line for the same reason having read the same lines; the file is cut into pieces
of random sizes and read in blocks a few dozen bytes long, so block edges fall anywhere."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.channels import blocks
from chalicelib.domain import reconciliation as recon
from chalicelib.services import reconciliation, statements
from tests.support.statements import ALIPAY_HEADER, WECHAT_HEADER, WECHAT_SUMMARY

DAY = "2026-11-19"
GBK_PIPE_TRAIL = bytes([0x81, 0x7C]).decode("gbk")  # a GBK character whose second byte is "|"


def major(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


amount_text = st.one_of(
    st.integers(0, 10**7).map(major),
    st.sampled_from(["12.5", "012.50", " 12.50", "12.50 ", "12.505", "-12.50", "+12.50", "1e2", "", "12",
                     "１２.５０", "12.50.1", "0.00"]),
)
clock_text = st.one_of(
    st.builds(lambda h, m, s: f"{DAY} {h:02d}:{m:02d}:{s:02d}", st.integers(0, 23), st.integers(0, 59),
              st.integers(0, 59)),
    st.sampled_from([f"{DAY} 25:61:00", f"{DAY} 1:02:03", "2026-02-30 10:00:00", f" {DAY} 10:00:00",
                     f"{DAY}T10:00:00", "0001-01-01 07:00:00"]),
)
memo = st.text(st.sampled_from(list("ab ,\"'`|中文退款") + [GBK_PIPE_TRAIL, "\r"]), max_size=8)


@st.composite
def facts(draw):
    """One line's facts: kind, our number (small range: duplicates happen), amount, currency, status, fee."""
    kind = draw(st.sampled_from(["payment", "payment", "refund"]))
    n = draw(st.integers(0, 12))
    return {"kind": kind, "no": f"pay_{n:06d}" if kind == "payment" else f"re_{n:06d}",
            "order": f"pay_{draw(st.integers(0, 12)):06d}", "minor": draw(st.integers(0, 10**7)),
            "amount": draw(st.one_of(st.none(), amount_text)),  # None: the canonical text of minor
            "currency": draw(st.sampled_from(["NZD", "NZD", "AUD", "nzd", " NZD"])),
            "ok": draw(st.booleans() | st.just(True)), "fee": draw(st.integers(0, 20000)),
            "time": draw(clock_text), "memo": draw(memo), "odd": draw(st.integers(0, 30))}


def wechat_line(f: dict, n: int) -> str:
    amount = major(f["minor"]) if f["amount"] is None else f["amount"]
    status = ["SUCCESS", "REVOKED"][not f["ok"]] if f["odd"] else "success"
    if f["kind"] == "payment":
        cells = [f["time"], "wx", "1", "2", "", f"42{n:08d}", f["no"], "o", "NATIVE", status, "OTHERS", f["currency"],
                 amount, "0.00", "0" if f["odd"] % 2 else "", "0" if f["odd"] % 3 else "", "0.00", "0.00", "", "",
                 f["memo"] or "Honey, raw", "", major(f["fee"]), "2.00%"]
    else:
        cells = [f["time"], "wx", "1", "2", "", f"42{n:08d}", f["order"], "o", "NATIVE", "REFUND", "OTHERS",
                 f["currency"], "99.00", "0.00", f"50{n:08d}", f["no"], amount, "0.00", "ORIGINAL",
                 ["SUCCESS", "FAIL", "PROCESSING", ""][f["odd"] % 4], f["memo"], "", "-0.01", "2.00%"]
    if f["odd"] == 29:
        cells = cells[:12]  # a row cut short
    return ",".join("`" + c for c in cells)


def alipay_line(f: dict, n: int) -> str:
    amount = major(f["minor"]) if f["amount"] is None else f["amount"]
    rate = ["4.21000000", "4.21000000", "", " 4.2", "x4"][f["odd"] % 5]
    settled_at = ["", "", f"{DAY} 10:00:00", "2026-13-01 00:00:00"][f["odd"] % 4]
    settlement = ["", major(f["minor"]), "1.234"][f["odd"] % 3]
    status = "PLF S"[f["odd"] % 5] if f["ok"] else "F"
    cells = [f["no"], f"2026111922001{n:011d}", amount, "5.00", major(f["fee"]), "0.0", "0.0", settlement, "",
             f["currency"], rate, f["time"], settled_at, "P" if f["kind"] == "payment" else "R", status,
             f["memo"] or f["order"]]
    return "|".join(cells)


def payease_line(f: dict, n: int) -> str:
    amount = major(f["minor"]) if f["amount"] is None else f["amount"]
    stamp = f["time"].replace("-", "").replace(" ", "").replace(":", "")
    bank = ["招商银行", "", GBK_PIPE_TRAIL + "行", "ab"][f["odd"] % 4]
    if f["kind"] == "payment":
        status = "1" if f["ok"] else ["3", "2"][f["odd"] % 2]
        oid = f"20261119-444-{f['no']}" if f["odd"] != 7 else f"2026111-444-{f['no']}"
        return f"PAY|{oid}||{status}|{amount}|0|{major(f['fee'])}|{stamp}|{bank}|{f['memo'] if f['odd'] > 25 else ''}"
    status = "1" if f["ok"] else ["0", "2", "3"][f["odd"] % 3]
    refid = [f"R{n:04d}", "", " "][f["odd"] % 3] if f["odd"] < 6 else f"R{n:04d}"
    return (f"REF|20261119-444-{f['order']}|{refid}|{status}|{amount}|0|0.00|{stamp}|{bank}|"
            f"{' ' if f['odd'] == 3 else ''}{f['no']} {f['memo']}")


@st.composite
def statement(draw, channel: str):
    """(file bytes, the facts of its lines) in the channel's format, with file-level oddities."""
    rows = draw(st.lists(facts(), min_size=0, max_size=14))
    line_of = {"wechat": wechat_line, "alipay": alipay_line, "payease": payease_line}[channel]
    lines = [line_of(f, n) for n, f in enumerate(rows)]
    for _ in range(draw(st.integers(0, 2))):  # blank lines and (PayEase) comments anywhere
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["", "  ", "# note"]))
                     if channel == "payease" else draw(st.sampled_from(["", "  "])))
    header = {"wechat": WECHAT_HEADER, "alipay": ALIPAY_HEADER,
              "payease": "type|oid|refid|pstatus|amount|moneytype|fee|time|pmode|refreason"}[channel]
    lines.insert(0, header)
    if channel == "payease":
        lines.insert(0, "# PayEase day list")
    if channel == "wechat" and draw(st.integers(0, 5)):
        count = sum(1 for f in rows) + draw(st.sampled_from([0, 0, 0, 1]))
        lines += [WECHAT_SUMMARY, f"`{count},`0.00,`0.00,`0.00,`0.00"]
    end = draw(st.sampled_from(["\n", "\n", "\r\n", ""]))
    text = end.join(lines) + (end if draw(st.integers(0, 4)) else "")
    if draw(st.integers(0, 5)) == 0:
        text = "\ufeff" + text
    body = text.encode("gbk" if channel == "payease" else "utf-8", errors="replace")
    if draw(st.integers(0, 12)) == 0:  # a line that is not UTF-8 (GBK where UTF-8 is expected, or the reverse)
        at = draw(st.integers(0, len(body)))
        body = body[:at] + ("中文".encode("utf-8") if channel == "payease" else b"\xd6\xd0") + body[at:]
    return body, rows


@st.composite
def kauri_side(draw, channel: str, rows: list[dict]):
    """Kauri's records for the lines' keys, mostly agreeing; some off by a cent, a status, a day."""
    out = []
    for f in rows:
        if draw(st.integers(0, 6)) == 0:
            continue  # only at the channel
        amount = f["minor"] + (1 if draw(st.integers(0, 9)) == 0 else 0)
        status = recon.SUCCEEDED if f["ok"] or draw(st.booleans()) else recon.FAILED
        currency = "CNY" if channel == "payease" else f["currency"].strip().upper()
        if f["kind"] == "payment" and draw(st.integers(0, 5)) == 0:
            currency = "AUD" if channel == "payease" else "CNY"  # a currency difference
        fee = (f["fee"] + draw(st.sampled_from([0, 0, 2]))) if draw(st.integers(0, 3)) == 0 else None
        day = DAY if draw(st.integers(0, 5)) else "2026-11-17"
        out.append(recon.Expected(f["kind"], f["no"], f["no"], "mch_1", status, amount, currency, day,
                                  fee if f["kind"] == "payment" else None,
                                  "4.20000000" if draw(st.integers(0, 3)) == 0 else None))
    return recon.by_key(out)


def pieces(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts} | {0, len(body)})
    return [body[a:b] for a, b in zip(points, points[1:])]


def outcome_of(run) -> tuple:
    """What a pass did: its error as the run records it, or its findings, matches and kept records."""
    kept: list = []
    try:
        out = run(lambda line, outcome: kept.append((line, outcome)))
    except reconciliation._FileBroken as exc:
        return ("failed", exc.line_no, exc.reason, exc.records, tuple(kept))
    except statements.StatementRefused as exc:
        return ("refused", str(exc), tuple(kept))
    except Exception as exc:  # noqa: BLE001 - whatever the full parse raises, the fast reader must raise too
        return ("error", type(exc).__name__, str(exc), tuple(kept))
    return ("done", tuple(sorted((d.id, d.kind, d.channel_no, tuple(sorted(d.detail.items())),
                                  d.receivable_adjustment, d.currency) for d in out.discrepancies)),
            tuple((line.kind, line.our_no) for line in out.unknown), out.matched, out.lines,
            tuple(sorted(out.matched_amount.items())), tuple(e.our_no for e in out.suspense),
            repr(out.fx.as_dict()), tuple(kept))


def reference(channel: str, body: bytes, expected: dict):
    def run(keep):
        m = recon.Matcher(channel, DAY, dict(expected))
        for line in reconciliation._lines_of(channel, "transactions", statements.LineTail(
                body.splitlines(keepends=True) if b"\r" not in body else _lines(body))):
            keep(line, m.feed(line))
        return m.finish()
    return outcome_of(run)


def _lines(body: bytes) -> list[bytes]:
    """Lines as a file gives them (split after b"\\n" only)."""
    parts = body.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def fast(channel: str, source, expected: dict):
    def run(keep):
        m = recon.Matcher(channel, DAY, dict(expected))
        reconciliation.feed_file(channel, m, statements.LineTail(source), keep)
        return m.finish()
    return outcome_of(run)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(blocks, "BLOCK_BYTES", 48)


@pytest.mark.parametrize("channel", ["wechat", "alipay", "payease"])
def test_the_fast_reader_keeps_finds_and_fails_exactly_as_the_full_parse_line_by_line(channel, small_blocks):
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                      HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def check(data):
        body, rows = data.draw(statement(channel))
        expected = data.draw(kauri_side(channel, rows))
        cuts = data.draw(st.lists(st.integers(0, 10**6), max_size=6))
        want = reference(channel, body, expected)
        assert fast(channel, pieces(body, cuts), expected) == want
    check()


@pytest.mark.parametrize("channel", ["wechat", "alipay", "payease"])
def test_rows_matched_from_text_are_stored_as_the_full_parse_reads_them(channel):
    """Kauri agreeing with every line, so each well-formed row is matched from its text: the kept
    records are the full parse's, field by field, and so are the matches."""
    rows = [{"kind": "payment", "no": f"pay_{n:06d}", "order": "", "minor": 1000 + n, "amount": None,
             "currency": "NZD", "ok": True, "fee": 20 + n, "time": f"{DAY} 10:00:{n:02d}", "memo": "a, \"b\" 中",
             "odd": 1} for n in range(6)]
    rows.append({**rows[0], "kind": "refund", "no": "re_000001", "order": "pay_000001", "minor": 500, "odd": 10})
    line_of = {"wechat": wechat_line, "alipay": alipay_line, "payease": payease_line}[channel]
    header = {"wechat": WECHAT_HEADER, "alipay": ALIPAY_HEADER,
              "payease": "type|oid|refid|pstatus|amount|moneytype|fee|time|pmode|refreason"}[channel]
    lines = [header] + [line_of(f, n) for n, f in enumerate(rows)]
    if channel == "wechat":
        lines += [WECHAT_SUMMARY, f"`{len(rows)},`0.00,`0.00,`0.00,`0.00"]
    body = ("\r\n".join(lines) + "\r\n").encode("gbk" if channel == "payease" else "utf-8")
    currency = "CNY" if channel == "payease" else "NZD"
    for f in rows:
        f["currency"] = currency
    expected = recon.by_key(recon.Expected(f["kind"], f["no"], f["no"], "m", recon.SUCCEEDED, f["minor"], currency,
                                           DAY) for f in rows)
    got, want = fast(channel, [body], expected), reference(channel, body, expected)
    assert got == want
    assert got[0] == "done" and got[3] == len(rows) and len(got[-1]) == len(rows)

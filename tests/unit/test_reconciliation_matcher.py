"""The pure matcher over statements generated in each channel's real format, read by the real parsers:
every kind of discrepancy injected is found, and nothing else is."""
from __future__ import annotations

import pytest

from chalicelib.domain import reconciliation as recon
from chalicelib.services.statements import records
from tests.support.statements import FORMATS, Row

DAY = "2026-11-19"
CURRENCY = {"wechat": "NZD", "alipay": "NZD", "payease": "CNY"}


def fee(amount: int) -> int:
    return (amount * 200 + 5000) // 10000  # 2%, half up


def expect(kind, our_no, amount, currency, status="succeeded", day=DAY, ref=None):
    return recon.Expected(kind, our_no, ref or our_no, "mch_1", status, amount, currency, day,
                          fee(amount) if kind == recon.PAYMENT else None)


def scenario(channel: str):
    """(statement rows, Kauri's side, the findings that must come out as {(kind, our_no)})."""
    ccy = CURRENCY[channel]
    other = "AUD" if ccy == "NZD" else None
    P = lambda no, amount, **kw: Row("payment", no, amount, kw.pop("currency", ccy), kw.pop("fee", fee(amount)), **kw)  # noqa: E731
    rows = [
        P("pay_matched000000000001", 10000),
        P("pay_amount0000000000002", 10001),                       # Kauri says 100.00
        P("pay_status0000000000003", 5000, status="failed"),       # Kauri says succeeded
        P("pay_fee000000000000005", 8000, fee=500),                 # contract: 160
        P("pay_channelonly00000006", 1234),                         # Kauri never heard of it
        Row("refund", "re_partial1", 1500, ccy, 0, order_no="pay_refunded00000000009"),
        Row("refund", "re_partial2", 500, ccy, 0, order_no="pay_refunded00000000009"),
        P("pay_refunded00000000009", 4000),
        P("pay_matched000000000001", 10000),                       # the same line twice
        P("pay_crossday0000000010", 700, time="2026-11-19 00:00:05"),  # paid 23:59:58 the day before at Kauri
    ]
    kauri = [
        expect("payment", "pay_matched000000000001", 10000, ccy),
        expect("payment", "pay_amount0000000000002", 10000, ccy),
        expect("payment", "pay_status0000000000003", 5000, ccy),
        expect("payment", "pay_fee000000000000005", 8000, ccy),
        expect("refund", "re_partial1", 1500, ccy),
        expect("refund", "re_partial2", 500, ccy),
        expect("payment", "pay_refunded00000000009", 4000, ccy),
        expect("payment", "pay_crossday0000000010", 700, ccy, day="2026-11-18"),   # from suspense
        expect("payment", "pay_kaurionly0000000007", 900, ccy, day="2026-11-17"),  # missing 3 bill dates
        expect("payment", "pay_waiting000000000011", 300, ccy),                     # missing once: waits
        expect("payment", "pay_closed00000000000012", 300, ccy, status="closed"),  # never took money
    ]
    findings = {
        (recon.AMOUNT_DIFFERS, "pay_amount0000000000002"),
        (recon.STATUS_DIFFERS, "pay_status0000000000003"),
        (recon.FEE_DIFFERS, "pay_fee000000000000005"),
        (recon.CHANNEL_ONLY, "pay_channelonly00000006"),
        (recon.DUPLICATE_LINE, "pay_matched000000000001"),
        (recon.KAURI_ONLY, "pay_kaurionly0000000007"),
    }
    if other:
        rows.append(P("pay_currency00000000004", 2500, currency=other))
        kauri.append(expect("payment", "pay_currency00000000004", 2500, ccy))
        findings.add((recon.CURRENCY_DIFFERS, "pay_currency00000000004"))
    return rows, kauri, findings


@pytest.mark.parametrize("channel", ["wechat", "alipay", "payease"])
def test_every_injected_discrepancy_is_found_and_none_false(channel):
    rows, kauri, wanted = scenario(channel)
    body = FORMATS[channel](rows)
    lines = [recon.line_of(r) for r in records(channel, "transactions", body.splitlines(keepends=True))]
    expected = recon.by_key(kauri)
    out = recon.match(channel, DAY, lines, dict(expected))
    unknown = out.unknown
    # Lines the day does not hold go to the service's consistent lookup; here Kauri has none of them.
    found = list(out.discrepancies) + [d for line in unknown for d in recon.compare(channel, DAY, line, None)]
    assert {(d.kind, d.our_no) for d in found} == wanted
    assert len(found) == len(wanted)
    assert out.matched == 5  # matched, both partial refunds, the refunded order, the cross-day one
    assert [e.our_no for e in out.suspense] == ["pay_waiting000000000011"]
    assert len({d.id for d in found}) == len(found)
    again = recon.match(channel, DAY, lines, recon.by_key(kauri))
    assert sorted(d.id for d in again.discrepancies) == sorted(d.id for d in out.discrepancies)  # deterministic


def test_write_off_amounts_bring_the_receivable_to_what_the_channel_holds():
    line = recon.Line("payment", "pay_x", "t", "succeeded", 10001, "NZD", 200, "", 1)
    [d] = recon.compare("wechat", DAY, line, expect("payment", "pay_x", 10000, "NZD"))
    assert d.kind == recon.AMOUNT_DIFFERS and d.receivable_adjustment == 1
    [only] = recon.compare("wechat", DAY, line, None)
    assert only.receivable_adjustment == 10001
    refund = recon.Line("refund", "re_x", "t", "succeeded", 300, "NZD", 0, "", 1)
    assert recon.compare("wechat", DAY, refund, None)[0].receivable_adjustment == -300


def test_settlement_short_by_one_fen_is_its_own_finding():
    lines = [recon.Line("payment", "p1", "", "succeeded", 10000, "NZD", 180, "2026-11-20T07:36:00Z", 1, 9820),
             recon.Line("payment", "p2", "", "succeeded", 5000, "NZD", 90, "2026-11-20T07:36:00Z", 2, 4909),
             recon.Line("refund", "r1", "", "succeeded", 1000, "NZD", 0, "2026-11-20T07:36:00Z", 3, -1000)]
    [batch] = recon.settlement_batches(lines, lambda _l: "2026-11-20")
    assert (batch.gross, batch.fees, batch.expected_paid, batch.paid, batch.shortfall) == (14000, 270, 13730, 13729, 1)
    finding = recon.settlement_finding("alipay", "2026-11-20", batch)
    assert finding.kind == recon.SETTLEMENT_SHORT and finding.detail["shortfall"] == 1
    assert finding.receivable_adjustment == -1
    whole = [l._replace(settlement=l.settlement + 1) if l.our_no == "p2" else l for l in lines]
    assert recon.settlement_finding("alipay", "2026-11-20", next(recon.settlement_batches(whole, lambda _l: "x"))) \
        is None


def test_fx_variance_is_recorded_beyond_the_threshold_not_raised():
    e = recon.Expected("payment", "pay_fx", "pay_fx", "m", "succeeded", 1000, "NZD", DAY, None, "4.20000000")
    line = recon.Line("payment", "pay_fx", "t", "succeeded", 1000, "NZD", 0, "", 1, None, "4.25000000")
    out = recon.match("alipay", DAY, [line], recon.by_key([e]), fx_threshold_bps=50)
    assert out.discrepancies == [] and out.matched == 1
    assert out.fx.compared == 1 and out.fx.beyond == 1 and out.fx.max_bps == 119


@pytest.mark.parametrize("channel", ["wechat", "alipay", "payease"])
def test_the_fast_path_finds_exactly_what_the_full_parse_finds(channel):
    from chalicelib.services import reconciliation, statements

    rows, kauri, wanted = scenario(channel)
    body = FORMATS[channel](rows)
    full = recon.match(channel, DAY, [recon.line_of(r) for r in records(channel, "transactions",
                                                                        body.splitlines(keepends=True))],
                       recon.by_key(kauri))
    m = recon.Matcher(channel, DAY, recon.by_key(kauri))
    kept = []
    reconciliation.feed_file(channel, m, statements.LineTail(body.splitlines(keepends=True)),
                             lambda line, outcome: kept.append((line, outcome)))
    fast = m.finish()
    assert sorted(d.id for d in fast.discrepancies) == sorted(d.id for d in full.discrepancies)
    assert [l.our_no for l in fast.unknown] == [l.our_no for l in full.unknown] == ["pay_channelonly00000006"]
    assert (fast.matched, fast.lines, fast.matched_amount) == (full.matched, full.lines, full.matched_amount)
    assert [e.our_no for e in fast.suspense] == [e.our_no for e in full.suspense]
    # What the store keeps of a line matched from its text is what the full parse reads from it.
    parsed = {(l.kind, l.our_no, l.line_no): l for l in (recon.line_of(r) for r in records(
        channel, "transactions", body.splitlines(keepends=True)))}
    for line, outcome in kept:
        assert line == parsed[(line.kind, line.our_no, line.line_no)], line


def test_a_bill_cut_off_mid_line_fails_as_truncated_with_what_was_read():
    from chalicelib.services import reconciliation, statements

    body = FORMATS["wechat"]([Row("payment", "pay_a", 1000, fee=20), Row("payment", "pay_b", 1000, fee=20)])
    cut = body[:body.index(b"pay_b") + 30]  # the download stopped inside the second row
    m = recon.Matcher("wechat", DAY, recon.by_key(expect("payment", n, 1000, "NZD") for n in ("pay_a", "pay_b")))
    with pytest.raises(reconciliation._FileBroken) as caught:
        reconciliation.feed_file("wechat", m, statements.LineTail(cut.splitlines(keepends=True)))
    assert caught.value.line_no == 3 and "fewer columns" in caught.value.reason


@pytest.mark.parametrize("channel", ["wechat", "alipay", "payease"])
def test_a_bad_time_fails_the_file_even_on_a_line_that_would_match_from_its_text(channel):
    from chalicelib.services import reconciliation, statements

    ccy = CURRENCY[channel]
    body = FORMATS[channel]([Row("payment", "pay_a", 1000, ccy, fee=20),
                             Row("payment", "pay_b", 1000, ccy, fee=20, time="2026-11-19 25:61:00")])
    m = recon.Matcher(channel, DAY, recon.by_key(expect("payment", n, 1000, ccy) for n in ("pay_a", "pay_b")))
    with pytest.raises(reconciliation._FileBroken) as caught:
        reconciliation.feed_file(channel, m, statements.LineTail(body.splitlines(keepends=True)))
    assert caught.value.line_no == (3 if channel != "payease" else 4) and "time" in caught.value.reason

"""Alipay reconciliation and rate files -> standard records (spec §7, §8)."""
from __future__ import annotations

import os
from decimal import Decimal

import pytest

from chalicelib.channels.alipay.statement import StatementFormatError, parse_compare_file, parse_rate_file

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "statements", "alipay")


def _sample(name: str) -> bytes:
    with open(os.path.join(SAMPLES, name), "rb") as fh:
        return fh.read()


def test_v2017_transaction_file_is_read_by_its_header():
    records = list(parse_compare_file(_sample("forex_compare_file_v2017.txt")))
    assert [r["record_type"] for r in records] == ["PAY", "PAY", "REFUND"]
    first = records[0]
    assert first == {
        "channel": "alipay", "bill_date": "2024-01-01", "record_type": "PAY",
        "our_no": "NZ20240101000001", "channel_no": "2024010121001003920500000001",
        "status": "SUCCESS", "amount_minor": 2550, "currency": "NZD", "fee_minor": 46,
        "channel_time": "2024-01-01T04:05:30Z", "raw_line_no": 2, "original_our_no": None,
        "settlement_minor": 2504, "settlement_time": None, "rate": "4.35120000", "file_status": "P",
    }


def test_amounts_without_fixed_scale_are_exact():
    records = list(parse_compare_file(_sample("forex_compare_file_v2017.txt")))
    assert records[1]["amount_minor"] == 120000 and records[1]["fee_minor"] == 2160
    assert records[1]["settlement_minor"] == 117840


def test_beijing_late_evening_keeps_its_beijing_bill_date():
    second = list(parse_compare_file(_sample("forex_compare_file_v2017.txt")))[1]
    assert second["bill_date"] == "2024-01-01"
    assert second["channel_time"] == "2024-01-01T15:59:59Z"


def test_refund_row_carries_refund_id_and_original_order():
    refund = list(parse_compare_file(_sample("forex_compare_file_v2017.txt")))[2]
    assert refund["our_no"] == "FOREXREFUND_NZ20240101000001_01"
    assert refund["original_our_no"] == "NZ20240101000001"
    assert refund["amount_minor"] == 1000


def test_settlement_file_status_l_means_settled():
    text = ("Partner_transaction_id|Transaction_id|Amount|Rmb_amount|Fee|Distribute_amount|Distribute_rmb_amount|"
            "Settlement|Rmb_settlement|Currency|Rate|Payment_time|Settlement_time|Type|Status|Remarks\n"
            "A1|T1|0.01|0.01|0.0|0.0|0.0|0.01|0.01|HKD|0.84682000|2017-09-22 11:04:13|2017-09-28 15:36:00|P|L|A1\n")
    (rec,) = parse_compare_file(text)
    assert rec["status"] == "SETTLED" and rec["settlement_time"] == "2017-09-28T07:36:00Z"
    assert rec["amount_minor"] == 1 and rec["currency"] == "HKD"


def test_legacy_v2013_layout_without_header():
    records = list(parse_compare_file(_sample("forex_compare_file_v2013.txt")))
    assert records[0]["our_no"] == "NZ20131122000001" and records[0]["amount_minor"] == 35045
    assert records[0]["fee_minor"] == 631 and records[0]["channel_no"] is None
    assert records[0]["channel_time"] == "2013-11-22T03:25:37Z"
    assert records[1]["record_type"] == "REFUND" and records[1]["original_our_no"] == "NZ20131122000001"


def test_streams_from_an_iterator_of_byte_lines():
    def lines():
        with open(os.path.join(SAMPLES, "forex_compare_file_v2017.txt"), "rb") as fh:
            yield from fh
    assert len(list(parse_compare_file(lines()))) == 3


def test_zero_decimal_currency_rejects_fractions():
    text = "X1|100.5|JPY|20240101120000||P|0|P|\n"
    with pytest.raises(StatementFormatError) as err:
        list(parse_compare_file(text))
    assert err.value.line_no == 1


@pytest.mark.parametrize("bad", [
    "File download failed:Over 10 days to Date period",
    "<alipay><is_success>F</is_success><error>ILLEGAL_PARTNER</error></alipay>",
    "only|three|cells",
    "X|1.00|NZD|not-a-time||P|0|P|",
    "X|1.00|nzd1|20240101120000||P|0|P|",
    "X|1.00|NZD|20240101120000||Q|0|P|",
    "X|" + "9" * 5000,
])
def test_malformed_lines_raise_with_line_number(bad):
    with pytest.raises(StatementFormatError):
        list(parse_compare_file(bad))


def test_blank_lines_are_skipped_and_empty_file_yields_nothing():
    assert list(parse_compare_file("\n\n")) == []


def test_rate_file_gives_decimal_rates_with_their_own_times():
    rates = parse_rate_file(_sample("forex_rate_file.txt"))
    assert rates["NZD"]["rate"] == Decimal("4.35120000")
    assert rates["JPY"]["rate"] == Decimal("0.04987")
    assert rates["KRW"]["at"] == "2012-12-24T09:43:59Z"
    assert all(isinstance(v["rate"], Decimal) for v in rates.values())


def test_rate_file_ignores_extra_columns_and_rejects_junk():
    assert parse_rate_file("20240101|093012|USD|7.1|unused\n")["USD"]["rate"] == Decimal("7.1")
    for bad in ("20240101|093012|USD|-1", "20240101|093012|USD|abc", "<alipay/>", "20240101|093012|USD"):
        with pytest.raises(StatementFormatError):
            parse_rate_file(bad)

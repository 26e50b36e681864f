"""downloadbill text -> standard records (spec §9, vector V6)."""
from __future__ import annotations

import io
import os

import pytest

from chalicelib.channels.wechat import statement

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "..", "..", "statements", "wechat", "bill_variant_a_20240101.csv")

V6 = open(SAMPLE, encoding="utf-8").read()

V6_RECORD = {
    "channel": "wechat", "bill_date": "2024-01-01", "record_type": "PAY", "our_no": "NZ20240101000001",
    "channel_no": "4200000000202401010000000001", "status": "SUCCESS", "amount_minor": 1250, "currency": "NZD",
    "fee_minor": 25, "channel_time": "2024-01-01T04:05:01Z", "raw_line_no": 2,
}


def test_v6_bill_gives_one_payment_record():
    assert list(statement.parse(V6)) == [V6_RECORD]


def test_bom_crlf_and_bytes_input_are_handled():
    text = "\ufeff" + V6.replace("\n", "\r\n")
    assert list(statement.parse(text)) == [V6_RECORD]
    assert list(statement.parse(text.encode("utf-8"))) == [V6_RECORD]


def test_streams_from_a_file_object_line_by_line():
    assert list(statement.parse(io.StringIO(V6), bill_date="2024-01-01")) == [V6_RECORD]


def test_refund_rows_and_english_headers_with_reordered_extra_columns():
    header = ("Vendor order number,Transaction time,Currency type,Total amount,Transaction status,"
              "Wechat order number (transaction_id),Wechat refund number,Vendor refund number,Refund amount,"
              "Refund status,Fee,Some future column")
    row = "`NZ1,`2024-01-02 08:00:00,`NZD,`12.50,`REFUND,`4200000000202401010000000001,`503000001,`RF1,`2.50,`SUCCESS,`-0.05,`x"
    summary = "Total transactions,Total amount\n`1,`12.50"
    (rec,) = statement.parse("\n".join([header, row, summary]))
    assert rec["record_type"] == "REFUND" and rec["our_no"] == "RF1" and rec["channel_no"] == "503000001"
    assert rec["amount_minor"] == 250 and rec["fee_minor"] == -5 and rec["status"] == "SUCCESS"
    assert rec["channel_time"] == "2024-01-02T00:00:00Z" and rec["bill_date"] == "2024-01-02"


def test_product_name_with_a_comma_does_not_shift_columns():
    line = V6.splitlines()[1].replace("`新西兰蜂蜜", "`Honey, 500g")
    text = "\n".join([V6.splitlines()[0], line])
    (rec,) = statement.parse(text)
    assert rec["fee_minor"] == 25


@pytest.mark.parametrize("text", [
    "",                                                       # no header at all
    "foo,bar\n`1,`2",                                         # header without the needed columns
    V6.replace("`12.50", "`12.505"),                          # more decimals than NZD has
    V6.replace("`2024-01-01 12:05:01", "`yesterday"),         # bad time
    V6.replace(",`2.00%", ""),                                # row shorter than the header
])
def test_bad_bills_raise_statement_error(text):
    with pytest.raises(statement.StatementError):
        list(statement.parse(text))

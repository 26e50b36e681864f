"""PayEase MACs against the spec's vectors (peers.md §3, Appendix A), notify/return parsing, statement."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

from chalicelib.channels.base import ChannelStatus, InvalidNotification
from chalicelib.channels.payease import notify, signing, statement
from chalicelib.money import Money

KEY = "test"
OID = "20240101-444-0001"


# ---- spec vectors ------------------------------------------------------------------------------

def test_request_md5info_matches_spec_vector():
    fields = {"v_moneytype": "0", "v_ymd": "20240101", "v_amount": "100.00", "v_rcvname": "444",
              "v_oid": OID, "v_mid": "444", "v_url": "https://example.com/return"}
    assert signing.request_md5info(KEY, fields) == "8d84af8fb75bf7e6c83b8e25023762c7"


def test_md5money_matches_public_sxypaytest_vector():
    assert signing.md5money(KEY, {"v_amount": "100.00", "v_moneytype": "0"}) == "d7daee0933dbd0e1407898eb0ac48b96"


def test_query_mac_matches_spec_vector():
    assert signing.query_mac(KEY, "444", OID) == "2e152e1a7f1c067d1bfee24eb0c74bf4"


def test_return_md5info_hashes_chinese_fields_as_gbk():
    fields = {"v_oid": OID, "v_pstatus": "20", "v_pstring": "支付完成", "v_pmode": "招商银行"}
    assert signing.return_md5info(KEY, fields) == "db434797f47e5fe20b78ac00cc8f4bf5"
    assert signing.sign(KEY, fields, signing.RETURN_INFO_FIELDS, "utf-8") == "93e92e87e5e5e13363d652982c1d8674"


def test_return_verification_reports_which_encoding_matched():
    fields = {"v_oid": OID, "v_pstatus": "20", "v_pstring": "支付完成", "v_pmode": "招商银行"}
    assert signing.verify(KEY, fields, signing.RETURN_INFO_FIELDS, "db434797f47e5fe20b78ac00cc8f4bf5") == "gbk"
    assert signing.verify(KEY, fields, signing.RETURN_INFO_FIELDS, "93e92e87e5e5e13363d652982c1d8674") == "utf-8"
    assert signing.verify(KEY, fields, signing.RETURN_INFO_FIELDS, "0" * 32) is None
    assert signing.verify(KEY, fields, signing.RETURN_INFO_FIELDS, "short") is None


def test_notify_mac_matches_spec_vector():
    fields = {"v_oid": OID, "v_pmode": "招商银行", "v_pstatus": "1", "v_pstring": "支付完成", "v_count": "1"}
    assert signing.notify_mac(KEY, fields) == "2df61da8d21df2b49822579269373b5f"


def test_verification_accepts_uppercase_hex():
    fields = {"v_amount": "100.00", "v_moneytype": "0"}
    assert signing.verify(KEY, fields, signing.MONEY_FIELDS, "D7DAEE0933DBD0E1407898EB0AC48B96") == "gbk"


def test_missing_key_refuses_to_sign():
    with pytest.raises(ValueError):
        signing.md5money("", {"v_amount": "1.00", "v_moneytype": "0"})


# ---- server notify ------------------------------------------------------------------------------

def _notify_body(orders, key=KEY, tamper=None, encoding="gbk"):
    j = signing.BATCH_SEPARATOR.join
    fields = {
        "v_oid": j(o[0] for o in orders), "v_pmode": j("招商银行" for _ in orders),
        "v_pstatus": j(o[1] for o in orders), "v_pstring": j("支付完成" for _ in orders),
        "v_amount": j(o[2] for o in orders), "v_moneytype": j("0" for _ in orders),
        "v_count": str(len(orders)),
    }
    fields["v_mac"] = signing.notify_mac(key, fields)
    fields["v_md5money"] = signing.md5money(key, fields)
    fields.update(tamper or {})
    return urlencode(fields, encoding=encoding).encode("ascii")


def test_single_notify_with_spec_vector_mac_is_paid():
    [p] = notify.verify_notification(_notify_body([(OID, "1", "100.00")]), {}, KEY, expected_mid="444")
    assert p.channel_order_id == "0001" and p.channel_transaction_id == OID
    assert p.status is ChannelStatus.PAID
    assert p.amount == Money(10000, "CNY")
    assert p.raw["v_pmode"] == "招商银行"
    assert p.raw["mac_encoding"] == "as-received"


def test_batched_notify_splits_into_orders():
    body = _notify_body([(OID, "1", "100.00"), ("20240101-444-0002", "3", "0.01")])
    a, b = notify.verify_notification(body, {}, KEY)
    assert (a.channel_transaction_id, a.status, a.amount) == (OID, ChannelStatus.PAID, Money(10000, "CNY"))
    assert (b.channel_order_id, b.status, b.amount) == ("0002", ChannelStatus.FAILED, Money(1, "CNY"))


def test_notify_sent_as_utf8_but_signed_over_gbk_still_verifies():
    j = {"v_oid": OID, "v_pmode": "招商银行", "v_pstatus": "1", "v_pstring": "支付完成", "v_count": "1",
         "v_amount": "1.00", "v_moneytype": "0"}
    j["v_mac"] = signing.notify_mac(KEY, j)
    j["v_md5money"] = signing.md5money(KEY, j)
    [p] = notify.verify_notification(urlencode(j, encoding="utf-8").encode(), {}, KEY)
    assert p.raw["mac_encoding"] == "gbk"


@pytest.mark.parametrize("tamper", [
    {"v_amount": "1000.00"},                     # amount changed, v_md5money no longer matches
    {"v_pstatus": "3"},                          # status flipped
    {"v_mac": "0123456789abcdef0123456789abcdef"},
    {"v_count": "2"},
])
def test_tampered_notify_is_rejected(tamper):
    with pytest.raises(InvalidNotification):
        notify.verify_notification(_notify_body([(OID, "1", "100.00")], tamper=tamper), {}, KEY)


def test_notify_signed_with_another_key_is_rejected():
    with pytest.raises(InvalidNotification):
        notify.verify_notification(_notify_body([(OID, "1", "100.00")], key="forged"), {}, KEY)


@pytest.mark.parametrize("body", [
    b"", b"garbage", b"v_oid=1&v_oid=2", b"v_count=1", b"a" * 70000,
    b"%ff%fe=1",
])
def test_malformed_notify_is_rejected(body):
    with pytest.raises(InvalidNotification):
        notify.verify_notification(body, {}, KEY)


def test_batch_with_mismatched_counts_is_rejected_even_when_signed():
    fields = {"v_oid": OID + "|_|20240101-444-0002", "v_pmode": "招商银行", "v_pstatus": "1",
              "v_pstring": "支付完成", "v_amount": "1.00", "v_moneytype": "0", "v_count": "2"}
    fields["v_mac"] = signing.notify_mac(KEY, fields)
    fields["v_md5money"] = signing.md5money(KEY, fields)
    with pytest.raises(InvalidNotification):
        notify.verify_notification(urlencode(fields, encoding="gbk").encode(), {}, KEY)


def test_notify_for_another_merchant_is_rejected():
    body = _notify_body([("20240101-999-0001", "1", "1.00")])
    with pytest.raises(InvalidNotification):
        notify.verify_notification(body, {}, KEY, expected_mid="444")


def test_notify_in_non_cny_moneytype_is_rejected():
    j = {"v_oid": OID, "v_pmode": "x", "v_pstatus": "1", "v_pstring": "x", "v_count": "1",
         "v_amount": "1.00", "v_moneytype": "1"}
    j["v_mac"] = signing.notify_mac(KEY, j)
    j["v_md5money"] = signing.md5money(KEY, j)
    with pytest.raises(InvalidNotification):
        notify.verify_notification(urlencode(j).encode(), {}, KEY)


# ---- browser return ------------------------------------------------------------------------------

def _return_params(pstatus="20", amount="100.00", encoding="gbk"):
    p = {"v_oid": OID, "v_pstatus": pstatus, "v_pstring": "支付完成", "v_pmode": "招商银行",
         "v_amount": amount, "v_moneytype": "0"}
    p["v_md5info"] = signing.sign(KEY, p, signing.RETURN_INFO_FIELDS, encoding)
    p["v_md5money"] = signing.md5money(KEY, p)
    return p


@pytest.mark.parametrize("pstatus,status", [("20", ChannelStatus.PAID), ("30", ChannelStatus.FAILED),
                                            ("1", ChannelStatus.PENDING)])
def test_browser_return_statuses(pstatus, status):
    assert notify.verify_return(_return_params(pstatus), KEY).status is status


def test_browser_return_signed_over_utf8_is_accepted_and_noted():
    assert notify.verify_return(_return_params(encoding="utf-8"), KEY).raw["mac_encoding"] == "utf-8"


def test_browser_return_with_changed_amount_is_rejected():
    p = _return_params()
    p["v_amount"] = "1.00"
    with pytest.raises(InvalidNotification):
        notify.verify_return(p, KEY)


def test_browser_return_missing_mac_is_rejected():
    p = _return_params()
    del p["v_md5info"]
    with pytest.raises(InvalidNotification):
        notify.verify_return(p, KEY)


# ---- statement (assumed format) -------------------------------------------------------------------

STATEMENT = """# PayEase daily statement (assumed format)
type|oid|refid|pstatus|amount|moneytype|fee|time|pmode|refreason
PAY|20240101-444-0001||1|100.00|0|0.60|20240101103000|招商银行|
PAY|20240101-444-0002||3|5.00|0||20240101235959|中国银行|
REF|20240101-444-0001|R0001|1|40.00|0|0.00|20240102090000||rf_abc partial
"""


def test_statement_lines_become_standard_records():
    lines = [line.encode("gbk") for line in STATEMENT.splitlines(keepends=True)]
    records = list(statement.parse(lines, bill_date="20240101"))
    assert records[0] == {
        "channel": "payease", "bill_date": "2024-01-01", "record_type": "payment",
        "our_no": "0001", "channel_no": "20240101-444-0001", "status": "paid",
        "amount_minor": 10000, "currency": "CNY", "fee_minor": 60,
        "channel_time": "2024-01-01T02:30:00Z", "raw_line_no": 3}
    assert records[1]["status"] == "failed" and records[1]["fee_minor"] == 0
    assert records[1]["channel_time"] == "2024-01-01T15:59:59Z"
    assert records[2]["record_type"] == "refund"
    assert (records[2]["our_no"], records[2]["channel_no"], records[2]["status"]) == ("rf_abc", "R0001", "succeeded")
    assert records[2]["amount_minor"] == 4000


def test_statement_streams_lazily():
    gen = statement.parse(iter(STATEMENT.splitlines()))
    first = next(gen)
    assert first["channel_no"] == "20240101-444-0001" and first["bill_date"] == "2024-01-01"


@pytest.mark.parametrize("bad_row", [
    "PAY|20240101-444-0003||1|1.005|0|0|20240101000000|x|",     # three decimals
    "PAY|20240101-444-0003||9|1.00|0|0|20240101000000|x|",      # unknown status
    "PAY|not-an-oid||1|1.00|0|0|20240101000000|x|",
    "PAY|20240101-444-pay-x||1|1.00|0|0|20240101000000|x|",    # '-' inside the serial
    "PAY|20240101-444-0003||1|1.00|1|0|20240101000000|x|",      # USD
    "REF|20240101-444-0003||1|1.00|0|0|20240101000000||",       # refund without refid
    "PAY|20240101-444-0003||1|1.00|0|0|20240101000000",         # missing cell
])
def test_statement_bad_rows_name_their_line(bad_row):
    text = STATEMENT.splitlines()[1] + "\n" + bad_row
    with pytest.raises(statement.StatementError) as exc:
        list(statement.parse(text.splitlines()))
    assert exc.value.line_no == 2


def test_sample_statement_file_parses():
    import os

    path = os.path.join(os.path.dirname(__file__), "..", "..", "statements", "payease", "20240101.txt")
    records = list(statement.parse_file(path))
    assert len(records) == 4
    assert sum(r["amount_minor"] for r in records if r["record_type"] == "payment" and r["status"] == "paid") == 25050

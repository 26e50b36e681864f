import csv
import io
from datetime import date

import pytest

from chalicelib.domain import bank_files
from chalicelib.domain.bank_files import Credit

SOURCE = "0102420100194000"


def render(credits):
    return bank_files.render(credits, source_account=SOURCE, subscriber_name="Kauri Payments Ltd",
                             due=date(2026, 11, 25), created=date(2026, 11, 25))


def test_header_detail_and_control_records():
    f = render([Credit("0109020068389000", 12345, "Kiwi Honey Ltd", "wd-abc123def"),
                Credit("0865231954512001", 500, "Tui, Cafe \"Ltd\"", "wd-zzz999yyy")])
    rows = list(csv.reader(io.StringIO(f.text)))
    assert f.text.endswith("\r\n") and f.text.count("\r\n") == 4
    assert rows[0] == ["1", "", "", "", "010242010019400", "", "20261125", "20261125", ""]
    assert rows[1][:6] == ["2", "0109020068389000", "50", "12345", "Kiwi Honey Ltd", "wd-abc123def"]
    assert rows[1][9] == "Kauri Payments Ltd" and rows[1][11] == "wd-abc123def"
    assert rows[2][4] == "Tui Cafe Ltd"        # commas and quotes never reach the file
    assert all(len(r) == 13 for r in rows[1:3])
    # hash total: 09020068389 + 65231954512 = 74252022901
    assert rows[3] == ["3", "12845", "2", "74252022901"]
    assert (f.count, f.total, f.hash_total) == (2, 12845, "74252022901")


def test_hash_total_keeps_the_rightmost_11_digits():
    accounts = ["0199999999999000"] * 20   # 20 x 99999999999 = 1999999999980
    assert bank_files.hash_total(accounts) == "99999999980"
    assert bank_files.hash_total(["0100010000001000"]) == "00010000001"


def test_field_widths_are_enforced():
    f = render([Credit("0109020068389000", 1, "A very long company name limited", "wd-0123456789xyz")])
    row = list(csv.reader(io.StringIO(f.text)))[1]
    assert row[4] == "A very long company "[:20].strip() and len(row[5]) == 12


@pytest.mark.parametrize("credit", [
    Credit("010902006838900", 100, "x", "r"),          # 15 digits
    Credit("0109020068389000", 0, "x", "r"),
    Credit("0109020068389000", 10 ** 11, "x", "r"),
])
def test_bad_credits_are_refused(credit):
    with pytest.raises(bank_files.BankFileError):
        render([credit])


def test_empty_batch_is_refused():
    with pytest.raises(bank_files.BankFileError):
        render([])

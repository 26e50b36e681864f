"""NZ bank account validation against the spec's verified numbers (money-core §4.4)."""
import pytest

from chalicelib.domain import bank_account as ba


@pytest.mark.parametrize("text, formatted, alg", [
    ("01-0902-0068389-00", "01-0902-0068389-000", "A"),     # total 176 = 16 x 11
    ("08-6523-1954512-001", "08-6523-1954512-001", "D"),    # total 121 = 11 x 11
    ("26-2600-0320871-032", "26-2600-0320871-032", "G"),    # total 30
    ("01-0242-0100194-00", "01-0242-0100194-000", "A"),     # total 88 = 8 x 11
    ("0102420100194000", "01-0242-0100194-000", "A"),
    (" 01 0242 0100194 00 ", "01-0242-0100194-000", "A"),
])
def test_spec_verified_numbers_are_valid_and_formatted(text, formatted, alg):
    assert ba.normalise(text) == formatted
    assert ba.algorithm(ba.compact(text)) == alg


def test_g_total_matches_the_spec():
    assert ba.literal_ird_total(ba.compact("26-2600-0320871-032")) == 30


def test_wrong_check_digit_is_refused():
    with pytest.raises(ba.InvalidBankAccount) as e:
        ba.validate("01-0242-0100195-00")                   # total 89
    assert e.value.code == "bank_account_check_digit"


def test_literal_ird_rule_for_g_differs_from_stdnum_mod_9_and_wins():
    from stdnum.nz import bankaccount

    number = ba.compact("26-2600-3522457-096")
    assert bankaccount._calc_checksum(number) == 0          # stdnum's p % 9 reading passes it
    assert ba.literal_ird_total(number) % 10 != 0           # the IRD text's digit sums do not
    assert not ba.is_valid("26-2600-3522457-096")


def test_digit_sum_reduction_is_applied_twice():
    assert ba._digit_sum(ba._digit_sum(63)) == 9
    assert ba._digit_sum(ba._digit_sum(18)) == 9
    assert ba._digit_sum(ba._digit_sum(14)) == 5


@pytest.mark.parametrize("text, code", [
    ("01-9999-0100197-00", "bank_account_branch"),          # branch outside every range
    ("01-0242-01001A4-00", "bank_account_invalid"),
    ("01-0242-010019", "bank_account_invalid"),
    ("", "bank_account_invalid"),
    ("٠١-٠٢٤٢-٠١٠٠١٩٤-٠٠", "bank_account_invalid"),          # non-ASCII digits
])
def test_malformed_or_unknown_accounts_are_refused(text, code):
    with pytest.raises(ba.InvalidBankAccount) as e:
        ba.validate(text)
    assert e.value.code == code


def test_bank_31_uses_algorithm_x_and_only_needs_a_known_branch():
    assert ba.is_valid("31-2800-1234567-000")
    assert not ba.is_valid("31-2900-1234567-000")

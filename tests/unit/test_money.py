from decimal import Decimal

import pytest

from chalicelib.money import Money, MoneyError, bps_of, convert, minor_from_major, rate_from_e8, rate_to_e8


def test_major_string_round_trips_exactly():
    assert Money.from_major("12.50", "NZD") == Money(1250, "NZD")
    assert Money(1250, "NZD").to_major_str() == "12.50"
    assert Money(5, "JPY").to_major_str() == "5"


def test_more_decimals_than_the_currency_has_is_refused_not_rounded():
    with pytest.raises(MoneyError):
        Money.from_major("12.505", "NZD")


def test_floats_and_unknown_currencies_are_refused():
    with pytest.raises(MoneyError):
        Money(12.5, "NZD")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(100, "XXX")
    with pytest.raises(MoneyError):
        Money(100, "NZD") + Money(100, "AUD")


def test_wechat_style_conversion_names_its_rounding():
    # 1250 NZD cents x 4.3 = 5375 fen (spec V4)
    assert convert(Money(1250, "NZD"), "CNY", rate_from_e8(430000000), "HALF_UP") == Money(5375, "CNY")
    # 10000 x 4.30123456 = 43012.3456 fen
    assert convert(Money(10000, "NZD"), "CNY", rate_from_e8(430123456), "HALF_UP").amount == 43012
    assert convert(Money(10000, "NZD"), "CNY", rate_from_e8(430125000), "CEILING").amount == 43013
    assert rate_to_e8(Decimal("4.3")) == 430000000


def test_fee_half_up():
    assert bps_of(Money(1025, "NZD"), 200) == Money(21, "NZD")  # 20.5 -> 21 (half-even would give 20)
    assert bps_of(Money(10000, "NZD"), 200) == Money(200, "NZD")


@pytest.mark.parametrize("text", ["1e3", "1E+2", "NaN", "Infinity", "0x10", "1" * 30, "12.", ".5", "1,000.00", ""])
def test_only_plain_decimal_amounts_are_read(text):
    with pytest.raises(MoneyError):
        Money.from_major(text, "NZD")


def test_negative_and_padded_amounts_are_still_read_exactly():
    assert Money.from_major("-0.50", "NZD") == Money(-50, "NZD")
    assert Money.from_major(" 12.50 ", "NZD") == Money(1250, "NZD")
    assert Money.from_major("999999999999999.99", "NZD").amount == 99999999999999999


@pytest.mark.parametrize("text", ["١٢", "１２.５０", "12.５", "۱۰"])
def test_amounts_in_other_scripts_digits_are_not_amounts(text):
    with pytest.raises(MoneyError):
        Money.from_major(text, "NZD")
    with pytest.raises(MoneyError):
        minor_from_major(text, "NZD")

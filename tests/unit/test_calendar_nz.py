from datetime import date

import pytest

from chalicelib.domain import calendar_nz as cal


def days(year):
    return {d: name for d, name in cal.public_holidays(year).items()}


def test_easter_computus_known_years():
    assert cal.easter_sunday(2019) == date(2019, 4, 21)
    assert cal.easter_sunday(2024) == date(2024, 3, 31)
    assert cal.easter_sunday(2025) == date(2025, 4, 20)
    assert cal.easter_sunday(2026) == date(2026, 4, 5)
    assert cal.easter_sunday(2038) == date(2038, 4, 25)   # latest possible
    assert cal.easter_sunday(2285) == date(2285, 3, 22)   # earliest possible


def test_2024_holidays():
    assert days(2024) == {
        date(2024, 1, 1): "New Year's Day", date(2024, 1, 2): "Day after New Year's Day",
        date(2024, 2, 6): "Waitangi Day", date(2024, 3, 29): "Good Friday", date(2024, 4, 1): "Easter Monday",
        date(2024, 4, 25): "ANZAC Day", date(2024, 6, 3): "King's Birthday", date(2024, 6, 28): "Matariki",
        date(2024, 10, 28): "Labour Day", date(2024, 12, 25): "Christmas Day", date(2024, 12, 26): "Boxing Day",
    }


def test_2021_mondayises_waitangi_anzac_and_a_weekend_christmas():
    h = days(2021)
    assert h[date(2021, 2, 8)] == "Waitangi Day"          # Sat 6 Feb -> Mon
    assert h[date(2021, 4, 26)] == "ANZAC Day"            # Sun 25 Apr -> Mon
    assert h[date(2021, 12, 27)] == "Christmas Day"       # Sat -> Mon
    assert h[date(2021, 12, 28)] == "Boxing Day"          # Sun -> Tue
    assert date(2021, 2, 6) not in h and date(2021, 12, 25) not in h
    assert "Matariki" not in h.values()                   # first observed 2022
    assert h[date(2021, 6, 7)] == "King's Birthday" and h[date(2021, 10, 25)] == "Labour Day"


def test_2022_new_year_on_a_weekend_and_christmas_on_sunday():
    h = days(2022)
    assert h[date(2022, 1, 3)] == "New Year's Day" and h[date(2022, 1, 4)] == "Day after New Year's Day"
    assert h[date(2022, 12, 27)] == "Christmas Day" and h[date(2022, 12, 26)] == "Boxing Day"
    assert h[date(2022, 6, 24)] == "Matariki"
    assert h[date(2022, 9, 26)] == "Queen Elizabeth II Memorial Day"


def test_2023_new_year_on_sunday_moves_to_tuesday():
    h = days(2023)
    assert h[date(2023, 1, 3)] == "New Year's Day" and h[date(2023, 1, 2)] == "Day after New Year's Day"
    assert h[date(2023, 7, 14)] == "Matariki"


def test_2026_holidays():
    h = days(2026)
    assert h[date(2026, 2, 6)] == "Waitangi Day"
    assert h[date(2026, 4, 3)] == "Good Friday" and h[date(2026, 4, 6)] == "Easter Monday"
    assert h[date(2026, 4, 27)] == "ANZAC Day"            # Sat 25 Apr -> Mon 27
    assert h[date(2026, 6, 1)] == "King's Birthday"
    assert h[date(2026, 7, 10)] == "Matariki"
    assert h[date(2026, 10, 26)] == "Labour Day"
    assert h[date(2026, 12, 25)] == "Christmas Day" and h[date(2026, 12, 28)] == "Boxing Day"  # Fri+Sat
    assert len(h) == 11


def test_before_2014_a_weekend_anzac_day_is_not_moved():
    assert "ANZAC Day" not in cal.public_holidays(2010).values()   # Sun 25 Apr 2010


def test_matariki_is_always_a_friday_and_unknown_years_are_refused():
    assert all(d.weekday() == 4 and d.year == y for y, d in cal.MATARIKI.items())
    with pytest.raises(cal.CalendarUnknown):
        cal.public_holidays(2053)


def test_business_days_skip_weekends_and_holidays():
    # Thu 24 Dec 2026 + 2: Fri 25 Christmas, Sat, Sun, Mon 28 Boxing (Mondayised) -> Tue 29, Wed 30.
    assert cal.add_business_days(date(2026, 12, 24), 2) == date(2026, 12, 30)
    # Thu 2 Apr 2026 + 1 skips Good Friday, the weekend and Easter Monday.
    assert cal.add_business_days(date(2026, 4, 2), 1) == date(2026, 4, 7)
    assert cal.add_business_days(date(2026, 11, 20), 2) == date(2026, 11, 24)  # Fri -> Tue
    assert cal.add_business_days(date(2026, 11, 21), 0) == date(2026, 11, 21)
    assert not cal.is_business_day(date(2026, 7, 10)) and cal.is_business_day(date(2026, 7, 9))

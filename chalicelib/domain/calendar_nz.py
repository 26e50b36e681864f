"""New Zealand national public holidays and business days. Pure functions of a year or a date.

Holidays Act 2003 s44-45A: New Year's Day, Day after New Year's Day, Waitangi Day, Good Friday, Easter
Monday, ANZAC Day, the Sovereign's (King's) Birthday, Matariki, Labour Day, Christmas Day, Boxing Day.
Regional anniversary days are not national and are left out: a payout is a national bank run.
"""
from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

SATURDAY, SUNDAY = 5, 6

# Te Kāhui o Matariki Public Holiday Act 2022, Schedule 1 (always a Friday). Dates after 2052 are not
# fixed yet: asking for one is an error rather than a silent "no holiday".
MATARIKI = {
    2022: date(2022, 6, 24), 2023: date(2023, 7, 14), 2024: date(2024, 6, 28), 2025: date(2025, 6, 20),
    2026: date(2026, 7, 10), 2027: date(2027, 6, 25), 2028: date(2028, 7, 14), 2029: date(2029, 7, 6),
    2030: date(2030, 6, 21), 2031: date(2031, 7, 11), 2032: date(2032, 7, 2), 2033: date(2033, 6, 24),
    2034: date(2034, 7, 7), 2035: date(2035, 6, 29), 2036: date(2036, 7, 18), 2037: date(2037, 7, 10),
    2038: date(2038, 6, 25), 2039: date(2039, 7, 15), 2040: date(2040, 7, 6), 2041: date(2041, 7, 19),
    2042: date(2042, 7, 11), 2043: date(2043, 7, 3), 2044: date(2044, 6, 24), 2045: date(2045, 7, 7),
    2046: date(2046, 6, 29), 2047: date(2047, 7, 19), 2048: date(2048, 7, 3), 2049: date(2049, 6, 25),
    2050: date(2050, 7, 15), 2051: date(2051, 6, 30), 2052: date(2052, 6, 21),
}
MATARIKI_FIRST, MATARIKI_LAST = min(MATARIKI), max(MATARIKI)

# One-off holidays by their own Acts.
ONE_OFF = {date(2022, 9, 26): "Queen Elizabeth II Memorial Day"}

# Waitangi and ANZAC Day are Mondayised from 2014 (Holidays (Full Recognition of Waitangi Day and ANZAC
# Day) Amendment Act 2013); before that a weekend Waitangi/ANZAC Day was simply lost.
MONDAYISE_WAITANGI_ANZAC_FROM = 2014


class CalendarUnknown(ValueError):
    """A year whose holidays are not known (Matariki is only fixed up to 2052)."""


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Gregorian computus, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    leap = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * leap) // 451
    month, day = divmod(h + leap - 7 * m + 114, 31)
    return date(year, month, day + 1)


def nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th `weekday` (Monday=0) of a month."""
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _next_monday(d: date) -> date:
    return d + timedelta(days=(7 - d.weekday()) % 7)


def _pair(first: date, second: date) -> tuple[date, date]:
    """Observed days of two consecutive holidays (New Year + 2 Jan, Christmas + Boxing Day).

    A holiday on a weekend moves to the next weekday not already taken by the other one:
    Sat+Sun -> Mon+Tue; Sun+Mon -> Tue+Mon; Fri+Sat -> Fri+Mon.
    """
    if first.weekday() == SATURDAY:          # Sat, Sun
        return first + timedelta(days=2), second + timedelta(days=2)
    if first.weekday() == SUNDAY:            # Sun, Mon
        return first + timedelta(days=2), second
    if second.weekday() == SATURDAY:         # Fri, Sat
        return first, second + timedelta(days=2)
    return first, second


@lru_cache(maxsize=64)
def public_holidays(year: int) -> dict[date, str]:
    """Observed national public holidays of a year: date -> name."""
    if year < MATARIKI_FIRST - 30 or year > MATARIKI_LAST:
        raise CalendarUnknown(f"NZ public holidays are not known for {year}")
    out: dict[date, str] = {}
    ny, ny2 = _pair(date(year, 1, 1), date(year, 1, 2))
    out[ny] = "New Year's Day"
    out[ny2] = "Day after New Year's Day"
    for d, name in ((date(year, 2, 6), "Waitangi Day"), (date(year, 4, 25), "ANZAC Day")):
        if d.weekday() >= SATURDAY and year >= MONDAYISE_WAITANGI_ANZAC_FROM:
            d = _next_monday(d)
        if d.weekday() < SATURDAY:
            out[d] = name
    easter = easter_sunday(year)
    out[easter - timedelta(days=2)] = "Good Friday"
    out[easter + timedelta(days=1)] = "Easter Monday"
    out[nth_weekday(year, 6, 0, 1)] = "King's Birthday"
    if year in MATARIKI:
        out[MATARIKI[year]] = "Matariki"
    out[nth_weekday(year, 10, 0, 4)] = "Labour Day"
    xmas, boxing = _pair(date(year, 12, 25), date(year, 12, 26))
    out[xmas] = "Christmas Day"
    out[boxing] = "Boxing Day"
    for d, name in ONE_OFF.items():
        if d.year == year:
            out[d] = name
    return out


def is_business_day(d: date) -> bool:
    return d.weekday() < SATURDAY and d not in public_holidays(d.year)


def add_business_days(start: date, n: int) -> date:
    """The n-th business day after `start` (T+N; `start` itself never counts, n >= 0)."""
    if n < 0:
        raise ValueError("n must be >= 0")
    d = start
    while n:
        d += timedelta(days=1)
        if is_business_day(d):
            n -= 1
    return d


def business_day_on_or_after(d: date) -> date:
    """`d` if it is a business day, else the next one (a bank file's due date, a rolled sweep)."""
    while not is_business_day(d):
        d += timedelta(days=1)
    return d


# ---- New Zealand local time ------------------------------------------------------------------
TIMEZONE = "Pacific/Auckland"


def _zone():
    # The IANA database comes from the OS or, where the OS has none (slim Lambda images), the `tzdata`
    # package in requirements.txt; zoneinfo looks in both.
    from zoneinfo import ZoneInfo

    return ZoneInfo(TIMEZONE)


def local_time(at):
    """An aware UTC datetime as New Zealand wall-clock time (NZST +12 / NZDT +13)."""
    return at.astimezone(_zone())


def local_date(at) -> date:
    return local_time(at).date()

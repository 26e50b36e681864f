"""The statement parsers read zero-padded Beijing times by slicing; every answer must be strptime's."""
from datetime import date, datetime, timedelta, timezone

import pytest

from chalicelib import clock
from chalicelib.channels.alipay import BEIJING, parse_beijing
from chalicelib.channels.alipay import statement as alipay
from chalicelib.channels.payease import statement as payease
from chalicelib.channels.wechat import statement as wechat

CN = timezone(timedelta(hours=8))


def _ref_dashed(text):
    try:
        at = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CN)
    except ValueError:
        return "ValueError"
    return at.date().isoformat(), clock.iso(at)


def _ref_compact(text):
    try:
        at = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=CN)
    except ValueError:
        return "ValueError"
    return at.strftime("%Y-%m-%d"), clock.iso(at)


def _ref_alipay(text):
    dt = parse_beijing((text or "").strip())
    if dt is None:
        return None
    return dt.astimezone(BEIJING).strftime("%Y-%m-%d"), dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _call(fn, text):
    try:
        return fn(text)
    except ValueError:
        return "ValueError"


def _samples():
    days = [date(2024, 1, 1), date(2024, 2, 29), date(2024, 3, 1), date(2023, 3, 1), date(2024, 12, 31),
            date(1001, 1, 1), date(9999, 12, 31)]
    for d in days:
        for hour in (0, 7, 8, 23):
            yield f"{d.isoformat()} {hour:02d}:59:30"
    yield from ["2023-02-29 10:00:00", "2024-04-31 10:00:00", "2024-00-10 10:00:00", "2024-13-10 10:00:00",
                "2024-01-00 10:00:00", "2024-01-01 24:00:00", "2024-01-01 10:60:00", "2024-01-01 10:00:60",
                "2024-01-01 10:00:61", "0000-01-01 10:00:00", "0999-06-01 10:00:00", "1000-01-01 07:00:00",
                "2024-1-1 1:2:3", "2024-01-01  10:00:00", "2024-01-01 10:00", "２０２４-01-01 10:00:00", ""]


@pytest.mark.parametrize("text", list(_samples()))
def test_wechat_times_are_strptimes(text):
    assert _call(wechat._times, text) == _ref_dashed(text)


@pytest.mark.parametrize("text", [t.replace("-", "").replace(" ", "").replace(":", "") for t in _samples()]
                         + ["2024010110000", "202401011000000", "20240101 100000"])
def test_payease_times_are_strptimes(text):
    assert _call(payease._times, text) == _ref_compact(text)


@pytest.mark.parametrize("text", list(_samples()) + [t.replace("-", "").replace(" ", "").replace(":", "")
                                                      for t in _samples()] + [" 2024-01-01 10:00:00 "])
def test_alipay_times_are_parse_beijings(text):
    assert alipay._times(text) == _ref_alipay(text)


def test_every_second_of_a_day_boundary():
    start = datetime(2023, 12, 31, 22, 0, 0)
    for s in range(0, 12 * 3600, 7):
        t = start + timedelta(seconds=s)
        dashed, compact = t.strftime("%Y-%m-%d %H:%M:%S"), t.strftime("%Y%m%d%H%M%S")
        assert wechat._times(dashed) == _ref_dashed(dashed)
        assert payease._times(compact) == _ref_compact(compact)
        assert alipay._times(dashed) == alipay._times(compact) == _ref_alipay(dashed)

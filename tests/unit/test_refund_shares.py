"""Fee and channel-amount shares of partial refunds, with refunds failing in between (issue 7)."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from chalicelib.services.refunds import share_of


@settings(max_examples=300, deadline=None)
@given(total=st.integers(1, 10 ** 7), part_ratio=st.integers(0, 100), steps=st.lists(
    st.tuples(st.booleans(), st.integers(1, 100), st.integers(0, 10 ** 6)), max_size=30))
def test_shares_never_exceed_the_part_and_add_up_to_it_once_everything_is_refunded(total, part_ratio, steps):
    part = total * part_ratio // 100            # a fee, or the CNY a quoted payment received, scaled
    live: list[tuple[int, int]] = []            # (amount, share) of refunds not failed
    refunded = returned = 0
    for refund, pct, pick in steps:
        if refund and refunded < total:
            amount = max(1, (total - refunded) * pct // 100)
            s = share_of(part, total, refunded + amount, returned)
            assert s >= 0
            live.append((amount, s))
            refunded, returned = refunded + amount, returned + s
        elif not refund and live:                # a refund fails: it leaves both running totals
            amount, s = live.pop(pick % len(live))
            refunded, returned = refunded - amount, returned - s
        assert returned <= part
    if refunded < total:                         # the last refund takes what is left, exactly
        returned += share_of(part, total, total, returned)
    assert returned == part


def test_a_failed_refund_between_two_others_no_longer_hands_back_one_cent_too_many():
    # fee 1% of 2500.00: refunds of 0.98 and 0.02, the first fails, then the rest is refunded.
    first = share_of(2500, 250000, 98, 0)
    second = share_of(2500, 250000, 100, first)
    rest = share_of(2500, 250000, 250000, second)   # the first failed: only the second was returned
    assert (first, second) == (0, 1) and second + rest == 2500

from datetime import datetime, timezone

import pytest

from chalicelib.domain.payment import InvalidTransition, Payment, PaymentStatus, can_transition
from chalicelib.domain.refund import RefundNotAllowed, check_refund
from chalicelib.money import Money

NOW = datetime(2026, 11, 25, tzinfo=timezone.utc)


def make(status=PaymentStatus.PENDING, refunded=0):
    return Payment(id="pay_x", merchant_id="mch_x", livemode=False, amount=Money(1000, "NZD"), channel="wechat",
                   flow="native", status=status, channel_order_id="pay_x", merchant_reference="r", description="d",
                   created_at=NOW, expires_at=NOW, fee=Money(20, "NZD"), refunded=refunded)


@pytest.mark.parametrize("target", [PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CLOSED])
def test_pending_moves_forward_to_any_final_state(target):
    assert make().transition(target).status is target


@pytest.mark.parametrize("final", [PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CLOSED])
def test_final_states_never_move_again(final):
    for target in PaymentStatus:
        assert not can_transition(final, target)
    with pytest.raises(InvalidTransition):
        make(final).transition(PaymentStatus.PENDING)


def test_refund_only_of_succeeded_payments_and_never_above_the_payment():
    with pytest.raises(RefundNotAllowed) as e:
        check_refund(make(), Money(100, "NZD"))
    assert e.value.code == "payment_not_succeeded"
    paid = make(PaymentStatus.SUCCEEDED, refunded=600)
    check_refund(paid, Money(400, "NZD"))
    with pytest.raises(RefundNotAllowed) as e:
        check_refund(paid, Money(401, "NZD"))
    assert e.value.code == "amount_exceeds_refundable"
    with pytest.raises(RefundNotAllowed):
        check_refund(paid, Money(100, "AUD"))


@pytest.mark.parametrize("ended", [PaymentStatus.CLOSED, PaymentStatus.FAILED])
def test_money_taken_for_an_ended_payment_makes_it_succeed_once(ended):
    late = make(ended).late_success(paid_at=NOW)
    assert late.status is PaymentStatus.SUCCEEDED
    with pytest.raises(InvalidTransition):
        late.late_success(paid_at=NOW)
    with pytest.raises(InvalidTransition):
        make().late_success(paid_at=NOW)


def test_an_ended_payment_whose_last_attempt_failed_is_failed_unless_the_merchant_closed_it():
    from dataclasses import replace

    tried = replace(make(), failure_code="NOTENOUGH")
    assert tried.ended("clock", NOW).status is PaymentStatus.FAILED
    assert tried.ended("channel", NOW).failure_code == "NOTENOUGH"
    by_merchant = tried.ended("merchant", NOW)
    assert by_merchant.status is PaymentStatus.CLOSED and by_merchant.failure_code is None
    assert make().ended("clock", NOW).status is PaymentStatus.CLOSED and make().ended("clock", NOW).closed_by == "clock"

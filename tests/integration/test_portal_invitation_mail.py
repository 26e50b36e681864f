"""Staff invitations go out by Amazon SES (the embedded one here): an outbox item written with the
invitation, its link sealed, sent once by the inviting request or the send_mail job, retried on failure."""
from __future__ import annotations

import dataclasses
import logging
import re
from datetime import timedelta

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from chalicelib import clock, settings
from chalicelib.services import mail, merchants, notifications
from chalicelib.store import audit, tables
from chalicelib.store.mail import MailModel
from chalicelib.store.staff import InvitationModel, StaffModel
from tests.integration.portal_helpers import Browser, owner_of
from tests.integration.test_balances_and_withdrawals import THURSDAY
from tests.support.jobs import by_hand, scheduled

LINK = re.compile(r"http://kauri\.test/portal/invitations/[A-Za-z0-9_\-]+")


@pytest.fixture
def merchant_id(client):
    clock.freeze(THURSDAY)
    return merchants.create_merchant("Tui Honey", channels={"wechat": {"sub_mch_id": "20000100"}}).id


def sent_to(address: str) -> list:
    """What the embedded SES has sent to one address."""
    return [m for m in ses_backends[DEFAULT_ACCOUNT_ID]["ap-southeast-2"].sent_messages
            if address in m.destinations.get("ToAddresses", [])]


def mail_to(address: str) -> MailModel:
    (item,) = [m for m in MailModel.scan() if m.to == address]
    return item


@pytest.fixture
def ses_fails(monkeypatch):
    """SES answers `code` to the next `times` SendEmail calls (before they reach it), then works again."""
    state = {"times": 0, "code": "TooManyRequestsException", "calls": 0}
    real = mail._ses

    def refuse(**kwargs):
        state["calls"] += 1
        if state["times"] > 0:
            state["times"] -= 1

            class Answer:
                status_code = 429
                headers: dict = {}
            return Answer(), {"Error": {"Code": state["code"], "Message": "slow down"},
                              "ResponseMetadata": {"HTTPStatusCode": 429}}
        return None

    def client(timeout):
        c = real(timeout)
        c.meta.events.register("before-call.sesv2.SendEmail", refuse)
        return c

    monkeypatch.setattr(mail, "_ses", client)
    return state


def invite_while_ses_refuses(client, merchant_id, ses_fails, times=1, code="TooManyRequestsException"):
    """The owner joins, then invites a manager while SES refuses the next `times` sends with `code`."""
    owner = owner_of(client, merchant_id)
    ses_fails.update(times=times, code=code, calls=0)
    owner.get("/portal/staff")
    assert owner.post("/portal/staff/invite", {"email": "boss@tuihoney.nz", "role": "manager"}).status_code == 200
    return owner


def test_an_invitation_is_mailed_once_in_english_and_chinese_with_a_link_that_works(client, merchant_id):
    owner = owner_of(client, merchant_id)
    owner.get("/portal/staff")
    assert owner.post("/portal/staff/invite", {"email": "Till@TuiHoney.nz", "role": "cashier"}).status_code == 200
    assert 'id="mail-state" data-state="delivered"' in owner.text()
    assert "The invitation was mailed to till@tuihoney.nz" in owner.text()
    assert "mailed: yes" in owner.text() and "mailed: True" not in owner.text()   # the audit trail, in words

    (message,) = sent_to("till@tuihoney.nz")
    assert message.source == "Kauri <no-reply@kauri.test>"
    assert "Tui Honey" in message.subject and "加入" in message.subject
    assert "owner@tuihoney.nz invited you" in message.body and "as cashier" in message.body
    assert "收银员" in message.body and "新西兰时间" in message.body
    (link,) = set(LINK.findall(message.body))
    assert link in owner.text()                                    # this stage shows the link as well
    item = mail_to("till@tuihoney.nz")
    assert (item.status, int(item.attempts), item.sealed) == ("delivered", 1, None) and item.message_id

    assert scheduled(client, "send_mail")["due"] == 0              # the job has nothing left to send
    clock.advance(timedelta(hours=1))
    assert scheduled(client, "send_mail")["due"] == 0
    assert len(sent_to("till@tuihoney.nz")) == 1

    cashier = Browser(client)
    assert cashier.accept(link).status_code == 303                 # the mailed link works
    assert cashier.sign_in("till@tuihoney.nz").status_code == 303
    assert StaffModel.get(merchant_id, "till@tuihoney.nz").role == "cashier"
    owner.get("/portal/staff")
    assert 'class="mail" data-state="delivered"' in owner.text()


def test_a_failed_send_is_retried_after_its_backoff_and_the_mail_goes_out_once(client, merchant_id, ses_fails):
    owner = invite_while_ses_refuses(client, merchant_id, ses_fails, times=2)
    assert 'data-state="pending"' in owner.text() and "has not gone out yet" in owner.text()
    item = mail_to("boss@tuihoney.nz")
    assert (item.status, int(item.attempts), item.last_error) == ("pending", 1, "TooManyRequestsException")

    assert scheduled(client, "send_mail")["due"] == 0               # not before its backoff
    clock.advance(timedelta(seconds=max(60, notifications.BACKOFF[0])))    # the job runs once a minute
    assert scheduled(client, "send_mail")["retrying"] == 1
    clock.advance(timedelta(seconds=max(60, notifications.BACKOFF[1])))
    assert scheduled(client, "send_mail")["delivered"] == 1
    for _ in range(3):
        clock.advance(timedelta(minutes=5))
        assert scheduled(client, "send_mail")["due"] == 0
    (message,) = sent_to("boss@tuihoney.nz")
    assert ses_fails["calls"] == 3
    assert MailModel.get(item.mail_id).status == "delivered"


def test_two_workers_holding_the_same_mail_send_it_once(client, merchant_id, ses_fails):
    invite_while_ses_refuses(client, merchant_id, ses_fails)
    clock.advance(timedelta(minutes=1))
    first, second = MailModel.get(mail_to("boss@tuihoney.nz").mail_id), MailModel.get(mail_to("boss@tuihoney.nz").mail_id)
    assert mail.deliver(first) == "delivered"
    assert mail.deliver(second) is None                             # its lease was taken: it sends nothing
    assert len(sent_to("boss@tuihoney.nz")) == 1


def test_a_rejected_mail_is_not_retried_and_the_staff_page_says_it_failed(client, merchant_id, ses_fails):
    owner = invite_while_ses_refuses(client, merchant_id, ses_fails, code="MessageRejected")
    assert 'data-state="failed"' in owner.text() and 'id="invitation-link"' in owner.text()
    assert mail_to("boss@tuihoney.nz").sealed is None                 # never to be sent: the link is gone
    clock.advance(timedelta(days=1))
    assert scheduled(client, "send_mail")["due"] == 0 and sent_to("boss@tuihoney.nz") == []


def test_mail_not_sent_before_the_invitation_was_accepted_is_cancelled(client, merchant_id, ses_fails):
    owner = invite_while_ses_refuses(client, merchant_id, ses_fails)
    link = re.search(r'id="invitation-link" href="([^"]+)"', owner.text()).group(1)
    assert Browser(client).accept(link).status_code == 303          # they were given the link by hand
    clock.advance(timedelta(minutes=1))
    assert scheduled(client, "send_mail")["cancelled"] == 1
    assert sent_to("boss@tuihoney.nz") == [] and mail_to("boss@tuihoney.nz").sealed is None


def test_the_invitation_token_is_never_logged_nor_stored_in_the_clear(client, merchant_id, ses_fails, caplog):
    caplog.set_level(logging.INFO)
    invite_while_ses_refuses(client, merchant_id, ses_fails)
    clock.advance(timedelta(minutes=1))
    assert scheduled(client, "send_mail")["delivered"] == 1
    (message,) = sent_to("boss@tuihoney.nz")
    token = LINK.search(message.body).group(0).rsplit("/", 1)[1]
    assert len(token) >= 32
    assert "mail_attempt" in caplog.text and token not in caplog.text
    for model in tables.models():
        for item in model.scan():
            assert token not in str(item.attribute_values), model.__name__
    assert InvitationModel.count() == 2                              # the owner's and this one, by hash


def test_a_waiting_mail_keeps_the_link_only_under_its_kms_envelope(client, merchant_id, ses_fails):
    owner = invite_while_ses_refuses(client, merchant_id, ses_fails)
    link = re.search(r'id="invitation-link" href="([^"]+)"', owner.text()).group(1)
    item = mail_to("boss@tuihoney.nz")
    assert set(item.sealed) == {"v", "key", "nonce", "ct"} and link not in str(item.attribute_values)
    from chalicelib import secrets

    assert secrets.open_sealed(item.sealed, mail.INVITATION_PURPOSE) == link
    with pytest.raises(Exception):                                   # bound to its purpose
        secrets.open_sealed(item.sealed)


def test_invite_owner_from_the_console_mails_the_owner_too(client, merchant_id):
    done = by_hand(client, "invite_owner", {"request_id": "inv-42", "merchant_id": merchant_id,
                                            "email": "owner@tuihoney.nz"})
    assert done["outcome"] == "ok" and done["mail"] == "queued"
    (message,) = sent_to("owner@tuihoney.nz")
    assert done["invitation_url"] in message.body and "Kauri invited you" in message.body
    again = by_hand(client, "invite_owner", {"request_id": "inv-42", "merchant_id": merchant_id,
                                             "email": "owner@tuihoney.nz"})
    assert again["invitation_url"] == done["invitation_url"] and len(sent_to("owner@tuihoney.nz")) == 1


def test_a_stage_without_a_sender_shows_the_link_and_says_mail_is_off(client, merchant_id, monkeypatch):
    # This stage's settings with no sender (not reloaded from the environment, which other tests may
    # have pointed elsewhere).
    off = dataclasses.replace(settings.get(), mail_from="")

    def get():
        return off
    get.cache_clear = settings.get.cache_clear
    monkeypatch.setattr(settings, "get", get)
    owner = owner_of(client, merchant_id)
    owner.get("/portal/staff")
    owner.post("/portal/staff/invite", {"email": "boss@tuihoney.nz", "role": "manager"})
    assert 'data-state="off"' in owner.text() and "Mail is off on this stage" in owner.text()
    assert 'id="invitation-link"' in owner.text()
    assert list(MailModel.scan()) == [] and sent_to("boss@tuihoney.nz") == []
    invited = next(e for e in audit.recent(merchant_id) if e.details.get("email") == "boss@tuihoney.nz")
    assert invited.details["mailed"] is False


def test_prod_with_mail_on_does_not_show_the_link_only_the_mail_has_it():
    base = {"KAURI_STAGE": "prod", "KAURI_MAIL_FROM": "Kauri <no-reply@kauri.nz>"}
    assert settings.load(base).shows_invitation_links is False
    assert settings.load({**base, "KAURI_MAIL_FROM": ""}).shows_invitation_links is True
    assert settings.load({"KAURI_STAGE": "dev", "KAURI_MAIL_FROM": "x@y.nz"}).shows_invitation_links is True


def test_the_stack_lets_the_functions_send_mail_only_from_the_stages_verified_identity(tmp_path):
    """No managed policy (chalice cannot attach one to its roles): the stack names the identity and its ARN,
    and `make deploy` puts ses:SendEmail on exactly that ARN into the stage policy of the build."""
    import json

    from infra import deploy, gen_template

    doc = gen_template.build_template(gen_template.table_specs())
    assert "MailIdentity" in doc["Parameters"]
    assert not [lid for lid, r in doc["Resources"].items() if r["Type"].startswith("AWS::IAM::")]
    assert doc["Outputs"]["MailIdentityArn"] == {
        "Condition": "HasMailIdentity",
        "Value": {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${MailIdentity}"}}
    for stage in gen_template.STAGES:       # the repo's stage policies grant no mail right by themselves
        assert "ses:" not in gen_template.policy_path(stage).read_text()

    build = deploy.layout(tmp_path / "build")
    deploy.policy_for("prod", build)
    arn = "arn:aws:ses:ap-southeast-2:123456789012:identity/kauri.nz"
    assert deploy.wire_mail("prod", build, {"MailIdentity": "kauri.nz", "MailIdentityArn": arn}) is True
    assert deploy.wire_mail("prod", build, {"MailIdentity": "kauri.nz", "MailIdentityArn": arn}) is True
    policy = json.loads((build / ".chalice" / "policy-prod.json").read_text())
    mail = [st for st in policy["Statement"] if any(a.startswith("ses:") for a in st["Action"])]
    assert mail == [{"Sid": "MailSend", "Effect": "Allow", "Action": ["ses:SendEmail"], "Resource": [arn]}]
    env = json.loads((build / ".chalice" / "config.json").read_text())["stages"]["prod"]["environment_variables"]
    assert env["KAURI_MAIL_FROM"] == "Kauri <no-reply@kauri.nz>"
    assert settings.load({**env, "KAURI_STAGE": "prod"}).mail_from == "Kauri <no-reply@kauri.nz>"


def test_deploy_sends_mail_from_no_identity_but_the_stages_own(tmp_path):
    from infra import deploy

    build = deploy.layout(tmp_path / "build")
    deploy.policy_for("prod", build)
    before = (build / ".chalice" / "policy-prod.json").read_text()
    assert deploy.wire_mail("prod", build, {}) is False          # no identity on the stack: mail stays off
    assert (build / ".chalice" / "policy-prod.json").read_text() == before
    for arn in ("arn:aws:ses:ap-southeast-2:123456789012:identity/*",
                "arn:aws:ses:ap-southeast-2:123456789012:identity/other.nz",
                "arn:aws:ses:*:*:identity/kauri.nz"):
        with pytest.raises(SystemExit):
            deploy.wire_mail("prod", build, {"MailIdentity": "kauri.nz", "MailIdentityArn": arn})


def test_a_deploy_that_does_not_mention_the_mail_identity_keeps_the_stacks_own():
    from infra import deploy

    update = deploy.stack_parameters("prod", {"AlarmEmail": None, "MailIdentity": None}, exists=True)
    assert {"ParameterKey": "MailIdentity", "UsePreviousValue": True} in update
    assert {"ParameterKey": "AlarmEmail", "UsePreviousValue": True} in update
    first = deploy.stack_parameters("prod", {"MailIdentity": None}, exists=False)
    assert first == [{"ParameterKey": "Stage", "ParameterValue": "prod"}]   # the template's defaults: off
    given = deploy.stack_parameters("prod", {"MailIdentity": " kauri.nz ", "AlarmEmail": ""}, exists=True)
    assert {"ParameterKey": "MailIdentity", "ParameterValue": "kauri.nz"} in given
    assert {"ParameterKey": "AlarmEmail", "ParameterValue": ""} in given     # '' switches alarm mail off

"""Kauri's own mail through Amazon SES (v2 SendEmail): staff invitations.

An invitation's mail is an outbox item (store.mail) written in the invitation's own transaction; the
link in it (a secret: it makes a sign-in) is kept only under the stage's KMS envelope
(secrets.seal, bound to INVITATION_PURPOSE) and dropped once sent. The send_mail job (every minute)
and the inviting request itself (send_now) attempt due mail; each attempt is leased and counted before
it is sent and retried on the webhook timetable (notifications.attempt_one, shared with staff alerts),
so a message goes out once. No log line, error or stored reply of this module carries the link.
Where settings.mail_from is empty, mail is off: nothing is queued and the portal shows the link.
"""
from __future__ import annotations

import re
from datetime import timedelta
from email.utils import parseaddr

from chalicelib import clock, ids, log, secrets, settings
from chalicelib.services import notifications
from chalicelib.store import mail as store

INVITATION_PURPOSE = b"kauri-staff-invitation-link"
SEND_NOW_MS = 5_000            # how long an inviting request may spend sending the mail itself
# SES answers after which the same message cannot go through (anything else is tried again later).
PERMANENT = frozenset({"MessageRejected", "MailFromDomainNotVerifiedException", "BadRequestException",
                       "NotFoundException", "AccountSuspendedException", "ValidationException"})
ROLE_ZH = {"owner": "所有者", "manager": "经理", "cashier": "收银员"}
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def mail_on() -> bool:
    return "@" in parseaddr(settings.get().mail_from)[1]


# ---- writing --------------------------------------------------------------------------------------

def invitation_mail(merchant_id: str, email: str, role: str, invited_by: str, url: str, expires_at,
                    invitation_hash: str):
    """The outbox item that mails an invitation (None when mail is off): for the caller's transaction.
    `invitation_hash`: the invitation's key (the token's SHA-256, not the token)."""
    if not mail_on():
        return None
    from chalicelib.store import merchants

    merchant = merchants.get(merchant_id)
    now = clock.now()
    data = {"merchant": _plain(merchant.name if merchant else merchant_id, 80), "role": role,
            "invited_by": _inviter(invited_by), "expires_at": clock.iso(expires_at), "invitation": invitation_hash}
    return store.MailModel(
        ids.new("mail", 16), merchant_id=merchant_id, kind="staff_invitation", to=email, data=data,
        sealed=secrets.seal(url, INVITATION_PURPOSE), status="pending", attempts=0,
        next_attempt_at=int(now.timestamp()), due_shard=store.DUE_SHARD, created_at=now,
        expires=expires_at + timedelta(days=30))


def _inviter(actor: str) -> str:
    kind, _, who = actor.partition(":")
    return who if kind == "staff" else "Kauri"


def _plain(text: str, limit: int) -> str:
    return _UNPRINTABLE.sub(" ", str(text))[:limit]


# ---- the message ------------------------------------------------------------------------------------

def invitation_text(data: dict, url: str) -> tuple[str, str]:
    """(subject, body) in English, then Simplified Chinese."""
    from chalicelib.domain import calendar_nz

    expires = calendar_nz.local_time(clock.parse_iso(data["expires_at"])).strftime("%Y-%m-%d %H:%M")
    merchant, role, who = data["merchant"], data["role"], data["invited_by"]
    subject = f"Join {merchant} on Kauri / 加入 Kauri 上的 {merchant}"
    body = (f"{who} invited you to {merchant}'s Kauri merchant portal as {role}.\n\n"
            f"Open this link to choose your password and sign in:\n{url}\n\n"
            f"The link works once, until {expires} (New Zealand time). If you did not expect this "
            f"invitation, ignore this message.\n\n"
            f"----\n\n"
            f"{who} 邀请您以{ROLE_ZH.get(role, role)}身份加入 {merchant} 的 Kauri 商户后台。\n\n"
            f"请打开以下链接设置密码并登录：\n{url}\n\n"
            f"该链接仅可使用一次，有效期至 {expires}（新西兰时间）。如果您没有预期收到此邀请，请忽略本邮件。\n")
    return subject, body


# ---- sending ------------------------------------------------------------------------------------------

def _ses(timeout: int):
    import boto3
    from botocore.config import Config

    s = settings.get()
    return boto3.client("sesv2", region_name=s.region, endpoint_url=s.aws_endpoint_url,
                        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}))


def deliver(item, timeout: int | None = None) -> str | None:
    """One attempt at one mail (leased and counted before it is sent): delivered / retrying / failed /
    cancelled, or None when another worker has it."""
    from botocore.exceptions import BotoCoreError, ClientError

    timeout = timeout or settings.get().http_timeout_seconds

    def send(m) -> None:
        if not mail_on():
            raise notifications.SendFailed("MAIL_OFF")   # configured again later: sent then
        try:
            url = secrets.open_sealed(m.sealed, INVITATION_PURPOSE)
        except Exception as exc:
            raise notifications.SendFailed(f"SEAL_{type(exc).__name__}") from None
        subject, body = invitation_text(m.data, url)
        try:
            answer = _ses(timeout).send_email(
                FromEmailAddress=settings.get().mail_from, Destination={"ToAddresses": [m.to]},
                Content={"Simple": {"Subject": {"Data": subject, "Charset": "UTF-8"},
                                    "Body": {"Text": {"Data": body, "Charset": "UTF-8"}}}})
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            if code in PERMANENT:
                m.sealed = None         # never to be sent: keep the link no longer
            raise notifications.SendFailed(code, code not in PERMANENT) from None
        except BotoCoreError as exc:    # network, timeouts
            raise notifications.SendFailed(type(exc).__name__) from None
        m.message_id = str(answer.get("MessageId", ""))[:200]
        m.sealed = None                 # sent: the link is no longer kept anywhere but in the invitation hash

    moot = _moot(item)
    if moot:
        item.sealed = None
    return notifications.attempt_one(item, send, "mail", cancelled=moot, mail_id=item.mail_id,
                                     merchant_id=item.merchant_id, kind=item.kind)


def _moot(item) -> bool:
    """An invitation already accepted, or lapsed, needs no mail."""
    from chalicelib.store import staff

    if item.kind != "staff_invitation":
        return False
    invitation = staff.get(staff.InvitationModel, item.data.get("invitation", "-"))
    return invitation is None or invitation.status != "pending" or clock.now() >= invitation.expires_at


def send_now(mail_id: str | None) -> str:
    """Try a just-queued mail inside the request that queued it: its state for the page (`off` when
    mail is off). Whatever happens, the job has it next minute."""
    if not mail_id:
        return "off"
    item = store.get(mail_id)
    if item is None:
        return "pending"
    if item.status == "pending":
        budget = notifications.Budget(total_ms=SEND_NOW_MS)
        try:
            deliver(item, notifications.send_timeout(budget))
        except Exception as exc:  # the invitation stands; the job tries again
            log.warning("mail_send_now_failed", mail_id=mail_id, error=type(exc).__name__)
            return "pending"
        item = store.get(mail_id) or item
    return item.status


def deliver_due(dry_run: bool = False, merchant_id: str | None = None, limit: int = 200, budget=None) -> dict:
    """The send_mail job: every mail whose time has come, while the run has time."""
    due, out = notifications.due_of(store.due(clock.epoch(), limit=limit), merchant_id)
    if dry_run or not due:
        return out
    return notifications.attempt_due(due, deliver, budget or notifications.Budget(), out)


def recent_for(merchant_id: str) -> list:
    return store.recent(merchant_id)

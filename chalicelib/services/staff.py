"""Merchant staff: identities in an Amazon Cognito user pool, invitations by link, portal sessions.

- Passwords live only in Cognito (`kauri-<stage>-staff`, app client `kauri-portal`, found by name);
  sign-in is AdminInitiateAuth (ADMIN_USER_PASSWORD_AUTH) from the server, never from the browser.
- An invitation is a random token (only its SHA-256 is stored) valid INVITATION_TTL; accepting it creates
  the Cognito user with the password the invitee chose, once.
- A session is a random token in an HttpOnly, Secure, SameSite=Strict cookie; the table keeps its hash,
  the role, and the session's CSRF token. Signing a session out (remotely too) revokes it at once and
  signs the person out of Cognito (their refresh tokens die).
- Failed sign-ins are throttled per email and per client address (DynamoDB counters with a TTL).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from chalicelib import clock, ids, log, settings
from chalicelib.domain import staff as roles
from chalicelib.services import errors
from chalicelib.store import staff as store
from chalicelib.store.unit import Conflict, Unit

INVITATION_TTL = timedelta(days=3)
SESSION_TTL = timedelta(hours=12)
FAILED_SIGNINS_PER_EMAIL = 5          # per 15 minutes
FAILED_SIGNINS_PER_ADDRESS = 20       # per 15 minutes
THROTTLE_WINDOW = 900
POOL_CLIENT = "kauri-portal"
COOKIE = "kauri_portal"

_pool: dict[str, str] = {}


def _idp():
    import boto3

    s = settings.get()
    return boto3.client("cognito-idp", region_name=s.region, endpoint_url=s.aws_endpoint_url)


def pool_name() -> str:
    return f"kauri-{settings.get().stage}-staff"


def pool() -> tuple[str, str]:
    """(user pool id, app client id): KAURI_STAFF_POOL_ID / KAURI_STAFF_CLIENT_ID on deployed stages (the
    template's outputs); else (local stack, tests) looked up by name once per container."""
    import os

    if os.environ.get("KAURI_STAFF_POOL_ID") and os.environ.get("KAURI_STAFF_CLIENT_ID"):
        return os.environ["KAURI_STAFF_POOL_ID"], os.environ["KAURI_STAFF_CLIENT_ID"]
    key = f"{settings.get().aws_endpoint_url}#{pool_name()}"
    if key not in _pool:
        idp = _idp()
        found = [p["Id"] for p in idp.list_user_pools(MaxResults=60)["UserPools"] if p["Name"] == pool_name()]
        if not found:
            raise errors.ServiceError("unavailable", "staff_directory_missing", "the staff directory is not set up")
        clients = idp.list_user_pool_clients(UserPoolId=found[0], MaxResults=60)["UserPoolClients"]
        client_id = next(c["ClientId"] for c in clients if c["ClientName"] == POOL_CLIENT)
        _pool[key] = f"{found[0]}|{client_id}"
    pool_id, client_id = _pool[key].split("|")
    return pool_id, client_id


def reset() -> None:
    _pool.clear()


def create_pool() -> tuple[str, str]:
    """For the local stack and tests (deployed stages get it from infra/template.yaml)."""
    idp = _idp()
    pid = idp.create_user_pool(
        PoolName=pool_name(), UsernameAttributes=["email"], AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
        Policies={"PasswordPolicy": {"MinimumLength": 10, "RequireUppercase": False, "RequireLowercase": True,
                                     "RequireNumbers": True, "RequireSymbols": False}},
        Schema=[{"Name": "merchant_id", "AttributeDataType": "String", "Mutable": False},
                {"Name": "role", "AttributeDataType": "String", "Mutable": True}])["UserPool"]["Id"]
    idp.create_user_pool_client(UserPoolId=pid, ClientName=POOL_CLIENT, GenerateSecret=False,
                                ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"])
    reset()
    return pool()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def normal_email(text: str) -> str:
    import re

    email = (text or "").strip().lower()
    if len(email) > 254 or not re.fullmatch(r"[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)+", email):
        raise errors.invalid("email_invalid", "email must be an address like someone@shop.co.nz", "email")
    return email


# ---- invitations ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Invitation:
    email: str
    role: str
    url: str           # the link the invitee opens (mailed; shown where settings.shows_invitation_links)
    expires_at: object
    mail_id: str | None = None     # its mail in the outbox; None: mail is off on this stage

    def send_mail(self) -> str:
        """After the invitation committed: try its mail now (services.mail.send_now); its state."""
        from chalicelib.services import mail

        return mail.send_now(self.mail_id)


def invite(merchant_id: str, email: str, role: str, invited_by: str, unit: Unit | None = None) -> Invitation:
    """A new invitation link. `unit`: written in the caller's transaction (with its audit entry)."""
    email = normal_email(email)
    if role not in roles.ROLES:
        raise errors.invalid("role_invalid", f"role must be one of {list(roles.ROLES)}", "role")
    existing = store.get(store.StaffModel, merchant_id, email)
    if existing is not None and existing.status == "active":
        raise errors.conflict("already_staff", "this person is already on the staff")
    token = secrets.token_urlsafe(32)
    now = clock.now()
    item = store.InvitationModel(_hash(token), merchant_id=merchant_id, email=email, role=role,
                                 invited_by=invited_by, status="pending", created_at=now,
                                 expires_at=now + INVITATION_TTL, expires=now + INVITATION_TTL + timedelta(days=30))
    from chalicelib.services import mail

    url = f"{settings.get().public_base_url}/portal/invitations/{token}"
    letter = mail.invitation_mail(merchant_id, email, role, invited_by, url, item.expires_at, item.token_hash)
    own = unit is None
    unit = (unit or Unit()).put_new(item).audit(merchant_id, invited_by, "staff.invited",
                                                {"email": email, "role": role, "mailed": letter is not None})
    if letter is not None:
        unit.put_new(letter)     # the mail goes out with the invitation or not at all
    if own:
        unit.commit()
    return Invitation(email, role, url, item.expires_at, letter.mail_id if letter is not None else None)


def invitation(token: str) -> store.InvitationModel:
    """A pending, unexpired invitation, or not_found / conflict('invitation_expired')."""
    item = store.get(store.InvitationModel, _hash(token)) if 16 <= len(token or "") <= 64 else None
    if item is None or item.status != "pending":
        raise errors.not_found("invitation", "token")
    if clock.now() >= item.expires_at:
        raise errors.conflict("invitation_expired", "this invitation has expired; ask for a new one")
    return item


def accept(token: str, password: str) -> str:
    """The invitee sets their password; returns their email. Once per invitation."""
    item = invitation(token)
    if not isinstance(password, str) or not 10 <= len(password) <= 128:
        raise errors.invalid("password_invalid", "the password must be 10-128 characters", "password")
    pool_id, _ = pool()
    idp = _idp()
    try:
        idp.admin_create_user(UserPoolId=pool_id, Username=item.email, MessageAction="SUPPRESS",
                              UserAttributes=[{"Name": "email", "Value": item.email},
                                              {"Name": "email_verified", "Value": "true"},
                                              {"Name": "custom:merchant_id", "Value": item.merchant_id},
                                              {"Name": "custom:role", "Value": item.role}])
    except idp.exceptions.UsernameExistsException:
        raise errors.conflict("already_registered", "this email already has a Kauri sign-in") from None
    try:
        idp.admin_set_user_password(UserPoolId=pool_id, Username=item.email, Password=password, Permanent=True)
    except idp.exceptions.InvalidPasswordException:
        idp.admin_delete_user(UserPoolId=pool_id, Username=item.email)
        raise errors.invalid("password_invalid", "the password needs 10+ characters with letters and numbers",
                             "password") from None
    now = clock.now()
    staff = store.StaffModel(item.merchant_id, item.email, role=item.role, status="active",
                             added_by=item.invited_by, created_at=now)
    unit = Unit().put_new(staff).audit(item.merchant_id, f"staff:{item.email}", "staff.joined", {"role": item.role})
    unit.update(store.InvitationModel(item.token_hash), [store.InvitationModel.status.set("accepted")],
                store.InvitationModel.status == "pending")
    try:
        unit.commit()
    except Conflict:
        idp.admin_delete_user(UserPoolId=pool_id, Username=item.email)
        raise errors.conflict("invitation_used", "this invitation was already used") from None
    return item.email


# ---- sessions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Session:
    token: str | None         # only when just created (goes into the cookie)
    session_id: str
    merchant_id: str
    email: str
    role: str
    csrf: str

    def can(self, permission: str) -> bool:
        return roles.can(self.role, permission)

    @property
    def actor(self) -> str:
        return f"staff:{self.email}"


def _throttled(scope: str, subject: str, limit: int) -> bool:
    from chalicelib.store import qr_codes as counters

    now = clock.epoch()
    window = now - now % THROTTLE_WINDOW
    return not counters.hit(f"signin_fail#{scope}#{subject}#{window}", limit, window + THROTTLE_WINDOW * 2)


def _failures_left(scope: str, subject: str, limit: int) -> bool:
    from chalicelib.store import qr_codes as counters

    now = clock.epoch()
    window = now - now % THROTTLE_WINDOW
    item = store.get(counters.ThrottleModel, f"signin_fail#{scope}#{subject}#{window}")
    return item is None or int(item.hits or 0) < limit


def sign_in(email: str, password: str, client_ip: str, device: str = "") -> Session:
    """A new session, or invalid('sign_in_failed'); throttled ('too_many_attempts') after repeated failures,
    before Cognito is even asked (a correct password does not get through either)."""
    email = normal_email(email) if email else ""
    address = hashlib.sha256((client_ip or "-").encode()).hexdigest()[:24]
    if not _failures_left("email", email, FAILED_SIGNINS_PER_EMAIL) or \
            not _failures_left("ip", address, FAILED_SIGNINS_PER_ADDRESS):
        raise errors.ServiceError("unprocessable", "too_many_attempts",
                                  "too many failed sign-ins; wait 15 minutes and try again")
    pool_id, client_id = pool()
    idp = _idp()
    staff = None
    try:
        idp.admin_initiate_auth(UserPoolId=pool_id, ClientId=client_id, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                                AuthParameters={"USERNAME": email, "PASSWORD": password or ""})
        attrs = {a["Name"]: a["Value"] for a in idp.admin_get_user(UserPoolId=pool_id, Username=email)["UserAttributes"]}
        staff = store.get(store.StaffModel, attrs.get("custom:merchant_id", "-"), email)
    except (idp.exceptions.NotAuthorizedException, idp.exceptions.UserNotFoundException):
        pass
    if staff is None or staff.status != "active":
        _throttled("email", email, FAILED_SIGNINS_PER_EMAIL)
        _throttled("ip", address, FAILED_SIGNINS_PER_ADDRESS)
        log.info("portal_sign_in_failed")
        raise errors.invalid("sign_in_failed", "wrong email or password", "password")
    token = secrets.token_urlsafe(32)
    now = clock.now()
    item = store.SessionModel(_hash(token), session_id=ids.new("ses", 16), merchant_id=staff.merchant_id,
                              email=email, role=staff.role, staff_key=f"{staff.merchant_id}#{email}",
                              csrf=secrets.token_urlsafe(24), device=(device or "")[:120], created_at=now,
                              expires_at=now + SESSION_TTL, expires=now + SESSION_TTL)
    Unit().put_new(item).audit(staff.merchant_id, f"staff:{email}", "staff.signed_in", {"session": item.session_id}).commit()
    return Session(token, item.session_id, staff.merchant_id, email, staff.role, item.csrf)


def session(token: str | None) -> Session | None:
    """The live session behind a cookie value, or None (unknown, expired, revoked, or staff removed)."""
    if not token or not 16 <= len(token) <= 64:
        return None
    item = store.get(store.SessionModel, _hash(token))
    if item is None or item.revoked or clock.now() >= item.expires_at:
        return None
    return Session(None, item.session_id, item.merchant_id, item.email, item.role, item.csrf)


def csrf_ok(s: Session, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(s.csrf.encode(), str(submitted).encode())


def sessions_of(merchant_id: str) -> list[store.SessionModel]:
    """Every live session of the merchant's staff (for the owner's staff page)."""
    out = []
    for member in store.StaffModel.query(merchant_id, consistent_read=True):
        for item in store.SessionModel.by_staff.query(f"{merchant_id}#{member.email}"):
            if not item.revoked and clock.now() < item.expires_at:
                out.append(item)
    return out


def sign_out(by: Session, session_id: str) -> bool:
    """Revoke one session of this merchant (the caller's own, or, for an owner, anyone's): at once."""
    target = next((s for s in sessions_of(by.merchant_id) if s.session_id == session_id), None)
    if target is None or (target.session_id != by.session_id and not by.can("staff")):
        return False
    unit = Unit().audit(by.merchant_id, by.actor, "staff.signed_out",
                        {"email": target.email, "session": target.session_id, "remote": target.session_id != by.session_id})
    unit.update(store.SessionModel(target.token_hash), [store.SessionModel.revoked.set(True)],
                store.SessionModel.token_hash.exists())
    unit.commit()
    if target.session_id != by.session_id:
        pool_id, _ = pool()
        _idp().admin_user_global_sign_out(UserPoolId=pool_id, Username=target.email)
    return True


def staff_of(merchant_id: str) -> list[store.StaffModel]:
    return list(store.StaffModel.query(merchant_id, consistent_read=True))


def seed_member(merchant_id: str, email: str, role: str, password: str, invited_by: str = "ops:local-seed") -> str:
    """A staff member who has accepted an invitation (the local stack's demo owner and cashier): the same
    invite-and-accept path a person takes."""
    invited = invite(merchant_id, email, role, invited_by)
    invited.send_mail()
    return accept(invited.url.rsplit("/", 1)[1], password)

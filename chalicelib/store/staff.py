"""A merchant's staff, their invitations and their portal sessions. Passwords are never here: identities
live in the Cognito user pool (services.staff); these tables say which merchant a person works for."""
from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, TTLAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.store.base import meta


class StaffModel(Model):
    Meta = meta("staff")
    merchant_id = UnicodeAttribute(hash_key=True)
    email = UnicodeAttribute(range_key=True)          # lower-case; the Cognito username
    role = UnicodeAttribute()                         # owner | manager | cashier
    status = UnicodeAttribute()                       # active | removed
    added_by = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()


class InvitationModel(Model):
    """One invitation link; only the SHA-256 of its token is kept. Accepted once, before `expires_at`."""
    Meta = meta("staff_invitations")
    token_hash = UnicodeAttribute(hash_key=True)
    merchant_id = UnicodeAttribute()
    email = UnicodeAttribute()
    role = UnicodeAttribute()
    invited_by = UnicodeAttribute()
    status = UnicodeAttribute()                       # pending | accepted
    created_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    expires = TTLAttribute()                          # removed some days after it lapsed


class _SessionsByStaff(GlobalSecondaryIndex):
    class Meta:
        index_name = "by_staff"
        projection = AllProjection()

    staff_key = UnicodeAttribute(hash_key=True)       # <merchant_id>#<email>
    created_at = UTCDateTimeAttribute(range_key=True)


class SessionModel(Model):
    """A signed-in browser: the cookie holds the token, this table its SHA-256. Revoked = signed out."""
    Meta = meta("portal_sessions")
    token_hash = UnicodeAttribute(hash_key=True)
    session_id = UnicodeAttribute()                   # shown to the owner (never the token)
    merchant_id = UnicodeAttribute()
    email = UnicodeAttribute()
    role = UnicodeAttribute()
    staff_key = UnicodeAttribute()
    csrf = UnicodeAttribute()                         # the form token of this session
    device = UnicodeAttribute(default="")             # the browser's User-Agent, cut short
    revoked = BooleanAttribute(default=False)
    created_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    expires = TTLAttribute()
    by_staff = _SessionsByStaff()


def get(model, *key):
    try:
        return model.get(*key, consistent_read=True)
    except DoesNotExist:
        return None

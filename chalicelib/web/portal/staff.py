"""The owner's staff page: invite, see who is signed in where, sign a session out remotely, the audit trail."""
from __future__ import annotations

from chalice import Response

from chalicelib.services import errors
from chalicelib.web.portal import common


def staff_page(req, invited=None, error_key: str | None = None, status: int = 200, mail_state: str = "") -> Response:
    from chalicelib import settings
    from chalicelib.services import mail, staff
    from chalicelib.store import audit

    r, s, refused = common.signed_in(req, "staff")
    if refused:
        return refused
    return common.page(r, "portal/staff.html", s, status, csrf=s.csrf, members=staff.staff_of(s.merchant_id),
                       sessions=staff.sessions_of(s.merchant_id), trail=audit.recent(s.merchant_id, 50),
                       invited=invited, error_key=error_key, roles=("cashier", "manager", "owner"),
                       mail_state=mail_state, show_link=settings.get().shows_invitation_links,
                       mail_on=mail.mail_on(), mails=mail.recent_for(s.merchant_id))


def invite(req) -> Response:
    from chalicelib.services import staff

    r, s, refused = common.form_post(req, "staff")
    if refused:
        return refused
    form = r.form()
    try:
        invited = staff.invite(s.merchant_id, form.get("email", ""), form.get("role", ""), s.actor)
    except errors.ServiceError as exc:
        return staff_page(req, error_key="portal_invite_" + ("exists" if exc.kind == "conflict" else "invalid"),
                          status=400)
    return staff_page(req, invited=invited, mail_state=invited.send_mail())


def remote_sign_out(session_id: str, req) -> Response:
    from chalicelib.services import staff

    r, s, refused = common.form_post(req, "staff")
    if refused:
        return refused
    if not staff.sign_out(s, session_id):
        return staff_page(req, error_key="portal_session_unknown", status=404)
    return common.redirect(f"{common.PATH}/staff")

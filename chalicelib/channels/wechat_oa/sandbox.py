"""A small WeChat Official Account server for non-prod stages, mounted at /sandbox/wechat_oa.

Serves what Kauri uses (wechat-pay spec §14): `GET /cgi-bin/token` (client_credential) and
`POST /cgi-bin/message/template/send`, with WeChat's JSON error shapes; and the shopper's web OAuth
(spec §13): `GET /connect/oauth2/authorize` (a silent snsapi_base grant: 302 back with a code) and
`GET /sns/oauth2/access_token` (code -> openid; a code works once, for 5 minutes). Simulator choices where the
spec is silent: one template (the configured template_id) with typed keys amount1/thing2/time3/
character_string4; a repeated client_msg_id answers the first msgid and sends nothing new; a new
token leaves the previous one valid for 5 more minutes. Test hooks under /simulate.
State lives in chalicelib.store.sandbox, imported inside handlers (pynamodb is slow to import).
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

from chalice import Blueprint, Response

from chalicelib import clock, settings

blueprint = Blueprint(__name__)

TOKEN_TTL = 7200
OLD_TOKEN_GRACE = 300
MAX_BODY_BYTES = 64 * 1024
TEMPLATE = {  # key -> check of its value (typed template keys, spec §14)
    "amount1": re.compile(r"^[A-Z]{3} \d{1,10}(\.\d{1,3})?$"),
    "thing2": re.compile(r"^[^\x00-\x1f]{1,20}$"),
    "time3": re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"),
    "character_string4": re.compile(r"^[A-Za-z0-9_.\-]{1,32}$"),
}
_OPENID = re.compile(r"^[A-Za-z0-9_\-]{20,64}$")
_PK = "wechat_oa#"


def _store():
    from chalicelib.store import sandbox

    return sandbox


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(body=json.dumps(body, ensure_ascii=False), status_code=status,
                    headers={"Content-Type": "application/json; encoding=utf-8"})


def _error(code: int, message: str) -> Response:
    return _json({"errcode": code, "errmsg": f"{message} rid: {secrets.token_hex(4)}"})


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@blueprint.route("/cgi-bin/token", methods=["GET"])
def token():
    q = blueprint.current_request.query_params or {}
    cfg = settings.get().wechat_oa
    if q.get("grant_type") != "client_credential":
        return _error(40002, "invalid grant_type")
    if cfg is None or q.get("appid") != cfg.appid:
        return _error(40013, "invalid appid")
    if not secrets.compare_digest(q.get("secret", ""), cfg.appsecret):
        return _error(40125, "invalid appsecret")
    store = _store()
    now = clock.epoch()
    issued = "oa_" + secrets.token_urlsafe(48)
    store.create(_PK + "token#" + _hash(issued), {"expires_at": now + TOKEN_TTL})
    previous = store.get(_PK + "current")
    if previous is not None:  # the old token keeps working a little while (WeChat's rule)
        store.update(_PK + "token#" + previous["hash"],
                     lambda d: {**d, "expires_at": min(d["expires_at"], now + OLD_TOKEN_GRACE)})
    if not store.create(_PK + "current", {"hash": _hash(issued), "issued": 1}):
        store.update(_PK + "current", lambda d: {"hash": _hash(issued), "issued": d.get("issued", 0) + 1})
    return _json({"access_token": issued, "expires_in": TOKEN_TTL})


def _token_problem(token: str) -> Response | None:
    if not token:
        return _error(41001, "access_token missing")
    found = _store().get(_PK + "token#" + _hash(token))
    if found is None:
        return _error(40001, "invalid credential, access_token is invalid or not latest")
    if clock.epoch() >= found["expires_at"]:
        return _error(42001, "access_token expired")
    return None


@blueprint.route("/cgi-bin/message/template/send", methods=["POST"], content_types=["application/json"])
def send_template():
    req = blueprint.current_request
    problem = _token_problem((req.query_params or {}).get("access_token", ""))
    if problem is not None:
        return problem
    raw = req.raw_body or b""
    try:
        if len(raw) > MAX_BODY_BYTES:
            raise ValueError("too large")
        body = json.loads(raw.decode("utf-8"))
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except ValueError:  # includes UnicodeDecodeError
        return _error(47001, "data format error")
    touser, data, client_msg_id = body.get("touser"), body.get("data"), body.get("client_msg_id")
    if not isinstance(touser, str) or not _OPENID.match(touser):
        return _error(40003, "invalid openid")
    store = _store()
    if store.get(_PK + "unfollowed#" + touser) is not None:
        return _error(43004, "require subscribe")
    if body.get("template_id") != settings.get().wechat_oa.template_id:
        return _error(40037, "invalid template_id")
    if not isinstance(data, dict) or set(data) != set(TEMPLATE):
        return _error(47003, "argument invalid! data invalid")
    for key, check in TEMPLATE.items():
        value = data[key].get("value") if isinstance(data[key], dict) else None
        if not isinstance(value, str) or not check.match(value):
            return _error(47003, f"argument invalid! data.{key}.value invalid")
    if client_msg_id is not None and (not isinstance(client_msg_id, str) or not 0 < len(client_msg_id) <= 64):
        return _error(47003, "argument invalid! client_msg_id invalid")
    msgid = int.from_bytes(secrets.token_bytes(6), "big") + 10**14
    if client_msg_id is not None and not store.create(_PK + "dedupe#" + client_msg_id, {"msgid": msgid}):
        return _json({"errcode": 0, "errmsg": "ok", "msgid": store.get(_PK + "dedupe#" + client_msg_id)["msgid"]})
    message = {"msgid": msgid, "touser": touser, "client_msg_id": client_msg_id, "sent_at": clock.epoch(),
               "data": {k: data[k]["value"] for k in TEMPLATE}}
    if not store.create(_PK + "inbox#" + touser, {"messages": [message]}):
        store.update(_PK + "inbox#" + touser, lambda d: {"messages": d["messages"] + [message]})
    return _json({"errcode": 0, "errmsg": "ok", "msgid": msgid})


# ---- web OAuth (snsapi_base) ---------------------------------------------------------------------

OAUTH_CODE_TTL = 300
_STATE = re.compile(r"^[A-Za-z0-9]{0,128}$")


def _oauth_apps() -> dict[str, str]:
    """appid -> appsecret of the Official Accounts this sandbox plays."""
    s = settings.get()
    apps = {s.wechat.appid: s.wechat.appsecret}
    if s.wechat_oa is not None:
        apps[s.wechat_oa.appid] = s.wechat_oa.appsecret
    return apps


@blueprint.route("/connect/oauth2/authorize", methods=["GET"])
def oauth_authorize():
    """WeChat's authorize page: inside WeChat an snsapi_base grant is silent, straight back with a code."""
    from urllib.parse import urlencode, urlsplit

    q = blueprint.current_request.query_params or {}
    redirect_uri, state = q.get("redirect_uri", ""), q.get("state", "")
    parts = urlsplit(redirect_uri)
    if q.get("appid") not in _oauth_apps():
        return Response(body="appid invalid (10003)", status_code=400, headers={"Content-Type": "text/plain"})
    if parts.scheme not in ("http", "https") or not parts.netloc or len(redirect_uri) > 1024:
        return Response(body="redirect_uri invalid (10003)", status_code=400, headers={"Content-Type": "text/plain"})
    if q.get("response_type") != "code" or q.get("scope") not in ("snsapi_base", "snsapi_userinfo"):
        return Response(body="scope invalid (10005)", status_code=400, headers={"Content-Type": "text/plain"})
    if not _STATE.match(state):
        return Response(body="state invalid", status_code=400, headers={"Content-Type": "text/plain"})
    code = secrets.token_urlsafe(24)
    openid = "o" + hashlib.sha256(f"{q['appid']}#shopper".encode()).hexdigest()[:10] + secrets.token_urlsafe(12)
    _store().create(_PK + "oauth_code#" + code, {"appid": q["appid"], "openid": openid, "scope": q["scope"],
                                                 "expires_at": clock.epoch() + OAUTH_CODE_TTL, "used": False})
    sep = "&" if parts.query else "?"
    return Response(body="", status_code=302,
                    headers={"Location": redirect_uri + sep + urlencode({"code": code, "state": state})})


@blueprint.route("/sns/oauth2/access_token", methods=["GET"])
def oauth_access_token():
    q = blueprint.current_request.query_params or {}
    apps = _oauth_apps()
    if q.get("grant_type") != "authorization_code":
        return _error(40002, "invalid grant_type")
    if q.get("appid") not in apps:
        return _error(40013, "invalid appid")
    if not apps[q["appid"]] or not secrets.compare_digest(q.get("secret", ""), apps[q["appid"]]):
        return _error(40125, "invalid appsecret")
    code = q.get("code", "")
    if not code or len(code) > 128:
        return _error(40029, "invalid code")
    seen: dict[str, Any] = {}

    def use(d: dict[str, Any]) -> dict[str, Any] | None:
        seen.clear()
        seen.update(d)
        return None if d["used"] else {**d, "used": True}

    _store().update(_PK + "oauth_code#" + code, use)
    if not seen or seen["appid"] != q["appid"] or clock.epoch() >= seen["expires_at"]:
        return _error(40029, "invalid code")
    if seen["used"]:
        return _error(40163, "code been used")
    return _json({"access_token": "sns_" + secrets.token_urlsafe(32), "expires_in": 7200,
                  "refresh_token": "snsr_" + secrets.token_urlsafe(32), "openid": seen["openid"],
                  "scope": seen["scope"]})


# ---- test hooks --------------------------------------------------------------------------------

@blueprint.route("/simulate/inbox/{openid}", methods=["GET"])
def simulate_inbox(openid):
    """What a follower's WeChat has received from the Official Account."""
    found = _store().get(_PK + "inbox#" + openid) or {"messages": []}
    return _json({"openid": openid, "messages": found["messages"]})


@blueprint.route("/simulate/unfollow", methods=["POST"], content_types=["application/json"])
def simulate_unfollow():
    try:
        openid = json.loads(blueprint.current_request.raw_body or b"{}").get("openid")
    except (ValueError, AttributeError):
        openid = None
    if not isinstance(openid, str) or not _OPENID.match(openid):
        return _json({"error": "openid required"}, 400)
    _store().create(_PK + "unfollowed#" + openid, {"at": clock.epoch()})
    return _json({"openid": openid, "following": False})


@blueprint.route("/simulate/stats", methods=["GET"])
def simulate_stats():
    current = _store().get(_PK + "current") or {}
    return _json({"tokens_issued": current.get("issued", 0)})
